"""A method used only by the clean-meta-set tests: it declares a meta set and keeps what the harness hands it."""

import torch

from cmh_bench.method import HashingMethod, RunContext, TrainSet
from cmh_bench.registry import register_method


@register_method("meta-reader")
class MetaReader(HashingMethod):
    """Stores its TrainSet's labels and meta set in ``received`` (a class attribute); random codes."""

    paper = "test"
    clean_meta_default = 7
    received: dict = {}

    def fit(self, train: TrainSet, ctx: RunContext) -> None:
        type(self).received = {"labels": train.labels.clone(), "meta_index": train.meta.index.clone(),
                               "meta_labels": train.meta.labels.clone(), "n": len(train)}
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return 2.0 * torch.randint(0, 2, (len(x), self.bits), generator=self.generator) - 1.0
