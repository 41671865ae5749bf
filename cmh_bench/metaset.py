"""The clean meta set: a few training items handed to a method with their clean labels (MGSH's track).

A method that learns from a small clean set (``HashingMethod.clean_meta_default``: the size it needs,
in items; None: it cannot use one) gets, through ``TrainSet.meta``, a seeded subset of the items it
trains on, with those items' clean labels, and nothing else clean: its ``TrainSet.labels`` stay the
noisy ones for every item, the meta items included. The meta items are drawn from the fitted part of
the training items only (never the validation part, never a query or database item), by a PCG64
permutation seeded with ``META_SEED`` over the fitted positions, so every method, noise seed and
training seed of a dataset sees the same meta items for a size (and a larger size contains the smaller).

The size is a recorded key field of the cell (``Cell.clean_meta``, ``--clean-meta N``; path
``+meta-N``), so a cell with a meta set never collides with a noisy-only one. The record's
``clean_meta`` block holds the size, the seed and the SHA-256 of the meta positions; its
``method.labels_used`` is ``noisy+clean-meta``, and the report groups such rows apart from the
noisy-only methods, never ranked with them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cmh_bench.errors import UserError

if TYPE_CHECKING:
    import torch

META_SEED = 0
LABELS_USED = "noisy+clean-meta"  # the record's method.labels_used of a cell with a clean meta set


@dataclass
class MetaSet:
    """The clean meta set as a method sees it: ``index`` (M,) positions into its TrainSet, ``labels`` (M, C)
    the clean labels of those items (on the device)."""

    index: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.index)


def meta_size(method_cls, requested: int | None) -> int | None:
    """The meta-set size of a cell: ``requested`` (``--clean-meta``; 0 = none) if given, else the method's
    declared default (None for a method that cannot use one)."""
    if requested is None:
        return method_cls.clean_meta_default
    return requested or None


def check_meta_option(method: str, requested: int | None) -> None:
    """A ``--clean-meta`` size (None: the method's default) is a count of items >= 0, and the cell's
    resolved size (:func:`meta_size`) suits the method (:func:`check_meta_size`)."""
    from cmh_bench.registry import get_method

    if requested is not None and requested < 0:
        raise UserError(f"--clean-meta {requested}: give a number of training items >= 1 (0: no clean meta set)")
    method_cls = get_method(method).load()
    check_meta_size(method, method_cls, meta_size(method_cls, requested))


def check_meta_size(method: str, method_cls, size: int | None) -> None:
    """A method that needs a clean meta set has one, and one that cannot use it has none."""
    needs = method_cls.clean_meta_default
    if size and needs is None:
        raise UserError(f"--clean-meta {size}: method {method!r} cannot use a clean meta set; "
                        f"run it in a separate command without --clean-meta")
    if not size and needs is not None:
        raise UserError(f"method {method!r} needs a clean meta set: drop --clean-meta 0 "
                        f"(default {needs} items) or give --clean-meta N with N >= 1")


def check_meta_fits(size: int | None, n_fit: int) -> None:
    """A meta set of ``size`` items fits in the ``n_fit`` training items the method trains on."""
    if size is not None and size > n_fit:
        raise UserError(f"--clean-meta {size}: the method trains on only {n_fit} items (the training part minus "
                        f"the validation part); give at most {n_fit}")


def draw_meta(n_fit: int, size: int, seed: int = META_SEED) -> np.ndarray:
    """The meta positions: the first ``size`` of a PCG64(``seed``) permutation of 0..n_fit-1, sorted.

    >>> draw_meta(10, 3).tolist() == sorted(np.random.Generator(np.random.PCG64(0)).permutation(10)[:3].tolist())
    True
    """
    check_meta_fits(size, n_fit)
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n_fit).astype(np.int64)
    return np.sort(order[:size])


def meta_summary(positions: np.ndarray, seed: int = META_SEED) -> dict:
    """The record's ``clean_meta`` block: size, seed and the SHA-256 of the positions (int64, little-endian)."""
    digest = hashlib.sha256(np.asarray(positions, dtype="<i8").tobytes()).hexdigest()
    return {"size": int(len(positions)), "seed": seed, "indices_sha256": digest}
