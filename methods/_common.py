"""Small pieces shared by the method plugins: MLP hash networks with their unit-tanh output head
(and the image/text pair of them that SCBCH and UCCH use),
the sign-code encoder of a two-network method, per-epoch running means of the loss terms, and Adam
with the fused kernel where the device has one."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from cmh_bench.method import HashingMethod, RunContext

FUSED_ADAM_DEVICES = ("cpu", "cuda")  # device types with a fused Adam kernel


def adam(params, device: torch.device, **options) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **options)`` (lr, weight_decay, …) with the fused kernel where the
    device type has one, elsewhere torch's default implementation."""
    return torch.optim.Adam(params, fused=True if device.type in FUSED_ADAM_DEVICES else None, **options)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, last_bias: bool = True) -> nn.Sequential:
    """Linear → ReLU → … → Linear: ``in_dim`` → each width in ``hidden`` (ReLU after each) → ``out_dim``.

    Every layer has PyTorch's default init; the last one has a bias iff ``last_bias``.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers.append(nn.Linear(width, out_dim, bias=last_bias))
    return nn.Sequential(*layers)


def unit_tanh(z: torch.Tensor) -> torch.Tensor:
    """The hash head: h = tanh(z) / ‖tanh(z)‖₂, row by row (computed in float32)."""
    return F.normalize(torch.tanh(z.float()), dim=1)


class HashNet(nn.Module):
    """An MLP followed by the unit-tanh head: x ↦ tanh(f(x)) / ‖tanh(f(x))‖₂."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    @property
    def last(self) -> nn.Linear:
        """The output layer (some methods initialise it specially)."""
        return self.body[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unit_tanh(self.body(x))


def hash_nets(image_dim: int, text_dim: int, hidden: int, bits: int) -> nn.ModuleDict:
    """The two hash networks, PyTorch default init, each followed by u = tanh(f(x)) / ‖tanh(f(x))‖₂:
    image Linear(d_img, h) → ReLU → Linear(h, h) → ReLU → Linear(h, L); text Linear(d_txt, h) → ReLU → Linear(h, L)."""
    return nn.ModuleDict({
        "image": HashNet(mlp(image_dim, [hidden, hidden], bits)),
        "text": HashNet(mlp(text_dim, [hidden], bits)),
    })


class TwoNetHashing(HashingMethod):
    """A method with one hash network per modality whose test codes are sign(net(x)).

    ``setup`` of a subclass sets ``self.nets`` (an ``nn.ModuleDict`` with keys "image" and
    "text") and ``self.ctx`` (the run context, for autocast).
    """

    nets: nn.ModuleDict
    ctx: RunContext

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """sign(net(x)) of one modality's features, with sign(0) = +1, as float32 ±1."""
        with self.ctx.autocast():
            h = self.nets[modality](x)
        return torch.where(h >= 0, 1.0, -1.0)


class EpochMeans:
    """Running per-sample means of named loss terms over one epoch's minibatches.

    ``add(n, terms)`` counts a minibatch of ``n`` samples whose terms are batch means, so the
    result is the mean over samples (a short last batch weighs less). Tensor terms are summed on
    their device, detached, and read back once in ``result``: no host–device sync per minibatch.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.count = 0

    def add(self, n: int, terms: dict[str, torch.Tensor | float]) -> None:
        """Accumulate one minibatch of ``n`` samples."""
        self.count += n
        for key, value in terms.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.sums[key] = self.sums.get(key, 0.0) + n * value

    def result(self) -> dict[str, float]:
        """The means so far (empty before the first ``add``)."""
        return {key: float(total) / self.count for key, total in self.sums.items()} if self.count else {}
