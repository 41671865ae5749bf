"""GPU placement without a GPU: the assignment rules as pure functions, the ordinal check with torch's
CUDA queries patched, and the options each executor builds for a GPU run (inspected, never started)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest
import torch

from cmh_bench import executors, executors_cluster
from cmh_bench.cell import Cell
from cmh_bench.device import gpu_slots, pool_gpu_assignment, resolve_device, visible_gpu_ids
from cmh_bench.errors import UserError
from cmh_bench.executors import InProcessExecutor, ProcessPoolExecutorBackend
from cmh_bench.grid import Grid
from cmh_bench.runner import run_grid


def test_visible_gpus_keep_the_inherited_list():
    assert visible_gpu_ids("2,3", 2) == ["2", "3"]
    assert visible_gpu_ids(None, 3) == ["0", "1", "2"]
    assert visible_gpu_ids(None, 0) == [] and visible_gpu_ids("", 0) == []


def test_pool_workers_get_the_inherited_gpus_round_robin():
    assert pool_gpu_assignment(["2", "3"], 2) == ["2", "3"]  # CUDA_VISIBLE_DEVICES=2,3 --jobs 2: GPUs 2 and 3
    assert pool_gpu_assignment(["2", "3"], 3) == ["2", "3", "2"]  # more workers than GPUs share them
    assert pool_gpu_assignment(["5"], 2) == [None, None]  # one GPU: leave the inherited setting alone
    assert pool_gpu_assignment([], 2) == [None, None]


def test_gpu_slots_are_disjoint_and_checked():
    assert gpu_slots(["4", "5", "6", "7"], 2, 2) == [["4", "5"], ["6", "7"]]
    with pytest.raises(UserError, match="need 3 GPUs, but 2 are visible"):
        gpu_slots(["0", "1"], 1, 3)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cuda_ordinal_is_checked_against_the_device_count(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UserError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_pool_pins_gpus_only_with_several(monkeypatch):
    monkeypatch.setattr(executors, "driver_gpu_ids", lambda: ["2", "3"])
    assert ProcessPoolExecutorBackend(2).pins_gpus
    monkeypatch.setattr(executors, "driver_gpu_ids", lambda: ["0"])
    assert not ProcessPoolExecutorBackend(2).pins_gpus
    assert not InProcessExecutor.pins_gpus


def test_cuda_ordinal_under_a_pinning_executor_is_refused_before_any_cell(two_gpus, monkeypatch, tmp_path):
    monkeypatch.setattr(executors, "driver_gpu_ids", lambda: ["0", "1"])
    grid = Grid(methods=("floor-constant",), datasets=("toy",), rates=(0.5,), bits=(16,),
                cell_options={"device": "cuda:1"})
    with pytest.raises(UserError, match="sees as cuda:0; use --device cuda"):
        run_grid(grid, tmp_path / "r", ProcessPoolExecutorBackend(2))
    assert not (tmp_path / "r").exists()


def _ray(gpus: float):
    # find_spec, not importorskip: importing ray here would set it up before cmh-bench starts it (see start_local_ray)
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    return executors_cluster.RayExecutor(gpus_per_cell=gpus)


def test_ray_tasks_always_state_their_gpus():
    assert _ray(1).task_options(4) == {"num_cpus": 4, "num_gpus": 1, "max_retries": 0}
    assert _ray(0).task_options(2)["num_gpus"] == 0
    assert _ray(0.5).pins_gpus and not _ray(0).pins_gpus


def test_ray_refuses_cells_that_could_use_a_gpu_they_did_not_reserve():
    executor = _ray(0)
    with pytest.raises(UserError, match="has 2 GPUs, but --gpus-per-cell is 0"):
        executor._check_gpus_used({"CPU": 8, "GPU": 2}, {"auto"})
    executor._check_gpus_used({"CPU": 8}, {"auto"})  # a CPU-only cluster: fine
    executor._check_gpus_used({"CPU": 8, "GPU": 2}, {"cpu"})  # --device cpu on a GPU cluster: fine
    with pytest.raises(UserError, match="--device cuda needs a GPU per cell"):
        _ray(0).check_devices({"cuda"})


class FakeLocalExecutor:
    """Stands in for submitit's AutoExecutor: records the GPUs each submitted job was given."""

    def __init__(self):
        self.visible = None
        self.jobs = []

    def update_parameters(self, local_visible_gpus):
        self.visible = local_visible_gpus

    def submit(self, function, cell, environment):
        job = FakeJob(self.visible)
        self.jobs.append(job)
        return job


