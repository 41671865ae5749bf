"""The method plugin contract: what a hashing method implements and what the harness hands it.

A method learns two hash functions (image -> +-1 code, text -> +-1 code) from training features
and NOISY training labels. The harness (cmh_bench.harness) owns everything else: data, noise,
seeds, device, evaluation, records.

Subclass :class:`HashingMethod` and implement, for an epoch-based method,

- ``setup(train, ctx)``: build networks and optimisers (``self.hp`` holds the hyper-parameters,
  ``self.bits`` the code length),
- ``train_epoch(epoch, train, ctx) -> dict[str, float]``: one pass; returns the epoch's mean loss terms,
- ``encode(x, modality) -> Tensor``: +-1 codes of shape (n, bits),

and optionally ``sample_weights()`` (per-sample reliability) and ``entry_scores()`` (per
(sample, class) reliability), so the harness can score noise detection. A method that learns from
a small clean meta set declares its default size in ``clean_meta_default`` and finds the set in
``train.meta`` (cmh_bench.metaset). The base class's ``fit`` runs the epochs and reports each one to the context. A method
that does not train by epochs overrides ``fit`` instead.

Hyper-parameters are a dataclass whose defaults are the published ("paper") values; the class
attribute ``quick`` holds the overrides of the CPU-sized "quick" profile. The final values are
resolved by :func:`resolve_hparams`: defaults -> profile -> tuned profile file (cmh_bench.profiles)
-> dataset card -> registered variant -> user overrides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch

from cmh_bench.errors import UserError
from cmh_bench.metaset import MetaSet

MODALITIES = ("image", "text")
PROFILES = ("paper", "quick")


@dataclass
class TrainSet:
    """The training data a method sees: features and the (noisy) labels, already on the device."""

    image: torch.Tensor  # (N, d_img) float32
    text: torch.Tensor  # (N, d_txt) float32
    labels: torch.Tensor  # (N, C) float32 0/1: noisy labels (clean only for an opted-in upper bound)
    meta: MetaSet | None = None  # a clean meta set (cmh_bench.metaset), only for a method that declares one

    def __len__(self) -> int:
        return self.image.shape[0]

    @property
    def n_classes(self) -> int:
        return self.labels.shape[1]

    def features(self, modality: str) -> torch.Tensor:
        """The image or text feature matrix."""
        return self.image if modality == "image" else self.text


class LabelAccessError(RuntimeError):
    """A label-free method (``uses_labels = False``) read the training labels: a bug in the method."""


class LabelFreeTrainSet(TrainSet):
    """The TrainSet of a label-free method: the features only; reading ``labels`` raises LabelAccessError."""

    def __init__(self, image: torch.Tensor, text: torch.Tensor):
        self.image = image
        self.text = text

    @property
    def labels(self) -> torch.Tensor:
        raise LabelAccessError("a label-free method (uses_labels = False) read the training labels")

    def __repr__(self) -> str:
        return f"LabelFreeTrainSet(n={len(self)}, image={tuple(self.image.shape)}, text={tuple(self.text.shape)})"


@dataclass
class EncodeInput:
    """The items to encode: features of both modalities; clean labels only for opted-in references."""

    image: torch.Tensor
    text: torch.Tensor
    clean_labels: torch.Tensor | None = None

    def features(self, modality: str) -> torch.Tensor:
        """The image or text feature matrix."""
        return self.image if modality == "image" else self.text


@dataclass
class RunContext:
    """What the harness gives a method for one training run.

    ``device``: where the data lives and the method must compute. ``generator``: a seeded CPU
    torch.Generator for the method's own randomness (shuffling); ``seed``: the training seed.
    ``mixed_precision``: autocast is used only where the device supports it (CUDA).
    ``on_epoch_end(epoch, terms)`` is the harness's hook (logging, curves, weight AUC, progress).
    """

    device: torch.device
    seed: int
    profile: str
    generator: torch.Generator
    mixed_precision: bool = False
    on_epoch_end: Callable[[int, dict], None] = lambda epoch, terms: None
    started: float = field(default_factory=time.perf_counter)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when mixed precision is on; a no-op elsewhere."""
        if self.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batches(self, n: int, batch_size: int, shuffle: bool = True, drop_last: bool = False) -> Iterator[torch.Tensor]:
        """Yield index tensors (on the device) covering 0..n-1 in minibatches, shuffled by the seeded generator."""
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        order = order.to(self.device)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield order[start : start + batch_size]

    def elapsed(self) -> float:
        """Seconds since the context was created."""
        return time.perf_counter() - self.started


