"""Tests of the DJSRH plugin (methods/djsrh.py, feature version): the joint-semantics matrix and the
loss on the hand-checkable tensors of specs/unsupervised.md §2.8, the signed-feature policy, the α
schedule, the networks and a few training epochs."""

from __future__ import annotations

import math

import torch

from cmh_bench.method import LabelFreeTrainSet, RunContext, resolve_hparams
from cmh_bench.methods.djsrh import DJSRH, alpha_at, djsrh_loss, joint_semantics, rescaled_cosine


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


def test_joint_semantics_two_by_two():
    target = joint_semantics(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.eye(2), beta=0.9, eta=0.4, mu=1.5)
    assert close(target, [[1.222325, 0.409188], [0.409188, 1.222325]])
    assert math.isclose(target[0, 1].item(), 1.5 * (0.9 * (math.sqrt(2) - 1) + 0.1 * -1), abs_tol=1e-5)  # μ S̃₁₂ at m = 2


def test_loss_of_orthogonal_codes():
    target = torch.tensor([[1.222325, 0.409188], [0.409188, 1.222325]])
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    assert math.isclose(djsrh_loss(codes, codes, target, 0.1, 0.1).item(), 0.130118, abs_tol=1e-5)


def test_joint_semantics_three_by_three():
    image = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1]])
    text = torch.tensor([[1.0, 0], [1, 1], [0, 1]])
    expected = [[1.334315, 0.710193, -1.371127], [0.710193, 1.281746, -1.198995], [-1.371127, -1.198995, 1.447431]]
    assert close(joint_semantics(image, text, 0.9, 0.4, 1.5), expected)


def test_signed_features_keep_the_plain_cosine():
    signed = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert close(rescaled_cosine(signed, rescale=True), [[1, -3], [-3, 1]])  # what the authors' rescale would give
    assert close(rescaled_cosine(signed, rescale=False), [[1, -1], [-1, 1]])  # the benchmark's policy for signed data


def test_alpha_schedule_and_codes_independent_of_alpha():
    assert [alpha_at(e) for e in (0, 3, 79)] == [1.0, 2.0, math.sqrt(80)]
    method, train = trained(epochs=2)
    codes = method.encode_items(train, "text")
    assert close(codes, torch.where(method.nets["text"](train.text) >= 0, 1.0, -1.0))


def trained(epochs, log=None, text_signed=True):
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(96, 4, generator=gen)
    text = latent @ torch.randn(4, 6, generator=gen)
    train = LabelFreeTrainSet((latent @ torch.randn(4, 10, generator=gen)).relu(), text if text_signed else text.abs())
    hp = resolve_hparams(DJSRH, "quick", {"hidden": 32, "epochs": epochs})
    method = DJSRH(hp, 16, 10, 6, 3)
    ctx = RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0),
                     on_epoch_end=lambda epoch, terms: log.append(terms) if log is not None else None)
    torch.manual_seed(0)
    method.fit(train, ctx)
    return method, train


def test_networks_optimisers_and_rescale_choice():
    method, _ = trained(epochs=0)
    assert isinstance(method.nets["image"], torch.nn.Linear) and method.nets["image"].out_features == 16
    assert [l.out_features for l in method.nets["text"] if isinstance(l, torch.nn.Linear)] == [32, 16]
    assert [o.defaults["lr"] for o in method.optimizers] == [1e-3, 1e-2]
    assert all(o.defaults["momentum"] == 0.9 and o.defaults["weight_decay"] == 5e-4 for o in method.optimizers)
    assert method.rescale == {"image": True, "text": False}
    assert trained(epochs=0, text_signed=False)[0].rescale == {"image": True, "text": True}


def test_a_few_epochs_reduce_the_loss():
    log = []
    trained(epochs=6, log=log)
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["alpha"] == math.sqrt(6)
