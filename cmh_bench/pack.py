"""``cmh-bench data pack``: a dataset file from image / text / label arrays a researcher already has.

Each array is a reference (cmh_bench.matrices): ``FILE`` (``.npy``, or a MATLAB / HDF5 file with one
matrix) or ``FILE:KEY`` in ``.npy``, MATLAB v5, MATLAB v7.3 or HDF5, of any width; ``FILE:A+B``
stacks parts, the last being the file's own test part. The item axis is found as in ``data import``
(the count common to the three matrices), and the same conversions and checks apply. The split is
one of:

- index files (``index={"query": REF, "train": REF, "database": REF}``), written as preset ``given``;
  MATLAB-made 1-based indices with ``index_base=1``;
- split presets of cmh_bench.splits (``nrch``, ``ucch``, ``random``) with sizes Q and T;
- the file's own parts (preset ``file``: query = the last part, train = the first T other rows,
  all of them by default).

Class names default to ``class00``…. The file is validated and written atomically (write_dataset):
a failed pack writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmh_bench.errors import UserError
from cmh_bench.importers import ROLES, default_class_names, read_source
from cmh_bench.matrices import parse_ref, probe
from cmh_bench.splits import PRESETS, make_splits

GIVEN_SPLIT = "given"


def pack_dataset(
    name: str,
    image: str,
    text: str,
    labels: str,
    out: str | Path | None = None,
    *,
    presets: tuple[str, ...] = (),
    query: int | None = None,
    train: int | None = None,
    index: dict[str, str] | None = None,
    index_base: int = 0,
    class_names: str | list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Read the three arrays, make the split, validate and write dataset ``name`` to ``out``
    (default: the data directory); return the path. Any problem raises one UserError, nothing written."""
    from cmh_bench.catalog import dataset_path
    from cmh_bench.dataset import write_dataset

    if index and presets:
        raise UserError("give the split either as index files (--query-index ...) or as presets (--split), not both")
    refs = {"image": image, "text": text, "labels": labels}
    source = {"name": f"the arrays of {name}"}
    for role, ref in refs.items():
        file, keys = parse_ref(ref)
        source[role] = {"file": str(file.resolve()), "key": keys or [None]}
    image_array, text_array, label_array, test = read_source(source, Path("/"), dict.fromkeys(ROLES))
    n = len(label_array)
    if index:
        splits = {GIVEN_SPLIT: {part: read_index(index.get(part), part, n, index_base) for part in ("query", "train", "database")}}
        split_text = f"split {GIVEN_SPLIT} from {', '.join(f'{p} {index[p]}' for p in index)}"
    else:
        presets = presets or (("file",) if test is not None else ("nrch",))
        splits = make_splits(presets, n, *_sizes(presets, n, query, train, test), seed=seed, test=test)
        split_text = f"split presets {', '.join(presets)} (Q {query}, T {train}; random seed {seed})"
    files = ", ".join(f"{role} {source[role]['file']}" + (f":{'+'.join(source[role]['key'])}" if source[role]["key"] != [None] else "")
                      for role in refs)
    return write_dataset(
        out or dataset_path(name),
        name=name,
        image=image_array,
        text=text_array,
        labels=label_array,
        splits=splits,
        class_names=read_class_names(class_names, label_array.shape[1]),
        source=f"packed by `cmh-bench data pack` from {files}",
        description=f"{name}: {n} items, image {image_array.shape[1]}-d, text {text_array.shape[1]}-d, "
                    f"{label_array.shape[1]} classes; {split_text}.",
        default_split=next(iter(splits)),
    )


def _sizes(presets, n: int, query: int | None, train: int | None, test: np.ndarray | None) -> tuple[int, int]:
    """(Q, T) for the presets: ``file`` alone needs neither (T defaults to every non-test row); the others need both."""
    sized = [p for p in presets if p != "file"]
    if sized and (query is None or train is None):
        raise UserError(f"split preset {sized[0]!r} needs the sizes: pass --query Q --train T")
    if "file" in presets and test is None:
        raise UserError("split preset 'file' needs the arrays in parts (FILE:TRAINKEY+TESTKEY, the last part is the "
                        f"query part); or choose one of {', '.join(p for p in PRESETS if p != 'file')}")
    if train is None:
        train = n - len(test)
    return (query if query is not None else len(test)), train


def read_index(ref: str | None, part: str, n: int, base: int = 0) -> np.ndarray:
    """The row indices of split part ``part`` from reference ``ref`` (1-D, or one row / column of a
    matrix), as int64 rows counted from 0 (``base`` 1: the file counts from 1, as MATLAB does)."""
    if ref is None:
        raise UserError(f"index files given without one for the {part} part: pass --{part}-index FILE[:KEY]")
    file, keys = parse_ref(ref)
    if keys is not None and len(keys) > 1:
        raise UserError(f"{ref!r}: an index file has one index array; give FILE or FILE:KEY")
    matrix = probe(file, keys[0] if keys else None, f"{part} indices")
    values = np.asarray(matrix.load())
    if values.ndim > 2 or (values.ndim == 2 and 1 not in values.shape):
        raise UserError(f"{matrix.describe()}: {part} indices must be a vector, found shape {values.shape}")
    values = values.ravel()
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    if values.dtype.kind not in "iu":
        raise UserError(f"{matrix.describe()}: {part} indices must be whole numbers, found {values.dtype}")
    rows = values.astype(np.int64) - base
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = int(values[(rows < 0) | (rows >= n)][0])
        raise UserError(
            f"{matrix.describe()}: {part} index {bad} is outside {base}..{n - 1 + base} ({n} items, counted from {base}); "
            + ("MATLAB indices count from 1: pass --index-base 1" if base == 0 and bad == n else "check the index file")
        )
    return rows


def read_class_names(value: str | list[str] | None, classes: int) -> list[str]:
    """Class names: a list, a text file with one name per line, or a comma-separated string; None:
    ``class00``…; their number must be the label matrix's column count ``classes``."""
    if value is None:
        return default_class_names(classes)
    if isinstance(value, str) and Path(value).expanduser().is_file():
        names = [line.strip() for line in Path(value).expanduser().read_text(encoding="utf-8").splitlines() if line.strip()]
    elif isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    else:
        names = list(value)
    if len(names) != classes:
        raise UserError(f"{len(names)} class names given for {classes} label columns; give one name per column")
    return names
