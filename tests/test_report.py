"""Tests of the leaderboard renderer (cmh_bench.report, cmh_bench.plots).

The records are written by hand (``make_record`` mirrors ``cmh_bench.record.build_record``) at the
paths of ``Cell.relative_path``: three seeds per cell, a failed cell, a missing cell, a cell with two
seeds, reference rows, upper bounds, the four selection rules of every record, noise-detection
histograms, per-epoch curves and two profiles. ``v1_record`` writes records of result schema 1 (one
rule per record, no validation part), which the report still reads.

The golden-file test pins the whole README (tests/golden/README.md). After an intended change of
the output, regenerate it with

    CMH_BENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden

and review the diff of tests/golden/README.md before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmh_bench.cell import Cell
from cmh_bench.errors import UserError
from cmh_bench.report import render_report
from cmh_bench.results import load

GOLDEN = Path(__file__).parent / "golden" / "README.md"
JITTER = (-0.01, 0.0, 0.01)  # added to both directions of seed 0, 1, 2
ENVIRONMENT = {"cmh_bench": "0.1.0", "git_revision": "0123456789abcdef", "python": "3.11.9", "torch": "2.14.1",
               "numpy": "2.4.6", "platform": "Linux-6.1-x86_64-with-glibc2.36", "cpu": "x86_64", "torch_threads": 2}
REPORTED = pd.DataFrame(
    [("scbch", "mirflickr", "pair-swap", 0.2, 16, 0.80), ("scbch", "mirflickr", "pair-swap", 0.8, 32, 0.70),
     ("scbch", "mirflickr", "pair-swap", 0.8, 16, 0.72), ("nrch", "coco", "pair-swap", 0.2, 16, 0.66)],
    columns=["method", "dataset", "noise", "rate", "bits", "map"],
).assign(source="Peng et al., AAAI 2026", protocol="best epoch on the test queries")


SHIFTS = {"val": (0.0, 1), "final": (-0.02, 3), "val-clean": (0.01, 1), "best-on-test": (0.02, 2)}  # rule: (MAP shift, epoch)


def metrics(i2t: float, t2i: float) -> dict:
    """Test metrics per direction, with extra keys the report must ignore."""
    direction = lambda v: {"map": v, "map_optimistic": v + 0.01, "map_pessimistic": v - 0.01, "map_stable": v,
                           "map@k": {"100": v}, "p@k": {"100": v}, "queries_without_relevant": 0}
    return {"i2t": direction(i2t), "t2i": direction(t2i), "mean": {"map": (i2t + t2i) / 2}}


def make_record(cell: Cell, i2t: float, t2i: float, *, role: str = "method", labels_used: str = "noisy",
                detection: dict | None = None, epochs: list | None = None) -> dict:
    """A successful record shaped like build_record's: rule ``val`` has MAP (i2t, t2i), the other rules
    are shifted by ``SHIFTS``."""
    return {
        "schema": "cmh-bench/result", "schema_version": 2, "status": "ok",
        "cell": {**cell.key(), "method_version": "1"},
        "method": {"role": role, "paper": "a paper", "source": "built-in", "variant": {}, "labels_used": labels_used,
                   "hparams": {"epochs": 4}},
        "dataset": {"name": cell.dataset, "split": "default", "sha256": "f" * 64,
                    "sizes": {"query": 100, "train": 450, "validation": 50, "database": 900}},
        "validation": {"fraction": 0.1, "seed": 0, "size": 50, "queries": 25, "database": 25, "fit_size": 450, "every": 5},
        "noise": {"model": cell.noise, "version": "1", "seed": cell.effective_noise_seed, "requested_rate": cell.rate},
        "selections": {rule: {"epoch": epoch, "score": None, "metrics": metrics(i2t + shift, t2i + shift)}
                       for rule, (shift, epoch) in SHIFTS.items()},
        "epochs": epochs or [{"epoch": 0, "loss": 1.0}],
        "noise_detection": detection,
        "seconds": {"train": 1.5, "total": 2.0},
        "memory": {"process_peak_rss_mib": 300.0},
        "environment": {**ENVIRONMENT, "device": "cpu"},
    }


def v1_record(cell: Cell, i2t: float, t2i: float, rule: str) -> dict:
    """A successful record of result schema 1: top-level metrics of its one rule, the cell's ``selection``."""
    record = make_record(cell, i2t, t2i)
    for key in ("selections", "validation"):
        del record[key]
    record["cell"] = {**{k: v for k, v in record["cell"].items() if not k.startswith("val_")}, "selection": rule}
    return {**record, "schema_version": 1, "metrics": metrics(i2t, t2i),
            "selection": {"rule": rule, "best_epoch": 2 if rule == "best-on-test" else None}}


