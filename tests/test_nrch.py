"""Tests of the NRCH plugin (methods/nrch.py): each loss term on hand-checkable tensors or against a
plain-loop computation of the spec's formulas, DNS, the networks, and a few epochs that reduce the loss."""

from __future__ import annotations

import math

import numpy as np
import torch

from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell
from cmh_bench.method import RunContext, TrainSet, resolve_hparams
from cmh_bench.methods import NRCH_PAPER
from cmh_bench.profiles import hparams_for
from cmh_bench.registry import get_method
from cmh_bench.methods.nrch import (
    GMM_SETTINGS,
    NRCH,
    clean_probability,
    dns_scores,
    label_sharing_mask,
    proxy_loss,
    quantisation_loss,
    rch_per_sample,
    shifted_similarities,
)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


# ---------------------------------------------------------------- loss terms


def test_label_sharing_mask_by_hand():
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert close(label_sharing_mask(y), [[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def test_shifted_similarities_by_hand():
    sim = torch.tensor([[0.5, 0.4, 0.1], [0.2, -0.3, 0.0], [0.9, 0.0, 0.6]])
    # row anchors, δ = 0.2, ξ = 1: entries below S_ii − δ drop by 1; the diagonal is clamped at 0
    expected = [[0.5, 0.4, -0.9], [0.2, 0.0, 0.0], [0.9, -1.0, 0.6]]
    assert close(shifted_similarities(sim, 0.2, 1.0), expected)


def rch_by_loops(u, v, y, margin, shift, tau):
    """(ℓ¹, ℓ²) of the spec, with plain Python loops (ℓ² as an explicit column sum)."""
    n = len(u)
    s = (u @ v.T).tolist()
    t = [[float(i != j and (y[i] @ y[j]).item() > 0) for j in range(n)] for i in range(n)]

    def c_hat(i, j, anchor):
        value = s[i][j] if s[i][j] >= s[anchor][anchor] - margin else s[i][j] - shift
        return max(value, 0.0) if i == j else value

    row = [-s[i][i] + tau * math.log(sum(math.exp(c_hat(i, j, i) * (1 - t[i][j]) / tau) for j in range(n))) + margin
           for i in range(n)]
    col = [-s[j][j] + tau * math.log(sum(math.exp(c_hat(i, j, j) * (1 - t[i][j]) / tau) for i in range(n))) + margin
           for j in range(n)]
    return row, col


def test_rch_matches_a_plain_loop_computation_with_the_column_direction():
    gen = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    for margin, shift, tau in ((0.2, 1.0, 1.0), (0.1, 0.5, 0.5)):
        row, col = rch_by_loops(u, v, y, margin, shift, tau)
        assert close(rch_per_sample(u, v, y, margin, shift, tau), [a + b for a, b in zip(row, col)])
    # the published code's second term (the row sums of Ĉ¹ again) would give 2ℓ¹: not what we compute
    row, _ = rch_by_loops(u, v, y, 0.2, 1.0, 1.0)
    assert not close(rch_per_sample(u, v, y), [2 * a for a in row], tol=1e-3)


def test_rch_ignores_label_sharing_pairs():
    # two items sharing a label: each one's only other pair contributes exp(0) = 1 in both directions
    u = torch.eye(2)
    y = torch.ones(2, 1)
    expected = 2 * (-1 + math.log(math.e + 1) + 0.2)
    assert close(rch_per_sample(u, u, y), [expected, expected])


def test_quantisation_loss_by_hand():
    u = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # |u| − 1/2 = (0.5, −0.5, −0.5, −0.5): mean square 0.25
    v = torch.full((1, 4), 0.5)  # exactly 1/√L everywhere: 0
    assert close(quantisation_loss(u, v), [0.25])


def test_proxy_loss_by_hand_and_trains_only_the_proxies():
    proxies = torch.tensor([[math.atanh(0.5)]], requires_grad=True)  # tanh(W) = 0.5
    u = torch.tensor([[1.0]], requires_grad=True)
    v = torch.tensor([[-1.0]], requires_grad=True)
    y = torch.tensor([[1.0]])
    loss = proxy_loss(u, v, proxies, y)  # (1 − 0.5)² + (1 + 0.5)²
    assert close(loss, 2.5)
    loss.backward()
    assert u.grad is None and v.grad is None and proxies.grad is not None


def test_dns_scores_take_the_worst_claimed_class():
    u = v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    proxies = torch.atanh(torch.tensor([[0.5, 0.0], [0.0, 0.5]]))  # u·tanh(w) = (0.5, 0)
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    # per class: 2·(1 − 0.5)² = 0.5 and 2·(1 − 0)² = 2
    assert close(dns_scores(u, v, proxies, y), [2.0, 0.5, 0.0])


def test_clean_probability_separates_two_clusters_with_the_authors_settings():
    assert GMM_SETTINGS == {"n_components": 2, "max_iter": 10, "tol": 0.5, "reg_covar": 5e-4}
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(1.0, 0.1, 80), rng.normal(3.0, 0.1, 20)])
    p = clean_probability(scores, seed=0)
    assert p.shape == (100,) and (p[:80] > 0.9).all() and (p[80:] < 0.1).all()
    assert np.array_equal(p, clean_probability(scores, seed=0))
    assert np.isfinite(clean_probability(np.ones(10), seed=0)).all()  # constant scores do not divide by 0


# ---------------------------------------------------------------- networks, defaults


def test_published_defaults_quick_profile_and_networks():
    paper = resolve_hparams(NRCH, "paper")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.weight_decay, paper.hidden) == (100, 128, 1e-5, 1e-5, 8192)
    assert (paper.lam, paper.margin, paper.shift, paper.tau) == (0.6, 0.2, 1.0, 1.0)
    assert (paper.warmup_epochs, paper.clean_threshold) == (19, 0.3)
    quick = resolve_hparams(NRCH, "quick")
    assert quick.epochs > quick.warmup_epochs
    assert (NRCH.version, NRCH.paper, NRCH.family) == ("1", NRCH_PAPER, "nrch")
    method = NRCH(resolve_hparams(NRCH, "paper", {"hidden": 16}), 8, 10, 6, 3)
    method.setup(toy_train(n=4, classes=3), context())
    shapes = {m: [(l.in_features, l.out_features) for l in method.nets[m].modules() if isinstance(l, torch.nn.Linear)]
              for m in ("image", "text")}
    assert shapes == {"image": [(10, 16), (16, 16), (16, 8)], "text": [(6, 16), (16, 8)]}
    assert close(method.proxies @ method.proxies.T, torch.eye(3))  # orthogonal rows (C ≤ L)
    assert isinstance(method.optimizer, torch.optim.RMSprop)
    assert method.optimizer.defaults["lr"] == 1e-5 and method.optimizer.defaults["weight_decay"] == 1e-5


