"""Tests of the RSHNL plugin (methods/rshnl.py): each loss term on hand-checkable tensors, the
networks and optimiser as specified, and a few epochs that reduce the loss."""

from __future__ import annotations

import math

import pytest
import torch

from cmh_bench.cell import Cell
from cmh_bench.errors import UserError
from cmh_bench.harness import run_cell
from cmh_bench.method import RunContext, TrainSet, resolve_hparams
from cmh_bench.methods import RSHNL_PAPER
from cmh_bench.methods.rshnl import (
    RSHNL,
    adam,
    aligned_mass,
    cal_per_sample,
    centre_net,
    chl_loss,
    class_probabilities,
    hash_net,
    q_robust,
    self_paced_loss,
    self_paced_weights,
    temperature_for_mass,
    weight_cap,
)
from cmh_bench.registry import get_method

E = math.e


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


# ---------------------------------------------------------------- loss terms


def test_q_robust_by_hand():
    # q = 1/2: g(a) = (1 - sqrt(a)) + (1 - a)/2
    a = torch.tensor([1.0, 0.25, 0.0])
    assert close(q_robust(a, 0.5), [0.0, 0.5 + 0.375, 1.5])


def test_q_robust_small_q_approaches_cross_entropy_and_stays_bounded():
    a = torch.tensor([0.5, 1e-30])
    g = q_robust(a, 1e-3)
    assert abs(g[0].item() - math.log(2)) < 1e-3
    assert g[1].item() <= (1 - 1e-3) / 1e-3 + 1e-3  # bounded by (1 - q)/q + q


def test_q_robust_zero_probability_has_finite_gradient():
    a = torch.zeros(2, requires_grad=True)
    q_robust(a, 0.01).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_class_probabilities_softmax_without_temperature():
    h = torch.tensor([[1.0, 0.0]])
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert close(class_probabilities(h, centres), [[E / (E + 1), 1 / (E + 1)]])


def test_class_probabilities_with_a_temperature():
    h = torch.tensor([[1.0, 0.0]])
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # logits [1, 0] / 0.5 = [2, 0]
    assert close(class_probabilities(h, centres, 0.5), [[E**2 / (E**2 + 1), 1 / (E**2 + 1)]])


def test_cal_on_one_hot_labels_is_the_authors_formula():
    """Single-label data: ℓ_i = g(p¹_i[c_i]) + g(p²_i[c_i]), p = softmax(h Wᵀ) with no temperature,
    written out with math.exp (the published form that ``rshnl`` keeps)."""
    gen = torch.Generator().manual_seed(1)
    unit = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, generator=gen), dim=1)  # noqa: E731
    h_image, h_text, centres = unit(4, 6), unit(4, 6), unit(5, 6)
    classes = [0, 3, 3, 4]
    y = torch.nn.functional.one_hot(torch.tensor(classes), 5).float()
    q = 0.01

    def authors(h, i):
        logits = [sum(a * b for a, b in zip(h[i].tolist(), w)) for w in centres.tolist()]
        p = math.exp(logits[classes[i]]) / sum(math.exp(v) for v in logits)
        return (1 - q) * (1 - p**q) / q + q * (1 - p)

    expected = [authors(h_image, i) + authors(h_text, i) for i in range(4)]
    got = cal_per_sample(class_probabilities(h_image, centres), class_probabilities(h_text, centres), y, q)
    assert close(got, expected)


def aligned_probabilities(n_classes, n_positive, temperature=1.0):
    """A sample whose code lies on its k positive centres, with every other centre antipodal."""
    h = torch.tensor([[1.0, 0.0]])
    centres = torch.tensor([[1.0, 0.0]] * n_positive + [[-1.0, 0.0]] * (n_classes - n_positive))
    labels = torch.zeros(1, n_classes)
    labels[0, :n_positive] = 1
    return class_probabilities(h, centres, temperature), labels


