"""The dataset file: one HDF5 file per dataset, schema "cmh-bench/dataset" version 1.

Layout (see DESIGN.md):

- root attributes: ``schema``, ``schema_version``, ``name``, ``class_names``, ``source``,
  ``description``, ``created_by``, ``default_split``, ``content_sha256``
- ``image`` (N x d_img, float16/float32), ``text`` (N x d_txt; uint8 bag-of-words or float dense),
  ``labels`` (N x C, uint8, clean, binary)
- ``splits/<preset>/{query, train, database}``: int64 index arrays

Every file is validated when it is opened; a violation raises one :class:`UserError` naming the
file and the problem. Features are loaded once into memory as contiguous arrays (no per-item
Dataset/DataLoader): :func:`load_split` returns them for one split preset.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from cmh_bench import __version__
from cmh_bench.atomic import atomic_path
from cmh_bench.errors import UserError

SCHEMA = "cmh-bench/dataset"
SCHEMA_VERSION = 1
SPLIT_PARTS = ("query", "train", "database")
FEATURE_KEYS = ("image", "text", "labels")
_ROWS_PER_CHECK = 16384


@dataclass
class DatasetInfo:
    """What a dataset file holds, read from its attributes and shapes (no feature data)."""

    path: Path
    name: str
    class_names: list[str]
    source: str
    description: str
    created_by: str
    content_sha256: str
    n_items: int
    image_dim: int
    text_dim: int
    image_dtype: str
    text_dtype: str
    default_split: str
    split_sizes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass
class SplitArrays:
    """The features and clean labels of one split part, as contiguous numpy arrays."""

    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    index: np.ndarray  # row numbers in the dataset file

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class LoadedSplit:
    """One split preset of a dataset loaded into memory: query, train and database parts."""

    info: DatasetInfo
    split: str
    query: SplitArrays
    train: SplitArrays
    database: SplitArrays


def content_checksum(image, text, labels, splits: dict[str, dict[str, np.ndarray]]) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes and the split indices (file-layout independent)."""
    digest = hashlib.sha256()
    for key, array in (("image", image), ("text", text), ("labels", labels)):
        array = np.ascontiguousarray(array)
        digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
        for start in range(0, len(array), _ROWS_PER_CHECK):
            digest.update(array[start : start + _ROWS_PER_CHECK].tobytes())
    for preset in sorted(splits):
        for part in SPLIT_PARTS:
            digest.update(f"{preset}/{part}".encode())
            digest.update(np.asarray(splits[preset][part], dtype=np.int64).tobytes())
    return digest.hexdigest()


def write_dataset(
    path: str | Path,
    *,
    name: str,
    image: np.ndarray,
    text: np.ndarray,
    labels: np.ndarray,
    splits: dict[str, dict[str, np.ndarray]],
    class_names: list[str],
    source: str,
    description: str = "",
    default_split: str | None = None,
) -> Path:
    """Validate the arrays and write them as a dataset file, atomically (temp file + rename)."""
    path = Path(path)
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise UserError(f"{path}: labels must be 0/1; fix the label matrix before writing")
        labels = labels.astype(np.uint8)
    splits = {p: {k: np.asarray(v, dtype=np.int64) for k, v in parts.items()} for p, parts in splits.items()}
    default_split = default_split or next(iter(splits), "")
    _check_arrays(str(path), image, text, labels, splits, class_names, default_split)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            attrs = {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "class_names": np.array(class_names, dtype=h5py.string_dtype()),
                "source": source,
                "description": description,
                "created_by": f"cmh-bench {__version__}",
                "default_split": default_split,
                "content_sha256": content_checksum(image, text, labels, splits),
            }
            f.attrs.update(attrs)
            for key, array in (("image", image), ("text", text), ("labels", labels)):
                f.create_dataset(key, data=np.ascontiguousarray(array), track_times=False)
            for preset, parts in splits.items():
                for part in SPLIT_PARTS:
                    f.create_dataset(f"splits/{preset}/{part}", data=parts[part], track_times=False)
    return path


def read_info(path: str | Path) -> DatasetInfo:
    """Open and fully validate a dataset file; return its summary."""
    path = Path(path)
    with _open(path) as f:
        return _validate(path, f)


def load_split(path: str | Path, split: str | None = None) -> LoadedSplit:
    """Validate the file and load one split preset (default: the file's default) into memory."""
    path = Path(path)
    with _open(path) as f:
        info = _validate(path, f)
        split = resolve_split(info, split)
        image, text, labels = (f[key][()] for key in FEATURE_KEYS)
        parts = {}
        for part in SPLIT_PARTS:
            index = f[f"splits/{split}/{part}"][()]
            parts[part] = SplitArrays(
                image=np.ascontiguousarray(image[index]),
                text=np.ascontiguousarray(text[index]),
                labels=np.ascontiguousarray(labels[index]),
                index=index,
            )
    return LoadedSplit(info=info, split=split, **parts)


def resolve_split(info: DatasetInfo, split: str | None) -> str:
    """The split preset to use: ``split``, or the file's default when None; an unknown preset raises UserError."""
    split = split or info.default_split
    if split not in info.split_sizes:
        raise UserError(f"{info.path}: no split preset {split!r}; choose one of {sorted(info.split_sizes)} (--split)")
    return split


