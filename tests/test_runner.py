"""The runner: grid expansion, resume, retry of failed cells, kill safety, and the process pool."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
import pytest


from cmh_bench.cell import Cell
from cmh_bench.executors import InProcessExecutor, ProcessPoolExecutorBackend, execute_cell
from cmh_bench.registry import get_method
from cmh_bench.grid import Grid
from cmh_bench.runner import run_grid

PLUGIN = str(Path(__file__).parent / "plugins" / "methods_for_tests.py")


def _grid(methods, **options):
    return Grid(methods=tuple(methods), datasets=("toy",), rates=(0.2, 0.8), bits=(16,), seeds=(0, 1),
                cell_options={"plugins": (PLUGIN,), "threads": 1, **options})


def _records(folder: Path) -> dict[str, dict]:
    return {str(p.relative_to(folder)): json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))}


def test_cell_path_is_the_key():
    cell = Cell(dataset="synth-flickr", method="scbch", bits=64, noise="pair-swap", rate=0.5, seed=2, profile="quick")
    assert cell.relative_path() == Path("quick/synth-flickr/pair-swap-0.5/64bit/scbch/seed2.json")
    options = Cell(dataset="d", method="m", bits=16, split="ucch", hparams=(("epochs", "3"),), val_fraction=0.2, val_every=1, noise_seed=7)
    path = str(options.relative_path())
    assert path.startswith("quick/d@ucch/pair-swap-0.5/16bit/m+hp-") and path.endswith("+val-0.2+every-1/seed0-noise7.json")
    assert Cell.from_dict(options.to_dict()) == options


def test_grid_runs_resumes_and_forces(tmp_path):
    grid = _grid(["floor-constant", "random-codes"])
    first = run_grid(grid, tmp_path, InProcessExecutor())
    assert (first.total, first.ok, first.failed, first.skipped) == (8, 8, 0, 0)
    records = _records(tmp_path)
    assert len(records) == 8 and all(r["status"] == "ok" for r in records.values())
    again = run_grid(grid, tmp_path, InProcessExecutor())
    assert (again.skipped, again.ok) == (8, 0)
    assert _records(tmp_path) == records
    forced = run_grid(grid, tmp_path, InProcessExecutor(), force=True)
    assert forced.ok == 8


def test_failed_cells_are_recorded_and_retried(tmp_path, monkeypatch):
    flag = tmp_path / "fail"
    flag.touch()
    monkeypatch.setenv("CMH_TEST_FAIL_FLAG", str(flag))
    results = tmp_path / "results"
    grid = _grid(["fails-while-flagged"])
    summary = run_grid(grid, results, InProcessExecutor())
    assert summary.failed == 4
    record = next(iter(_records(results).values()))
    assert record["status"] == "failed" and record["error"]["message"] == "asked to fail"
    assert record["cell"]["method"] == "fails-while-flagged" and "Traceback" in record["error"]["traceback"]
    flag.unlink()
    retry = run_grid(grid, results, InProcessExecutor())
    assert (retry.ok, retry.skipped) == (4, 0)


def test_process_pool_gives_the_same_records_as_in_process(tmp_path):
    grid = _grid(["random-codes", "dcmh"], hparams=(("epochs", "2"), ("hidden", "32")))
    run_grid(grid, tmp_path / "serial", InProcessExecutor())
    run_grid(grid, tmp_path / "pool", ProcessPoolExecutorBackend(2))
    serial, pool = _records(tmp_path / "serial"), _records(tmp_path / "pool")
    assert serial.keys() == pool.keys()
    for key in serial:
        assert serial[key]["selections"] == pool[key]["selections"], key


def test_killing_the_runner_loses_no_finished_cell_and_duplicates_none(tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "cmh_bench", "run", "--plugin", PLUGIN, "--methods", "slow-random",
               "--datasets", "toy", "--rates", "0.2,0.5,0.8", "--bits", "16", "--seeds", "0,1",
               "--profile", "quick", "--results", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while len(list(results.rglob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    survivors = {p: p.stat().st_mtime_ns for p in results.rglob("*.json")}
    assert 2 <= len(survivors) < 6
    assert all(json.loads(p.read_text())["status"] == "ok" for p in survivors)  # complete, never half-written
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    final = list(results.rglob("*.json"))
    assert len(final) == 6
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in survivors.items())  # finished cells not redone


def _children(pid: int) -> set[int]:
    """The pids of the live processes whose parent is ``pid`` (from /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process parents from /proc")
def test_a_killed_driver_leaves_no_pool_worker_running(tmp_path):
    """SIGTERM to the driver alone (a scheduler's timeout, `kill PID`): its pool workers exit too instead
    of running on as orphans; the finished cells stay, and a rerun completes the grid."""
    results = tmp_path / "results"
    command = [sys.executable, "-m", "cmh_bench", "run", "--plugin", PLUGIN, "--methods", "slow-random",
               "--datasets", "toy", "--rates", "0.2,0.5,0.8", "--bits", "16", "--seeds", "0,1",
               "--profile", "quick", "--jobs", "2", "--results", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while not results.exists() or not list(results.rglob("*.json")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    workers = _children(process.pid)
    assert len(workers) >= 2  # the two pool workers (and the manager)
    process.send_signal(signal.SIGTERM)
    process.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    assert len(list(results.rglob("*.json"))) == 6


def test_evaluation_does_not_change_the_cells_torch_threads(tmp_path):
    import torch

    from cmh_bench.harness import run_cell

    torch.set_num_threads(1)
    record = run_cell(Cell(dataset="toy", method="dcmh", bits=16, rate=0.5, threads=1, val_every=1,
                           hparams=(("epochs", "2"), ("hidden", "8"))))
    assert record["status"] == "ok" and torch.get_num_threads() == 1


def test_a_finished_cell_leaves_no_method_behind(monkeypatch):
    """execute_cell frees the cell's method (held in a cycle with its run context) before returning,
    with the automatic collector off, so a process running many cells does not accumulate networks."""
    scbch = get_method("scbch").load()
    instances, setup = [], scbch.setup

    def tracked_setup(self, train, ctx):
        instances.append(weakref.ref(self))
        setup(self, train, ctx)

    monkeypatch.setattr(scbch, "setup", tracked_setup)
    gc.disable()
    try:
        record = execute_cell(Cell(dataset="toy", method="scbch", bits=16, profile="quick", threads=1,
                                   hparams=(("epochs", "1"), ("hidden", "16"))))
        assert record.record["status"] == "ok" and len(instances) == 1
        assert instances[0]() is None
    finally:
        gc.enable()
