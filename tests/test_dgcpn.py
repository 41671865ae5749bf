"""Tests of the DGCPN plugin (methods/dgcpn.py): the blocked graph and the target on the
hand-checkable tensors of specs/unsupervised.md §3.9, the loss, the three updates per batch and a
few training epochs."""

from __future__ import annotations

import math

import pytest
import torch

from cmh_bench.method import LabelFreeTrainSet, RunContext, resolve_hparams
from cmh_bench.methods.dgcpn import DGCPN, batch_target, dgcpn_loss, graph_size, neighbour_distributions

FEATURES = torch.tensor([[1, 0.1, 0.2], [0.8, 1, 0.1], [0.1, 0.9, 1], [0.2, 0.1, 1]])
P = [[0, 0.641579, 0, 0.358421], [0.528639, 0, 0.471361, 0], [0, 0.436989, 0, 0.563011], [0.327187, 0, 0.672813, 0]]
TARGET = [[0.724054, -0.021459, -0.315737, -0.453333], [-0.021459, 0.700984, -0.127483, -0.323031],
          [-0.315737, -0.127483, 0.704764, 0.124141], [-0.453333, -0.323031, 0.124141, 0.735837]]


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


def dense(values, indices):
    return torch.zeros(len(values), len(values)).scatter_(1, indices.long(), values)


@pytest.mark.parametrize("block_entries", [4, 1 << 20])  # one row per block, and one block
def test_neighbour_distributions_by_hand(block_entries):
    values, indices = neighbour_distributions(FEATURES, FEATURES, 0.01, k=3, block_entries=block_entries)
    p = dense(values, indices)
    assert values.shape == (4, 2) and close(p, P)
    assert close(p.sum(1), torch.ones(4)) and close(p.diagonal(), torch.zeros(4))
    g = p @ p.T
    assert close(g, g.T) and (torch.linalg.eigvalsh(g) > -1e-6).all()


def test_batch_target_by_hand_and_on_a_sub_batch():
    values, indices = neighbour_distributions(FEATURES, FEATURES, 0.01, k=3)
    full = batch_target(values, indices, torch.arange(4), FEATURES, FEATURES, 0.01, 0.3, scale=1.0)
    assert close(full, TARGET)
    idx = torch.tensor([3, 1])
    assert close(batch_target(values, indices, idx, FEATURES[idx], FEATURES[idx], 0.01, 0.3, 1.0), full[idx][:, idx])


def test_a_kept_negative_similarity_is_refused():
    signed = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.1]])
    with pytest.raises(ValueError, match="not positive"):
        neighbour_distributions(signed, signed, 0.01, k=3)


def test_graph_size_defaults():
    assert graph_size(5000, 0, 0.0) == (2000, 4000.0)  # the published 2000 of 5000, scale 4000
    assert graph_size(10, 0, 0.0) == (4, 8.0) and graph_size(10, 50, 3.0) == (10, 3.0)


def test_loss_by_hand():
    target = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    a, b = torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert math.isclose(dgcpn_loss(a, a, target, 1.5, 1.0, 1.0).item(), 0.625, abs_tol=1e-6)  # 0.25 + 0.375 + 0
    assert math.isclose(dgcpn_loss(a, b, target, 1.5, 1.0, 1.0).item(), 3.625, abs_tol=1e-6)  # 1.25 + 0.375 + 2


def features(n=64):
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(n, 4, generator=gen)
    return LabelFreeTrainSet((latent @ torch.randn(4, 10, generator=gen)).relu(), (latent @ torch.randn(4, 6, generator=gen)).relu())


def context(log=None):
    return RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0),
                      on_epoch_end=lambda epoch, terms: log.append(terms) if log is not None else None)


def built(epochs=0, log=None, **overrides):
    torch.manual_seed(0)
    method = DGCPN(resolve_hparams(DGCPN, "quick", {"hidden": 16, "epochs": epochs, **overrides}), 8, 10, 6, 3)
    method.fit(features(), context(log))
    return method


def test_networks_optimisers_and_graph_as_published():
    method = built()
    layers = [type(l).__name__ for l in method.nets["image"]]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear", "Tanh"] and method.nets["image"][2].p == 0.5
    assert 0.2 < method.nets["text"][3].weight.std().item() < 0.4  # N(0, 0.3²) init of the text output layer
    assert all(o.defaults["lr"] == 5e-3 and o.defaults["momentum"] == 0.9 for o in method.optimizers.values())
    assert (method.k, method.scale) == (26, 52.0) and method.p_values.shape == (64, 25)  # k = round(0.4 · 64)


def test_the_three_updates_each_move_the_right_nets():
    method = built()
    nets, update, seen = method.nets, method._update, []

    def snapshot(attribute):
        return {m: [getattr(p, attribute).clone() if getattr(p, attribute) is not None else None
                    for p in nets[m].parameters()] for m in nets}

    def same(a, b):
        return all(x is None and y is None or torch.equal(x, y) for x, y in zip(a, b))

    def spy(modality, loss):
        params, grads = snapshot("data"), snapshot("grad")
        result = update(modality, loss)
        seen.append((modality, {m: not same(params[m], snapshot("data")[m]) for m in nets},
                     {m: same(grads[m], snapshot("grad")[m]) for m in nets if m != modality}))
        return result

    method._update = spy
    method._step(features(), torch.arange(8), context())
    # step 2 moves only the image net, step 3 only the text net; the sign partner's net gets no gradient
    assert seen == [("image", {"image": True, "text": False}, {"text": True}),
                    ("text", {"image": False, "text": True}, {"image": True})]


def test_a_few_epochs_reduce_the_loss():
    log = []
    built(epochs=5, log=log, batch_size=16, lr=0.05)
    assert log[-1]["loss"] < log[0]["loss"] and log[0]["graph_k"] == 26.0