def failed_record(cell: Cell, message: str) -> dict:
    """A failed record shaped like failed_record's."""
    return {"schema": "cmh-bench/result", "schema_version": 2, "status": "failed", "cell": cell.key(),
            "error": {"type": "RuntimeError", "message": message, "traceback": "Traceback ...\n"},
            "environment": ENVIRONMENT}


def write(root: Path, cell: Cell, record: dict) -> None:
    path = root / cell.relative_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def write_cell(root: Path, method: str, rate: float, bits: int, base: float, *, seeds=(0, 1, 2), profile="quick",
               dataset="mirflickr", **extra) -> None:
    """Records of one cell for ``seeds``: I2T = base + jitter, T2I = base + 0.02 + jitter (so the mean is base + 0.01 + jitter)."""
    for seed in seeds:
        cell = Cell(dataset=dataset, method=method, bits=bits, rate=rate, seed=seed, profile=profile)
        jitter = 0.0 if extra.get("role") in ("reference", "upper-bound") else JITTER[seed]
        write(root, cell, make_record(cell, base + jitter, base + 0.02 + jitter, **extra))


def detection(rate: float, seed: int) -> dict:
    return {"weight_auc": 0.9 - rate / 4 + seed / 100, "edges": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
            "clean": [0, 1, 2, 5, 12], "corrupted": [6, 5, 3, 1, 0], "mean_clean": 0.9, "mean_corrupted": 0.6}


def curve(base: float) -> list[dict]:
    """Four epochs of a memorising run: MAP falls after epoch 1, the weight AUC rises."""
    return [{"epoch": e, "loss": 1.0 / (e + 1), "weight_auc": 0.6 + 0.05 * e, "map_i2t": base + 0.02 * min(e, 1) - 0.02 * max(e - 1, 0),
             "map_t2i": base + 0.02 + 0.02 * min(e, 1) - 0.02 * max(e - 1, 0)} for e in range(4)]


SCBCH = {(0.2, 16): 0.70, (0.2, 32): 0.72, (0.8, 16): 0.60, (0.8, 32): 0.62}
RSHNL = {(0.2, 16): 0.695, (0.2, 32): 0.60, (0.8, 16): 0.64}  # (0.8, 32) missing; (0.2, 32) has two seeds
DCMH = {(0.2, 16): 0.50, (0.2, 32): 0.52, (0.8, 16): 0.30}  # (0.8, 32) failed


def write_fixture(root: Path) -> None:
    """The record set of the tests (see the module docstring)."""
    for (rate, bits), base in SCBCH.items():
        for seed in (0, 1, 2):
            cell = Cell(dataset="mirflickr", method="scbch", bits=bits, rate=rate, seed=seed, profile="quick")
            record = make_record(cell, base + JITTER[seed], base + 0.02 + JITTER[seed], detection=detection(rate, seed),
                                 epochs=curve(base + JITTER[seed]))
            write(root, cell, record)
    for (rate, bits), base in RSHNL.items():
        write_cell(root, "rshnl", rate, bits, base, seeds=(0, 1) if (rate, bits) == (0.2, 32) else (0, 1, 2))
    for (rate, bits), base in DCMH.items():
        write_cell(root, "dcmh", rate, bits, base)
    for seed in (0, 1, 2):
        write(root, Cell(dataset="mirflickr", method="dcmh", bits=32, rate=0.8, seed=seed, profile="quick"),
              failed_record(Cell(dataset="mirflickr", method="dcmh", bits=32, rate=0.8, seed=seed, profile="quick"),
                            "CUDA out of memory | tried to allocate <2 GiB>\nsecond line"))
    for rate, bits in SCBCH:
        write_cell(root, "floor-constant", rate, bits, 0.53, role="reference")
        write_cell(root, "label-oracle", rate, bits, 0.89, role="upper-bound")
        write_cell(root, "scbch-clean", rate, bits, 0.84, role="upper-bound", labels_used="clean")
    write_cell(root, "scbch", 0.8, 16, 0.74, seeds=(0,), profile="paper")
    write_cell(root, "nrch", 0.8, 16, 0.73, seeds=(0,), profile="paper")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """The fixture's records rendered once: results dir, out dir, written files, README text."""
    root = tmp_path_factory.mktemp("report")
    write_fixture(root / "results")
    written = render_report(root / "results", root / "out", reported=REPORTED)
    return {"results": root / "results", "out": root / "out", "written": written,
            "markdown": (root / "out" / "README.md").read_text(encoding="utf-8")}


