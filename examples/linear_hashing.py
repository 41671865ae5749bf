"""A complete method plugin: supervised linear hashing, in one file.

Run it through the benchmark with

    cmh-bench check linear-hashing --plugin examples/linear_hashing.py
    cmh-bench run --plugin examples/linear_hashing.py --methods linear-hashing --datasets synth-flickr

Each modality gets one linear map to L dimensions, u = tanh(W_img x), v = tanh(W_txt t). The loss
pulls u_i and v_j together when the (noisy) labels of i and j share a class and pushes them apart
otherwise: L = mean_ij (cos(u_i, v_j) - s_ij)^2 with s_ij = 1 if y_i^T y_j > 0 else -1. Codes are
sign(u) and sign(v). It ignores label noise: a simple baseline, and a template for your own method.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import normalize

from cmh_bench.method import HashingMethod, RunContext, TrainSet
from cmh_bench.registry import register_method


@dataclass
class LinearHashingHparams:
    """Defaults of the "paper" profile; the class's `quick` dict overrides them for CPU runs."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3


@register_method("linear-hashing", variants={"linear-hashing-short": {"epochs": 2}})
class LinearHashing(HashingMethod):
    """Supervised linear hashing with a cosine pair loss (an example plugin)."""

    version = "1"
    paper = "cmh-bench example"
    Hparams = LinearHashingHparams
    quick = {"epochs": 10}

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        self.image_net = nn.Linear(self.image_dim, self.bits).to(ctx.device)
        self.text_net = nn.Linear(self.text_dim, self.bits).to(ctx.device)
        params = [*self.image_net.parameters(), *self.text_net.parameters()]
        self.optimiser = torch.optim.Adam(params, lr=self.hp.lr)

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        total, batches = 0.0, 0
        for index in ctx.batches(len(train), self.hp.batch_size):
            u = torch.tanh(self.image_net(train.image[index]))
            v = torch.tanh(self.text_net(train.text[index]))
            labels = train.labels[index]
            target = torch.where(labels @ labels.T > 0, 1.0, -1.0)
            loss = ((normalize(u) @ normalize(v).T - target) ** 2).mean()
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            total, batches = total + loss.item(), batches + 1
        return {"loss": total / batches}

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        net = self.image_net if modality == "image" else self.text_net
        return torch.sign(net(x))
