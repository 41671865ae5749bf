"""Named matrices in the containers researchers hold: ``.npy``, MATLAB v5 and HDF5 (MATLAB v7.3 included).

A *reference* names one matrix: ``FILE`` (a ``.npy`` file, or a MATLAB / HDF5 file holding exactly one
matrix) or ``FILE:KEY`` (the matrix stored under KEY, an HDF5 path such as ``splits/nrch/query``
included). :func:`probe` reads the shape and the storage order without loading the data;
:meth:`Matrix.load` reads it. MATLAB v7.3 files store matrices column-major, so an items x d matrix
shows up as d x items in h5py: ``column_major`` says so (a ``MATLAB_class`` attribute), and callers
that know the item count set ``items_first`` (see cmh_bench.importers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from cmh_bench.errors import UserError

_ITEMS_PER_READ = 8192


@dataclass
class Matrix:
    """One stored matrix: where it is, its stored shape and storage order."""

    role: str  # what the caller reads it as (e.g. "image", "labels"), for messages
    file: Path
    key: str | None  # None for a .npy file
    shape: tuple[int, ...]
    container: str  # "npy", "hdf5" (MATLAB v7.3, .h5, .h5py) or "mat" (MATLAB v5, read with scipy.io)
    column_major: bool  # written by MATLAB v7.3: the stored shape is the transpose of the MATLAB shape
    items_first: bool = True  # False: items are on axis 1 of the stored matrix

    def describe(self) -> str:
        where = self.file.name if self.key is None else f"{self.file.name} key {self.key!r}"
        return f"{where} (shape {self.shape})"

    def load(self) -> np.ndarray:
        """Read the matrix, items on axis 0, C-contiguous.

        A transposed HDF5 matrix is read in blocks of items, so that memory peaks at one copy.
        """
        if self.container == "npy":
            array = np.load(self.file, mmap_mode="r", allow_pickle=False)
            return np.ascontiguousarray(array if self.items_first else array.T)
        if self.container == "hdf5":
            with h5py.File(self.file, "r") as f:
                stored = f[self.key]
                if self.items_first or len(self.shape) != 2:
                    return stored[()]
                array = np.empty(stored.shape[::-1], dtype=stored.dtype)
                for start in range(0, len(array), _ITEMS_PER_READ):
                    array[start : start + _ITEMS_PER_READ] = stored[:, start : start + _ITEMS_PER_READ].T
                return array
        array = scipy.io.loadmat(self.file, variable_names=[self.key])[self.key]
        if hasattr(array, "toarray"):  # a MATLAB sparse matrix
            array = array.toarray()
        return np.ascontiguousarray(array if self.items_first else array.T)


def parse_ref(ref: str) -> tuple[Path, list[str] | None]:
    """``FILE``, ``FILE:KEY`` or ``FILE:KEY1+KEY2`` (parts stacked in that order) -> (file, keys or None).

    A reference that is an existing file is a file without a key, even if its name holds a colon.
    """
    text = str(ref)
    head, sep, keys = text.rpartition(":")
    if Path(text).expanduser().is_file() or not sep or not head:
        return Path(text).expanduser(), None
    if not keys or "" in keys.split("+"):
        raise UserError(f"{ref!r}: write a matrix as FILE or FILE:KEY (parts as FILE:KEY1+KEY2)")
    return Path(head).expanduser(), keys.split("+")


def absolute_ref(ref: str) -> str:
    """``ref`` with its file as an absolute path (so that any worker finds it), its keys kept."""
    file, keys = parse_ref(ref)
    return str(file.resolve()) + (f":{'+'.join(keys)}" if keys else "")


def list_matrices(path: Path, role: str) -> dict[str | None, tuple[int, ...]]:
    """Every matrix of the file at ``path`` (HDF5 groups walked), key -> stored shape; a ``.npy``
    file gives ``{None: shape}``. A missing or unreadable file raises UserError (``role``: what it is for)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file ({role}); check the path")
    if path.suffix == ".npy":
        try:
            return {None: tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)}
        except (ValueError, OSError) as error:
            raise UserError(f"{path}: not a readable .npy file ({error}); save it with numpy.save") from None
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                return _hdf5_matrices(f)
        except OSError as error:
            raise UserError(f"{path}: a damaged HDF5 file ({error}); check the file") from None
    try:
        return {name: tuple(shape) for name, shape, _ in scipy.io.whosmat(path)}
    except (MatReadError, ValueError, OSError, IndexError) as error:  # scipy's reader fails these ways on damaged files
        raise UserError(f"{path}: not a MATLAB (v5 or v7.3), HDF5 or .npy file ({error}); check the file") from None


def probe(path: Path, key: str | None, role: str) -> Matrix:
    """The shape and storage order of matrix ``key`` of ``path`` (``None``: the file's only matrix),
    without reading the data; a missing or unreadable file or key raises UserError naming what it holds."""
    path = Path(path)
    held = list_matrices(path, role)
    if None in held:
        if key is not None:
            raise UserError(f"{path}: a .npy file holds one matrix; drop ':{key}'")
        return Matrix(role, path, None, held[None], "npy", column_major=False)
    key = _only_key(path, key, held, role)
    if key not in held:
        listing = ", ".join(f"{k} {s}" for k, s in held.items())
        raise UserError(f"{path}: no key {key!r} ({role}); the file holds: {listing or 'no matrices'}")
    if not h5py.is_hdf5(path):
        return Matrix(role, path, key, held[key], "mat", column_major=False)
    with h5py.File(path, "r") as f:
        column_major = "MATLAB_class" in f[key].attrs
    return Matrix(role, path, key, held[key], "hdf5", column_major=column_major)


def _hdf5_matrices(f: h5py.File) -> dict[str, tuple[int, ...]]:
    """Every dataset of an HDF5 file (groups walked), by path, with its shape."""
    found: dict[str, tuple[int, ...]] = {}

    def visit(name: str, node) -> None:  # returning a value would stop the walk
        if isinstance(node, h5py.Dataset):
            found[name] = tuple(node.shape)

    f.visititems(visit)
    return found


def _only_key(path: Path, key: str | None, held: dict, role: str) -> str:
    """``key``, or the file's only matrix when ``key`` is None (else UserError asking for FILE:KEY)."""
    if key is not None:
        return key
    if len(held) == 1:
        return next(iter(held))
    listing = ", ".join(f"{k} {s}" for k, s in held.items())
    raise UserError(f"{path}: holds {len(held)} matrices, say which is the {role} as FILE:KEY; it holds: {listing or 'none'}")