# ---------------------------------------------------------------- training


def toy_train(n=192, classes=6, seed=0, text_dim=6):
    """Small paired features that carry their (multi-hot) labels, with a quarter of the labels swapped."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, classes, generator=gen) < 0.3).float()
    labels[labels.sum(1) == 0, 0] = 1
    image = (labels @ torch.randn(classes, 10, generator=gen) + 0.5 * torch.randn(n, 10, generator=gen)).relu()
    text = labels @ torch.randn(classes, text_dim, generator=gen) + 0.5 * torch.randn(n, text_dim, generator=gen)
    noisy = labels.clone()
    noisy[: n // 4] = noisy[: n // 4].roll(1, dims=1)
    return TrainSet(image, text, noisy)


def context(log=None):
    return RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0),
                      on_epoch_end=lambda epoch, terms: log.append(terms) if log is not None else None)


def test_a_few_epochs_reduce_the_loss_and_dns_starts_after_the_warm_up():
    torch.manual_seed(0)
    train = toy_train()
    hp = resolve_hparams(NRCH, "quick", {"hidden": 32, "batch_size": 64, "epochs": 5, "lr": 1e-3, "warmup_epochs": 3})
    method = NRCH(hp, 16, train.image.shape[1], train.text.shape[1], train.n_classes)
    assert method.sample_weights() is None
    log = []
    method.fit(train, context(log))
    warm, selected = log[:3], log[3:]
    for term in ("loss", "rch", "proxy"):
        assert warm[-1][term] < warm[0][term], term
    assert all(row["clean_fraction"] == 1.0 for row in warm)
    assert all(row["clean_fraction"] < 1.0 for row in selected)
    p = method.sample_weights()
    assert p.shape == (len(train),) and ((p >= 0) & (p <= 1)).all()
    codes = method.encode_items(train, "image")
    assert codes.shape == (len(train), 16) and set(codes.unique().tolist()) <= {-1.0, 1.0}


def test_a_quick_toy_cell_through_the_harness():
    rec = run_cell(Cell(dataset="toy", method="nrch", bits=16, rate=0.5, profile="quick", hparams=(("epochs", "3"),), threads=1))
    assert rec["status"] == "ok" and rec["method"]["hparams"]["lr"] == hparams_for(get_method("nrch"), "quick", {}, {}).lr
    for term in ("loss", "rch"):
        assert rec["epochs"][-1][term] < rec["epochs"][0][term], term
    assert rec["noise_detection"]["weight_auc"] is not None
