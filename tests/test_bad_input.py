"""Bad input through the real command line, in a subprocess: exit 2, one line, no traceback, nothing written.

Each case is caught before any cell runs: no record, no results folder, no output file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmh_bench.catalog import ensure_dataset

RUN = ["run", "--methods", "floor-constant", "--datasets", "toy", "--profile", "quick", "--rates", "0.5", "--bits", "16"]


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``cmh-bench ARGV`` in a fresh interpreter (the test's data directory travels in the environment)."""
    code = "import sys; from cmh_bench.cli import entry_point; sys.argv[0] = 'cmh-bench'; entry_point()"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "CI": "true"}, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess, message: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert message in lines[0] and "Traceback" not in done.stderr


def files_below(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture
def workdir(tmp_path):
    ensure_dataset("toy")  # generated once per session, before any case runs
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "a-file").write_text("not a folder")
    return folder


def _plugin(folder: Path, text: str) -> str:
    path = folder / "plugin.py"
    path.write_text(text)
    return str(path)


CASES = {
    "device not available": ([*RUN, "--device", "cuda"], "CUDA is not available here"),
    "device ordinal": ([*RUN, "--device", "cuda:3"], "CUDA is not available here"),
    "split preset": ([*RUN, "--split", "nrch"], "no split preset 'nrch'"),
    "results under a file": ([*RUN, "--results", "a-file/results"], "a-file is a file"),
    "results is a file": ([*RUN, "--results", "a-file"], "is a file, not a folder"),
    "empty rates": ([*RUN[:-4], "--rates", "", "--bits", "16"], "--rates is empty"),
    "empty bits": ([*RUN[:-2], "--bits", " , "], "--bits is empty"),
    "empty methods": (["run", "--methods", "", "--datasets", "toy"], "--methods is empty"),
    "bad hyper-parameter value": (["run", "--methods", "dcmh", "--datasets", "toy", "--hp", "epochs=many"],
                                  "epochs='many' is not a valid int"),
    "unknown hyper-parameter": (["run", "--methods", "dcmh", "--datasets", "toy", "--hp", "epoch=3"],
                                "no hyper-parameter 'epoch'"),
    "jobs": ([*RUN, "--jobs", "0"], "--jobs 0"),
    "clean meta set for a method that cannot use one": ([*RUN, "--clean-meta", "5"], "cannot use a clean meta set"),
    "clean meta set larger than the fitted items": (["run", "--methods", "mgsh", "--datasets", "toy", "--rates", "0.5",
                                                     "--clean-meta", "500"], "the method trains on only 135 items"),
    "synth out under a file": (["data", "synth", "toy", "--out", "a-file/toy.h5"], "a-file is a file"),
    "report out under a file": (["report", "--results", ".", "--out", "a-file/board"], "a-file is a file"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_option_is_one_line_before_anything_is_written(workdir, case):
    argv, message = CASES[case]
    before = files_below(workdir)
    done = cli(*argv, cwd=workdir)
    assert_one_line_error(done, message)
    assert files_below(workdir) == before  # no results folder, no record, no output file


def test_truncated_dataset_file_is_one_line(workdir):
    whole = ensure_dataset("toy").read_bytes()
    damaged = workdir / "damaged.h5"
    damaged.write_bytes(whole[: len(whole) // 2])
    assert_one_line_error(cli("data", "info", str(damaged), cwd=workdir), "damaged or truncated")


@pytest.mark.parametrize("source, message", [
    ("import torch\n\ndef broken(:\n    pass\n", "plugin.py, line 3: SyntaxError: invalid syntax"),
    ("import os\nimport no_such_module_here\n", "plugin.py, line 2: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("x = 1\n\n\nraise RuntimeError('boom')\n", "plugin.py, line 4: RuntimeError: boom"),
])
def test_plugin_that_does_not_import_is_one_line(workdir, source, message):
    plugin = _plugin(workdir, source)
    before = files_below(workdir)
    done = cli(*RUN, "--plugin", plugin, "--results", "results", cwd=workdir)
    assert_one_line_error(done, message)
    assert files_below(workdir) == before
