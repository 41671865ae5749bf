"""Tests of the DCMH plugin (methods/dcmh.py): the loss on hand-checkable tensors, the MATLAB
release's learning-rate schedule, the published defaults and the alternating mechanism."""

from __future__ import annotations

import math

import numpy as np
import torch

from cmh_bench.method import RunContext, TrainSet, resolve_hparams
from cmh_bench.methods.dcmh import DCMH, dcmh_batch_loss, geometric_lr


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
    quick = resolve_hparams(DCMH, "quick")
    assert quick.hidden == 512  # epochs and lr come from the tuned profile file


def test_an_epoch_alternates_against_full_buffers_and_sets_codes_from_both():
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(40, 5, generator=gen) < 0.4).float()
    train = TrainSet(torch.randn(40, 6, generator=gen), torch.randn(40, 3, generator=gen), labels)
    hp = resolve_hparams(DCMH, "quick", {"hidden": 8, "epochs": 2, "batch_size": 16})
    torch.manual_seed(0)
    method = DCMH(hp, 4, 6, 3, 5)
    log = []
    ctx = RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0))
    method.setup(train, ctx)
    initial = {m: b.clone() for m, b in method.buffers.items()}
    for epoch in range(hp.epochs):
        log.append(method.train_epoch(epoch, train, ctx))
    assert [set(t) for t in log] == [{"loss_image", "loss_text"}] * 2
    assert torch.equal(method.codes, torch.sign(method.buffers["image"] + method.buffers["text"]))
    # every item's row of both buffers was overwritten by its net's output (each pass visits every item)
    for modality in ("image", "text"):
        assert ((method.buffers[modality] - initial[modality]).abs().sum(1) > 0).all()
    codes = method.encode(train.image, "image")
    assert codes.shape == (40, 4) and set(codes.unique().tolist()) <= {-1.0, 1.0}
