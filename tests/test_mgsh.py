"""Tests of the MGSH plugin (methods/mgsh.py): each loss and mechanism on hand-checkable tensors (the spec's
unit-test values, specs/recent-noisy.md §2), the meta step moving the weights the way its gradient says,
and a short run with a clean meta set."""

from __future__ import annotations

import math

import pytest
import torch

from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell
from cmh_bench.method import resolve_hparams
from cmh_bench.methods.mgsh import (
    MGSH,
    MSWN,
    MGSHHparams,
    agreement_target,
    centre_aggregation,
    family_lse_per_sample,
    kept_count,
    mgsh_per_sample,
    mswn_loss,
    mswn_step,
    random_centres,
    selection_scores,
    small_loss_mask,
    weighted_mean,
)
from cmh_bench.methods.rshnl import q_robust


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


def unit_rows(n, d, seed):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def lse_by_loops(u, v, y, margin, shift, tau):
    """The spec's formula with plain loops: both directions summed over the row j; "im" masks by S_jj."""
    n = len(u)
    s = (u @ v.T).tolist()
    t = [[float(i != j and (y[i] @ y[j]).item() > 0) for j in range(n)] for i in range(n)]

    def cost(i, j, anchor):
        value = s[i][j] if s[i][j] >= s[anchor][anchor] - margin else s[i][j] - shift
        return max(value, 0.0) if i == j else value

    out = []
    for i in range(n):
        te = tau * math.log(sum(math.exp(cost(i, j, i) * (1 - t[i][j]) / tau) for j in range(n)))
        im = tau * math.log(sum(math.exp(cost(i, j, j) * (1 - t[i][j]) / tau) for j in range(n)))
        out.append(2 * (margin - s[i][i]) + te + im)
    return out


def test_family_lse_matches_the_formula_by_loops():
    u, v = unit_rows(5, 4, 0), unit_rows(5, 4, 1)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    assert close(family_lse_per_sample(u, v, y, 0.5, 1.0, 0.5), lse_by_loops(u, v, y, 0.5, 1.0, 0.5))


def test_all_ones_labels_give_the_closed_form_alignment_and_no_centre_loss():
    u, v = unit_rows(4, 8, 2), unit_rows(4, 8, 3)
    ones = torch.ones(4, 3)
    m, tau, b = 0.5, 0.5, 4
    s = (u * v).sum(1)
    # every off-diagonal entry is masked (exp(0) = 1 each); the diagonal keeps exp(max(S_ii, 0)/τ)
    expected = 2 * (-s + tau * torch.log(b - 1 + torch.exp(s.clamp(min=0) / tau)) + m)
    assert close(family_lse_per_sample(u, v, ones, m, 1.0, tau), expected)
    centres = random_centres(3, 8, torch.Generator().manual_seed(0))
    assert centre_aggregation(u, v, centres, ones, 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_centre_aggregation_by_hand():
    # one sample, two classes, C = I: softmax of (1, 0) puts e/(e+1) on class 0
    u = v = torch.tensor([[1.0, 0.0]])
    centres = torch.eye(2)
    a = math.e / (math.e + 1)
    g = (1 - 0.5) * (1 - a ** 0.5) / 0.5 + 0.5 * (1 - a)
    assert centre_aggregation(u, v, centres, torch.tensor([[1.0, 0.0]]), 0.5).item() == pytest.approx(2 * g, rel=1e-5)
    # g_r(1) = 0, g_r → 1 − a as r → 1, decreasing in a
    assert q_robust(torch.tensor(1.0), 0.5).item() == pytest.approx(0.0, abs=1e-7)
    assert q_robust(torch.tensor(0.3), 1.0).item() == pytest.approx(0.7)
    assert q_robust(torch.tensor(0.2), 0.5) > q_robust(torch.tensor(0.6), 0.5)


def test_random_centres_are_signs_over_root_l():
    c = random_centres(5, 16, torch.Generator().manual_seed(0))
    assert close(c.abs(), torch.full((5, 16), 0.25)) and close(c.norm(dim=1), torch.ones(5))


def test_per_sample_loss_combines_the_terms_with_lambda():
    hp = MGSHHparams()
    u, v = unit_rows(3, 4, 4), unit_rows(3, 4, 5)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    centres = random_centres(2, 4, torch.Generator().manual_seed(1))
    ut, vt = torch.tanh(u), torch.tanh(v)  # the double tanh
    from cmh_bench.methods.nrch import quantisation_loss

    expected = (hp.lam * family_lse_per_sample(ut, vt, y, hp.margin, hp.shift, hp.tau)
                + (1 - hp.lam) * (centre_aggregation(ut, vt, centres, y, hp.r) + quantisation_loss(ut, vt)))
    assert close(mgsh_per_sample(u, v, y, centres, hp), expected)


def test_weighted_mean_is_scale_invariant_and_the_mean_for_equal_weights():
    losses, w = torch.tensor([1.0, 2.0, 6.0]), torch.tensor([0.2, 0.5, 0.3])
    assert weighted_mean(losses, w).item() == pytest.approx((0.2 + 1.0 + 1.8) / (1.0 + 1e-8))
    assert weighted_mean(losses, 7 * w).item() == pytest.approx(weighted_mean(losses, w).item(), rel=1e-6)
    assert weighted_mean(losses, torch.full((3,), 0.4)).item() == pytest.approx(3.0, rel=1e-6)


def test_selection_score_by_hand():
    # prototypes with tanh W = I (up to atanh): codes u = v = e_0 for all; classes 0 and 1
    prototypes = torch.atanh(torch.tensor([[0.5, 0.0], [0.0, 0.5]]))
    u = v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    # fit to class 0: 2 (1 − 0.5)² = 0.5; to class 1: 2 (1 − 0)² = 2; s = max over positives, 0 without one
    raw = torch.tensor([0.5, 2.0, 0.0])
    expected = (raw - 0.0 + 1e-8) / (2.0 - 0.0 + 1e-8)
    scores = selection_scores(u, v, prototypes, y)
    assert close(scores, expected) and (scores > 0).all() and (scores <= 1).all()


def test_forget_schedule_and_kept_set():
    assert kept_count(1000, 0, 0.5, 100) == int((1 - 0.5 * 0.01) * 1000)
    assert kept_count(1000, 5, 0.5, 100) == 970  # 97 % at e = 5 (the spec's example)
    assert kept_count(1000, 99, 0.5, 100) == 500 and kept_count(1000, 150, 0.5, 100) == 500
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])
    assert small_loss_mask(scores, 3).tolist() == [False, True, True, True, False]


