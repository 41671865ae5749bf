"""Where dataset files live and which datasets are available on this machine.

The data directory is ``$CMH_BENCH_DATA``, else ``$XDG_CACHE_HOME/cmh-bench/data`` (by default
``~/.cache/cmh-bench/data``). A dataset called NAME lives at ``<data dir>/NAME.h5``. Synthetic
stand-ins are always available: their file is generated (seed 0, the card's default scale) on
first use. Real datasets are available once imported into the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from cmh_bench.cards import all_cards, find_card
from cmh_bench.errors import UserError


def data_dir() -> Path:
    """The folder that holds dataset files (created on demand by writers, not here)."""
    if os.environ.get("CMH_BENCH_DATA"):
        return Path(os.environ["CMH_BENCH_DATA"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cmh-bench" / "data"


def dataset_path(name: str) -> Path:
    """The path of the dataset file called ``name`` in the data directory."""
    return data_dir() / f"{name}.h5"


def synthetic_names() -> list[str]:
    """The names of all synthetic stand-ins (always available), the test set ``toy`` included."""
    return [c.name for c in all_cards().values() if c.kind == "synthetic"]


def available_datasets(include_toy: bool = False) -> list[str]:
    """Datasets usable here: the synthetic stand-ins, then every dataset file in the data directory."""
    names = [n for n in synthetic_names() if include_toy or n != "toy"]
    folder = data_dir()
    if folder.is_dir():
        names += sorted(p.stem for p in folder.glob("*.h5") if p.stem not in names and p.stem != "toy")
    return names


def ensure_dataset(name: str) -> Path:
    """The file of dataset ``name``; a synthetic stand-in is generated and written on first use."""
    path = dataset_path(name)
    if path.is_file():
        return path
    card = find_card(name)
    if card is not None and card.kind == "synthetic":
        return write_synthetic(name, path)
    if card is not None:
        raise UserError(
            f"dataset {name!r} is not in {data_dir()}; import it with "
            f"`cmh-bench data import {card.name} --from DIR`"
        )
    raise UserError(f"no dataset {name!r} in {data_dir()}; see `cmh-bench list datasets`")


def write_synthetic(name: str, path: str | Path, seed: int = 0, scale: float | None = None) -> Path:
    """Generate the synthetic stand-in ``name`` (see cmh_bench.synthetic) and write it as a dataset file."""
    from cmh_bench.dataset import write_dataset
    from cmh_bench.synthetic import generate

    data = generate(name, seed=seed, scale=scale)
    return write_dataset(
        path,
        name=name,
        image=data.image,
        text=data.text,
        labels=data.labels,
        splits=data.splits,
        class_names=data.class_names,
        source=f"synthetic stand-in, seed {seed}, scale {'card default' if scale is None else scale}",
        description=data.description,
        default_split="default",
    )
