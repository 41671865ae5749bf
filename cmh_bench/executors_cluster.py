"""Cluster executors: cells as Ray tasks or as SLURM jobs (through submitit). Workers compute, the driver writes.

Each backend submits the pending cells and yields ``(cell, record)`` as they finish, exactly like
the local executors, so the runner stays the single writer: killing the driver loses no finished
cell, and re-running resumes. A cell whose worker dies (killed, out of memory, past its time
limit) comes back as a "failed" record of that cell, retried on the next run. Progress is per cell:
workers do not report epochs back to the driver.

The engines are optional extras (``pip install 'cmh-bench[ray]'``, ``'cmh-bench[slurm]'``),
imported only inside these executors. Workers need cmh-bench installed and must see the driver's
paths (data directory, plugin files; for SLURM the results directory too, which holds submitit's
folder); the driver's ``CMH_*`` environment variables (e.g. ``CMH_BENCH_DATA``) travel with each cell.
See docs/cluster.md.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
import os
import shutil
import sys
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from cmh_bench.cell import Cell
from cmh_bench.errors import UserError
from cmh_bench.executors import EpochFn, execute_cell

# the `cmh-bench run` options each executor takes; any other one given is a mistake
FLAGS = {
    "local": (),
    "ray": ("address", "dashboard", "cpus_per_cell", "gpus_per_cell"),
    "slurm": ("partition", "time", "cpus_per_cell", "gpus_per_cell"),
    "slurm-local": ("time", "cpus_per_cell", "gpus_per_cell"),
}
CLUSTER_EXECUTORS = ("ray", "slurm", "slurm-local")
DEFAULT_TIME_MIN = 240  # a SLURM job's time limit when --time is not given (submitit's own default is 5)
MAX_ARRAY = 1000  # cells per SLURM job array (SLURM's default MaxArraySize is 1001)
_ALL_FLAGS = {flag for flags in FLAGS.values() for flag in flags}


def reject_misplaced(name: str, options: dict) -> None:
    """Raise a UserError naming a ``cmh-bench run`` option set for an executor it does not apply to."""
    for key, value in options.items():
        if value and key in _ALL_FLAGS and key not in FLAGS[name]:
            users = " or ".join(n for n in CLUSTER_EXECUTORS if key in FLAGS[n])
            raise UserError(f"--{key.replace('_', '-')} does not apply to --executor {name}; use it with --executor {users}")


def make_cluster_executor(name: str, jobs: int = 1, results: Path | str = "results", **options) -> "ClusterExecutor":
    """The Ray or submitit executor called ``name``, from the ``run`` options that apply to it."""
    options = {key: value for key, value in options.items() if key in FLAGS[name] and value is not None}
    if name == "ray":
        return RayExecutor(**options)
    cluster = "local" if name == "slurm-local" else "slurm"
    return SubmititExecutor(Path(results) / ".submitit", cluster=cluster, jobs=jobs, **options)


def local_gpu_groups(per_cell: int, cells_at_once: int) -> list[tuple[int, ...]]:
    """The driver's visible GPUs (its CUDA_VISIBLE_DEVICES list, else all) as disjoint groups of ``per_cell``,
    one per cell running at once, as the integer ids submitit's local executor takes."""
    from cmh_bench.device import gpu_slots
    from cmh_bench.executors import driver_gpu_ids

    ids = driver_gpu_ids()
    if not all(i.isdigit() for i in ids):
        raise UserError(f"CUDA_VISIBLE_DEVICES={','.join(ids)}: slurm-local needs GPU numbers, not UUIDs; list them by number")
    return [tuple(int(i) for i in group) for group in gpu_slots(ids, per_cell, cells_at_once)]


def forwarded_environment() -> dict[str, str]:
    """The driver's environment variables that workers get with each cell (those starting with CMH_)."""
    return {key: value for key, value in os.environ.items() if key.startswith("CMH_")}


def run_remote(cell: Cell, environment: dict[str, str]):
    """What a worker runs: one cell under the driver's CMH_* variables (restored afterwards: Ray reuses workers)."""
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        return execute_cell(cell)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _require(module: str, extra: str) -> None:
    """Fail fast, without importing it, if an engine is missing (a UserError naming the extra to install)."""
    if importlib.util.find_spec(module) is None:
        raise UserError(f"--executor {extra} needs {module}, which is not installed; add the {extra!r} extra: "
                        f"pip install 'cmh-bench[{extra}]'")


