"""The codes file: hash codes and labels of one run in HDF5, readable from any codebase.

Layout (root attributes ``schema = "cmh-bench/codes"``, ``schema_version = 1``):

    query/image_codes, query/text_codes        (Q, L) int8 ±1, or (Q, ⌈L/8⌉) uint8 packed bits
    database/image_codes, database/text_codes  (N, L) int8 ±1, or (N, ⌈L/8⌉) uint8 packed bits
    query/labels, database/labels              (Q, C), (N, C) uint8 0/1
    histograms/{i2t,t2i}/{n,r}                 optional, (Q, L+1) int64 distance histograms
    histograms/{i2t,t2i}/stable_ap             optional, (Q,) float64 AP with ties by database index

Packed bits are ``np.packbits(codes > 0, axis=1)`` (padding bits zero) with an integer attribute
``bits = L`` on the dataset. Row q of both query code sets and of query/labels is the same pair;
likewise for the database. i2t ranks database/text_codes for each query/image_codes row, t2i ranks
database/image_codes for each query/text_codes row.

To write one from another codebase with h5py::

    with h5py.File("codes.h5", "w") as f:
        f.attrs["schema"], f.attrs["schema_version"] = "cmh-bench/codes", 1
        f["query/image_codes"] = np.where(query_image >= 0, 1, -1).astype(np.int8)
        ...  # the other three code sets the same way
        f["query/labels"], f["database/labels"] = query_labels.astype(np.uint8), db_labels.astype(np.uint8)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from cmh_bench.atomic import atomic_path
from cmh_bench.errors import UserError
from cmh_bench.hamming import PackedCodes, pack_codes, pack_labels, to_numpy
from cmh_bench.metrics import DEFAULT_KS, DIRECTIONS, Retrieval, evaluate

SCHEMA = "cmh-bench/codes"
SCHEMA_VERSION = 1
CODE_KEYS = ("query/image_codes", "query/text_codes", "database/image_codes", "database/text_codes")
LABEL_KEYS = ("query/labels", "database/labels")
HISTOGRAM_KEYS = ("n", "r", "stable_ap")
_FORMAT_HINT = "write it with cmh_bench.codes_file.write_codes_file (layout in the cmh_bench.codes_file docstring)"


@dataclass(frozen=True)
class CodesFile:
    """The contents of a codes file: codes come back packed whatever their stored form, labels uint8."""

    retrieval: Retrieval
    histograms: dict | None  # {"i2t": {"n", "r"[, "stable_ap"]}, "t2i": {...}} if stored


def write_codes_file(
    path: str | os.PathLike,
    retrieval: Retrieval,
    *,
    histograms: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    packed: bool = False,
) -> Path:
    """Write a codes file atomically (readers see the old file or the complete new one) and return its path.

    ``retrieval``'s codes are ±1 arrays / tensors or ``PackedCodes``; they are stored as int8 ±1, or as packed bits
    when ``packed=True`` (8x smaller). ``histograms`` is the second value of
    ``evaluate(..., keep_histograms=True)``: {"i2t": {"n", "r"[, "stable_ap"]}, "t2i": {...}}.
    """
    path = Path(path)
    r = retrieval
    codes = dict(zip(CODE_KEYS, map(pack_codes, (r.query_image, r.query_text, r.db_image, r.db_text))))
    labels = {key: to_numpy(matrix) for key, matrix in zip(LABEL_KEYS, (r.query_labels, r.db_labels))}
    for matrix in labels.values():
        pack_labels(matrix)  # raises ValueError unless a 0/1 matrix
    histograms = {
        direction: {name: to_numpy(arrays[name]) for name in HISTOGRAM_KEYS if arrays.get(name) is not None}
        for direction, arrays in (histograms or {}).items()
    }
    _check_shapes(path, codes, labels, histograms)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        file.attrs["schema"] = SCHEMA
        file.attrs["schema_version"] = SCHEMA_VERSION
        for key, packed_codes in codes.items():
            if packed:
                file[key] = packed_codes.to_bytes()
                file[key].attrs["bits"] = packed_codes.n_bits
            else:
                file[key] = _signs(packed_codes)
        for key, matrix in labels.items():
            file[key] = matrix.astype(np.uint8)
        for direction, arrays in histograms.items():
            for name, array in arrays.items():
                file[f"histograms/{direction}/{name}"] = array
    return path


def _signs(codes: PackedCodes) -> np.ndarray:
    """±1 int8 (N, L) codes from packed ones."""
    return np.unpackbits(codes.to_bytes(), axis=1, count=codes.n_bits).astype(np.int8) * 2 - 1


def read_codes_file(path: str | os.PathLike) -> CodesFile:
    """Read and validate a codes file; any problem raises ``UserError`` naming the file, problem and fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; give the path of a codes file ({_FORMAT_HINT})")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an HDF5 file; a codes file is HDF5 ({_FORMAT_HINT})")
    with h5py.File(path, "r") as file:
        _check_schema(path, file)
        for key in CODE_KEYS + LABEL_KEYS:
            if not isinstance(file.get(key), h5py.Dataset):
                raise UserError(f"{path}: missing dataset '{key}'; a codes file needs {', '.join(CODE_KEYS + LABEL_KEYS)}")
        codes = {key: _read_codes(path, file[key]) for key in CODE_KEYS}
        labels = {key: _read_labels(path, file[key]) for key in LABEL_KEYS}
        histograms = _read_histograms(file)
    _check_shapes(path, codes, labels, histograms)
    return CodesFile(Retrieval(*(codes[key] for key in CODE_KEYS), *(labels[key] for key in LABEL_KEYS)), histograms)


