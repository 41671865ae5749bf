"""A cell: the unit of work (one training run + evaluation = one result record), and its path.

The record of a cell lives at

    <results>/<profile>/<dataset>[@<split>]/<noise>[-<sha>]-<rate>/<bits>bit/<method>[+<options>]/seed<k>[-noise<j>].json

so the path is the key: the runner resumes by skipping cells whose record is complete.
``<options>`` appears only when the cell departs from the defaults (hyper-parameter overrides
``+hp-<hash>``, a validation fraction ``+val-<f>``, a validation period ``+every-<N>``, bf16
autocast ``+bf16``, a clean meta set of N items ``+meta-N``), so default
runs have the short path of DESIGN.md. A dataset given as a path appears as its file's stem plus a
hash of the path (cmh_bench.catalog.dataset_label); a noise file (noise model ``file``) as the
first 12 hex digits of its SHA-256, which is also in the key.

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
    noise_file: str | None = None  # noise model "file": PATH[:KEY] of the given noisy labels (keyed by its SHA-256)
    mixed_precision: bool = False  # bf16 autocast (CUDA only): a key field, since it changes the numbers
    clean_meta: int | None = None  # items of the clean meta set handed to the method (cmh_bench.metaset); None: none
    # execution fields: how and where, not what
    device: str = "auto"
    save_codes: bool = False
    threads: int = 0  # torch CPU threads (0: leave torch's default)
    plugins: tuple[str, ...] = ()  # plugin files to load in the worker before resolving the method

    @property
    def effective_noise_seed(self) -> int:
        return self.seed if self.noise_seed is None else self.noise_seed

    def describe(self) -> str:
        """A short human label: method, dataset, noise-rate, bits and seed."""
        return f"{self.method} {self.dataset} {self.noise}-{self.rate:g} {self.bits}bit seed{self.seed}"

    def key(self) -> dict:
        """The key fields as a plain dict (what a record's ``cell`` must match)."""
        return {
            "dataset": self.dataset, "split": self.split, "noise": self.noise, "rate": self.rate,
            "noise_seed": self.effective_noise_seed, "bits": self.bits, "method": self.method,
            "hparams": dict(self.hparams), "seed": self.seed, "profile": self.profile,
            "val_fraction": self.val_fraction, "val_every": self.val_every,
            **({"noise_file_sha256": self.noise_file_sha256} if self.noise_file else {}),
            **({"precision": self.precision} if self.mixed_precision else {}),
            **({"clean_meta": self.clean_meta} if self.clean_meta else {}),
        }

    @property
    def precision(self) -> str:
        """The arithmetic the cell trains and encodes in: "bf16" (autocast, ``mixed_precision``) or "fp32"."""
        return "bf16" if self.mixed_precision else "fp32"

    @property
    def noise_file_sha256(self) -> str | None:
        """The SHA-256 of the noise file's bytes (None without one)."""
        from cmh_bench.filehash import file_sha256
        from cmh_bench.matrices import parse_ref

        return file_sha256(parse_ref(self.noise_file)[0]) if self.noise_file else None

    def relative_path(self) -> Path:
        """The record's path below the results directory (see the module docstring)."""
        from cmh_bench.catalog import dataset_label

        dataset = dataset_label(self.dataset) + (f"@{self.split}" if self.split else "")
        noise = self.noise + (f"-{self.noise_file_sha256[:12]}" if self.noise_file else "")
        method = self.method
        if self.hparams:
            digest = hashlib.sha1(json.dumps(dict(self.hparams), sort_keys=True).encode()).hexdigest()[:8]
            method += f"+hp-{digest}"
        if self.val_fraction is not None:
            method += f"+val-{self.val_fraction:g}"
        if self.val_every != DEFAULT_VAL_EVERY:
            method += f"+every-{self.val_every}"
        if self.mixed_precision:
            method += f"+{self.precision}"
        if self.clean_meta:
            method += f"+meta-{self.clean_meta}"
        seed = f"seed{self.seed}" + (f"-noise{self.noise_seed}" if self.noise_seed not in (None, self.seed) else "")
        return Path(self.profile, dataset, f"{noise}-{self.rate:g}", f"{self.bits}bit", method, f"{seed}.json")

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
