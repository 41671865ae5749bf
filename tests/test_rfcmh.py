"""Tests of the RFCMH plugin (methods/rfcmh.py): each loss and mechanism on hand-checkable tensors (the spec's
unit-test values, specs/recent-noisy.md §3), the schedule, and a short run."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell
from cmh_bench.method import resolve_hparams
from cmh_bench.methods.mgsh import family_lse_per_sample
from cmh_bench.methods.rfcmh import (
    RFCMH,
    admissibility,
    admissibility_loss,
    far_margin_loss,
    pair_signs,
    possibility,
    prototype_matrix,
    reliability_gap,
    reliability_weights,
    restart_cosine_lr,
)
from cmh_bench.methods.rshnl import chl_loss, q_robust


def close(a, b, tol=1e-5):
    """a ≈ b elementwise, as float32 tensors."""
    a, b = (torch.as_tensor(x, dtype=torch.float32) for x in (a, b))
    return torch.allclose(a, b, atol=tol)


def unit_rows(n, d, seed):
    """n seeded random unit rows in R^d."""
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=generator), dim=1)


Y = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])


def test_admissibility_of_one_hot_predictions_is_the_labels():
    a = admissibility(Y.clone(), Y, kappa=4)
    assert close(a, Y.clamp(1e-6, 1 - 1e-6), tol=1e-6)
    assert admissibility_loss(a, a, Y).item() == pytest.approx(0.0, abs=1e-9)


def test_admissibility_kappa_zero_range_and_multi_hot_by_hand():
    p = torch.tensor([[0.1, 0.3, 0.2, 0.25, 0.05, 0.1]])
    assert close(admissibility(p, Y[1:2], kappa=0), p)
    a = admissibility(p, Y[1:2], kappa=2)
    # π = 0.3 + 0.2 = 0.5; the two strongest competitors 0.25, 0.1: c = 0.175
    n = torch.tensor([[0.5, 0.825, 0.825, 0.5, 0.5, 0.5]])
    assert close(a, (p + 2 * n) / 3)
    a = admissibility(torch.softmax(torch.randn(5, 6) * 10, dim=1), Y[[0, 1, 2, 0, 1]], kappa=4)
    assert (a >= 1e-6).all() and (a <= 1 - 1e-6).all()


def test_membership_range_and_prototypes():
    w = prototype_matrix(16, 6, torch.Generator().manual_seed(0))
    assert close(w.T @ w, torch.eye(6))  # orthonormal columns when L ≥ K
    z = unit_rows(10, 16, 1)
    membership = torch.sigmoid(z @ w / 0.5).square()
    low, high = torch.sigmoid(torch.tensor(-2.0)) ** 2, torch.sigmoid(torch.tensor(2.0)) ** 2
    assert (membership >= low - 1e-6).all() and (membership <= high + 1e-6).all()
    assert close(possibility(z, w).sum(1), torch.ones(10)) and close(possibility(z, w), membership / membership.sum(1, keepdim=True))
    # L < K: the repulsion steps spread random unit columns
    spread = prototype_matrix(4, 12, torch.Generator().manual_seed(2))
    start = F.normalize(torch.randn(4, 12, generator=torch.Generator().manual_seed(2)), dim=0)
    off = lambda m: (m.T @ m - torch.diag((m.T @ m).diagonal())).abs().sum()  # noqa: E731
    assert close(spread.norm(dim=0), torch.ones(12)) and off(spread) < off(start)


def test_intra_loss_is_the_q_loss_of_the_stacked_contrastive_both_directions_equal():
    z1, z2 = unit_rows(3, 4, 3), unit_rows(3, 4, 4)
    stacked = torch.cat([z1, z2])
    e = torch.exp(stacked @ stacked.T / 0.7).fill_diagonal_(0)
    partner = torch.tensor([3, 4, 5, 0, 1, 2])
    p_rows = e[torch.arange(6), partner] / e.sum(1)
    p_cols = e[partner, torch.arange(6)] / e.sum(0)
    assert close(p_rows, p_cols)  # E is symmetric: the code's two directions are one
    assert chl_loss(z1, z2, 0.01, 0.7).item() == pytest.approx(2 * q_robust(p_rows, 0.01).mean().item(), rel=1e-5)
    # ℓ_q(1) = 0; q = 1 gives 1 − p; dℓ/dp = −(1 − q) p^{q−1} − q
    assert q_robust(torch.tensor(1.0), 0.01).item() == pytest.approx(0.0, abs=1e-7)
    assert q_robust(torch.tensor(0.3), 1.0).item() == pytest.approx(0.7)
    p = torch.tensor(0.4, requires_grad=True)
    q_robust(p, 0.01).backward()
    assert p.grad.item() == pytest.approx(-(1 - 0.01) * 0.4 ** (0.01 - 1) - 0.01, rel=1e-5)


def test_reliability_weights():
    a = torch.rand(5, 6, generator=torch.Generator().manual_seed(5))
    labels = Y[[0, 1, 2, 0, 1]]
    gap = reliability_gap(a, labels)
    assert close(reliability_gap(a + 0.3, labels), gap)  # invariant to a constant shift of ā
    assert close(reliability_weights(torch.full((4,), 0.2)), torch.full((4,), 0.5))  # constant gap: w = 0.5
    a.requires_grad_(True)
    assert not reliability_weights(reliability_gap(a, labels)).requires_grad  # detached
    # the paper's form: no standardisation, δ = 0.05
    assert close(reliability_weights(torch.tensor([0.05]), delta=0.05, standardise=False), [0.5])


def test_reliability_gap_multi_label_and_argmax_by_hand():
    a = torch.tensor([[0.1, 0.6, 0.3, 0.4, 0.0, 0.0]])
    labels = Y[1:2]  # claims classes 1 and 2
    assert reliability_gap(a, labels).item() == pytest.approx(0.3 - 0.4)  # min over claimed − max over the rest
    assert reliability_gap(a, labels, argmax_faithful=True).item() == pytest.approx(0.6 - 0.4)  # t = 1 vs the best other
    assert reliability_gap(a, torch.zeros(1, 6)).item() == 0.0  # no claimed class


def test_pair_signs_overlap_and_argmax():
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert pair_signs(labels).tolist() == [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]
    assert pair_signs(labels, argmax_faithful=True).tolist() == [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]]


def test_far_margin_loss_by_hand():
    # z with tanh(z) ∝ chosen unit vectors: same-class pairs S̃ = 1, different-class S̃ = −1
    base = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    z = torch.atanh(0.5 * base)
    signs = torch.tensor([[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    w = torch.tensor([0.2, 0.9, 0.5])
    assert far_margin_loss(z, z, signs, w).item() == pytest.approx(0.0, abs=1e-6)
    # flip pair (0, 1) to "different": hinge 0.2 + 1 = 1.2 on (0,1) and (1,0), pair weight min(0.2, 0.9) = 0.2
    flipped = signs.clone()
    flipped[0, 1] = flipped[1, 0] = -1
    pair_total = 2 * (0.2 + 0.2 + 0.5)  # Σ_{i≠j} min(w_i, w_j); the diagonal is excluded
    expected = 2 * 0.2 * 1.2 / pair_total
    assert far_margin_loss(z, z, flipped, w).item() == pytest.approx(expected, rel=1e-5)
    assert far_margin_loss(z, z, flipped, 3 * w).item() == pytest.approx(expected, rel=1e-5)  # scale invariant


def test_inter_loss_masked_entry_adds_exactly_one():
    # two samples sharing a label: the off-diagonal entries are masked, each adds exp(0) = 1 to its row sum
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    y = torch.ones(2, 1)
    s = (u @ v.T).diagonal()
    expected = 2 * (0.2 - s) + 2 * torch.log(1 + torch.exp(s.clamp(min=0)))
    assert close(family_lse_per_sample(u, v, y, 0.2, 1.0, 1.0), expected)


def test_restart_cosine_schedule_values():
    lr, low = 1e-4, 1e-7
    assert restart_cosine_lr(0, lr, low) == pytest.approx(1e-4)
    assert restart_cosine_lr(25, lr, low) == pytest.approx(low + 0.5 * (lr - low))
    assert restart_cosine_lr(50, lr, low) == pytest.approx(1e-7)
    assert restart_cosine_lr(51, lr, low) == pytest.approx(low + 0.7 * 0.5 * (lr - low) * (1 + math.cos(math.pi / 50)))
    assert restart_cosine_lr(51, lr, low) == pytest.approx(7.0e-5, rel=1e-2)
    assert restart_cosine_lr(100, lr, low) == pytest.approx(1e-7)
    assert restart_cosine_lr(101, lr, low) == pytest.approx(5.0e-5, rel=1e-2)


def test_profiles():
    quick = resolve_hparams(RFCMH, "quick")
    assert quick.hidden == 512 and "lr" not in RFCMH.quick and "epochs" not in RFCMH.quick
    paper = resolve_hparams(RFCMH, "paper")
    assert (paper.lr, paper.epochs, paper.batch_size, paper.alpha, paper.kappa, paper.q, paper.tau, paper.margin,
            paper.warmup_epochs, paper.weight_decay, paper.hidden) == (1e-4, 150, 64, 0.1, 4, 0.01, 0.7, 0.2, 3, 0.0, 4096)
    assert RFCMH.clean_meta_default is None


def test_a_short_run_warms_up_then_weights():
    cell = Cell(dataset="toy", method="rfcmh", bits=16, rate=0.5, profile="quick", val_every=0,
                hparams=(("epochs", "5"), ("hidden", "32")))
    record = run_cell(cell)
    epochs = record["epochs"]
    assert "loss_admissibility" in epochs[2] and "loss_far" in epochs[3] and "loss_far" not in epochs[2]
    assert all(math.isfinite(e["loss"]) for e in epochs)
    assert record["noise_detection"]["weight_auc"] is not None and record["method"]["labels_used"] == "noisy"
