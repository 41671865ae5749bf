"""The clean meta set track (cmh_bench.metaset): what a method receives, the key, path and record, the
up-front checks, and the report's group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import Cell
from cmh_bench.dataset import load_split
from cmh_bench.errors import UserError
from cmh_bench.executors import InProcessExecutor
from cmh_bench.grid import Grid
from cmh_bench.harness import run_cell
from cmh_bench.metaset import META_SEED, draw_meta, meta_summary
from cmh_bench.noise import inject_noise
from cmh_bench.registry import get_method, load_plugin_file
from cmh_bench.report import render_report
from cmh_bench.results import load
from cmh_bench.runner import run_grid
from cmh_bench.splits import validation_split

READER = str(Path(__file__).parent / "plugins" / "meta_reader.py")


@pytest.fixture(scope="module")
def reader():
    load_plugin_file(READER)
    return get_method("meta-reader").load()


def test_draw_is_seeded_nested_and_within_the_fitted_items():
    first, again = draw_meta(100, 10), draw_meta(100, 10)
    assert np.array_equal(first, again) and len(set(first)) == 10 and first.min() >= 0 and first.max() < 100
    assert set(draw_meta(100, 5)) <= set(first)  # a larger meta set contains the smaller one
    assert not np.array_equal(draw_meta(100, 10, seed=META_SEED + 1), first)
    with pytest.raises(UserError, match="trains on only 100 items"):
        draw_meta(100, 101)


def test_the_method_gets_clean_labels_for_the_meta_items_only(reader):
    cell = Cell(dataset="toy", method="meta-reader", bits=16, rate=0.8, profile="quick", clean_meta=20, plugins=(READER,))
    record = run_cell(cell)
    got = reader.received
    data = load_split(ensure_dataset("toy"))
    fit, val_queries, val_database = validation_split(len(data.train), 0.1)
    noisy = inject_noise("pair-swap", data.train.labels, 0.8, 0)
    meta = got["meta_index"].numpy()
    # the training labels are the noisy ones for every item, the meta items included
    assert np.array_equal(got["labels"].numpy(), noisy.labels[fit].astype(np.float32))
    # the meta labels are the clean labels of exactly those fitted items, corrupted ones included
    assert np.array_equal(got["meta_labels"].numpy(), data.train.labels[fit[meta]].astype(np.float32))
    assert noisy.corrupted[fit[meta]].sum() >= 5  # at rate 0.8 most meta items differ from their noisy labels
    assert np.array_equal(meta, draw_meta(len(fit), 20))
    assert not set(fit[meta]) & (set(val_queries) | set(val_database))  # never the validation part
    # the record says so
    assert record["clean_meta"] == meta_summary(meta) and record["clean_meta"]["size"] == 20
    assert record["method"]["labels_used"] == "noisy+clean-meta"
    assert record["cell"]["clean_meta"] == 20
    assert "meta-reader+meta-20" in cell.relative_path().as_posix()


def test_meta_cells_never_collide_with_noisy_only_ones():
    plain = Cell(dataset="toy", method="nrch", bits=16)
    meta = Cell(dataset="toy", method="nrch", bits=16, clean_meta=5)
    assert plain.relative_path() != meta.relative_path() and "clean_meta" not in plain.key()


def test_grid_cells_take_the_option_else_the_methods_default(reader):
    grid = Grid(methods=("meta-reader", "nrch"), datasets=("toy",), rates=(0.5,), cell_options={"plugins": (READER,)})
    assert {c.method: c.clean_meta for c in grid.cells()} == {"meta-reader": 7, "nrch": None}
    sized = Grid(methods=("meta-reader",), datasets=("toy",), rates=(0.5,), cell_options={"clean_meta": 30})
    assert [c.clean_meta for c in sized.cells()] == [30]


@pytest.mark.parametrize("methods, size, message", [
    (("nrch",), 5, "method 'nrch' cannot use a clean meta set"),
    (("meta-reader",), 0, "method 'meta-reader' needs a clean meta set"),
    (("meta-reader",), -3, "--clean-meta -3: give a number of training items"),
    (("meta-reader",), 136, "--clean-meta 136: the method trains on only 135 items"),
])
def test_bad_meta_options_are_refused_before_any_cell_runs(reader, tmp_path, methods, size, message):
    grid = Grid(methods=methods, datasets=("toy",), rates=(0.5,), bits=(16,),
                cell_options={"clean_meta": size, "plugins": (READER,)})
    with pytest.raises(UserError, match=message):
        run_grid(grid, tmp_path / "results", InProcessExecutor())
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_report_puts_meta_rows_in_their_own_group(reader, tmp_path):
    grid = Grid(methods=("meta-reader", "random-codes"), datasets=("toy",), rates=(0.5,), bits=(16,),
                cell_options={"plugins": (READER,), "val_every": 0})
    run_grid(grid, tmp_path / "results", InProcessExecutor())
    groups = load(tmp_path / "results").set_index("method").group.to_dict()
    assert groups == {"meta-reader": "clean-meta", "random-codes": "reference"}
    render_report(tmp_path / "results", tmp_path / "board")
    text = (tmp_path / "board" / "README.md").read_text()
    table = text[text.index("### toy"):]
    heading = table.index("used a clean meta set (+meta-N")
    assert table.index("meta-reader+every-0+meta-7") > heading > 0 and "**Clean meta set rows**" in text
    assert "--methods meta-reader --datasets toy --noise pair-swap --rates 0.5 --bits 16 --seeds 0 --val-every 0 --clean-meta 7" in text


def test_train_set_without_meta_has_none():
    from cmh_bench.method import LabelFreeTrainSet, TrainSet

    assert TrainSet(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1)).meta is None
    assert LabelFreeTrainSet(torch.zeros(2, 1), torch.zeros(2, 1)).meta is None
