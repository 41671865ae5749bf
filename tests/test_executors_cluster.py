"""Cluster executors: Ray (one local instance for the module) and submitit's local executor give the
in-process records; a failing cell and a dying worker come back as failed records of their cells;
Ctrl-C cancels what is still running; missing extras and misplaced options give one clear error."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from cmh_bench.cell import Cell
from cmh_bench.cli import main
from cmh_bench.errors import UserError
from cmh_bench.backends import make_executor
from cmh_bench.executors import InProcessExecutor
from cmh_bench.grid import Grid
from cmh_bench.runner import pending_cells, run_grid

PLUGIN = str(Path(__file__).parent / "plugins" / "methods_for_tests.py")
REFERENCE = ("floor-constant", "random-codes", "dcmh")


def _grid(methods, **options) -> Grid:
    return Grid(methods=tuple(methods), datasets=("toy",), rates=(0.2,), bits=(16,), seeds=(0,),
                cell_options={"plugins": (PLUGIN,), "threads": 1, "profile": "quick", **options})


def _records(folder: Path) -> dict[str, dict]:
    return {str(p.relative_to(folder)): json.loads(p.read_text()) for p in sorted(folder.rglob("seed*.json"))}


@pytest.fixture(scope="module")
def reference_grid() -> Grid:
    return _grid(REFERENCE, hparams=(("epochs", "2"), ("hidden", "32")))


@pytest.fixture(scope="module")
def in_process(reference_grid, tmp_path_factory) -> dict[str, dict]:
    """The reference grid's records from the in-process executor."""
    folder = tmp_path_factory.mktemp("in-process")
    assert run_grid(reference_grid, folder, InProcessExecutor()).ok == len(reference_grid.cells())
    return _records(folder)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance (2 CPUs) for the module, started the way the executor starts its own."""
    if importlib.util.find_spec("ray") is None:  # not importorskip: ray must not be imported before it starts
        pytest.skip("ray is not installed")
    from cmh_bench.executors_cluster import start_local_ray

    ray = start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _same_metrics(records: dict[str, dict], expected: dict[str, dict]) -> None:
    assert records.keys() == expected.keys()
    for key, record in records.items():
        assert record["status"] == "ok", record.get("error")
        assert record["selections"] == expected[key]["selections"], key


def _check_failures(executor, tmp_path, monkeypatch) -> None:
    """A cell that raises and a cell whose worker dies both come back as failed records, pending again."""
    flag = tmp_path / "fail"
    flag.touch()
    monkeypatch.setenv("CMH_TEST_FAIL_FLAG", str(flag))  # set after the workers started: forwarded per cell
    results = tmp_path / "results"
    grid = _grid(["fails-while-flagged", "dies-in-worker"])
    summary = run_grid(grid, results, executor)
    assert (summary.ok, summary.failed) == (0, 2)
    records = {r["cell"]["method"]: r for r in _records(results).values()}
    assert records["fails-while-flagged"]["error"]["message"] == "asked to fail"
    assert records["dies-in-worker"]["status"] == "failed"
    assert pending_cells(grid.cells(), results) == grid.cells()  # both retried by the next run


def _check_interrupt_cancels(executor, still_running, started=None) -> None:
    """Ctrl-C while a slow cell runs: the executor cancels it, so ``still_running()`` turns False.
    The interrupt comes once ``started()`` (default: ``still_running()``) holds, and 2 s later."""
    slow = Cell(dataset="toy", method="slow-random", bits=16, threads=1, plugins=(PLUGIN,),
                hparams=(("seconds_per_epoch", "60"),))

    def interrupt_once_running() -> None:
        deadline = time.monotonic() + 60
        while not (started or still_running)() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        list(executor.run([slow], lambda *_: None))
    deadline = time.monotonic() + 90  # generous: on a loaded machine a cancelled job takes a while to exit
    while still_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not still_running()


# --- Ray ---------------------------------------------------------------------------------------------

def test_ray_gives_the_in_process_records(ray_instance, reference_grid, in_process, tmp_path):
    from cmh_bench.executors_cluster import RayExecutor

    run_grid(reference_grid, tmp_path, RayExecutor())
    _same_metrics(_records(tmp_path), in_process)
    assert ray_instance.is_initialized()  # a Ray it did not start is left running


def test_ray_failures_are_failed_records(ray_instance, tmp_path, monkeypatch):
    from cmh_bench.executors_cluster import RayExecutor

    _check_failures(RayExecutor(), tmp_path, monkeypatch)


def test_ray_interrupt_cancels_running_cells(ray_instance):
    from cmh_bench.executors_cluster import RayExecutor

    _check_interrupt_cancels(RayExecutor(), lambda: ray_instance.available_resources().get("CPU", 0) < 2)


def test_ray_local_instance_listens_on_localhost_only(ray_instance):
    assert ray_instance.util.get_node_ip_address() == "127.0.0.1"
    assert {node["NodeManagerAddress"] for node in ray_instance.nodes()} == {"127.0.0.1"}


def test_ray_from_the_command_line(ray_instance, tmp_path):
    code = main(["run", "--methods", "random-codes", "--datasets", "toy", "--rates", "0.2", "--bits", "16",
                 "--profile", "quick", "--results", str(tmp_path), "--executor", "ray", "--jobs", "2"])
    assert code == 0
    assert [r["status"] for r in _records(tmp_path).values()] == ["ok"]


def test_ray_refuses_cells_larger_than_the_machine(ray_instance, tmp_path):
    from cmh_bench.executors_cluster import RayExecutor

    with pytest.raises(UserError, match="asks for 64 CPUs"):
        run_grid(_grid(["random-codes"]), tmp_path, RayExecutor(cpus_per_cell=64))


# --- submitit (SLURM), local executor ------------------------------------------------------------------

@pytest.fixture
def submitit_local(tmp_path):
    pytest.importorskip("submitit")
    from cmh_bench.executors_cluster import SubmititExecutor

    return SubmititExecutor(tmp_path / ".submitit", cluster="local", jobs=2)


def test_submitit_local_gives_the_in_process_records(submitit_local, reference_grid, in_process, tmp_path):
    run_grid(reference_grid, tmp_path / "results", submitit_local)
    _same_metrics(_records(tmp_path / "results"), in_process)
    assert list((tmp_path / ".submitit").glob("*/*_log.out"))  # one folder per job, with its logs


def test_submitit_local_failures_are_failed_records(submitit_local, tmp_path, monkeypatch):
    from submitit.local.local import LocalJob

    # submitit waits 15 s for a dead job's result file, for slow shared filesystems; local files need no wait
    monkeypatch.setattr(LocalJob, "_results_timeout_s", 1, raising=False)
    _check_failures(submitit_local, tmp_path, monkeypatch)


def test_submitit_local_interrupt_cancels_running_jobs(submitit_local, tmp_path):
    folder = str(tmp_path / ".submitit")  # named on the command line of every job process
    # interrupt once the cell's own process runs: a Ctrl-C that reaches submitit's local controller
    # while it is still starting that process can leave the process orphaned (a race in submitit)
    _check_interrupt_cancels(submitit_local, lambda: any(folder in line for line in _command_lines()),
                             started=lambda: any(folder in line and "_submit" in line for line in _command_lines()))


def _command_lines() -> list[str]:
    """The command lines of this machine's processes (Linux /proc)."""
    lines = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(path.read_bytes().decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            pass
    return lines


def test_slurm_executors_keep_submitit_files_under_the_results(tmp_path):
    pytest.importorskip("submitit")
    executor = make_executor("slurm-local", 2, results=tmp_path / "results", time=10, dashboard=False, gpus_per_cell=0.0)
    assert (executor.folder, executor.time, executor.window) == (tmp_path / "results" / ".submitit", 10, 2)


# --- errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("executor", "module", "extra"), [("ray", "ray", "ray"), ("slurm", "submitit", "slurm"),
                                                           ("slurm-local", "submitit", "slurm")])
def test_a_missing_engine_names_its_extra(executor, module, extra, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=rf"pip install 'cmh-bench\[{extra}\]'"):
        make_executor(executor, 1, results=tmp_path)
    code = main(["run", "--methods", "random-codes", "--datasets", "toy", "--results", str(tmp_path),
                 "--executor", executor])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"needs {module}, which is not installed; add the '{extra}' extra" in error


def test_options_of_another_executor_are_refused():
    with pytest.raises(UserError, match="--partition does not apply to --executor local; use it with --executor slurm"):
        make_executor("local", 1, partition="gpu", gpus_per_cell=0.0, dashboard=False)
    with pytest.raises(UserError, match="--address does not apply to --executor slurm-local; use it with --executor ray"):
        make_executor("slurm-local", 1, address="auto")
    with pytest.raises(UserError, match="unknown executor 'dask'"):
        make_executor("dask")


def test_slurm_needs_sbatch(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(UserError, match="sbatch not found"):
        make_executor("slurm", 1, results=tmp_path, partition="gpu")
