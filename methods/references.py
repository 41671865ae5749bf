"""Reference rows (specs/baselines.md): cheap, deterministic codes that make a MAP readable.

- ``floor-constant``: every item gets the same code, the MAP any collapsed model gets. Under the
  tie-aware MAP it is exactly the expected AP of a uniformly random ranking, which approaches the
  mean relevance rate as the database grows.
- ``random-codes``: i.i.d. random +-1 codes from the training seed: the chance level.
- ``label-oracle``: sign(Y_clean R) with a fixed Gaussian projection R (C x L) from the training
  seed: what perfect semantics gives at L bits. It reads the CLEAN labels of the items it encodes
  (an explicit opt-in, role "upper-bound"), so it is never ranked.
"""

from __future__ import annotations

import torch

from cmh_bench.method import EncodeInput, HashingMethod, RunContext, TrainSet


class ConstantCodes(HashingMethod):
    """Every item, in both modalities, gets the all-ones code."""

    paper = "reference row (specs/baselines.md)"

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """The code +1...+1 for every row of ``x``."""
        return torch.ones(len(x), self.bits, device=x.device)


class RandomCodes(HashingMethod):
    """I.i.d. uniform +-1 codes, drawn from a generator seeded with the training seed."""

    paper = "reference row (specs/baselines.md)"

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """A fresh random +-1 code per row (independent of the features)."""
        bits = torch.randint(0, 2, (len(x), self.bits), generator=self.generator)
        return (2.0 * bits - 1.0).to(x.device)


class LabelOracle(HashingMethod):
    """Codes b = sign(y R) from each item's clean labels y, R ~ N(0, 1)^(C x L) fixed by the seed (0 -> +1)."""

    paper = "reference row (specs/baselines.md)"
    uses_clean_labels = True

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        generator = torch.Generator().manual_seed(ctx.seed)
        self.projection = torch.randn(self.n_classes, self.bits, generator=generator).to(ctx.device)

    @torch.no_grad()
    def encode_items(self, items: EncodeInput, modality: str, batch_size: int = 8192) -> torch.Tensor:
        """sign(Y_clean R) for the items (identical in both modalities)."""
        scores = items.clean_labels @ self.projection
        return torch.where(scores >= 0, 1.0, -1.0)