@contextlib.contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """The file opened read-only; an unreadable (truncated, damaged) HDF5 file raises UserError."""
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file; check the path or run `cmh-bench data synth` / `data import`")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an HDF5 file; give a cmh-bench dataset file (.h5)")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as error:
        raise UserError(f"{path}: cannot read this HDF5 file ({error}); it is damaged or truncated, write it again") from None


def _attr(f: h5py.File, key: str) -> str:
    return _as_str(f.attrs[key])


def _validate(path: Path, f: h5py.File) -> DatasetInfo:
    where = str(path)
    schema = f.attrs.get("schema")
    if schema is None or _as_str(schema) != SCHEMA:
        raise UserError(f"{where}: not a cmh-bench dataset file (schema {_as_str(schema)!r}, expected {SCHEMA!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{where}: dataset schema version {version}, this cmh-bench reads version {SCHEMA_VERSION}; "
            "re-create the file with this version"
        )
    for key in ("name", "class_names", "source", "default_split"):
        if key not in f.attrs:
            raise UserError(f"{where}: missing root attribute {key!r}; re-create the file with `cmh-bench data pack`, "
                            "which reads its own arrays and splits back (FILE:image, FILE:splits/S/query, ...)")
    for key in FEATURE_KEYS:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise UserError(f"{where}: missing dataset {key!r}; a dataset file needs image, text and labels")
    if "splits" not in f or not len(f["splits"]):
        raise UserError(f"{where}: no split presets under 'splits/'; add at least one (query/train/database)")
    splits = {}
    for preset in f["splits"]:
        group = f["splits"][preset]
        for part in SPLIT_PARTS:
            if part not in group:
                raise UserError(f"{where}: split {preset!r} has no {part!r} index array")
        splits[preset] = {part: group[part][()] for part in SPLIT_PARTS}
    image, text, labels = (f[key] for key in FEATURE_KEYS)
    class_names = [_as_str(c) for c in f.attrs["class_names"]]
    _check_arrays(where, image, text, labels, splits, class_names, _attr(f, "default_split"))
    return DatasetInfo(
        path=path,
        name=_attr(f, "name"),
        class_names=class_names,
        source=_attr(f, "source"),
        description=_as_str(f.attrs.get("description", "")),
        created_by=_as_str(f.attrs.get("created_by", "")),
        content_sha256=_as_str(f.attrs.get("content_sha256", "")),
        n_items=int(labels.shape[0]),
        image_dim=int(image.shape[1]),
        text_dim=int(text.shape[1]),
        image_dtype=str(image.dtype),
        text_dtype=str(text.dtype),
        default_split=_attr(f, "default_split"),
        split_sizes={p: {k: int(len(v)) for k, v in parts.items()} for p, parts in splits.items()},
    )


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_arrays(where, image, text, labels, splits, class_names, default_split) -> None:
    """Raise UserError on the first violation of the format's rules (shapes, values, splits)."""
    for key, array in (("image", image), ("text", text), ("labels", labels)):
        if len(array.shape) != 2:
            raise UserError(f"{where}: {key!r} must be a 2-D matrix (items x dims), has shape {array.shape}")
    n = labels.shape[0]
    for key, array in (("image", image), ("text", text)):
        if array.shape[0] != n:
            raise UserError(f"{where}: {key!r} has {array.shape[0]} rows but labels has {n}; rows must be the same items")
    if image.dtype not in (np.float16, np.float32, np.float64):
        raise UserError(f"{where}: 'image' must be float16/float32, is {image.dtype}")
    if labels.dtype != np.uint8:
        raise UserError(f"{where}: 'labels' must be uint8 0/1, is {labels.dtype}")
    if labels.shape[1] != len(class_names):
        raise UserError(f"{where}: labels have {labels.shape[1]} classes but class_names lists {len(class_names)}")
    for start in range(0, n, _ROWS_PER_CHECK):
        stop = min(n, start + _ROWS_PER_CHECK)
        for key, array in (("image", image), ("text", text)):
            block = np.asarray(array[start:stop])
            if block.dtype.kind == "f" and not np.isfinite(block).all():
                raise UserError(f"{where}: {key!r} contains NaN or inf (rows {start}..{stop - 1}); clean the features")
        if np.asarray(labels[start:stop]).max(initial=0) > 1:
            raise UserError(f"{where}: 'labels' has values other than 0 and 1; labels must be binary multi-hot")
    if not splits:
        raise UserError(f"{where}: no split presets; add at least one (query/train/database)")
    if default_split not in splits:
        raise UserError(f"{where}: default split {default_split!r} is not among the presets {sorted(splits)}")
    for preset, parts in splits.items():
        for part in SPLIT_PARTS:
            if part not in parts:
                raise UserError(f"{where}: split {preset!r} has no {part!r} index array")
            index = np.asarray(parts[part])
            if index.ndim != 1 or index.size == 0:
                raise UserError(f"{where}: split {preset}/{part} is empty; every part needs at least one item")
            if index.dtype.kind not in "iu":
                raise UserError(f"{where}: split {preset}/{part} must hold integer row indices, has {index.dtype}")
            if index.min() < 0 or index.max() >= n:
                raise UserError(f"{where}: split {preset}/{part} has indices outside 0..{n - 1}")
            if np.unique(index).size != index.size:
                raise UserError(f"{where}: split {preset}/{part} repeats an index; indices must be unique")
        if np.intersect1d(parts["query"], parts["database"]).size:
            raise UserError(f"{where}: split {preset!r}: query and database overlap; they must be disjoint")
