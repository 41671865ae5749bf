"""Model selection: the validation part sees only training items and their noisy labels, and every
rule's numbers come from one training run (cmh_bench.selection, cmh_bench.harness)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmh_bench import selection as selection_module
from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import SELECTIONS, Cell
from cmh_bench.dataset import load_split
from cmh_bench.harness import run_cell
from cmh_bench.method import HashingMethod
from cmh_bench.noise import inject_noise
from cmh_bench.record import CellOutcome, read_record, write_record
from cmh_bench.selection import Selection
from cmh_bench.splits import validation_split

CELL = Cell(dataset="toy", method="dcmh", bits=16, rate=0.8, seed=3, threads=1, val_every=1,
            hparams=(("epochs", "3"), ("hidden", "16")))


@pytest.fixture
def instrumented(monkeypatch):
    """Run CELL with every Retrieval handed to selection's evaluate and every item set handed to encode
    recorded; return (record, evaluations, encoded, data, noisy labels, fit rows, held-out rows)."""
    evaluations, encoded, fits = [], [], []
    evaluate, encode_items, fit = selection_module.evaluate, HashingMethod.encode_items, HashingMethod.fit

    def recording_evaluate(retrieval, **options):
        result = evaluate(retrieval, **options)
        evaluations.append((retrieval, result))
        return result

    def recording_encode(self, items, modality, batch_size=8192):
        encoded.append(items)
        return encode_items(self, items, modality, batch_size)

    def counting_fit(self, train, ctx):
        fits.append(len(train))
        return fit(self, train, ctx)

    monkeypatch.setattr(selection_module, "evaluate", recording_evaluate)
    monkeypatch.setattr(HashingMethod, "encode_items", recording_encode)
    monkeypatch.setattr(HashingMethod, "fit", counting_fit)
    record = run_cell(CELL)
    data = load_split(ensure_dataset("toy"))
    noisy = inject_noise("pair-swap", data.train.labels, CELL.rate, CELL.seed).labels
    fit_rows, queries, database = validation_split(len(data.train), 0.1)
    return record, evaluations, encoded, fits, data, noisy, fit_rows, queries, database


def test_validation_reads_only_training_items_and_noisy_labels_for_rule_val(instrumented):
    record, evaluations, encoded, fits, data, noisy, fit_rows, queries, database = instrumented
    assert (len(queries), len(database), len(fit_rows)) == (7, 8, 135) and record["dataset"]["sizes"]["validation"] == 15
    assert not set(queries) & set(database) and not (set(queries) | set(database)) & set(fit_rows)
    validation = [(r, result) for r, result in evaluations if len(r.query_labels) == len(queries)]
    test = [(r, result) for r, result in evaluations if len(r.query_labels) == len(data.query)]
    assert len(validation) == 2 * 3 and len(test) >= 3  # noisy and clean labels at each of the 3 epochs; test: + final metrics
    noisy_pairs = [(r, result) for r, result in validation if np.array_equal(r.query_labels, noisy[queries])]
    clean_pairs = [(r, result) for r, result in validation if np.array_equal(r.query_labels, data.train.labels[queries])]
    assert not np.array_equal(noisy[queries], data.train.labels[queries])  # 80 % noise: the two label sets differ
    assert len(noisy_pairs) == len(clean_pairs) == 3
    for r, _ in noisy_pairs:
        assert np.array_equal(r.db_labels, noisy[database])  # the database side is noisy too
    for r, _ in clean_pairs:
        assert np.array_equal(r.db_labels, data.train.labels[database])
    # the val rule's score of every epoch is the MAP of the noisy-label evaluation, val-clean's of the clean one
    assert [row["val_map"] for row in record["epochs"]] == [result["mean"]["map"] for _, result in noisy_pairs]
    assert [row["val_clean_map"] for row in record["epochs"]] == [result["mean"]["map"] for _, result in clean_pairs]
    # the codes evaluated there are encodings of held-out training rows only, without clean labels
    train_image = torch.from_numpy(data.train.image.astype(np.float32))
    validation_inputs = [items for items in encoded if items.image.shape[0] in (len(queries), len(database))]
    assert len(validation_inputs) == 2 * 2 * 3  # query and database, both modalities, 3 epochs
    for items in validation_inputs:
        rows = queries if items.image.shape[0] == len(queries) else database
        assert torch.equal(items.image, train_image[rows]) and items.clean_labels is None
    query_image = torch.from_numpy(data.query.image.astype(np.float32))
    assert not any(items.image.shape == query_image.shape and torch.equal(items.image, query_image)
                   for items in validation_inputs)


def test_every_rule_comes_from_one_fit_and_matches_the_epoch_log(instrumented):
    record, _, _, fits, *_ = instrumented
    assert fits == [135]  # one fit per cell, on the training items minus the validation part
    selections = record["selections"]
    assert list(selections) == list(SELECTIONS)
    rows = {row["epoch"]: row for row in record["epochs"]}
    assert selections["final"]["epoch"] == 2
    best = {"val": "val_map", "val-clean": "val_clean_map"}
    for rule, key in best.items():
        top = max(row[key] for row in rows.values())
        chosen = selections[rule]["epoch"]
        assert rows[chosen][key] == top == selections[rule]["score"]
        assert chosen == min(e for e, row in rows.items() if row[key] == top)  # earliest on ties
    on_test = max(rows, key=lambda e: ((rows[e]["map_i2t"] + rows[e]["map_t2i"]) / 2, -e))
    assert selections["best-on-test"]["epoch"] == on_test
    for rule, chosen in selections.items():  # each rule's test metrics are those of its epoch's codes
        assert chosen["metrics"]["i2t"]["map"] == pytest.approx(rows[chosen["epoch"]]["map_i2t"], abs=1e-12), rule


def test_fraction_zero_is_the_protocol_without_validation(tmp_path):
    cell = Cell(dataset="toy", method="dcmh", bits=16, rate=0.5, threads=1, val_fraction=0.0,
                hparams=(("epochs", "2"), ("hidden", "8")))
    record = run_cell(cell)
    assert list(record["selections"]) == ["final", "best-on-test"]
    assert record["dataset"]["sizes"]["train"] == 150 and record["validation"]["size"] == 0
    assert "val_map" not in record["epochs"][-1]
    path = write_record(tmp_path, cell, CellOutcome(record))
    assert read_record(path)["lacks"] == ["val", "val-clean"]
    assert str(cell.relative_path()).endswith("+val-0/seed0.json")


def test_selection_keeps_the_earliest_best_epoch_per_rule_and_the_last_as_final(monkeypatch):
    scores = iter([{"val": 0.5, "val-clean": 0.6}, {"val": 0.7, "val-clean": 0.6}, {"val": 0.7, "val-clean": 0.4}])
    tests = iter([0.3, 0.9, 0.1])
    monkeypatch.setattr(selection_module, "validation_scores", lambda method, part: next(scores))
    monkeypatch.setattr(selection_module, "encode_parts", lambda method, parts: {"epoch codes": object()})
    monkeypatch.setattr(selection_module, "evaluate_keeping_threads",
                        lambda retrieval, **options: {d: {"map": value} for d, value in zip(("i2t", "t2i", "mean"), [next(tests)] * 3)})
    monkeypatch.setattr(selection_module, "as_retrieval", lambda codes, q, db: None)
    selection = Selection({}, (None, None), validation=object())
    logs = [selection.evaluate_epoch(None, epoch) for epoch in range(3)]
    assert {rule: chosen.epoch for rule, chosen in selection.chosen.items()} == {"val": 1, "val-clean": 0, "best-on-test": 1, "final": 2}
    assert selection.chosen["val"].score == 0.7 and selection.chosen["final"].score is None
    assert logs[0] == {"map_i2t": 0.3, "map_t2i": 0.3, "val_map": 0.5, "val_clean_map": 0.6}


def test_saved_codes_are_the_ranked_selections_and_reproduce_its_metrics(tmp_path):
    from cmh_bench.codes_file import evaluate_codes_file
    from cmh_bench.executors import InProcessExecutor
    from cmh_bench.runner import Grid, run_grid

    grid = Grid(methods=("dcmh",), datasets=("toy",), rates=(0.8,), bits=(16,), seeds=(3,),
                cell_options={"threads": 1, "val_every": 1, "save_codes": True, "hparams": CELL.hparams})
    summary = run_grid(grid, tmp_path, InProcessExecutor())
    assert summary.ok == 1
    path = tmp_path / grid.cells()[0].relative_path()
    record = read_record(path)
    recomputed = evaluate_codes_file(path.with_suffix(".h5"))
    assert recomputed == record["selections"]["val"]["metrics"]
