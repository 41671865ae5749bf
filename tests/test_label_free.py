"""The label-free contract (UCCH, DJSRH, DGCPN): the harness hands such a method no labels, its
records do not depend on the noise, and the report shows it in its own group, ranked among its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cmh_bench.cell import Cell
from cmh_bench.contract import check_method
from cmh_bench.errors import UserError
from cmh_bench.harness import run_cell
from cmh_bench.method import LabelAccessError, LabelFreeTrainSet
from cmh_bench.methods import BUILTIN_METHODS
from cmh_bench.record import CellOutcome, write_record
from cmh_bench.registry import get_method, load_plugin_file
from cmh_bench.report import render_report
from cmh_bench.results import load
from cmh_bench.validation import check_hparams

LABEL_FREE = ("ucch", "djsrh", "dgcpn")
READER = str(Path(__file__).parent / "plugins" / "label_free_reader.py")
FEW_EPOCHS = {"ucch": "3", "djsrh": "3", "dgcpn": "2"}
NOISE_FIELDS = ("noise", "cell", "seconds", "memory")  # what may differ between two noise rates


def test_the_label_free_train_set_refuses_its_labels():
    train = LabelFreeTrainSet(torch.zeros(5, 3), torch.zeros(5, 2))
    assert len(train) == 5 and train.features("text").shape == (5, 2)
    with pytest.raises(LabelAccessError):
        train.labels
    assert "LabelFreeTrainSet(n=5" in repr(train)


def test_the_registry_lists_exactly_the_three_as_label_free_and_their_classes_agree():
    assert tuple(row[0] for row in BUILTIN_METHODS if row[4] == "label-free") == LABEL_FREE
    for name in LABEL_FREE:
        assert get_method(name).load().uses_labels is False


def test_a_label_free_method_that_reads_labels_fails_its_cell():
    cell = Cell(dataset="toy", method="label-free-reader", bits=16, rate=0.5, plugins=(READER,), threads=1)
    with pytest.raises(LabelAccessError):
        run_cell(cell)


def toy_cell(method: str, rate: float, noise: str = "pair-swap") -> Cell:
    return Cell(dataset="toy", method=method, bits=16, noise=noise, rate=rate, profile="quick",
                hparams=(("epochs", FEW_EPOCHS[method]),), threads=1)


@pytest.fixture(scope="module")
def records() -> dict:
    """Records of each label-free method on toy at pair-swap 0.2 and 0.8 and at redundant 0.5."""
    cells = [toy_cell(m, r, n) for m in LABEL_FREE for n, r in (("pair-swap", 0.2), ("pair-swap", 0.8), ("redundant", 0.5))]
    return {cell: run_cell(cell) for cell in cells}


@pytest.mark.parametrize("method", LABEL_FREE)
def test_records_at_two_noise_rates_and_models_are_identical_apart_from_the_noise_fields(records, method):
    low, high, other = (rec for cell, rec in records.items() if cell.method == method)
    assert low["method"]["labels_used"] == "none"
    assert low["noise"]["requested_rate"] != high["noise"]["requested_rate"]
    assert strip_noise(low) == strip_noise(high) == strip_noise(other)
    # no labels to select an epoch by: val is the final epoch, scored (for `tune`) by the noisy-validation MAP there
    val, final = low["selections"]["val"], low["selections"]["final"]
    assert (val["epoch"], val["metrics"]) == (final["epoch"], final["metrics"])
    assert val["score"] == low["epochs"][-1]["val_map"] and val["score"] != high["selections"]["val"]["score"]


def strip_noise(record: dict) -> dict:
    """The record without what depends on the noisy labels: the noise fields, and the noisy-validation
    scores (the val rule's score and the epochs' val_map), which only `cmh-bench tune` reads."""
    kept = {k: v for k, v in record.items() if k not in NOISE_FIELDS}
    kept["epochs"] = [{k: v for k, v in row.items() if k != "val_map"} for row in record["epochs"]]
    kept["selections"] = {rule: {k: v for k, v in pick.items() if not (rule == "val" and k == "score")}
                          for rule, pick in record["selections"].items()}
    return kept


def test_the_report_ranks_label_free_rows_in_their_own_group(records, tmp_path):
    results = tmp_path / "results"
    for cell, record in records.items():
        write_record(results, cell, CellOutcome(dict(record)))
    floor = Cell(dataset="toy", method="floor-constant", bits=16, rate=0.2, profile="quick", threads=1)
    write_record(results, floor, CellOutcome(run_cell(floor)))
    frame = load(results)
    assert set(frame[frame.method.isin(LABEL_FREE)].group) == {"label-free"}
    render_report(results, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    section = text[text.index("### toy · pair-swap"):]
    table = section[: section.index("\n\n", section.index("| "))]
    heading = table.index("label-free (no labels read")
    assert heading < table.index("reference rows, not ranked")
    best = max(LABEL_FREE, key=lambda m: records[toy_cell(m, 0.2)]["selections"]["val"]["metrics"]["mean"]["map"])
    best_row = next(line for line in table.splitlines() if line.startswith(f"| {best}+hp-"))
    assert best_row.count("**") == 4  # bold in both columns among the label-free rows (no ranked row here)
    assert "**Label-free rows**" in text


def test_nacd_rows_are_reported_under_a_redundant_table_of_a_real_dataset(records, tmp_path):
    """A ucch record relabelled as MIRFlickr, redundant 1.0, 32 bits: its table carries NACD's published rows."""
    source = next(rec for cell, rec in records.items() if cell.method == "ucch")
    cell = Cell(dataset="mirflickr", method="ucch", bits=32, noise="redundant", rate=1.0, profile="quick")
    write_record(tmp_path / "results", cell, CellOutcome({**source, "cell": {**cell.key(), "method_version": "1"}}))
    render_report(tmp_path / "results", tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "### mirflickr · redundant" in text
    measured = text.split("## Published numbers")[0]  # the closing section repeats other datasets' published rows
    rows = {line.split("|")[1].strip(): line for line in measured.splitlines() if "(reported) [1]" in line}
    assert set(rows) == {f"{m} (reported) [1]" for m in ("dgcpn", "djsrh", "nacd", "nrch", "rshnl", "ucch")}
    assert rows["ucch (reported) [1]"].endswith(" .710 |") and rows["dgcpn (reported) [1]"].endswith(" .692 |")  # NACD Table 1, Flickr
    assert "[1] dgcpn, djsrh, nacd, nrch, rshnl, ucch as published: Neighbor-aware Contrastive Disambiguation" in text


def test_a_label_free_role_on_a_class_that_reads_labels_is_refused_up_front():
    load_plugin_file(READER)
    with pytest.raises(UserError, match="has role label-free but .* reads labels; set uses_labels = False"):
        check_hparams("label-free-in-name-only", "quick", {})


def test_cmh_bench_check_passes_a_label_free_method_and_compares_two_rates():
    rows = check_method("djsrh")
    assert all(passed for _, passed, _ in rows), rows
    assert ("label-free: codes independent of the noise rate", True, "pair-swap 0.5 vs 0.2, same seeds") in rows
