"""``cmh-bench data import``: read the public feature files of a real dataset into a dataset file.

Everything dataset-specific lives in the card (``datasets/<name>.yaml``): its ``importer`` block lists
one or more *sources* (the file and key of the image features, the text and the labels, tried in
order: the first whose files are all present is read), optional *variants* (NUS-WIDE ``tc21`` /
``tc10``), the expected widths (``features``, ``classes``) and the split sizes (``sizes``). A key may
be a list: the parts are concatenated in that order and the last one is the file's own test part
(IAPR TC-12's database / test, MS-COCO's train / test), which the ``file`` split preset uses.

Files are MATLAB v5 (read with scipy.io) or HDF5, which covers MATLAB v7.3 and the ``.h5py`` files
(read with h5py). MATLAB stores matrices column-major, so an (N x d) matrix of a v7.3 file appears as
(d x N) in h5py. The item axis of every matrix is therefore found by matching the row counts of the
three matrices (image, text, labels), never assumed; only a square matrix falls back to the storage
order (HDF5 with a ``MATLAB_class`` attribute = column-major). All shapes are checked before any data
is loaded, and the output is written at the very end, atomically: a failed import leaves no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmh_bench.cards import Card, get_card
from cmh_bench.errors import UserError
from cmh_bench.matrices import Matrix, probe
from cmh_bench.splits import make_splits

ROLES = ("image", "text", "labels")
_WHAT = {"image": "image features", "text": "text features", "labels": "labels"}


@dataclass(frozen=True)
class ImportSpec:
    """What one dataset (variant) import expects, read from its card."""

    dataset: str  # the name written into the dataset file (and its default file name)
    title: str
    widths: dict[str, int | None]  # expected columns: image, text, labels (None: any width)
    class_names: list[str]
    query: int
    train: int
    presets: tuple[str, ...]
    default_split: str
    description: str
    sources: tuple[dict, ...]  # each: name, and {file, key} per role


def import_spec(name: str, variant: str | None = None) -> ImportSpec:
    """The import specification of dataset ``name`` (a real card) and ``variant`` (default: the card's first)."""
    card = get_card(name)
    block = card.extra.get("importer")
    if card.kind != "real" or not block:
        raise UserError(f"{name!r} has no importer (kind {card.kind}); import one of the real datasets, "
                        "or generate a synthetic one with `cmh-bench data synth`")
    variants = block.get("variants") or {"default": block}
    if variant is None:
        variant = next(iter(variants))
    if variant not in variants:
        raise UserError(f"dataset {name!r} has no variant {variant!r}; choose one of {', '.join(variants)}")
    return _spec_from(card, {**block, **variants[variant]})


def default_class_names(classes: int) -> list[str]:
    """``class00``, ``class01``, ... (zero-padded to the width of the last index) for ``classes`` classes."""
    width = len(str(classes - 1))
    return [f"class{c:0{width}d}" for c in range(classes)]


def _spec_from(card: Card, block: dict) -> ImportSpec:
    sizes = block.get("sizes", card.sizes)
    classes = block.get("classes", card.classes)
    return ImportSpec(
        dataset=block.get("dataset", card.name),
        title=block.get("title", card.title),
        widths={"image": card.features["image"]["dim"], "text": card.features["text"]["dim"], "labels": classes},
        class_names=list(block.get("class_names") or default_class_names(classes)),
        query=sizes["query"],
        train=sizes["train"],
        presets=card.split_presets,
        default_split=card.default_split,
        description=" ".join(block.get("description", card.description).split()),
        sources=tuple(block["sources"]),
    )


def import_dataset(
    name: str,
    folder: str | Path,
    out: str | Path | None = None,
    *,
    variant: str | None = None,
    seed: int = 0,
    sizes: dict | None = None,
    allow_width: bool = False,
) -> Path:
    """Import dataset ``name`` from the files in ``folder`` and write it to ``out``; return the path.

    ``out`` defaults to the data directory (``catalog.dataset_path``) under the variant's dataset name.
    ``seed`` drives the ``random`` split preset. ``sizes`` ({"query", "train"}) overrides the card's
    Q and T (for tests on a subset of rows). ``allow_width`` accepts image and text features of any
    width (the class count is still checked); widths that differ from the card are written into the
    file's description. Any problem with the files raises one UserError naming the
    file, the key, what was expected and what was found; nothing is written then.
    """
    from cmh_bench.catalog import dataset_path
    from cmh_bench.dataset import write_dataset

    spec = import_spec(name, variant)
    widths = {**spec.widths, "image": None, "text": None} if allow_width else spec.widths
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; --from must be the folder holding the {spec.title} files")
    query, train = (sizes["query"], sizes["train"]) if sizes else (spec.query, spec.train)
    source = find_source(spec, folder)
    image, text, labels, test = read_source(source, folder, widths)
    presets = [p for p in spec.presets if p != "file" or test is not None]
    splits = make_splits(presets, len(labels), query, train, seed=seed, test=test)
    files = ", ".join(f"{role} {source[role]['file']}:{'+'.join(_keys(source[role]))}" for role in ROLES)
    return write_dataset(
        out or dataset_path(spec.dataset),
        name=spec.dataset,
        image=image,
        text=text,
        labels=labels,
        splits=splits,
        class_names=spec.class_names,
        source=f"imported by `cmh-bench data import` from {folder.resolve()} ({source['name']}: {files})",
        description=f"{spec.description} Split presets: {', '.join(presets)} (Q {query}, T {train}; random seed {seed})."
        + _width_note(spec.widths, image, text),
        default_split=spec.default_split,
    )


def _width_note(card_widths: dict, image: np.ndarray, text: np.ndarray) -> str:
    """The description's note on feature widths that differ from the card (imported with ``allow_width``)."""
    found = {"image": image.shape[1], "text": text.shape[1]}
    odd = [f"{role} {found[role]}-d (card: {card_widths[role]})" for role in found if found[role] != card_widths[role]]
    return f" Non-standard feature widths, imported with --allow-width: {', '.join(odd)}." if odd else ""


def find_source(spec: ImportSpec, folder: Path) -> dict:
    """The first source of ``spec`` whose files are all in ``folder``; else UserError naming what is missing."""
    missing_by_source = []
    for source in spec.sources:
        missing: dict[str, list[str]] = {}
        for role in ROLES:
            if not (folder / source[role]["file"]).is_file():
                missing.setdefault(source[role]["file"], []).extend(_keys(source[role]))
        if not missing:
            return source
        files = ", ".join(f"{file} (keys {', '.join(keys)})" for file, keys in missing.items())
        missing_by_source.append(f"{source['name']}: missing {files}")
    raise UserError(f"{folder}: the {spec.title} files are not all there; expected one of: {'; or '.join(missing_by_source)}")


def read_source(source: dict, folder: Path, widths: dict[str, int | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Check and read one source (files relative to ``folder``): (image, text, labels, test rows or
    None), items on axis 0.

    Every shape is checked before any data is read: dimensionality (raw pixels are refused), a common
    item count per part, and ``widths`` (the card's; None: any width).
    """
    keys = {role: _keys(source[role]) for role in ROLES}
    if len({len(k) for k in keys.values()}) != 1:
        raise UserError(f"source {source['name']!r} gives image, text and labels different numbers "
                        "of parts; give each the same parts (KEY1+KEY2)")
    parts = []
    for p in range(len(keys["labels"])):
        part = {role: probe(folder / source[role]["file"], keys[role][p], role) for role in ROLES}
        _orient(part, widths)
        parts.append(part)
    loaded = [{role: m.load() for role, m in part.items()} for part in parts]
    image, text, labels = (_concat([part[role] for part in loaded]) for role in ROLES)
    image = image if image.dtype == np.float16 else image.astype(np.float32, copy=False)
    text = text.astype(np.uint8) if _is_binary(text) else text.astype(np.float32, copy=False)
    if not _is_binary(labels):
        found = np.unique(labels[:1000])[:6].tolist()
        raise UserError(f"{parts[0]['labels'].describe()}: labels must be 0/1 multi-hot, found values such as {found}")
    test = None
    if len(parts) > 1:
        test = np.arange(len(labels) - len(loaded[-1]["labels"]), len(labels), dtype=np.int64)
    return image, text, labels.astype(np.uint8), test


def _keys(entry: dict) -> list[str]:
    key = entry["key"]
    return list(key) if isinstance(key, list) else [key]


def _orient(part: dict[str, Matrix], widths: dict[str, int | None]) -> None:
    """Find the item count shared by the three matrices of one part, mark each one's item axis and
    check its width against ``widths`` (None: any width)."""
    for m in part.values():
        if len(m.shape) != 2:
            if m.role == "image" and len(m.shape) >= 3:
                raise UserError(
                    f"{m.describe()}: holds raw pixels, expected 2-D image features (items x {widths['image'] or 'd'}); "
                    "compute VGG-19 features first with `cmh-bench data extract`"
                )
            raise UserError(f"{m.describe()}: expected a 2-D matrix (items x {_WHAT[m.role]}), found {len(m.shape)} dimensions")
    common = set.intersection(*(set(m.shape) for m in part.values()))
    if len(common) > 1:  # sizes coincide: keep the counts that leave every matrix its expected width
        common = {n for n in common if all(widths[m.role] in (None, _other(m.shape, n)) for m in part.values())}
    if len(common) != 1:
        shapes = "; ".join(m.describe() for m in part.values())
        problem = "no common item count" if not common else f"ambiguous item count {sorted(common)}"
        raise UserError(f"{problem}: the image, text and label matrices must hold the same items; found {shapes}")
    n = common.pop()
    for m in part.values():
        m.items_first = m.shape[0] == n and (m.shape[1] != n or not m.column_major)
        width = m.shape[1] if m.items_first else m.shape[0]
        if widths[m.role] is not None and width != widths[m.role]:
            raise UserError(
                f"{m.describe()}: expected {_WHAT[m.role]} {widths[m.role]} wide (items x {widths[m.role]}), "
                f"found {n} items x {width}; is this the right file for the dataset? "
                + ("(--allow-width accepts other feature widths)" if m.role != "labels" else "")
            )


def _other(shape: tuple[int, int], n: int) -> int:
    """The length of the axis of a 2-D ``shape`` that is not the item axis of length ``n``."""
    return shape[1] if shape[0] == n else shape[0]


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


def _is_binary(array: np.ndarray) -> bool:
    return bool(((array == 0) | (array == 1)).all())