def test_agreement_target_faithful_and_fixed():
    u = torch.tensor([[0.5, -0.5, 0.5, 0.5], [0.5, 0.5, -0.5, -0.5]])
    v = torch.tensor([[0.5, -0.5, 0.5, -0.5], [-0.5, 0.5, -0.5, 0.5]])
    swap = torch.tensor([1, 0])
    # {0,1} codes: βu = [1,0,1,1], [1,1,0,0]; βv = [1,0,1,0], [0,1,0,1]; c⁺ = (2, 1), c⁻ (vs the other) = (1, 1)
    assert close(agreement_target(u, v, swap), torch.sigmoid(0.5 * torch.tensor([2.0 - 1.0, 1.0 - 1.0])))
    # ±1 codes: Hamming distances d⁺ = (1, 2) to the own partner, d⁻ = (3, 2) to the other one
    assert close(agreement_target(u, v, swap, pm1=True), torch.sigmoid(torch.tensor([3.0 - 1.0, 2.0 - 2.0])))


def test_mswn_output_shape_range_and_eval_determinism():
    torch.manual_seed(0)
    net = MSWN(8).eval()
    u, v = unit_rows(6, 8, 6), unit_rows(6, 8, 7)
    w = net(u, v)
    assert w.shape == (6,) and ((w > 0) & (w < 1)).all() and torch.equal(w, net(u, v))
    assert all(layer.bias.abs().sum() == 0 for layer in net.body if isinstance(layer, torch.nn.Linear))


@pytest.mark.parametrize("target", [0.95, 0.05])
def test_meta_step_moves_a_weight_towards_its_target(target):
    torch.manual_seed(1)
    net = MSWN(8).eval()  # eval: no dropout, so the step and the check see the same network
    u, v = unit_rows(1, 8, 8), unit_rows(1, 8, 9)
    before = net(u, v).item()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    mswn_step(net, optimizer, u, v, torch.tensor([target]))
    after = net(u, v).item()
    assert (after - before) * (target - before) > 0  # −∂L/∂w = (w_det − w)/(w(1 − w)) has the sign of w_det − w


def test_meta_step_follows_the_meta_gradient_on_a_batch():
    torch.manual_seed(2)
    net = MSWN(8).eval()
    u, v = unit_rows(6, 8, 10), unit_rows(6, 8, 11)
    target = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.6, 0.2])
    w = net(u, v).detach().requires_grad_(True)
    (grad_w,) = torch.autograd.grad(mswn_loss(w, target), w)
    before_loss = mswn_loss(net(u, v), target).item()
    mswn_step(net, torch.optim.Adam(net.parameters(), lr=1e-4), u, v, target)
    moved = net(u, v).detach() - w.detach()
    assert (moved * -grad_w).sum() > 0  # the weights move along the negative meta gradient
    assert mswn_loss(net(u, v), target).item() < before_loss


def test_profiles_and_meta_declaration():
    quick = resolve_hparams(MGSH, "quick")
    assert quick.hidden == 512 and "lr" not in MGSH.quick and "epochs" not in MGSH.quick
    paper = resolve_hparams(MGSH, "paper")
    assert (paper.lr, paper.epochs, paper.batch_size, paper.lam, paper.r, paper.margin, paper.hidden) == (
        1e-5, 100, 128, 0.7, 0.5, 0.5, 8192)
    assert MGSH.clean_meta_default == 50


def test_a_short_run_uses_the_meta_set_and_selects():
    cell = Cell(dataset="toy", method="mgsh", bits=16, rate=0.5, profile="quick", clean_meta=20, val_every=0,
                hparams=(("epochs", "7"), ("hidden", "32"), ("lr", "1e-3")))
    record = run_cell(cell)
    epochs = record["epochs"]
    assert record["clean_meta"]["size"] == 20 and record["method"]["labels_used"] == "noisy+clean-meta"
    assert epochs[4]["kept_fraction"] == 1.0 and epochs[6]["kept_fraction"] < 1.0
    assert all(math.isfinite(e["loss"]) for e in epochs) and "loss_mswn" in epochs[6]
    assert record["noise_detection"]["weight_auc"] is not None
