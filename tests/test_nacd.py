"""Tests of the NACD plugin (methods/nacd.py): each loss and confidence update on hand-checkable tensors
(the test values of specs/recent-noisy.md §1), the published defaults, and short runs."""

from __future__ import annotations

import math

import pytest
import torch

from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell
from cmh_bench.method import RunContext, TrainSet, resolve_hparams
from cmh_bench.methods import NACD_PAPER
from cmh_bench.methods.nacd import (
    NACD,
    class_thresholds,
    crch_loss,
    ema_confidence,
    ema_momentum,
    neighbour_confidence,
    pseudo_labels,
)
from cmh_bench.methods.scbch import classification_losses, jaccard_matrix, quantisation_loss


def assert_close(actual, expected):
    """``actual`` equals ``expected`` (a tensor, number or nested list) to 1e-5, with torch's report of the worst entry."""
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32).detach(),
                               torch.as_tensor(expected, dtype=torch.float32).detach(), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- pseudo-labels and IoU


def test_pseudo_labels_keep_the_candidates_whose_confidence_reaches_the_threshold():
    y = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    confidence = torch.tensor([[0.9, 0.2, 0.0, 0.5], [0.0, 0.6, 0.3, 0.0]])
    thresholds = torch.tensor([0.5, 0.5, 0.3, 0.5])
    y_hat = pseudo_labels(y, confidence, thresholds)
    assert y_hat.tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]  # P = t counts (≥)
    assert (y_hat <= y).all()


def test_iou_of_the_pseudo_labels_by_hand():
    T = jaccard_matrix(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))  # {1,2}, {2,3}, {}
    assert_close(T, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 0]])
    assert_close(T, T.T)


# ---------------------------------------------------------------- CRCH


def test_crch_closed_form_on_identity_codes():
    # u = v = I: S = I; every off-diagonal S_ij = 0 < S_ii − δ = 0.8, so N_ij = −ξ = −1 in both directions
    u = torch.eye(3)
    y_hat = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # T_01 = T_12 = 1/2, T_02 = 0
    l_neg, l_pos, l_align = crch_loss(u, u.clone(), y_hat, margin=0.2, shift=1.0)
    assert_close(l_neg, 2 * 2 * math.exp(-1) / 9)  # pairs (0,2), (2,0), both directions, over B² = 9
    assert_close(l_pos, 4 * math.exp(-0.5) / 9)  # pairs (0,1), (1,0), (1,2), (2,1): exp(−0 − 1/2)
    assert_close(l_align, -1.0)


def test_crch_empty_pseudo_label_is_a_negative_to_everyone():
    u = torch.eye(3)
    y_hat = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # row 2 empty: T_2· = 0, even T_22
    l_neg, l_pos, _ = crch_loss(u, u.clone(), y_hat)
    assert_close(l_neg, 4 * 2 * math.exp(-1) / 9)  # (0,2), (2,0), (1,2), (2,1)
    assert_close(l_pos, 2 * math.exp(-1.0) / 9)  # (0,1), (1,0) with T = 1


def test_crch_shift_scales_an_easy_negative_by_exp_minus_shift():
    u = torch.eye(2)
    y_hat = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    without, _, _ = crch_loss(u, u.clone(), y_hat, shift=0.0)
    with_shift, _, _ = crch_loss(u, u.clone(), y_hat, shift=1.0)
    assert_close(with_shift / without, math.exp(-1.0))


def test_crch_hardness_masks_carry_no_gradient():
    gen = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1).requires_grad_()
    v = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1).requires_grad_()
    y_hat = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    l_neg, _, _ = crch_loss(u, v, y_hat, margin=0.2, shift=1.0)
    grad_u, grad_v = torch.autograd.grad(l_neg, (u, v))
    # the same sum with the masks computed beforehand as constants
    S = u @ v.T
    with torch.no_grad():
        easy12 = (S < S.diagonal()[:, None] - 0.2).float()
        easy21 = (S < S.diagonal()[None, :] - 0.2).float()
        negatives = (y_hat @ y_hat.T == 0).float()
    reference = (negatives * (torch.exp(S - easy12) + torch.exp(S - easy21))).sum() / 25
    ref_u, ref_v = torch.autograd.grad(reference, (u, v))
    assert_close(l_neg, reference)
    assert_close(grad_u, ref_u)
    assert_close(grad_v, ref_v)


# ---------------------------------------------------------------- quantisation and classification


def test_quantisation_is_zero_for_binary_codes_and_lower_for_equal_magnitudes():
    L = 4
    binary = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    assert_close(quantisation_loss(binary, binary), 0.0)
    equal = binary / math.sqrt(L)
    peaked = torch.nn.functional.normalize(torch.tensor([[0.97, -0.1, 0.1, 0.2]]), dim=1)
    assert_close(quantisation_loss(equal, equal), 2 * (1 - 1 / math.sqrt(L)))
    assert quantisation_loss(equal, equal) < quantisation_loss(peaked, peaked)