def section(markdown: str, profile: str) -> str:
    """The text of one profile's section."""
    start = markdown.index(f"## Profile `{profile}`")
    end = markdown.find("\n## Profile", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def table_after(text: str, heading: str, skip: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    """The (skip+1)-th pipe table after ``heading``: its header and {row label: cells}."""
    header, rows = table_rows(text, heading, skip)
    return header, dict(rows)


def rows_with_labels(text: str, heading: str, skip: int = 0) -> list[tuple[str, list[str]]]:
    """The (label, cells) rows of the (skip+1)-th pipe table after ``heading``, labels possibly repeated."""
    return table_rows(text, heading, skip)[1]


def table_rows(text: str, heading: str, skip: int = 0) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The (skip+1)-th pipe table after ``heading``: its header and its (row label, cells) rows in order."""
    lines = text[text.index(heading):].splitlines()
    blocks, current = [], []
    for line in lines:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    block = blocks[skip]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    return split(block[0]), [(split(line)[0], split(line)[1:]) for line in block[2:]]


def mean_table(rendered, profile="quick"):
    return table_after(section(rendered["markdown"], profile), "### mirflickr · pair-swap")


def by_hand(base: float, seeds=(0, 1, 2)) -> str:
    """mean ± std over seeds of the per-seed mean of I2T and T2I, computed without the report's code."""
    values = [base + 0.01 + JITTER[s] for s in seeds]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.3f}".lstrip("0") + " ± " + f"{std:.3f}".lstrip("0")


def test_load_records_one_row_per_record(rendered):
    frame = load(rendered["results"])
    assert len(frame) == len(list(rendered["results"].rglob("*.json")))
    row = frame[(frame.entry == "scbch") & (frame.profile == "quick") & (frame.rate == 0.2) & (frame.bits == 16) & (frame.seed == 1)].iloc[0]
    assert row["map"] == pytest.approx(0.71) and row.map_i2t == pytest.approx(0.70) and row.map_t2i == pytest.approx(0.72)
    assert (row.status, row.role, row.labels_used, row.selection, row.group, row.device) == ("ok", "method", "noisy", "val", "ranked", "cpu")
    assert row["map@final"] == pytest.approx(0.69) and row["epoch@best-on-test"] == 2 and row.lacks == ()
    assert row.weight_auc == pytest.approx(0.86) and len(row.epochs) == 4
    failed = frame[frame.status == "failed"]
    assert set(failed.entry) == {"dcmh"} and set(failed.role) == {"method"}  # role from dcmh's other records
    assert failed.error.iloc[0].startswith("RuntimeError: CUDA out of memory")
    groups = frame.groupby("entry").group.first().to_dict()
    assert groups == {"scbch": "ranked", "rshnl": "ranked", "dcmh": "ranked", "nrch": "ranked", "floor-constant": "reference",
                      "label-oracle": "upper-bound", "scbch-clean": "upper-bound"}


def test_cells_are_mean_and_sample_std_over_seeds(rendered):
    header, rows = mean_table(rendered)
    assert header == ["method", "20% · 16 bit", "20% · 32 bit", "80% · 16 bit", "80% · 32 bit"]
    assert rows["scbch"][1] == "**" + by_hand(0.72) + "**" == "**.730 ± .010**"
    assert rows["dcmh"][0] == by_hand(0.50) == ".510 ± .010"
    assert rows["rshnl"][1] == by_hand(0.60, seeds=(0, 1)) + " (n=2)" == ".605 ± .007 (n=2)"
    assert rows["floor-constant"][0] == ".540 ± .000"


def test_best_in_bold_and_ties_marked(rendered):
    _, rows = mean_table(rendered)
    # 20% · 16: scbch .710 best; rshnl .705 ± .010 (3 seeds) is not significantly lower (Welch p ≈ .29)
    assert rows["scbch"][0] == "**.710 ± .010**" and rows["rshnl"][0] == ".705 ± .010 ≈"
    # 80% · 16: rshnl .650 best; scbch .610 is significantly lower (p ≈ .004); dcmh far lower
    assert rows["rshnl"][2] == "**.650 ± .010**" and rows["scbch"][2] == ".610 ± .010" and rows["dcmh"][2] == ".310 ± .010"
    # only ranked rows are ever bold, though the upper bounds are higher
    for label in ("label-oracle", "scbch-clean", "floor-constant", "scbch (reported) [1]"):
        assert not any("**" in c or "≈" in c for c in rows[label]), label
    bold_per_column = [sum("**" in row[j] for row in rows.values()) for j in range(4)]
    assert bold_per_column == [1, 1, 1, 1]


def test_row_groups_ranked_first_then_separated_unranked_groups(rendered):
    _, rows = mean_table(rendered)
    assert list(rows) == [
        "scbch", "rshnl", "dcmh",  # mean rank: scbch (1+1+2+1)/4, rshnl (2+2+1)/3, dcmh 3
        "*reported by the authors under their protocol, not ranked*", "scbch (reported) [1]",
        "*reference rows, not ranked*", "floor-constant",
        "*upper bounds (clean labels), never ranked*", "label-oracle", "scbch-clean",
    ]


def test_failed_and_missing_cells(rendered):
    _, rows = mean_table(rendered)
    assert rows["dcmh"][3] == "failed"
    assert rows["rshnl"][3] == "—"
    quick = section(rendered["markdown"], "quick")
    failed_lines = [line for line in quick[quick.index("### Failed cells"):].splitlines() if line.startswith("| mirflickr")]
    assert len(failed_lines) == 3
    assert "RuntimeError: CUDA out of memory \\| tried to allocate &lt;2 GiB>" in failed_lines[0]
    assert "second line" not in quick


def test_selection_table_shows_every_rule_and_its_inflation_over_val(rendered):
    quick = section(rendered["markdown"], "quick")
    header, rows = table_after(quick, "#### Model selection")
    assert header == ["method", "noise rate", "runs", "val", "final (Δ)", "val-clean† (Δ)", "best-on-test† (Δ)",
                      "epochs val / final / val-clean / best-on-test"]
    scbch_80 = next(row for label, row in rows_with_labels(quick, "#### Model selection") if label == "scbch" and row[0] == "80%")
    # val: mean over 3 seeds x 2 code lengths of base + 0.01 + jitter, bases .60 and .62; the other rules shifted by SHIFTS
    assert scbch_80 == ["80%", "6", ".620", ".600 (−.020)", ".630 (+.010)", ".640 (+.020)", "1 / 3 / 1 / 2"]
    assert "† optimistic: model selected on the test queries" not in quick  # no optimistic row in the main tables


def test_schema_1_records_rank_by_final_and_the_report_says_what_they_lack(tmp_path):
    for bits in (16, 32):
        for seed in (0, 1):
            cell = Cell(dataset="mirflickr", method="scbch", bits=bits, rate=0.8, seed=seed)
            write(tmp_path / "results", cell, v1_record(cell, 0.60, 0.62, "final"))
            old_path = tmp_path / "results" / cell.relative_path().parent.with_name("scbch+best-on-test") / f"seed{seed}.json"
            old_path.parent.mkdir(parents=True, exist_ok=True)
            old_path.write_text(json.dumps(v1_record(cell, 0.70, 0.70, "best-on-test")))
    render_report(tmp_path / "results", tmp_path / "out", reported=REPORTED.iloc[:0])
    markdown = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert ("Of 8 successful records, 8 predate the validation part (result schema 1: one rule per record, no `val`, "
            "no `val-clean`), so the tables rank by `final`") in markdown
    _, rows = table_after(markdown, "Mean of I2T and T2I MAP")
    assert rows["scbch"] == ["**.610 ± .000**", "**.610 ± .000**"]
    assert rows["scbch+best-on-test"] == [".700 ± .000†", ".700 ± .000†"]
    assert "*selected on the test queries (†), not ranked*" in rows
    assert "† optimistic: model selected on the test queries" in markdown
    assert "#### Model selection" not in markdown  # no record has a validation part
    frame = load(tmp_path / "results")
    assert set(frame.lacks) == {("val", "val-clean", "best-on-test"), ("val", "final", "val-clean")}


def test_profiles_never_mixed(rendered):
    _, quick_rows = mean_table(rendered, "quick")
    header, paper_rows = mean_table(rendered, "paper")
    assert "nrch" not in quick_rows and "rshnl" not in paper_rows
    assert header == ["method", "80% · 16 bit"]
    assert paper_rows["scbch"] == ["**.740**"] and paper_rows["nrch"] == [".730"]  # one seed: no std, no test
    assert paper_rows["scbch (reported) [1]"] == [".720"]


def test_reported_rows_match_dataset_noise_and_columns(rendered):
    _, rows = mean_table(rendered)
    assert rows["scbch (reported) [1]"] == [".800", "—", ".720", ".700"]
    assert "[1] scbch as published: Peng et al., AAAI 2026. Their protocol: best epoch on the test queries." in rendered["markdown"]
    measured, published = rendered["markdown"].split("## Published numbers (no measured counterpart here)")
    assert "nrch (reported)" not in measured  # coco was not measured: no table of its own there
    _, coco = table_after(published, "### coco · pair-swap (published)")
    assert [label for label in coco if not label.startswith("*")] == ["nrch (reported) [1]"] and coco["nrch (reported) [1]"] == [".660"]
    assert "mirflickr" not in published  # a measured dataset's numbers stay in its own tables


def test_per_direction_tables_in_details(rendered):
    quick = section(rendered["markdown"], "quick")
    details = quick[quick.index("<details>"):quick.index("</details>")]
    _, i2t = table_after(details, "I2T MAP (image queries")
    _, t2i = table_after(details, "T2I MAP (text queries")
    assert i2t["scbch"][1] == "**.720 ± .010**" and t2i["scbch"][1] == "**.740 ± .010**"
    assert "(reported)" not in details


def test_protocol_block_states_the_rules(rendered):
    protocol = rendered["markdown"][:rendered["markdown"].index("## Profile")]
    for phrase in ("tie-aware MAP@all", "McSherry & Najork", "excluded from the mean", "The tables rank by `val`",
                   "held out of training, one half ranked against the other", "`best-on-test`",
                   "one-sided Welch t-test, p ≥ 0.05", "at least 2 seeds", "mean rank", "no table mixes profiles"):
        assert phrase in protocol, phrase
    quick = section(rendered["markdown"], "quick")
    for phrase in ("pair-swap v1", "device cpu; CPU x86_64; torch threads 2", "torch 2.14.1", "0123456789abcdef",
                   "100 query / 450 train / 50 validation / 900 database",
                   "cmh-bench run --profile quick --methods dcmh,floor-constant,label-oracle,rshnl,scbch,scbch-clean "
                   "--datasets mirflickr --noise pair-swap --rates 0.2,0.8 --bits 16,32 --seeds 0,1,2\n",
                   "ranked by val; rules recorded: val, final, val-clean (†), best-on-test (†)", "cmh-bench report"):
        assert phrase in quick, phrase


def test_noise_detection_and_curves(rendered):
    quick = section(rendered["markdown"], "quick")
    header, rows = table_after(quick, "#### Noise detection")
    assert header == ["method", "20%", "80%"]
    assert list(rows) == ["scbch"]  # only scbch exposes sample weights
    aucs = [0.9 - 0.2 / 4 + s / 100 for s in (0, 1, 2) for _ in (16, 32)]
    assert rows["scbch"][0] == f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f}".replace("0.", ".")
    assert "(plots/quick-mirflickr-pair-swap-scbch-weights.png)" in quick
    assert "#### Training curves at 80% noise" in quick and "(plots/quick-mirflickr-pair-swap-epochs.png)" in quick