class FakeJob:
    def __init__(self, gpus):
        self.gpus, self.finished = gpus, False

    def done(self):
        return self.finished


def test_slurm_local_gives_each_running_cell_its_own_gpus(monkeypatch, tmp_path):
    if importlib.util.find_spec("submitit") is None:
        pytest.skip("submitit is not installed")
    monkeypatch.setattr(executors, "driver_gpu_ids", lambda: ["2", "3", "4", "5"])
    executor = executors_cluster.SubmititExecutor(tmp_path, cluster="local", jobs=2, gpus_per_cell=2)
    executor._free_gpus = executors_cluster.local_gpu_groups(2, executor.window)
    executor._executor = FakeLocalExecutor()
    cells = [Cell(dataset="toy", method="floor-constant", bits=16, seed=s) for s in range(3)]
    first = executor._submit(cells[:2], {})
    assert [job.gpus for job in first] == [(2, 3), (4, 5)]
    first[1].finished = True
    assert executor._finished(first) == [first[1]]
    (third,) = executor._submit(cells[2:], {})
    assert third.gpus == (4, 5)  # the freed group, not the first GPUs again


def test_slurm_local_needs_gpu_numbers(monkeypatch):
    monkeypatch.setattr(executors, "driver_gpu_ids", lambda: ["GPU-1a2b", "GPU-3c4d"])
    with pytest.raises(UserError, match="needs GPU numbers"):
        executors_cluster.local_gpu_groups(1, 2)


def test_precision_is_a_key_field_and_part_of_the_path():
    fp32 = Cell(dataset="toy", method="scbch", bits=16)
    bf16 = Cell(dataset="toy", method="scbch", bits=16, mixed_precision=True)
    assert "precision" not in fp32.key() and bf16.key()["precision"] == "bf16"  # fp32 records keep their old key
    assert fp32.relative_path().parent.name == "scbch" and bf16.relative_path().parent.name == "scbch+bf16"


def test_bf16_off_cuda_is_refused_before_any_cell(tmp_path):
    grid = Grid(methods=("floor-constant",), datasets=("toy",), rates=(0.5,), bits=(16,),
                cell_options={"device": "cpu", "mixed_precision": True})
    with pytest.raises(UserError, match="--mixed-precision is bf16 autocast on CUDA, but the device is cpu"):
        run_grid(grid, tmp_path / "r", InProcessExecutor())
    assert not (tmp_path / "r").exists()
    from cmh_bench.harness import run_cell

    with pytest.raises(UserError, match="bf16 autocast on CUDA"):  # a worker applies the same check
        run_cell(grid.cells()[0])


def test_devices_of_remote_cells_are_checked_by_name_only(two_gpus, monkeypatch):
    from cmh_bench.validation import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a login node without a GPU
    check_device("cuda", True, runs_here=False, pins_gpus=True)  # the cluster's workers have the GPUs
    with pytest.raises(UserError, match="unknown device 'cuda:x'"):
        check_device("cuda:x", False, runs_here=False, pins_gpus=False)
    with pytest.raises(UserError, match="CUDA is not available here"):
        check_device("cuda", False, runs_here=True, pins_gpus=False)


def test_the_report_never_mixes_precisions_in_one_table(tmp_path):
    from cmh_bench.harness import run_cell
    from cmh_bench.record import CellOutcome, write_record
    from cmh_bench.report import render_report

    results = tmp_path / "results"
    cell = Cell(dataset="toy", method="floor-constant", bits=16, threads=1)
    record = run_cell(cell)
    write_record(results, cell, CellOutcome(record))
    bf16 = replace(cell, mixed_precision=True)  # a GPU run's record, made here by relabelling a CPU one
    write_record(results, bf16, CellOutcome({**record, "cell": {**bf16.key(), "method_version": "1"}}))
    render_report(results, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "## Profile `quick`\n" in text and "## Profile `quick` · bf16 autocast" in text
    assert text.count("### toy · pair-swap") == 2  # one table section per precision
    assert "--mixed-precision" in text.split("## Profile `quick` · bf16 autocast")[1]
