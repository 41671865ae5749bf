"""Tests of the DCMH plugin (methods/dcmh.py): the loss on hand-checkable tensors, the MATLAB
release's learning-rate schedule, weight decay, initialisation, zero buffers, text-first order and
text centring, the published defaults and the alternating mechanism."""

from __future__ import annotations

import math

import numpy as np
import torch

from cmh_bench.method import RunContext, TrainSet, resolve_hparams
from cmh_bench.methods import dcmh as dcmh_module
from cmh_bench.methods.dcmh import DCMH, dcmh_batch_loss, geometric_lr, release_init


def test_batch_loss_by_hand():
    f = torch.tensor([[2.0, 0.0]])
    other = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # Theta = f other^T / 2 = [2, 0]
    similarity = torch.tensor([[1.0, 0.0]])
    codes = torch.tensor([[1.0, 1.0]])  # ||B - f||^2 = 1 + 1
    rest = torch.tensor([-1.0, 1.0])  # ||f^T 1 + rest||^2 = 1 + 1
    likelihood = -(2 - math.log(1 + math.e**2)) + math.log(2)
    expected = (likelihood + 1.0 * 2 + 0.5 * 2) / (2 * 1)  # / (N * batch size), N = 2
    got = dcmh_batch_loss(f, other, similarity, codes, rest, gamma=1.0, eta=0.5, n_train=2)
    assert abs(got.item() - expected) < 1e-6


def test_batch_loss_is_finite_for_large_theta():
    f = torch.full((1, 4), 100.0)
    loss = dcmh_batch_loss(f, f.clone(), torch.zeros(1, 1), torch.ones(1, 4), torch.zeros(4), 1.0, 1.0, 1)
    assert torch.isfinite(loss)


def test_schedule_is_the_matlab_release_logspace():
    hp = resolve_hparams(DCMH, "paper")
    lrs = [geometric_lr(e, hp.epochs, hp.lr_start, hp.lr_end) for e in range(hp.epochs)]
    assert np.allclose(lrs, np.logspace(-1.5, -3, 500), rtol=1e-12)
    assert np.allclose([geometric_lr(e, 3, 10**-1.5, 10**-3) for e in range(3)], [10**-1.5, 10**-2.25, 10**-3])
    assert geometric_lr(0, 1, 0.1, 0.001) == 0.1
    # the release's step budget on MIRFlickr (10,000 training items, batch 128: 79 steps per epoch)
    assert 345 < sum(lrs) * math.ceil(10_000 / hp.batch_size) < 355


def test_published_defaults_and_quick_profile():
    paper = resolve_hparams(DCMH, "paper")
    assert (paper.hidden, paper.epochs, paper.batch_size, paper.gamma, paper.eta) == (8192, 500, 128, 1.0, 1.0)
    assert (paper.lr_start, paper.lr_end) == (10**-1.5, 10**-3)
    assert (paper.weight_decay, paper.init_std) == (5e-4, 0.01)
    quick = resolve_hparams(DCMH, "quick")
    assert quick.hidden == 512  # epochs and lr come from the tuned profile file


def tiny_setup():
    """A set-up DCMH (text width 8, 2 epochs) on 40 random items (6-d image, 3-d text, 5 classes, 4 bits),
    its training set and context."""
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(40, 5, generator=gen) < 0.4).float()
    train = TrainSet(torch.randn(40, 6, generator=gen), torch.rand(40, 3, generator=gen).round(), labels)
    hp = resolve_hparams(DCMH, "quick", {"hidden": 8, "epochs": 2, "batch_size": 16})
    torch.manual_seed(0)
    method = DCMH(hp, 4, 6, 3, 5)
    ctx = RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0))
    method.setup(train, ctx)
    return method, train, ctx


def test_release_init_draws_weights_and_biases_from_n_0_std():
    net = torch.nn.Sequential(torch.nn.Linear(400, 300), torch.nn.ReLU(), torch.nn.Linear(300, 200))
    torch.manual_seed(0)
    release_init(net, 0.01)
    for layer in (net[0], net[2]):
        for values in (layer.weight, layer.bias):
            assert abs(values.mean().item()) < 0.002 and abs(values.std().item() - 0.01) < 0.0015


def test_setup_is_the_releases_zero_buffers_zero_codes_decay_and_centred_text():
    method, train, _ = tiny_setup()
    assert all(not b.any() for b in method.buffers.values()) and not method.codes.any()  # F = G = 0, B = sign(0) = 0
    assert all(g["weight_decay"] == 5e-4 for o in method.optimisers.values() for g in o.param_groups)
    assert torch.allclose(method.inputs["text"].mean(0), torch.zeros(3), atol=1e-6)  # normZeroMean
    # encoding centres a text with the training mean: the training mean itself maps to sign(net(0))
    assert torch.equal(method.encode(train.text.mean(0, keepdim=True), "text"),
                       torch.sign(method.text_net(torch.zeros(1, 3))))


def test_an_epoch_runs_the_text_pass_first_against_the_zero_image_buffer(monkeypatch):
    method, train, ctx = tiny_setup()
    other_buffer_mass = []  # sum |other buffer| seen by each batch loss, in call order

    def recording_loss(f, other, *args):
        other_buffer_mass.append(other.abs().sum().item())
        return dcmh_batch_loss(f, other, *args)

    monkeypatch.setattr(dcmh_module, "dcmh_batch_loss", recording_loss)
    method.train_epoch(0, train, ctx)
    assert len(other_buffer_mass) == 6  # 40 items in batches of 16: 3 text batches, then 3 image batches
    assert other_buffer_mass[:3] == [0.0] * 3  # F = 0 while the text net trains
    assert all(mass > 0 for mass in other_buffer_mass[3:])  # the image net sees the new text buffer


def test_an_epoch_alternates_against_full_buffers_and_sets_codes_from_both():
    method, train, ctx = tiny_setup()
    log = []
    initial = {m: b.clone() for m, b in method.buffers.items()}
    for epoch in range(method.hp.epochs):
        log.append(method.train_epoch(epoch, train, ctx))
    assert [set(t) for t in log] == [{"loss_image", "loss_text"}] * 2
    assert torch.equal(method.codes, torch.sign(method.buffers["image"] + method.buffers["text"]))
    # every item's row of both buffers was overwritten by its net's output (each pass visits every item)
    for modality in ("image", "text"):
        assert ((method.buffers[modality] - initial[modality]).abs().sum(1) > 0).all()
    codes = method.encode(train.image, "image")
    assert codes.shape == (40, 4) and set(codes.unique().tolist()) <= {-1.0, 1.0}
