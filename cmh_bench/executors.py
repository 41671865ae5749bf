"""Executors: ways of running cells. Workers compute, the driver writes.

An executor maps ``execute_cell`` over cells and yields ``(cell, outcome)`` pairs as they complete
(``cmh_bench.record.CellOutcome``: the record, and the codes when the cell saves them);
it never writes files, so the runner is the single writer whatever the backend. A worker's
exception comes back as a "failed" record of the cell it belongs to. Epoch progress goes through
``on_epoch(cell, done, total)``, called in the driver's process.

Backends here: in-process (default) and a local process pool (``--jobs N``). Cluster engines
(Ray, SLURM via submitit: cmh_bench.executors_cluster) implement the same interface;
cmh_bench.backends chooses one by name.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Iterator, Protocol

from cmh_bench.cell import Cell
from cmh_bench.record import CellOutcome

EpochFn = Callable[[Cell, int, int], None]


def execute_cell(cell: Cell, progress: Callable[[int, int], None] | None = None):
    """Run one cell and return its CellOutcome; any exception becomes a "failed" record of that cell.

    The cell's networks are freed, and the device's cached memory released, before it returns: a
    method and its run context refer to each other (``method.ctx.on_epoch_end`` closes over the
    method), and Python's cyclic collector, which counts objects rather than bytes, would otherwise
    leave each finished cell's parameters and optimiser state (on a GPU, its memory) in a process
    that goes on to run more cells.
    """
    from cmh_bench.harness import run_cell_with_codes
    from cmh_bench.record import failed_record

    try:
        return run_cell_with_codes(cell, progress)
    except Exception as error:  # noqa: BLE001 - the error is recorded with its traceback
        return CellOutcome(failed_record(cell, error))
    finally:
        gc.collect()
        release_device_cache()


def release_device_cache() -> None:
    """Hand the caching allocator's free GPU memory back (CUDA, MPS), so the next cell, or another
    process on the same GPU, starts from what is really in use."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()


class Executor(Protocol):
    """Runs cells; yields (cell, CellOutcome) as each completes. ``runs_here``: the cells run on this
    machine (so its devices are theirs); ``pins_gpus``: each cell sees only its own GPU(s)."""

    runs_here: bool
    pins_gpus: bool

    def run(self, cells: list[Cell], on_epoch: EpochFn) -> Iterator[tuple[Cell, CellOutcome]]: ...


class InProcessExecutor:
    """Runs the cells one after another in the driver's process (on the device the cell names)."""

    runs_here = True
    pins_gpus = False

    def run(self, cells: Iterable[Cell], on_epoch: EpochFn) -> Iterator[tuple[Cell, dict]]:
        for cell in cells:
            yield cell, execute_cell(cell, lambda done, total, cell=cell: on_epoch(cell, done, total))


_progress_messages = None  # a pool worker's queue to the driver's progress relay, set by _start_worker


def _pool_worker(cell: Cell) -> dict:
    return execute_cell(cell, lambda done, total: _progress_messages.put((cell, done, total)))


def _start_worker(gpu_slots, messages, driver_pid: int) -> None:
    """Pool initializer: take this worker's ``CUDA_VISIBLE_DEVICES`` (see ``device.pool_gpu_assignment``),
    keep the progress queue, and watch the driver, so that a worker never outlives it
    (see :func:`_exit_with_driver`)."""
    global _progress_messages
    gpu = gpu_slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    _progress_messages = messages
    threading.Thread(target=_exit_with_driver, args=(driver_pid,), daemon=True).start()


def _exit_with_driver(driver_pid: int, poll_seconds: float = 1.0) -> None:
    """End this worker process once its parent is no longer the driver: a driver killed by SIGTERM or
    SIGKILL cannot stop its pool, and an orphaned worker would finish (or hang after) its cell for
    nobody, holding a core and its memory. The driver writes every record, so nothing is lost."""
    while os.getppid() == driver_pid:
        time.sleep(poll_seconds)
    os._exit(1)


def driver_gpu_ids() -> list[str]:
    """The GPUs the driver may hand out: its inherited ``CUDA_VISIBLE_DEVICES`` entries, else all of them."""
    import torch

    from cmh_bench.device import visible_gpu_ids

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return visible_gpu_ids(os.environ.get("CUDA_VISIBLE_DEVICES"), count)


class ProcessPoolExecutorBackend:
    """Runs cells in N local worker processes (spawned, so CUDA and threads start clean).

    With several visible GPUs, worker i sees only the i-th of them (mod their number; the driver's
    ``CUDA_VISIBLE_DEVICES`` list is kept: with ``2,3`` the workers get GPU 2 and GPU 3), so
    ``--jobs`` = number of GPUs gives one worker per GPU, each seeing its GPU as ``cuda``.
    """

    runs_here = True

    def __init__(self, jobs: int):
        self.jobs = jobs

    @property
    def pins_gpus(self) -> bool:
        """Whether each worker sees only its own GPU (then ``--device cuda:N`` would name a GPU it cannot see)."""
        return len(driver_gpu_ids()) > 1

    def run(self, cells: Iterable[Cell], on_epoch: EpochFn) -> Iterator[tuple[Cell, dict]]:
        from cmh_bench.device import pool_gpu_assignment

        context = multiprocessing.get_context("spawn")
        gpu_slots, messages = context.Queue(), context.Queue()  # plain queues: no manager process to outlive the driver
        for gpu in pool_gpu_assignment(driver_gpu_ids(), self.jobs):
            gpu_slots.put(gpu)
        with ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(gpu_slots, messages, os.getpid())) as pool:
            yield from self._run(pool, messages, cells, on_epoch)

    def _run(self, pool, messages, cells: Iterable[Cell], on_epoch: EpochFn) -> Iterator[tuple[Cell, dict]]:
        stop = threading.Event()
        relay = threading.Thread(target=_relay, args=(messages, on_epoch, stop), daemon=True)
        relay.start()
        try:
            futures = {pool.submit(_pool_worker, cell): cell for cell in cells}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = futures.pop(future)
                    yield cell, _result_or_failure(cell, future)
        finally:
            stop.set()
            relay.join(timeout=2)


def _result_or_failure(cell: Cell, future):
    from cmh_bench.record import failed_record

    try:
        return future.result()
    except Exception as error:  # the worker process died (e.g. killed, out of memory)
        return CellOutcome(failed_record(cell, error))


def _relay(messages, on_epoch: EpochFn, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            cell, done, total = messages.get(timeout=0.2)
        except (queue.Empty, EOFError, OSError):
            continue
        on_epoch(cell, done, total)