class ClusterExecutor(abc.ABC):
    """What the engines share: submit cells, yield (cell, record) as they finish, cancel the rest on exit.

    A subclass says how to open a session, submit cells, collect finished handles (waiting about a
    second at most, so Ctrl-C is served at once), fetch a result and cancel. A result that
    cannot be fetched (the worker died) becomes a failed record of its cell. At most ``window``
    cells are in flight (None: all of them; the engine queues them). Each cell reserves
    ``cpus_per_cell`` CPUs and runs that many torch threads; by default its own ``threads`` when the
    engine runs on this machine, 1 on a cluster (the engines' own default).
    """

    window: int | None = None

    def __init__(self, cpus_per_cell: int | None = None, gpus_per_cell: float = 0.0):
        if cpus_per_cell is not None and cpus_per_cell < 1:
            raise UserError(f"--cpus-per-cell {cpus_per_cell}: give at least 1")
        if gpus_per_cell < 0:
            raise UserError(f"--gpus-per-cell {gpus_per_cell}: give 0 or more")
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell

    @property
    @abc.abstractmethod
    def on_this_machine(self) -> bool:
        """Whether the workers run on the driver's machine."""

    @property
    def runs_here(self) -> bool:
        """The executor's cells run on this machine (local Ray, slurm-local), so its devices are theirs."""
        return self.on_this_machine

    @property
    def pins_gpus(self) -> bool:
        """Whether each cell gets GPUs of its own (the engine sets its ``CUDA_VISIBLE_DEVICES``)."""
        return self.gpus_per_cell > 0

    def check_devices(self, devices: set[str]) -> None:
        """Refuse, before anything is submitted, cells that ask for CUDA without reserving a GPU
        (they would fail on a GPU-less worker or, where the engine shows every GPU, share cuda:0)."""
        cuda = sorted(d for d in devices if d.startswith("cuda"))
        if cuda and self.gpus_per_cell == 0:
            raise UserError(f"--device {cuda[0]} needs a GPU per cell, but --gpus-per-cell is 0; give --gpus-per-cell 1")

    def run(self, cells: Iterable[Cell], on_epoch: EpochFn) -> Iterator[tuple[Cell, dict]]:
        """Yield (cell, record) for every cell as it finishes (``on_epoch`` is not called: no epoch progress)."""
        waiting = deque(cells)
        if not waiting:
            return
        cpus = self.cpus_per_cell or (max(1, max(cell.threads for cell in waiting)) if self.on_this_machine else 1)
        environment = forwarded_environment()
        running: dict = {}  # handle -> the cell as the runner gave it
        devices = {cell.device for cell in waiting}
        self.check_devices(devices)
        with self._session(cpus, devices):
            try:
                while waiting or running:
                    room = len(waiting) if self.window is None else min(len(waiting), self.window - len(running))
                    batch = [waiting.popleft() for _ in range(room)]
                    if batch:
                        handles = self._submit([replace(cell, threads=cpus) for cell in batch], environment)
                        running.update(zip(handles, batch))
                    for handle in self._finished(list(running)):
                        cell = running.pop(handle)
                        yield cell, self._record(cell, handle)
            finally:
                if running:
                    self._cancel(list(running))

    def _record(self, cell: Cell, handle):
        from cmh_bench.record import CellOutcome, failed_record

        try:
            return self._result(handle)
        except Exception as error:  # the worker died: killed, out of memory, time limit, lost node
            return CellOutcome(failed_record(cell, error))

    @abc.abstractmethod
    def _session(self, cpus: int, devices: set[str]):
        """A context manager: the engine ready to take cells needing ``cpus`` CPUs each on ``devices``
        (their --device names), closed on exit."""

    @abc.abstractmethod
    def _submit(self, cells: list[Cell], environment: dict[str, str]) -> list:
        """Start ``run_remote(cell, environment)`` for each cell; one handle per cell, in order."""

    @abc.abstractmethod
    def _finished(self, handles: list) -> list:
        """The handles that have finished, waiting about a second at most for one."""

    @abc.abstractmethod
    def _result(self, handle):
        """The CellOutcome a finished handle returned; raises if its worker died."""

    @abc.abstractmethod
    def _cancel(self, handles: list) -> None:
        """Stop these cells, queued or running (the driver is leaving)."""


