"""Methods used only by the label-free contract tests: one declares uses_labels = False and then reads
the training labels anyway (the harness must refuse), one has the label-free role without declaring
uses_labels = False (the registry must refuse it before any cell runs)."""

from cmh_bench.method import HashingMethod, RunContext, TrainSet
from cmh_bench.registry import register_method


@register_method("label-free-reader", role="label-free")
class LabelFreeReader(HashingMethod):
    """Claims uses_labels = False, then touches train.labels in setup."""

    paper = "test"
    uses_labels = False

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        self.classes = train.labels.shape[1]


@register_method("label-free-in-name-only", role="label-free")
class LabelFreeInNameOnly(HashingMethod):
    """Registered as label-free without setting uses_labels = False: refused before any cell runs."""

    paper = "test"
