"""The command line end to end: run -> report on toy, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from cmh_bench.cli import main


def test_run_then_report_on_toy(tmp_path, capsys):
    results, board = tmp_path / "results", tmp_path / "board"
    code = main(["run", "--methods", "floor-constant,label-oracle", "--datasets", "toy", "--rates", "0.5",
                 "--bits", "16", "--seeds", "0,1", "--results", str(results)])
    assert code == 0
    out = capsys.readouterr().out
    assert "profile: quick (no --profile given; no GPU is available)" in out and "4 to run" in out
    record = json.loads((results / "quick/toy/pair-swap-0.5/16bit/floor-constant/seed1.json").read_text())
    assert record["status"] == "ok" and record["cell"]["seed"] == 1
    assert record["method"]["labels_used"] == "noisy" and record["noise"]["requested_rate"] == 0.5
    assert main(["report", "--results", str(results), "--out", str(board)]) == 0
    assert "label-oracle" in (board / "README.md").read_text(encoding="utf-8")
    assert main(["run", "--methods", "floor-constant", "--datasets", "toy", "--rates", "0.5", "--bits", "16",
                 "--seeds", "0", "--results", str(results)]) == 0
    assert "1 already complete, 0 to run" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run", "--methods", "scbhc", "--datasets", "toy"], "did you mean scbch"),
    (["run", "--methods", "dcmh", "--datasets", "nope"], "no dataset 'nope'"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--noise", "pairswap"], "pair-swap"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--rates", "1.5"], "outside [0, 1]"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--rates", "a,b"], "comma-separated list of float"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--hp", "epochs"], "KEY=VALUE"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--device", "tpu"], "unknown device"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--val-fraction", "1"], "validation fraction 1 is outside [0, 1)"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--val-fraction", "0.005"], "holds out 1; it must hold out at least 2"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--val-every", "-1"], "--val-every -1"),
    (["run", "--methods", "dcmh", "--datasets", "toy", "--profile", "fast"], "unknown profile"),
    (["report", "--results", "/nonexistent/results"], "does not exist"),
    (["report", "--results", "/tmp", "--rank-by", "best-on-test"], "cannot rank by 'best-on-test'"),
    (["report", "--results", "/tmp", "--rank-by", "best"], "cannot rank by 'best'"),
    (["eval", "/nonexistent/codes.h5"], "codes"),
    (["data", "synth", "mirflickr"], "real dataset"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    argv = [*argv, *(["--results", str(tmp_path / "r")] if argv[0] == "run" else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_unknown_hyper_parameter_fails_before_writing_a_record(tmp_path, capsys):
    code = main(["run", "--methods", "dcmh", "--datasets", "toy", "--rates", "0.5", "--bits", "16",
                 "--hp", "nope=1", "--results", str(tmp_path / "r")])
    assert code == 2
    assert "no hyper-parameter 'nope'" in capsys.readouterr().err
    assert not list((tmp_path / "r").rglob("*.json"))


def test_eval_scores_a_codes_file_from_elsewhere(tmp_path, capsys):
    import numpy as np

    from cmh_bench.codes_file import write_codes_file
    from cmh_bench.metrics import Retrieval

    rng = np.random.default_rng(0)
    codes = lambda n: np.where(rng.random((n, 16)) < 0.5, -1, 1).astype(np.int8)  # noqa: E731
    labels = lambda n: (rng.random((n, 4)) < 0.4).astype(np.uint8)  # noqa: E731
    path = write_codes_file(tmp_path / "codes.h5", Retrieval(codes(5), codes(5), codes(30), codes(30), labels(5), labels(30)))
    assert main(["eval", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["i2t"]["map"] <= 1.0 and result["t2i"]["n_queries"] == 5


def test_data_synth_writes_a_valid_file_and_list_commands_work(tmp_path, capsys):
    from cmh_bench.dataset import read_info

    out = tmp_path / "toy.h5"
    assert main(["data", "synth", "toy", "--out", str(out), "--seed", "3"]) == 0
    info = read_info(out)
    assert info.name == "toy" and "seed 3" in info.source
    for what in ("datasets", "noise", "methods"):
        assert main(["list", what]) == 0
    listing = capsys.readouterr().out
    assert "synth-flickr" in listing and "pair-swap" in listing and "scbch-no-cscc" in listing


def test_check_passes_for_a_builtin_method(capsys):
    assert main(["check", "random-codes"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_run_prints_one_line_per_finished_cell_when_not_on_a_terminal(tmp_path, capsys):
    code = main(["run", "--methods", "floor-constant,random-codes", "--datasets", "toy", "--profile", "quick",
                 "--rates", "0.5", "--bits", "16", "--results", str(tmp_path / "r")])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    finished = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] for line in finished] == ["[1/2", "[2/2"]
    assert "floor-constant toy pair-swap-0.5 16bit seed0: MAP 0." in finished[0]
    assert all(line.endswith(" s") for line in finished)  # one unwrapped line each, whatever the width