class HashingMethod:
    """Base class of all methods; see the module docstring for the hooks a subclass implements."""

    version: ClassVar[str] = "1"
    paper: ClassVar[str] = ""
    family: ClassVar[str] = ""  # key of the dataset cards' method_overrides (e.g. "scbch")
    Hparams: ClassVar[type] = None  # dataclass of published defaults
    quick: ClassVar[dict[str, Any]] = {}  # overrides of the quick profile
    uses_clean_labels: ClassVar[bool] = False  # an explicit, recorded opt-in (upper bounds only)
    uses_labels: ClassVar[bool] = True  # False: label-free; the harness hands it a LabelFreeTrainSet
    clean_meta_default: ClassVar[int | None] = None  # needs a clean meta set of this many items (cmh_bench.metaset)

    def __init__(self, hp, bits: int, image_dim: int, text_dim: int, n_classes: int):
        self.hp = hp
        self.bits = bits
        self.image_dim = image_dim
        self.text_dim = text_dim
        self.n_classes = n_classes

    # -- hooks ---------------------------------------------------------------------------------
    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        """Build networks and optimisers on ``ctx.device``."""

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        """Train one epoch; return its mean loss terms."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """+-1 codes (float tensor, shape (n, bits)) of feature rows ``x`` of one modality."""
        raise NotImplementedError

    def sample_weights(self) -> torch.Tensor | None:
        """Per-training-sample reliability (higher = more likely clean), or None; the harness scores it
        against the noise draw's corrupted flags (weight AUC) unless the method trained on clean labels."""
        return None

    def entry_scores(self) -> torch.Tensor | None:
        """Per-(training sample, class) reliability of the label entries, N × C (higher = more likely a true
        label, e.g. NACD's confidence P), or None; the harness scores it over the noisy positive entries,
        true vs added positives (entry AUC), unless the method trained on clean labels."""
        return None

    def modules(self) -> list[torch.nn.Module]:
        """The networks, so the harness can switch train/eval mode; default: every nn.Module attribute."""
        return [v for v in vars(self).values() if isinstance(v, torch.nn.Module)]

    # -- driver --------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return int(getattr(self.hp, "epochs", 0))

    def fit(self, train: TrainSet, ctx: RunContext) -> None:
        """Run ``setup`` then ``train_epoch`` for each epoch, reporting each to ``ctx.on_epoch_end``."""
        self.setup(train, ctx)
        for epoch in range(self.epochs):
            self.train_mode(True)
            terms = self.train_epoch(epoch, train, ctx)
            self.train_mode(False)
            ctx.on_epoch_end(epoch, terms)

    def train_mode(self, on: bool) -> None:
        """Switch every network to training (True) or evaluation (False) mode."""
        for module in self.modules():
            module.train(on)

    @torch.no_grad()
    def encode_items(self, items: EncodeInput, modality: str, batch_size: int = 8192) -> torch.Tensor:
        """Codes of all ``items`` for one modality, in batches, in evaluation mode and without gradients."""
        self.train_mode(False)
        x = items.features(modality)
        return torch.cat([self.encode(x[s : s + batch_size], modality) for s in range(0, len(x), batch_size)])


def resolve_hparams(cls: type[HashingMethod], profile: str, *override_layers: dict) -> Any:
    """The method's hyper-parameters: published defaults, then the profile's, then each override layer.

    Unknown keys raise UserError naming the valid ones; values are converted to the field's type.
    """
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if cls.Hparams is None:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls.Hparams)}
    values: dict[str, Any] = {}
    for layer in ((cls.quick if profile == "quick" else {}), *override_layers):
        for key, value in layer.items():
            if key not in fields:
                raise UserError(
                    f"{cls.__name__} has no hyper-parameter {key!r}; known: {', '.join(fields)}"
                )
            values[key] = _convert(value, type(getattr(cls.Hparams(), key)), key)
    return cls.Hparams(**values)


def _convert(value: Any, kind: type, key: str) -> Any:
    if isinstance(value, kind) or value is None:
        return value
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return kind(value)
    except (TypeError, ValueError):
        raise UserError(f"hyper-parameter {key}={value!r} is not a valid {kind.__name__}") from None