@pytest.mark.parametrize("n_classes, n_positive, temperature", [(10, 1, 1.0), (80, 1, 1.0), (80, 3, 1.0), (24, 4, 0.375)])
def test_aligned_mass_and_weight_cap_match_an_aligned_sample(n_classes, n_positive, temperature):
    p, y = aligned_probabilities(n_classes, n_positive, temperature)
    mass = (p * y).sum().item()
    assert abs(aligned_mass(n_classes, n_positive, temperature) - mass) < 1e-6
    w = self_paced_weights(cal_per_sample(p, p, y, 0.01), 5.0)
    assert abs(weight_cap(n_classes, n_positive, 5.0, 0.01, temperature) - w.item()) < 1e-5


def test_weight_cap_by_hand():
    # C = 10, one positive, T = 1: a = e / (e + 9/e) = e² / (e² + 9); q = 1/2: g(a) = 1 - √a + (1 - a)/2
    a = E**2 / (E**2 + 9)
    assert abs(aligned_mass(10, 1) - a) < 1e-12
    assert abs(weight_cap(10, 1, 5.0, 0.5) - (1 - 2 * (1 - math.sqrt(a) + 0.5 * (1 - a)) / 5)) < 1e-6
    # the caps quoted in the class docstring (q = 0.01, γ = 5)
    assert [round(weight_cap(c, 1, 5.0, 0.01), 2) for c in (10, 21, 24, 80, 255)] == [0.68, 0.48, 0.44, 0.03, 0.0]


@pytest.mark.parametrize("n_classes", [2, 10, 24, 80, 255])
def test_temperature_for_mass_reaches_the_target(n_classes):
    t = temperature_for_mass(n_classes, 0.9)
    assert abs(aligned_mass(n_classes, 1, t) - 0.9) < 1e-9
    assert t < 1 and aligned_mass(n_classes, 1, 0.99 * t) > 0.9
    published = E**2 / (E**2 + n_classes - 1)  # the mass T = 1 gives
    assert abs(temperature_for_mass(n_classes, published) - 1.0) < 1e-9


@pytest.mark.parametrize("n_classes, target", [(1, 0.9), (10, 1.0), (10, 0.0)])
def test_temperature_for_mass_rejects_impossible_targets(n_classes, target):
    with pytest.raises(UserError, match="aligned_target"):
        temperature_for_mass(n_classes, target)


def test_cal_per_sample_uses_the_mass_on_all_positive_classes():
    p_image = torch.tensor([[0.2, 0.3, 0.5]])
    p_text = torch.tensor([[0.25, 0.0, 0.75]])
    y = torch.tensor([[1.0, 1.0, 0.0]])
    # q = 1/2: g(0.5) = 1 - sqrt(0.5) + 0.25; g(0.25) = 0.5 + 0.375
    expected = (1 - math.sqrt(0.5) + 0.25) + 0.875
    assert close(cal_per_sample(p_image, p_text, y, 0.5), [expected])


def test_self_paced_weights_linear_and_hard():
    losses = torch.tensor([0.0, 2.5, 5.0, 7.0], requires_grad=True)
    linear = self_paced_weights(losses, 5.0, "linear")
    hard = self_paced_weights(losses, 5.0, "hard")
    assert close(linear, [1.0, 0.5, 0.0, 0.0]) and close(hard, [1.0, 1.0, 0.0, 0.0])
    assert not linear.requires_grad and not hard.requires_grad


def test_self_paced_loss_by_hand():
    losses = torch.tensor([2.5, 2.5])
    # linear: 0.5 * 2.5 + 5 * (0.125 - 0.5) = -0.625; hard: 1 * 2.5 - 5 = -2.5
    assert close(self_paced_loss(losses[:1], torch.tensor([0.5]), 5.0, "linear"), [-0.625])
    assert close(self_paced_loss(losses[1:], torch.tensor([1.0]), 5.0, "hard"), [-2.5])


