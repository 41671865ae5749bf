"""Split presets: which rows of a dataset are the queries, the training set and the retrieval database.

Every preset returns ``{"query", "train", "database"}`` int64 index arrays, each sorted, with query and
database disjoint. ``n`` is the number of items, ``query`` (Q) and ``train`` (T) the sizes (the
dataset card's ``sizes``). Presets:

- ``nrch`` — sequential, as the NRCH / SCBCH code (and DCMH) do: query = rows 0..Q-1,
  train = rows Q..Q+T-1, database = rows Q..n-1 (it contains the training set).
- ``ucch`` — as the UCCH code (and its DJSRH / JDSH ancestry) does: query = the last Q rows,
  database = all other rows (0..n-Q-1), train = the first T rows of the database (rows 0..T-1).
- ``random`` — seeded: Q random rows are the queries, T random rows of the rest the training set,
  database = all non-query rows (it contains the training set, as in ``nrch``).
- ``file`` — the source file's own split (IAPR TC-12's ``*Database`` / ``*Test`` parts, MS-COCO's
  ``train_*`` / ``test_*`` parts): query = the file's test part, database = the other rows,
  train = the first T rows of the database. Needs the test rows (``test``).

The importers store rows in the order the field concatenates them (database part, then test part),
so ``ucch`` equals ``file`` whenever the file's test part has Q rows.

**The validation part** (:func:`validation_split`), for every preset of every dataset file: a seeded
fraction (default 10 %, set per dataset card by ``validation_fraction`` and per run by
``--val-fraction``) of the *training* rows is held out of training; the method trains on the rest.
The held-out rows are split in two disjoint halves: validation queries and a validation database,
so that neither side was trained on. Query and database rows of the preset are untouched. The draw
depends only on the number of training rows, the fraction and ``VALIDATION_SEED``, so every method,
noise seed and training seed of a dataset holds out the same items. Fraction 0 holds out nothing
(the protocol without validation).
"""

from __future__ import annotations

import numpy as np

from cmh_bench.errors import UserError

PRESETS: tuple[str, ...] = ("nrch", "ucch", "random", "file")
DEFAULT_VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0


def make_splits(
    presets, n: int, query: int, train: int, *, seed: int = 0, test: np.ndarray | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """The named ``presets`` for ``n`` items with Q = ``query`` and T = ``train``, in the given order.

    ``seed`` drives ``random``; ``test`` (the rows of the file's own test part) is needed by ``file``.
    An unknown preset or sizes that do not fit raise UserError.
    """
    splits = {}
    for preset in presets:
        if preset == "nrch":
            splits[preset] = nrch_split(n, query, train)
        elif preset == "ucch":
            splits[preset] = ucch_split(n, query, train)
        elif preset == "random":
            splits[preset] = random_split(n, query, train, seed)
        elif preset == "file":
            if test is None:
                raise UserError("split preset 'file' needs a source file with its own test part; choose nrch, ucch or random")
            splits[preset] = file_split(n, test, train)
        else:
            raise UserError(f"unknown split preset {preset!r}; choose from {', '.join(PRESETS)}")
    return splits


def nrch_split(n: int, query: int, train: int) -> dict[str, np.ndarray]:
    """Sequential: query = rows 0..Q-1, train = rows Q..Q+T-1, database = rows Q..n-1."""
    _check_sizes("nrch", n, query, train, n - query)
    rows = np.arange(n, dtype=np.int64)
    return {"query": rows[:query], "train": rows[query : query + train], "database": rows[query:]}


def ucch_split(n: int, query: int, train: int) -> dict[str, np.ndarray]:
    """UCCH's loader: query = the last Q rows, database = rows 0..n-Q-1, train = rows 0..T-1."""
    _check_sizes("ucch", n, query, train, n - query)
    rows = np.arange(n, dtype=np.int64)
    return {"query": rows[n - query :], "train": rows[:train], "database": rows[: n - query]}


def random_split(n: int, query: int, train: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded: Q random query rows, T random training rows among the others, database = all non-query rows."""
    _check_sizes("random", n, query, train, n - query)
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n).astype(np.int64)
    return {
        "query": np.sort(order[:query]),
        "train": np.sort(order[query : query + train]),
        "database": np.sort(order[query:]),
    }


def file_split(n: int, test: np.ndarray, train: int) -> dict[str, np.ndarray]:
    """The file's own split: query = its ``test`` rows, database = the other rows, train = the first T of them."""
    test = np.unique(np.asarray(test, dtype=np.int64))
    if test.size == 0 or test[0] < 0 or test[-1] >= n:
        raise UserError(f"split 'file': the test part must be a non-empty set of rows within 0..{n - 1}")
    database = np.setdiff1d(np.arange(n, dtype=np.int64), test)
    _check_sizes("file", n, test.size, train, database.size)
    return {"query": test, "train": database[:train], "database": database}


def _check_sizes(preset: str, n: int, query: int, train: int, database: int) -> None:
    """Raise UserError unless Q >= 1, T >= 1, and both fit: Q + T <= n and T <= the database size."""
    if query < 1 or train < 1:
        raise UserError(f"split {preset!r}: query ({query}) and train ({train}) sizes must be at least 1")
    if query + train > n or train > database:
        raise UserError(
            f"split {preset!r}: query {query} + train {train} rows do not fit in {n} items "
            f"(database {database}); use smaller sizes or the full dataset"
        )


def validation_fraction(cell, card) -> float:
    """The cell's share of training items held out for validation: the cell's, else the card's, else the default."""
    if cell.val_fraction is not None:
        return cell.val_fraction
    if card is not None and card.validation_fraction is not None:
        return card.validation_fraction
    return DEFAULT_VALIDATION_FRACTION


def check_validation_fraction(fraction: float) -> None:
    """Raise UserError unless 0 <= ``fraction`` < 1 (the share of training rows held out for validation)."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"validation fraction {fraction:g} is outside [0, 1); give e.g. --val-fraction 0.1 (0: no validation)")


def validation_split(n_train: int, fraction: float, seed: int = VALIDATION_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, validation queries, validation database): sorted, disjoint positions 0..n_train-1 of the training rows.

    The held-out part is the first V = round(fraction * n_train) positions of a PCG64(seed) permutation:
    its first ⌊V/2⌋ are the validation queries, the rest the validation database; the other positions
    are fitted on. Fraction 0 gives every position to fitting. A fraction outside [0, 1), or one that
    holds out fewer than 2 items (fraction > 0) or leaves nothing to fit, raises UserError.

    >>> fit, queries, database = validation_split(10, 0.4)
    >>> len(fit), len(queries), len(database), sorted({*fit, *queries, *database}) == list(range(10))
    (6, 2, 2, True)
    """
    check_validation_fraction(fraction)
    n_val = int(round(fraction * n_train))
    if fraction > 0 and (n_val < 2 or n_val >= n_train):
        raise UserError(
            f"validation fraction {fraction:g} of {n_train} training items holds out {n_val}; it must hold out at least "
            f"2 (one query, one database item) and leave one to train on: use a fraction between {2 / n_train:.3g} and "
            f"{1 - 1 / n_train:.3g}, or 0 for no validation"
        )
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n_train).astype(np.int64)
    return np.sort(order[n_val:]), np.sort(order[: n_val // 2]), np.sort(order[n_val // 2 : n_val])
