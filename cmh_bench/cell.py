"""A cell: the unit of work (one training run + evaluation = one result record), and its path.

The record of a cell lives at

    <results>/<profile>/<dataset>[@<split>]/<noise>[-<sha>]-<rate>/<bits>bit/<method>[+<options>]/seed<k>[-noise<j>].json

so the path is the key: the runner resumes by skipping cells whose record is complete.
``<options>`` appears only when the cell departs from the defaults (hyper-parameter overrides,
best-on-test selection), so default runs have the short path of DESIGN.md. A dataset given as a
path appears as its file's stem plus a hash of the path (cmh_bench.catalog.dataset_label); a noise
file (noise model ``file``) as the first 12 hex digits of its SHA-256, which is also in the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SELECTIONS = ("final", "best-on-test")


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
    selection: str = "final"
    hparams: tuple[tuple[str, str], ...] = ()  # user overrides, sorted (key, value) pairs
    noise_file: str | None = None  # noise model "file": PATH[:KEY] of the given noisy labels (keyed by its SHA-256)
    # execution fields: how and where, not what
    device: str = "auto"
    mixed_precision: bool = False
    curve_every: int = 0  # evaluate the test queries every N epochs for the record's curve (0: never)
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
            "selection": self.selection,
            **({"noise_file_sha256": self.noise_file_sha256} if self.noise_file else {}),
        }

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
        if self.selection != "final":
            method += f"+{self.selection}"
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
