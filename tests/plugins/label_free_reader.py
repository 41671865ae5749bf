"""A method used only by the label-access contract test: it declares itself label-free and then
reads the training labels anyway, which the harness must refuse."""

from cmh_bench.method import HashingMethod, RunContext, TrainSet
from cmh_bench.registry import register_method


@register_method("label-free-reader", role="label-free")
class LabelFreeReader(HashingMethod):
    """Claims uses_labels = False, then touches train.labels in setup."""

    paper = "test"
    uses_labels = False

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        self.classes = train.labels.shape[1]
