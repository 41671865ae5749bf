"""Split presets: sizes, disjointness, determinism, errors."""

import numpy as np
import pytest

from cmh_bench.errors import UserError
from cmh_bench.splits import PRESETS, make_splits

N, Q, T = 100, 10, 30
TEST = np.arange(85, 100)


def all_presets(seed=0):
    return make_splits(PRESETS, N, Q, T, seed=seed, test=TEST)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_is_valid(preset):
    parts = all_presets()[preset]
    assert set(parts) == {"query", "train", "database"}
    for index in parts.values():
        assert index.dtype == np.int64
        assert np.all(np.diff(index) > 0)  # sorted, unique
        assert index.min() >= 0 and index.max() < N
    assert np.intersect1d(parts["query"], parts["database"]).size == 0
    assert np.union1d(parts["query"], parts["database"]).size == N  # every item is query or database
    assert np.isin(parts["train"], parts["database"]).all()  # training items are retrievable


def test_sizes():
    splits = all_presets()
    sizes = {p: tuple(len(splits[p][k]) for k in ("query", "train", "database")) for p in PRESETS}
    assert sizes == {"nrch": (Q, T, N - Q), "ucch": (Q, T, N - Q), "random": (Q, T, N - Q), "file": (15, T, 85)}


def test_sequential_presets_follow_the_field():
    splits = all_presets()
    nrch, ucch, file = splits["nrch"], splits["ucch"], splits["file"]
    np.testing.assert_array_equal(nrch["query"], np.arange(Q))
    np.testing.assert_array_equal(nrch["train"], np.arange(Q, Q + T))
    np.testing.assert_array_equal(nrch["database"], np.arange(Q, N))
    np.testing.assert_array_equal(ucch["query"], np.arange(N - Q, N))
    np.testing.assert_array_equal(ucch["train"], np.arange(T))
    np.testing.assert_array_equal(ucch["database"], np.arange(N - Q))
    np.testing.assert_array_equal(file["query"], TEST)
    np.testing.assert_array_equal(file["train"], np.arange(T))


def test_ucch_equals_file_when_the_test_part_has_q_rows():
    splits = make_splits(("ucch", "file"), N, Q, T, test=np.arange(N - Q, N))
    for part in ("query", "train", "database"):
        np.testing.assert_array_equal(splits["ucch"][part], splits["file"][part])


def test_random_is_deterministic_and_seeded():
    a, b, c = all_presets(0)["random"], all_presets(0)["random"], all_presets(1)["random"]
    for part in ("query", "train", "database"):
        np.testing.assert_array_equal(a[part], b[part])
    assert not np.array_equal(a["query"], c["query"])
    assert not np.array_equal(a["query"], np.arange(Q))


def test_presets_keep_the_order_asked_for():
    assert list(make_splits(("random", "nrch"), N, Q, T)) == ["random", "nrch"]


@pytest.mark.parametrize(
    "args, message",
    [
        ((("nrch",), 20, 10, 11), "do not fit"),
        ((("ucch",), 20, 0, 5), "at least 1"),
        ((("file",), 20, 5, 5), "own test part"),
        ((("bogus",), 20, 5, 5), "unknown split preset"),
    ],
)
def test_errors(args, message):
    with pytest.raises(UserError, match=message):
        make_splits(*args)


def test_file_split_rejects_out_of_range_test_rows():
    with pytest.raises(UserError, match="within 0..19"):
        make_splits(("file",), 20, 5, 5, test=np.arange(15, 25))


def test_validation_split_is_seeded_disjoint_and_halved():
    from cmh_bench.splits import validation_split

    fit, queries, database = validation_split(2000, 0.1)
    assert (len(fit), len(queries), len(database)) == (1800, 100, 100)
    assert np.array_equal(np.sort(np.concatenate([fit, queries, database])), np.arange(2000))
    again = validation_split(2000, 0.1)
    assert all(np.array_equal(a, b) for a, b in zip((fit, queries, database), again))
    other = validation_split(2000, 0.1, seed=1)
    assert not np.array_equal(queries, other[1])
    none = validation_split(2000, 0.0)
    assert np.array_equal(none[0], np.arange(2000)) and len(none[1]) == len(none[2]) == 0
    with pytest.raises(UserError, match="outside \\[0, 1\\)"):
        validation_split(2000, -0.1)


def test_validation_fraction_cell_then_card_then_default():
    from dataclasses import replace

    from cmh_bench.cards import get_card
    from cmh_bench.cell import Cell
    from cmh_bench.splits import validation_fraction

    card = get_card("toy")
    cell = Cell(dataset="toy", method="dcmh", bits=16)
    assert validation_fraction(cell, None) == validation_fraction(cell, card) == 0.1
    assert validation_fraction(cell, replace(card, validation_fraction=0.2)) == 0.2
    assert validation_fraction(replace(cell, val_fraction=0.0), replace(card, validation_fraction=0.2)) == 0.0