def _check_schema(path: Path, file: h5py.File) -> None:
    schema = file.attrs.get("schema")
    if isinstance(schema, bytes):
        schema = schema.decode()
    if schema != SCHEMA:
        raise UserError(f"{path}: root attribute schema is {schema!r}, expected {SCHEMA!r}; {_FORMAT_HINT}")
    version = file.attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{path}: schema_version is {version} but this cmh-bench reads version {SCHEMA_VERSION}; "
            "write the file with this version's write_codes_file"
        )


def _read_codes(path: Path, dataset: h5py.Dataset) -> PackedCodes:
    key = dataset.name.lstrip("/")
    values = dataset[()]
    try:
        if values.dtype == np.uint8:
            if "bits" not in dataset.attrs:
                raise ValueError(
                    "uint8 codes are packed bits and need an integer attribute 'bits' (the code length); "
                    "store ±1 codes as int8 instead"
                )
            return PackedCodes.from_bytes(values, int(dataset.attrs["bits"]))
        return pack_codes(values)
    except ValueError as error:
        raise UserError(
            f"{path}: dataset '{key}': {error}; store codes as np.where(x >= 0, 1, -1).astype(np.int8)"
        ) from None


def _read_labels(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    key = dataset.name.lstrip("/")
    values = dataset[()]
    try:
        pack_labels(values)
    except ValueError as error:
        raise UserError(f"{path}: dataset '{key}': {error}; store labels as a 0/1 uint8 matrix (items x classes)") from None
    return values.astype(np.uint8)


def _read_histograms(file: h5py.File) -> dict | None:
    if "histograms" not in file:
        return None
    stored = file["histograms"]
    return {
        direction: {name: stored[direction][name][()] for name in HISTOGRAM_KEYS if name in stored[direction]}
        for direction in DIRECTIONS
        if direction in stored
    }


def _check_shapes(path: Path, codes: dict, labels: dict, histograms: dict | None) -> None:
    """Rows agree within query/ and within database/, all codes have one length, labels one class list."""
    rows = {**{key: len(value) for key, value in codes.items()}, **{key: len(value) for key, value in labels.items()}}
    for side in ("query/", "database/"):
        side_rows = {key: count for key, count in rows.items() if key.startswith(side)}
        if len(set(side_rows.values())) > 1:
            found = ", ".join(f"{key}: {count}" for key, count in side_rows.items())
            raise UserError(f"{path}: row counts differ ({found}); row i of each must be the same item")
    bits = {key: value.n_bits for key, value in codes.items()}
    if len(set(bits.values())) > 1:
        found = ", ".join(f"{key}: {n_bits}" for key, n_bits in bits.items())
        raise UserError(f"{path}: code lengths differ ({found}); all four code sets must have the same number of bits")
    classes = {key: value.shape[1] for key, value in labels.items()}
    if len(set(classes.values())) > 1:
        found = ", ".join(f"{key}: {count}" for key, count in classes.items())
        raise UserError(f"{path}: label columns differ ({found}); both must use the same class list")
    expected = (rows["query/labels"], bits["query/image_codes"] + 1)
    for direction, arrays in (histograms or {}).items():
        for name in ("n", "r"):
            if name in arrays and arrays[name].shape != expected:
                raise UserError(
                    f"{path}: histograms/{direction}/{name} has shape {arrays[name].shape}, expected (Q, L+1) = "
                    f"{expected}; rewrite the file with write_codes_file(..., histograms=...) or drop the histograms group"
                )


def evaluate_codes_file(
    path: str | os.PathLike, *, ks: Sequence[int] = DEFAULT_KS, keep_histograms: bool = False, stable_ap: bool = True
):
    """``cmh_bench.metrics.evaluate`` on the codes and labels of a codes file (stored histograms are ignored)."""
    return evaluate(read_codes_file(path).retrieval, ks=ks, keep_histograms=keep_histograms, stable_ap=stable_ap)