def test_classification_loss_against_soft_confidences_by_hand():
    # logits 0 → p = 1/2; BCE(1/2, P) = log 2 for any target P
    zeros = torch.zeros(2, 3)
    assert_close(classification_losses(zeros, zeros, torch.tensor([[1.0, 0.3, 0.0], [0.5, 0.5, 1.0]])).mean(), math.log(2))
    # logit log 3 → p = 3/4; target 0.5: −½ log ¾ − ½ log ¼
    logit = torch.full((1, 1), math.log(3))
    assert_close(classification_losses(logit, logit, torch.tensor([[0.5]])), [-0.5 * math.log(0.75) - 0.5 * math.log(0.25)])


# ---------------------------------------------------------------- confidence EMA


def test_ema_momentum_schedule():
    assert ema_momentum(0, 100) == 0.95
    assert ema_momentum(99, 100) == pytest.approx(0.95 - 0.15 * 99 / 100) == pytest.approx(0.8015)
    assert ema_momentum(25, 50) == pytest.approx(0.875)


def test_ema_confidence_by_hand_and_zero_outside_the_candidates():
    confidence = torch.tensor([[1.0, 0.6, 0.0]])
    p_u, p_v = torch.tensor([[0.2, 0.8, 0.9]]), torch.tensor([[0.4, 0.2, 0.9]])
    y = torch.tensor([[1.0, 1.0, 0.0]])
    updated = ema_confidence(confidence, p_u, p_v, y, momentum=0.9)
    assert_close(updated, [[0.9 * 1.0 + 0.1 * 0.3, 0.9 * 0.6 + 0.1 * 0.5, 0.0]])
    assert updated[0, 2].item() == 0.0


# ---------------------------------------------------------------- neighbour reconstruction and thresholds


def codes(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_neighbours_sharing_one_confidence_row_give_that_row_and_self_is_excluded():
    # items 0, 1, 2 are close to each other; item 3 is far. With k = 2 item 0's neighbours are 1 and 2.
    U = codes([1, 0.1], [1, 0.2], [1, 0.15], [-1, 0.1])
    confidence = torch.tensor([[0.1, 0.1], [0.8, 0.3], [0.8, 0.3], [0.5, 0.5]])  # self differs from its neighbours
    y = torch.ones(4, 2)
    full = neighbour_confidence(confidence, y, U, U.clone(), k=2, lam=1.0)
    assert_close(full[0], [0.8, 0.3])  # q_0 = P_1 = P_2 (weights sum to 1), self not used
    half = neighbour_confidence(confidence, y, U, U.clone(), k=2, lam=0.2)
    assert_close(half[0], 0.2 * torch.tensor([0.8, 0.3]) + 0.8 * confidence[0])


def test_neighbour_step_identity_cases():
    U = codes([1, 0.1], [1, 0.2], [0.3, 1], [-1, 0.1])
    confidence = torch.tensor([[0.9, 0.4], [0.7, 0.0], [0.2, 0.6], [0.5, 0.5]])
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert_close(neighbour_confidence(confidence, y, U, U, k=2, lam=0.0), confidence)  # λ = 0: identity
    y_partial = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert_close(neighbour_confidence(confidence, y_partial, U, U, k=0, lam=0.2), confidence * y_partial)  # k = 0: P ⊙ ỹ


def test_neighbour_step_matches_a_dense_argsort_computation():
    gen = torch.Generator().manual_seed(1)
    U = torch.nn.functional.normalize(torch.randn(12, 6, generator=gen), dim=1)
    V = torch.nn.functional.normalize(torch.randn(12, 6, generator=gen), dim=1)
    y = (torch.rand(12, 4, generator=gen) > 0.5).float()
    confidence = torch.rand(12, 4, generator=gen) * y
    k, lam = 3, 0.2
    A = 0.5 * (U @ U.T + V @ V.T)
    A.fill_diagonal_(0)
    expected = torch.empty_like(confidence)
    for j in range(12):
        top = torch.argsort(A[j], descending=True)[:k]
        s = A[j, top] / (A[j, top].sum() + 1e-8)  # signed weights, not clamped
        expected[j] = lam * ((s[:, None] * confidence[top]).sum(0) * y[j]) + (1 - lam) * confidence[j]
    assert_close(neighbour_confidence(confidence, y, U, V, k, lam), expected)


def test_class_thresholds_are_the_means_of_the_nonzero_confidences():
    confidence = torch.tensor([[0.9, 0.0, 0.0], [0.3, 0.4, 0.0], [0.0, 0.8, 0.0]])
    assert_close(class_thresholds(confidence), [0.6, 0.6, 0.0])  # a column without positives gives 0


# ---------------------------------------------------------------- method


def test_published_defaults_quick_profile_and_networks():
    hp = resolve_hparams(NACD, "paper")
    assert (hp.epochs, hp.batch_size, hp.lr, hp.weight_decay, hp.hidden) == (100, 128, 1e-5, 1e-5, 8192)
    assert (hp.alpha, hp.beta, hp.lam, hp.k, hp.margin, hp.shift) == (0.3, 0.7, 0.2, 20, 0.2, 1.0)
    assert (hp.warmup_epochs, hp.momentum_start, hp.momentum_end, hp.initial_threshold) == (10, 0.95, 0.8, 0.5)
    assert NACD.quick == {"hidden": 512} and NACD.paper == NACD_PAPER
    method = NACD(resolve_hparams(NACD, "quick"), 32, 40, 10, 5)
    method.setup(TrainSet(torch.zeros(4, 40), torch.zeros(4, 10), torch.ones(4, 5)), context())
    widths = {m: [layer.out_features for layer in method.nets[m].body if isinstance(layer, torch.nn.Linear)] for m in ("image", "text")}
    assert widths == {"image": [512, 512, 32], "text": [512, 32]}
    assert method.heads["image"].weight.shape == (5, 32) and method.heads["image"].bias is None
    assert method.thresholds.tolist() == [0.5] * 5 and torch.equal(method.entry_scores(), torch.ones(4, 5))


def redundant_train(n=160, classes=6, seed=0):
    """Features from the clean labels (one class per item), noisy labels = clean plus one random wrong positive."""
    gen = torch.Generator().manual_seed(seed)
    true_class = torch.randint(0, classes, (n,), generator=gen)
    added_class = (true_class + torch.randint(1, classes, (n,), generator=gen)) % classes
    clean = torch.zeros(n, classes)
    clean[torch.arange(n), true_class] = 1
    image = clean @ torch.randn(classes, 12, generator=gen) + 0.3 * torch.randn(n, 12, generator=gen)
    text = clean @ torch.randn(classes, 8, generator=gen) + 0.3 * torch.randn(n, 8, generator=gen)
    noisy = clean.clone()
    noisy[torch.arange(n), added_class] = 1
    return TrainSet(image, text, noisy), clean


def context(log=None):
    return RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0),
                      on_epoch_end=lambda epoch, terms: log.append(terms) if log is not None else None)


