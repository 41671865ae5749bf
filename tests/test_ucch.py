"""Tests of the UCCH plugin (methods/ucch.py): each loss term on the hand-checkable tensors of
specs/unsupervised.md §1.8, the memory bank, the schedule, the networks and a few training epochs."""

from __future__ import annotations

import math

import pytest
import torch

from cmh_bench.method import LabelFreeTrainSet, RunContext, resolve_hparams
from cmh_bench.methods.ucch import (
    UCCH,
    binary_keys,
    contrastive_loss,
    memory_keys,
    ranking_loss,
    step_lr,
    update_memory,
    warmup_keys,
)

S = 1 / math.sqrt(2)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


@pytest.mark.parametrize("shift, expected", [(1.0, 0.653856), (0.1, 0.974671), (7.0, 0.400671)])
def test_ranking_loss_identity_case(shift, expected):
    eye = torch.eye(2)
    assert math.isclose(ranking_loss(eye, eye, margin=0.2, shift=shift).item(), expected, abs_tol=1e-5)


def test_ranking_loss_uses_column_sums_for_text_to_image():
    u = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(0.75)]])
    # image→text 0.377079 + text→image 0.372643; the "row sums twice" bug would give 0.754158
    assert math.isclose(ranking_loss(u, torch.eye(2), margin=0.2, shift=1.0).item(), 0.749722, abs_tol=1e-5)


def test_ranking_loss_masks_carry_no_gradient():
    gen = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1).requires_grad_()
    v = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1)
    ranking_loss(u, v, 0.2, 1.0).backward()
    sim = (u @ v.T).detach()
    rows = (sim < sim.diagonal().unsqueeze(1) - 0.2).float()
    cols = (sim < sim.diagonal().unsqueeze(0) - 0.2).float()
    frozen = u.detach().clone().requires_grad_()
    s = frozen @ v.T
    loss = ((-s.diagonal() + torch.logsumexp(s - rows, 1) + 0.2).mean()
            + (-s.diagonal() + torch.logsumexp(s - cols, 0) + 0.2).mean())
    loss.backward()
    assert close(u.grad, frozen.grad)


def test_contrastive_loss_warm_up_phase_by_hand():
    u = torch.tensor([[S, S], [S, -S]])
    keys = warmup_keys(u, u)
    assert keys.shape == (2, 2, 2) and close(keys[1, 0], [1, -1]) and close(keys[1, 1], [1, 1])  # own key first
    loss = contrastive_loss(u, keys, 0.9) + contrastive_loss(u, keys, 0.9)
    assert math.isclose(loss.item(), 2 * math.log(1 + math.exp(-1 / 0.9)), abs_tol=1e-5)  # 0.569144


def test_contrastive_loss_memory_phase_with_fixed_draws():
    memory = torch.tensor([[0.6, 0.8], [0.8, -0.6], [-0.6, 0.8]])
    keys = memory_keys(memory, torch.tensor([0]), torch.tensor([[1, 2]]))
    assert close(keys, [[[1, 1], [1, -1], [-1, 1]]])
    image = contrastive_loss(torch.tensor([[S, S]]), keys, 0.9).item()
    text = contrastive_loss(torch.tensor([[0.6, 0.8]]), keys, 0.9).item()
    assert math.isclose(image, 0.505845, abs_tol=1e-5) and math.isclose(text, 0.515226, abs_tol=1e-5)


def test_memory_update_by_hand():
    memory = torch.tensor([[1.0, 0.0], [0.3, 0.4]])
    update_memory(memory, torch.tensor([0]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]), momentum=0.4)
    assert close(memory, [[2 / math.sqrt(13), 3 / math.sqrt(13)], [0.3, 0.4]])  # only the batch's row moves


def test_binary_keys_map_zero_to_plus_one():
    assert close(binary_keys(torch.tensor([[-0.5, 0.0, 2.0]])), [[-1, 1, 1]])


def test_step_lr_decays_first_in_epoch_31():
    assert [step_lr(e, 1.0) for e in (0, 19, 30, 31, 61)] == [1.0, 1.0, 1.0, 0.1, pytest.approx(0.01)]


def toy_features(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=gen)
    return LabelFreeTrainSet((latent @ torch.randn(4, 10, generator=gen)).relu(), latent @ torch.randn(4, 6, generator=gen))


def context(log=None):
    return RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0),
                      on_epoch_end=lambda epoch, terms: log.append(terms) if log is not None else None)


def test_networks_and_optimiser_as_published():
    method = UCCH(resolve_hparams(UCCH, "paper", {"hidden": 16}), 8, 10, 6, 3)
    method.setup(toy_features(n=4), context())
    shapes = {m: [(l.in_features, l.out_features) for l in method.nets[m].modules() if isinstance(l, torch.nn.Linear)]
              for m in ("image", "text")}
    assert shapes == {"image": [(10, 16), (16, 16), (16, 8)], "text": [(6, 16), (16, 8)]}
    assert method.optimizer.defaults["lr"] == 1e-4 and method.optimizer.defaults["weight_decay"] == 1e-6
    assert method.memory.shape == (4, 8) and close(method.memory.abs(), torch.full((4, 8), 1 / math.sqrt(8)))
    hp = resolve_hparams(UCCH, "paper")
    assert (hp.epochs, hp.batch_size, hp.beta, hp.shift, hp.margin, hp.momentum, hp.temperature, hp.negatives) == (
        20, 256, 0.7, 0.1, 0.2, 0.4, 0.9, 4096)


def test_a_few_epochs_reduce_the_loss_and_codes_are_signs_of_the_last_layer():
    torch.manual_seed(0)
    train = toy_features()
    hp = resolve_hparams(UCCH, "quick", {"hidden": 32, "batch_size": 32, "epochs": 6, "lr": 1e-3, "negatives": 64})
    method = UCCH(hp, 16, 10, 6, 3)
    log = []
    method.fit(train, context(log))
    assert log[-1]["loss"] < log[1]["loss"]  # memory phase (epoch 0 is the in-batch warm-up)
    codes = method.encode_items(train, "image")
    assert close(codes, torch.where(method.nets["image"].body(train.image) >= 0, 1.0, -1.0))
