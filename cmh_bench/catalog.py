"""Where dataset files live and which datasets are available on this machine.

The data directory is ``$CMH_BENCH_DATA``, else ``$XDG_CACHE_HOME/cmh-bench/data`` (by default
``~/.cache/cmh-bench/data``). A dataset called NAME lives at ``<data dir>/NAME.h5``. Synthetic
stand-ins are always available: their file is generated (seed 0, the card's default scale) on
first use. Real datasets are available once imported into the data directory, and so is every
other dataset file there, with a card or without one. Wherever a dataset name is accepted, a path
to a dataset file (``*.h5`` / ``*.hdf5``, or any name with a folder in it) is accepted too.
"""

from __future__ import annotations

import hashlib
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


def is_dataset_path(value: str) -> bool:
    """True if ``value`` names a dataset file by path (an ``.h5`` / ``.hdf5`` suffix or a folder in it), not by name."""
    return Path(value).suffix in (".h5", ".hdf5") or "/" in value or os.sep in value


def dataset_key(value: str) -> str:
    """How a cell names the dataset ``value``: a name stays a name; a path becomes the absolute path,
    or the name NAME when it is the data directory's ``NAME.h5``."""
    if not is_dataset_path(value):
        return value
    path = Path(value).expanduser().resolve()
    return path.stem if path.parent == data_dir().expanduser().resolve() and path.suffix == ".h5" else str(path)


def dataset_label(value: str) -> str:
    """A file-system-safe folder name for dataset ``value``: the name, or for a path the file's stem
    plus 8 hex digits of the path's SHA-1 (two files with one stem get two folders)."""
    if not is_dataset_path(value):
        return value
    return f"{Path(value).stem}-{hashlib.sha1(value.encode()).hexdigest()[:8]}"


def cardless_files() -> list[Path]:
    """The dataset files in the data directory that have no card, in name order."""
    folder = data_dir()
    return sorted(p for p in folder.glob("*.h5") if find_card(p.stem) is None) if folder.is_dir() else []


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
    """The file of dataset ``name`` (or the file at path ``name``); a synthetic stand-in is generated
    and written on first use."""
    if is_dataset_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: no such dataset file; check the path, or make one with `cmh-bench data pack`")
        return path
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


def cardless_warnings(datasets, methods, profile: str, hparams: dict, plugins=()) -> list[str]:
    """One line per card-less dataset and group of methods (one family, same values) whose family has
    per-dataset defaults in the real datasets' cards that ``hparams`` does not set: the generic values
    the methods fall back to, and how to set them. ``plugins``: method files to load first (``--plugin``)."""
    from cmh_bench.cards import all_cards
    from cmh_bench.method import resolve_hparams
    from cmh_bench.registry import get_method, load_plugin_file

    for plugin in plugins:
        load_plugin_file(plugin)
    lines = []
    for dataset in dict.fromkeys(datasets):
        if find_card(dataset) is not None:
            continue
        groups: dict[tuple, list[str]] = {}
        for method in methods:
            entry = get_method(method)
            cls = entry.load()
            examples = {c.name: c.overrides_for(cls.family) for c in all_cards().values()
                        if c.kind == "real" and cls.family and c.overrides_for(cls.family)}
            keys = [k for k in dict.fromkeys(k for o in examples.values() for k in o) if k not in hparams]
            if keys:
                used = resolve_hparams(cls, profile, entry.variant, hparams)
                generic = ", ".join(f"{k}={getattr(used, k)}" for k in keys)
                per_card = "; ".join(f"{name} {', '.join(f'{k}={v}' for k, v in values.items())}" for name, values in examples.items())
                groups.setdefault((generic, per_card, tuple(keys)), []).append(method)
        for (generic, per_card, keys), members in groups.items():
            lines.append(
                f"dataset {dataset!r} has no card: {', '.join(members)} {'uses' if len(members) == 1 else 'use'} the "
                f"generic {generic} (the cards set them per dataset: {per_card}); set them with "
                f"{' '.join(f'--hp {k}=VALUE' for k in keys)} or a card {_card_hint(dataset)}"
            )
    return lines


def _card_hint(dataset: str) -> str:
    """Where a card for ``dataset`` goes: cards are found by name, so a file given by path needs a name."""
    if not is_dataset_path(dataset):
        return f"datasets/{dataset}.yaml"
    stem = Path(dataset).stem
    return f"datasets/{stem}.yaml with the file in the data directory as {stem}.h5 (--datasets {stem})"