def test_outputs_written_and_linked_relative(rendered):
    out, written = rendered["out"], rendered["written"]
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert names == sorted([
        "README.md", "leaderboard.csv", "leaderboard.tex",
        "plots/quick-mirflickr-pair-swap-map.png", "plots/quick-mirflickr-pair-swap-scbch-weights.png",
        "plots/quick-mirflickr-pair-swap-epochs.png", "plots/paper-mirflickr-pair-swap-map.png",
    ])
    for path in written:
        assert path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"({path.relative_to(out).as_posix()})" in rendered["markdown"]
    assert not list(out.rglob("*.tmp"))
    assert str(rendered["results"]) not in rendered["markdown"] and "/tmp" not in rendered["markdown"]


def test_csv_export_aggregates_per_cell(rendered):
    csv = pd.read_csv(rendered["out"] / "leaderboard.csv", keep_default_na=False, na_values=[""])
    row = csv[(csv.profile == "quick") & (csv.entry == "scbch") & (csv.rate == 0.2) & (csv.bits == 16)].iloc[0]
    assert (row.n_seeds, row.n_failed, row.group) == (3, 0, "ranked")
    assert row.map_mean == pytest.approx(0.71) and row.map_std == pytest.approx(0.01)
    assert row.map_i2t_mean == pytest.approx(0.70) and row.map_t2i_mean == pytest.approx(0.72)
    failed = csv[(csv.entry == "dcmh") & (csv.rate == 0.8) & (csv.bits == 32)].iloc[0]
    assert (failed.n_seeds, failed.n_failed) == (0, 3) and np.isnan(failed.map_mean)
    assert len(csv) == csv[["profile", "dataset", "split", "noise", "rate", "bits", "entry"]].drop_duplicates().shape[0]