@pytest.mark.parametrize("kind", ["linear", "hard"])
def test_self_paced_weights_minimise_the_regularised_loss(kind):
    gamma = 5.0
    losses = torch.tensor([0.3, 1.7, 4.2, 6.0])
    grid = torch.linspace(0, 1, 1001) if kind == "linear" else torch.tensor([0.0, 1.0])
    best = grid[self_paced_loss(losses[:, None], grid[None, :], gamma, kind).argmin(1)]
    assert close(self_paced_weights(losses, gamma, kind), best, tol=1e-3)


def chl_by_loops(h_image, h_text, q, tau):
    """L_CHL from the spec, with plain Python loops over the 2B rows and columns."""
    stacked = torch.cat([h_image, h_text]).tolist()
    n = len(stacked)
    kernel = [[0.0 if r == j else math.exp(sum(a * b for a, b in zip(stacked[r], stacked[j])) / tau)
               for j in range(n)] for r in range(n)]

    def g(a):
        return (1 - q) * (1 - a**q) / q + q * (1 - a)

    rows = [g(kernel[r][(r + n // 2) % n] / sum(kernel[r])) for r in range(n)]
    cols = [g(kernel[(c + n // 2) % n][c] / sum(kernel[j][c] for j in range(n))) for c in range(n)]
    return sum(rows) / n + sum(cols) / n


def test_chl_matches_a_plain_loop_computation():
    gen = torch.Generator().manual_seed(0)
    h_image = torch.nn.functional.normalize(torch.randn(3, 4, generator=gen), dim=1)
    h_text = torch.nn.functional.normalize(torch.randn(3, 4, generator=gen), dim=1)
    for q, tau in ((0.01, 1.0), (0.5, 0.5)):
        assert abs(chl_loss(h_image, h_text, q, tau).item() - chl_by_loops(h_image, h_text, q, tau)) < 1e-5


def test_chl_by_hand():
    # B = 1: each row's only other entry is its partner, a = 1, g = 0
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert close(chl_loss(e1, e2, 0.5), 0.0)
    # B = 2, identical orthogonal pairs: every row sees its partner at exp(1) and two others at exp(0)
    h = torch.eye(2)
    a = E / (E + 2)
    assert close(chl_loss(h, h, 0.5), 2 * ((1 - math.sqrt(a)) + 0.5 * (1 - a)))


# ---------------------------------------------------------------- networks and optimiser


def test_networks_as_specified():
    net = hash_net(40, 16, 8)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 16), (16, 16), (16, 8)]
    assert linears[-1].bias is None and linears[-1].weight.abs().max() <= 1 / math.sqrt(40)
    centres = centre_net(5, 16, 8)
    last = [m for m in centres.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last.bias is not None and last.weight.abs().max() <= 1 / math.sqrt(5)
    w = centres(torch.eye(5))
    assert w.shape == (5, 8) and close(w.norm(dim=1), torch.ones(5))


def test_adam_is_fused_on_cpu_with_two_groups():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt = adam([{"params": a.parameters(), "lr": 1e-4}, {"params": b.parameters(), "lr": 2e-4}], torch.device("cpu"))
    assert opt.defaults["fused"] is True
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 2e-4] and opt.defaults["weight_decay"] == 0


def test_published_defaults_and_quick_profile():
    paper = resolve_hparams(RSHNL, "paper")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.center_lr, paper.hidden) == (150, 256, 1e-4, 1e-4, 4096)
    assert (paper.alpha, paper.lam, paper.gamma, paper.q, paper.tau) == (0.1, 1.0, 5.0, 0.01, 1.0)
    assert (paper.warmup_epochs, paper.self_paced) == (5, "linear")
    quick = resolve_hparams(RSHNL, "quick")
    assert quick.epochs > quick.warmup_epochs and quick.lr == paper.lr
    assert paper.aligned_target == 0.0  # no temperature in the published form
    assert get_method("rshnl-temp").variant == {"aligned_target": 0.9}
    assert (RSHNL.version, RSHNL.paper, RSHNL.family) == ("1", RSHNL_PAPER, "rshnl")


# ---------------------------------------------------------------- training


def toy_train(n=192, classes=6, seed=0):
    """Small paired features that carry their (multi-hot) labels, with a fraction of labels swapped."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, classes, generator=gen) < 0.3).float()
    labels[labels.sum(1) == 0, 0] = 1
    image = (labels @ torch.randn(classes, 24, generator=gen) + 0.5 * torch.randn(n, 24, generator=gen)).relu()
    text = labels @ torch.randn(classes, 12, generator=gen) + 0.5 * torch.randn(n, 12, generator=gen)
    noisy = labels.clone()
    noisy[: n // 4] = noisy[: n // 4].roll(1, dims=1)
    return TrainSet(image, text, noisy)


def fit(overrides, epochs):
    torch.manual_seed(0)
    train = toy_train()
    hp = resolve_hparams(RSHNL, "quick", {"hidden": 32, "batch_size": 64, "epochs": epochs, "lr": 1e-3, **overrides})
    method = RSHNL(hp, 16, train.image.shape[1], train.text.shape[1], train.n_classes)
    log = []
    ctx = RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0),
                     on_epoch_end=lambda epoch, terms: log.append(terms))
    assert method.sample_weights() is None
    method.fit(train, ctx)
    return method, train, log


def test_a_few_epochs_reduce_the_loss():
    method, train, log = fit({"warmup_epochs": 100}, 6)
    for term in ("loss", "cal", "chl"):
        assert log[-1][term] < log[0][term], term
    codes = method.encode_items(train, "text")
    assert codes.shape == (len(train), 16) and set(codes.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("kind", ["linear", "hard"])
def test_sample_weights_after_the_warm_up(kind):
    method, train, log = fit({"warmup_epochs": 1, "self_paced": kind}, 3)
    w = method.sample_weights()
    assert w.shape == (len(train),) and ((w >= 0) & (w <= 1)).all()
    if kind == "hard":
        assert set(w.unique().tolist()) <= {0.0, 1.0}
    # after the warm-up the CAL term carries the regulariser, so it drops below the plain loss
    assert log[1]["cal"] < 0 < log[0]["cal"]
    assert all(math.isfinite(v) for row in log for v in row.values())


@pytest.mark.parametrize("target", [0.0, 0.9])
def test_trained_weights_stay_under_the_cap(target):
    """Every sample's linear weight is at most the cap for its number of (noisy) positives."""
    method, train, _ = fit({"warmup_epochs": 1, "aligned_target": target}, 3)
    expected_t = temperature_for_mass(train.n_classes, target) if target else 1.0
    assert method.temperature == expected_t
    caps = torch.tensor([weight_cap(train.n_classes, int(k), 5.0, 0.01, expected_t) for k in train.labels.sum(1)])
    assert (method.sample_weights() <= caps + 1e-6).all()


def test_unknown_self_paced_variant_is_a_user_error():
    with pytest.raises(UserError, match="self_paced"):
        fit({"self_paced": "soft"}, 1)


@pytest.mark.parametrize("name, kind", [("rshnl", "linear"), ("rshnl-hard", "hard")])
def test_a_quick_toy_cell_through_the_harness(name, kind):
    rec = run_cell(Cell(dataset="toy", method=name, bits=16, rate=0.5, profile="quick", hparams=(("epochs", "7"),), threads=1))
    assert rec["status"] == "ok" and rec["method"]["hparams"]["self_paced"] == kind
    warm = rec["epochs"][:5]  # the CAL term changes form after the warm-up; compare within it
    for term in ("loss", "cal", "chl"):
        assert warm[-1][term] < warm[0][term], term
    assert rec["noise_detection"]["weight_auc"] is not None
