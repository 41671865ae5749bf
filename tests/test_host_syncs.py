"""No host–device synchronisation per minibatch in a training epoch of the built-in methods.

On a GPU, reading a tensor's value on the host (``.item()``, ``float(t)``, ``.tolist()``, ``bool(t)``,
``.numpy()``, indexing with a boolean mask) waits for the device. Counted on the CPU by wrapping those
entry points: an epoch with twice the minibatches must make the same number of such reads, so
none happens per minibatch (the few per epoch — the loss means, a selection, a GMM — are fine).
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from cmh_bench.catalog import ensure_dataset
from cmh_bench.dataset import load_split
from cmh_bench.method import RunContext, TrainSet, resolve_hparams
from cmh_bench.registry import get_method

READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "nonzero")


@contextlib.contextmanager
def counting_host_reads(counter: list[str]):
    """Count every host read of a tensor's value (the READS methods and boolean-mask indexing)."""
    originals = {name: getattr(torch.Tensor, name) for name in READS}
    original_getitem = torch.Tensor.__getitem__

    def wrap(name):
        def counted(self, *args, **kwargs):
            counter.append(name)
            return originals[name](self, *args, **kwargs)
        return counted

    def getitem(self, index):
        masks = index if isinstance(index, tuple) else (index,)
        if any(isinstance(m, torch.Tensor) and m.dtype == torch.bool for m in masks):
            counter.append("boolean mask")
        return original_getitem(self, index)

    try:
        for name in READS:
            setattr(torch.Tensor, name, wrap(name))
        torch.Tensor.__getitem__ = getitem
        yield counter
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        torch.Tensor.__getitem__ = original_getitem


def host_reads_of_one_epoch(method_name: str, batch_size: int, epoch: int) -> list[str]:
    """The host reads of training epoch ``epoch`` (after the earlier ones) of a small copy of the method on toy."""
    entry = get_method(method_name)
    cls = entry.load()
    data = load_split(ensure_dataset("toy"))
    tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    train = TrainSet(tensor(data.train.image), tensor(data.train.text), tensor(data.train.labels))
    small = {"hidden": 32, "batch_size": batch_size, "warmup_epochs": 1}
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    hp = resolve_hparams(cls, "quick", entry.variant, {k: v for k, v in small.items() if k in fields})
    method = cls(hp, 16, train.image.shape[1], train.text.shape[1], train.n_classes)
    ctx = RunContext(device=torch.device("cpu"), seed=0, profile="quick", generator=torch.Generator().manual_seed(0))
    method.setup(train, ctx)
    for earlier in range(epoch):
        method.train_epoch(earlier, train, ctx)
    reads: list[str] = []
    with counting_host_reads(reads):
        method.train_epoch(epoch, train, ctx)
    return reads


def test_the_counter_sees_each_kind_of_read():
    reads: list[str] = []
    with counting_host_reads(reads):
        t = torch.arange(4.0)
        t.sum().item(), float(t[0]), t[t > 1], t.tolist()
    assert reads == ["item", "__float__", "boolean mask", "tolist"]


@pytest.mark.parametrize("method", ["scbch", "rshnl", "nrch", "dcmh"])
def test_no_host_read_per_minibatch(method):
    # epoch 2: past the one-epoch warm-up, so sample weighting / clean selection are on
    few = host_reads_of_one_epoch(method, batch_size=32, epoch=2)
    many = host_reads_of_one_epoch(method, batch_size=16, epoch=2)
    assert len(many) == len(few), f"{method}: {len(few)} host reads with batch 32, {len(many)} with batch 16: {many}"