def test_latex_export_has_the_mean_tables(rendered):
    tex = (rendered["out"] / "leaderboard.tex").read_text(encoding="utf-8")
    assert tex.count(r"\begin{tabular}") == 2 and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\textbf{.730 $\pm$ .010}" in tex
    assert r".705 $\pm$ .010 $\approx$" in tex
    assert r"\multicolumn{5}{l}{\emph{reference rows, not ranked}}" in tex
    assert r"20\% $\cdot$ 16 bit" in tex


def test_rendering_is_deterministic(rendered, tmp_path):
    again = render_report(rendered["results"], tmp_path / "again", reported=REPORTED)
    for path in again:
        first = rendered["out"] / path.relative_to(tmp_path / "again")
        assert path.read_bytes() == first.read_bytes(), path.name


def test_stale_plots_removed(tmp_path):
    write_cell(tmp_path / "results", "scbch", 0.2, 16, 0.70, seeds=(0,))
    stale = tmp_path / "out" / "plots" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    render_report(tmp_path / "results", tmp_path / "out", reported=REPORTED.iloc[:0])
    assert not stale.exists() and (tmp_path / "out" / "plots" / "quick-mirflickr-pair-swap-map.png").exists()


def test_no_records_or_bad_record_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no result records"):
        load(tmp_path)
    bad = tmp_path / "quick" / "toy" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(UserError, match="seed0.json is not a readable result record"):
        load(tmp_path)


