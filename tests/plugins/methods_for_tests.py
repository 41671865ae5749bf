"""Methods used only by the tests: a slow one (for kill tests) and one that fails on demand."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cmh_bench.method import HashingMethod, RunContext, TrainSet
from cmh_bench.registry import register_method


@dataclass
class SlowHparams:
    epochs: int = 3
    seconds_per_epoch: float = 0.3


@register_method("slow-random")
class SlowRandom(HashingMethod):
    """Random codes after a few sleeping epochs (a stand-in for a long training run)."""

    paper = "test"
    Hparams = SlowHparams

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        time.sleep(self.hp.seconds_per_epoch)
        return {"loss": 1.0 / (epoch + 1)}

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return 2.0 * torch.randint(0, 2, (len(x), self.bits), generator=self.generator) - 1.0


@register_method("fails-while-flagged")
class FailsWhileFlagged(SlowRandom):
    """Raises during training while the file named by $CMH_TEST_FAIL_FLAG exists."""

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        if Path(os.environ.get("CMH_TEST_FAIL_FLAG", "/nonexistent")).exists():
            raise RuntimeError("asked to fail")
        return {"loss": 0.0}


@register_method("dies-in-worker")
class DiesInWorker(SlowRandom):
    """Kills its own process during training (a stand-in for a worker killed or out of memory); never run it in-process."""

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        os._exit(1)
