"""A cell: the unit of work (one training run + evaluation = one result record), and its path.

The record of a cell lives at

    <results>/<profile>/<dataset>[@<split>]/<noise>-<rate>/<bits>bit/<method>[+<options>]/seed<k>[-noise<j>].json

so the path is the key: the runner resumes by skipping cells whose record is complete.
``<options>`` appears only when the cell departs from the defaults (hyper-parameter overrides
``+hp-<hash>``, a validation fraction ``+val-<f>``, a validation period ``+every-<N>``), so default
runs have the short path of DESIGN.md.

Every cell yields the metrics of every selection rule (``SELECTIONS``) from its one training run:
``val`` (best epoch by MAP on the noisy-labelled validation part: the ranking rule), ``final`` (the
last epoch), and the flagged, optimistic ``val-clean`` (best epoch on clean validation labels,
RSHNL's protocol) and ``best-on-test`` (best epoch on the test queries, the authors' protocol).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SELECTIONS = ("val", "final", "val-clean", "best-on-test")  # display order
RANKABLE_SELECTIONS = ("val", "final")  # rules that see no clean label and no test query
VALIDATION_SELECTIONS = ("val", "val-clean")  # rules that need a validation part
DEFAULT_VAL_EVERY = 5


@dataclass(frozen=True)
class Cell:
    """Everything that determines one result (the key fields) plus how to run it (execution fields)."""

    # key fields: they decide the result and the path
    dataset: str
    method: str
    bits: int
    noise: str = "pair-swap"
    rate: float = 0.5
    seed: int = 0
    noise_seed: int | None = None  # None: the training seed
    split: str | None = None  # None: the dataset file's default preset
    profile: str = "quick"
    val_fraction: float | None = None  # share of training items held out for validation; None: the card's, else 0.1
    val_every: int = DEFAULT_VAL_EVERY  # evaluate validation part and test queries every N epochs (0: final epoch only)
    hparams: tuple[tuple[str, str], ...] = ()  # user overrides, sorted (key, value) pairs
    # execution fields: how and where, not what
    device: str = "auto"
    mixed_precision: bool = False
    save_codes: bool = False
    threads: int = 0  # torch CPU threads (0: leave torch's default)
    plugins: tuple[str, ...] = ()  # plugin files to load in the worker before resolving the method

    @property
    def effective_noise_seed(self) -> int:
        return self.seed if self.noise_seed is None else self.noise_seed

    def key(self) -> dict:
        """The key fields as a plain dict (what a record's ``cell`` must match)."""
        return {
            "dataset": self.dataset, "split": self.split, "noise": self.noise, "rate": self.rate,
            "noise_seed": self.effective_noise_seed, "bits": self.bits, "method": self.method,
            "hparams": dict(self.hparams), "seed": self.seed, "profile": self.profile,
            "val_fraction": self.val_fraction, "val_every": self.val_every,
        }

    def relative_path(self) -> Path:
        """The record's path below the results directory (see the module docstring)."""
        dataset = self.dataset + (f"@{self.split}" if self.split else "")
        method = self.method
        if self.hparams:
            digest = hashlib.sha1(json.dumps(dict(self.hparams), sort_keys=True).encode()).hexdigest()[:8]
            method += f"+hp-{digest}"
        if self.val_fraction is not None:
            method += f"+val-{self.val_fraction:g}"
        if self.val_every != DEFAULT_VAL_EVERY:
            method += f"+every-{self.val_every}"
        seed = f"seed{self.seed}" + (f"-noise{self.noise_seed}" if self.noise_seed not in (None, self.seed) else "")
        return Path(self.profile, dataset, f"{self.noise}-{self.rate:g}", f"{self.bits}bit", method, f"{seed}.json")

    def to_dict(self) -> dict:
        """All fields, JSON-serialisable (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Cell":
        """The inverse of to_dict."""
        data = dict(data)
        data["hparams"] = tuple(tuple(pair) for pair in data.get("hparams", ()))
        data["plugins"] = tuple(data.get("plugins", ()))
        return cls(**data)