def test_golden_readme(rendered):
    if os.environ.get("CMH_BENCH_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(rendered["markdown"], encoding="utf-8")
    assert rendered["markdown"] == GOLDEN.read_text(encoding="utf-8"), "README changed: see the module docstring to update the golden file"


def test_rank_by_final_on_request(rendered, tmp_path):
    render_report(rendered["results"], tmp_path / "out", reported=REPORTED, rank_by="final")
    markdown = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "the final training epoch, as asked (`cmh-bench report --rank-by final`)" in markdown
    _, rows = table_after(section(markdown, "quick"), "### mirflickr · pair-swap")
    assert rows["scbch"][0] == "**.690 ± .010**"  # the final epoch's MAP: .02 below val's (SHIFTS)
    with pytest.raises(UserError, match="cannot rank by 'val-clean'"):
        load(rendered["results"], rank_by="val-clean")


def test_entry_auc_of_per_entry_scores_in_its_own_detection_table(tmp_path):
    """A method with per-entry scores (NACD's confidence) gets an entry-AUC table beside the weight-AUC one."""
    for seed in (0, 1):
        cell = Cell(dataset="mirflickr", method="scbch", bits=32, rate=0.5, seed=seed, profile="quick")
        write(tmp_path / "results", cell, make_record(cell, 0.7, 0.72, detection=detection(0.5, seed)))
        cell = Cell(dataset="mirflickr", method="nacd", bits=32, rate=0.5, seed=seed, profile="quick")
        entry_detection = {"entry_auc": 0.8 + seed / 10, "entry_shape": [450, 24], "entries_true": 900, "entries_added": 450}
        write(tmp_path / "results", cell, make_record(cell, 0.7, 0.72, detection=entry_detection))
    render_report(tmp_path / "results", tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "#### Noise detection by sample weights and label-entry scores" in text
    _, weights = table_after(text, "#### Noise detection")
    _, entries = table_after(text, "Entry AUC")
    assert list(weights) == ["scbch"] and list(entries) == ["nacd"]
    assert entries["nacd"][0] == f"{0.85:.3f} ± {np.std([0.8, 0.9], ddof=1):.3f}".replace("0.", ".")
    assert "scbch-weights.png" in text and "nacd-weights.png" not in text  # histograms only of sample weights