def start_local_ray(num_cpus: int | None = None, dashboard: bool = False):
    """Start Ray on this machine (all its cores unless ``num_cpus``), reachable from localhost only; return ray.

    Ray binds its servers to the node's IP, which is the machine's routable address unless Ray is
    in its single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: node IP 127.0.0.1), read when
    ray is first imported; so it is set before the import, with a warning if ray came in earlier.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=dashboard, logging_level=logging.WARNING)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != "127.0.0.1":
        warnings.warn(f"the local Ray instance listens on {node_ip}, not only on localhost (ray was imported "
                      "before cmh-bench started it); keep this machine off untrusted networks", stacklevel=2)
    return ray


class RayExecutor(ClusterExecutor):
    """Each cell is a Ray task declaring its CPUs and GPUs; records come back through ray.wait.

    Without ``address`` it starts Ray on this machine (localhost only, dashboard off unless
    ``dashboard``) and shuts it down at the end; with one ("auto" or HOST:PORT) it joins that
    cluster and leaves it running. A Ray already initialised in this process is used as it is.
    Tasks are not retried by Ray: a dead worker is a failed cell, retried by the next run.
    """

    def __init__(self, address: str | None = None, dashboard: bool = False, cpus_per_cell: int | None = None,
                 gpus_per_cell: float = 0.0):
        _require("ray", "ray")
        if address and dashboard:
            raise UserError("--dashboard starts the dashboard of a local Ray instance; a cluster's dashboard is "
                            "chosen by `ray start --head --include-dashboard`")
        super().__init__(cpus_per_cell, gpus_per_cell)
        self.address = address
        self.dashboard = dashboard

    @property
    def on_this_machine(self) -> bool:
        return self.address is None

    @contextmanager
    def _session(self, cpus: int, devices: set[str]) -> Iterator[None]:
        owned = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()  # not imported: not running
        if owned and self.address is None:
            ray = start_local_ray(dashboard=self.dashboard)  # imports ray, after setting it up for localhost
        else:
            import ray

            if owned:
                ray.init(address=self.address, logging_level=logging.WARNING)
        try:
            resources = ray.cluster_resources()
            if self.on_this_machine:
                self._check_fits(resources, cpus)
            self._check_gpus_used(resources, devices)
            self._task = ray.remote(**self.task_options(cpus))(run_remote)
            yield
        finally:
            if owned:
                ray.shutdown()

    def task_options(self, cpus: int) -> dict:
        """The options of each cell's Ray task: its CPUs, its GPUs (always explicit: Ray sets the task's
        CUDA_VISIBLE_DEVICES to the GPUs it reserves) and no retry."""
        return {"num_cpus": cpus, "num_gpus": self.gpus_per_cell, "max_retries": 0}

    def _check_fits(self, resources: dict, cpus: int) -> None:
        """A cell asking for more than this machine has would wait forever: say so instead."""
        if cpus > resources.get("CPU", 0) or self.gpus_per_cell > resources.get("GPU", 0):
            raise UserError(f"a cell asks for {cpus} CPUs and {self.gpus_per_cell:g} GPUs, but this machine has "
                            f"{resources.get('CPU', 0):g} and {resources.get('GPU', 0):g}; lower --cpus-per-cell / --gpus-per-cell")

    def _check_gpus_used(self, resources: dict, devices: set[str]) -> None:
        """A Ray task reserving no GPU sees none (older Ray) or every one (newer Ray, all picking cuda:0):
        on a cluster with GPUs, cells that may use one (``auto``, ``cuda``) must reserve it."""
        gpus = resources.get("GPU", 0)
        wants_gpu = any(d == "auto" or d.startswith("cuda") for d in devices)
        if gpus and self.gpus_per_cell == 0 and wants_gpu:
            raise UserError(f"the Ray cluster has {gpus:g} GPUs, but --gpus-per-cell is 0, so cells would not get one; "
                            f"give --gpus-per-cell 1 (or a fraction), or --device cpu to run on CPUs")

    def _submit(self, cells: list[Cell], environment: dict[str, str]) -> list:
        return [self._task.options(name=str(cell.relative_path())).remote(cell, environment) for cell in cells]

    def _finished(self, handles: list) -> list:
        import ray

        ready, _ = ray.wait(handles, num_returns=1, timeout=1.0)
        return ready

    def _result(self, handle):
        import ray

        return ray.get(handle)

    def _cancel(self, handles: list) -> None:
        import ray

        for handle in handles:
            ray.cancel(handle, force=True)


class SubmititExecutor(ClusterExecutor):
    """Each cell is a SLURM job (cells go in job arrays) submitted with submitit, polled until it ends.

    ``cluster="local"`` runs the same code path with submitit's local executor: one process per
    cell, ``jobs`` at a time. Job scripts, pickles and logs go to ``folder`` (one sub-folder per
    job). ``time`` is each job's limit in minutes; ``partition`` None means the cluster's default.
    """

    def __init__(self, folder: Path, cluster: str = "slurm", jobs: int = 1, partition: str | None = None,
                 time: int | None = None, cpus_per_cell: int | None = None, gpus_per_cell: float = 0.0):
        _require("submitit", "slurm")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise UserError("sbatch not found: run cmh-bench on a SLURM login node, or try --executor slurm-local here")
        if gpus_per_cell != int(gpus_per_cell):
            raise UserError(f"--gpus-per-cell {gpus_per_cell:g}: SLURM gives whole GPUs; give an integer")
        if time is not None and time < 1:
            raise UserError(f"--time {time}: give the time limit per cell in minutes, at least 1")
        super().__init__(cpus_per_cell, gpus_per_cell)
        self.folder = Path(folder)
        self.cluster = cluster
        self.partition = partition
        self.time = time or DEFAULT_TIME_MIN
        self.window = max(1, jobs) if cluster == "local" else None
        self.poll_seconds = 0.2 if cluster == "local" else 5.0
        self._free_gpus: list[tuple[int, ...]] = []  # slurm-local with GPUs: the GPU groups of cells not running now
        self._gpus_of: dict = {}  # slurm-local: job -> its GPU group

    @property
    def on_this_machine(self) -> bool:
        return self.cluster == "local"

    @contextmanager
    def _session(self, cpus: int, devices: set[str]) -> Iterator[None]:
        import submitit

        self._executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        self._executor.update_parameters(name="cmh-bench", timeout_min=self.time, cpus_per_task=cpus,
                                         gpus_per_node=int(self.gpus_per_cell), slurm_partition=self.partition)
        if self.cluster == "local" and self.gpus_per_cell:
            self._free_gpus = local_gpu_groups(int(self.gpus_per_cell), self.window)
        yield

    def _submit(self, cells: list[Cell], environment: dict[str, str]) -> list:
        if self._free_gpus:
            return [self._submit_on_own_gpus(cell, environment) for cell in cells]
        jobs = []
        for start in range(0, len(cells), MAX_ARRAY):
            chunk = cells[start:start + MAX_ARRAY]
            jobs += self._executor.map_array(run_remote, chunk, [environment] * len(chunk))
        return jobs

    def _submit_on_own_gpus(self, cell: Cell, environment: dict[str, str]):
        """slurm-local: one job on a GPU group no running job holds (submitit's local executor would give
        every job the first GPUs)."""
        gpus = self._free_gpus.pop(0)
        self._executor.update_parameters(local_visible_gpus=gpus)
        job = self._executor.submit(run_remote, cell, environment)
        self._gpus_of[job] = gpus
        return job

    def _finished(self, handles: list) -> list:
        done = [job for job in handles if job.done()]
        for job in done:
            if job in self._gpus_of:
                self._free_gpus.append(self._gpus_of.pop(job))
        if not done:
            time.sleep(self.poll_seconds)
        return done

    def _result(self, handle):
        return handle.result()

    def _cancel(self, handles: list) -> None:
        for job in handles:
            job.cancel(check=False)