def test_a_step_trains_on_the_old_confidence_then_updates_it():
    torch.manual_seed(0)
    train, _ = redundant_train(n=8)
    hp = resolve_hparams(NACD, "quick", {"hidden": 16})
    method = NACD(hp, 8, 12, 8, 6)
    method.setup(train, context())
    method.confidence[:, 0] *= 0.5  # a confidence different from ỹ, so the targets matter
    before = method.confidence.clone()
    idx = torch.arange(8)
    with torch.no_grad():
        u, v = method.nets["image"](train.image), method.nets["text"](train.text)
        logits_u, logits_v = method.heads["image"](u), method.heads["text"](v)
    terms = method._step(train, idx, momentum=0.9, ctx=context())
    assert_close(terms["cls"], classification_losses(logits_u, logits_v, before).mean())
    assert_close(method.confidence, ema_confidence(before, torch.sigmoid(logits_u), torch.sigmoid(logits_v), train.labels, 0.9))


def test_a_few_epochs_reduce_the_loss_and_reconstruct_after_the_warm_up():
    torch.manual_seed(0)
    train, clean = redundant_train()
    hp = resolve_hparams(NACD, "quick", {"hidden": 32, "batch_size": 32, "epochs": 6, "lr": 1e-3, "warmup_epochs": 3, "k": 5})
    method = NACD(hp, 16, 12, 8, 6)
    log = []
    method.fit(train, context(log))
    assert log[-1]["loss"] < log[0]["loss"]
    assert all(math.isfinite(row[t]) for row in log for t in ("loss", "cls", "crch", "quant"))
    assert not torch.equal(method.thresholds, torch.full((6,), 0.5))  # the reconstruction set the class means
    scores = method.entry_scores()
    assert scores.shape == (160, 6) and (scores[train.labels == 0] == 0).all()
    true, added = scores[(train.labels == 1) & (clean == 1)], scores[(train.labels == 1) & (clean == 0)]
    assert true.mean() > added.mean()  # the confidence separates the true labels from the added ones


def test_a_quick_toy_cell_through_the_harness_records_the_entry_auc():
    rec = run_cell(Cell(dataset="toy", method="nacd", bits=16, noise="redundant", rate=1.0, profile="quick",
                        hparams=(("epochs", "3"), ("warmup_epochs", "1")), threads=1))
    assert rec["status"] == "ok" and rec["method"]["hparams"]["hidden"] == 512
    detection = rec["noise_detection"]
    assert 0.0 <= detection["entry_auc"] <= 1.0 and "weight_auc" not in detection
    assert detection["entry_shape"][0] == rec["dataset"]["sizes"]["train"]
    assert detection["entries_true"] > 0 and detection["entries_added"] > 0
    assert all("entry_auc" in row for row in rec["epochs"])
