"""Benchmark: the scheduling overhead per cell of each executor backend.

    python benchmarks/bench_executors.py                          # 40 cells, every backend installed
    python benchmarks/bench_executors.py --cells 10 --backends in-process,ray

Cells. --cells cheap cells: random-codes on the toy dataset (pair-swap 0.5, 16 bits, seeds 0..N-1),
quick profile, one torch thread each, so every backend does the same work per cell.

Backends. in-process: the driver runs the cells one after another (the reference). pool: the local
process pool of ``--jobs 2`` (2 spawned workers). ray: RayExecutor without an address, so it starts
a Ray instance on this machine (all cores, 1 CPU per cell) and shuts it down at the end. submitit:
SubmititExecutor on submitit's local executor, 2 jobs at a time, one fresh process per cell (what a
SLURM job costs beyond the queue wait).

Measurements. Wall time runs from the call of ``executor.run`` to its last record, start-up and
shut-down included; the runner's writing is left out (it is the same on every backend). "first
record" is when the first record arrived (mostly start-up). Overhead per cell = (wall time − the
in-process wall time) / cells: negative when a backend's parallel workers beat the serial run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from cmh_bench.catalog import ensure_dataset
from cmh_bench.executors import InProcessExecutor, ProcessPoolExecutorBackend
from cmh_bench.grid import Grid

BACKENDS = ("in-process", "pool", "ray", "submitit")


def make_backend(name: str, scratch: Path):
    """The executor of backend ``name`` and its number of workers (None if its engine is not installed)."""
    if name == "in-process":
        return InProcessExecutor(), 1
    if name == "pool":
        return ProcessPoolExecutorBackend(2), 2
    if name == "ray" and importlib.util.find_spec("ray"):
        from cmh_bench.executors_cluster import RayExecutor

        return RayExecutor(), os.cpu_count()
    if name == "submitit" and importlib.util.find_spec("submitit"):
        from cmh_bench.executors_cluster import SubmititExecutor

        return SubmititExecutor(scratch / ".submitit", cluster="local", jobs=2), 2
    return None


def measure(executor, cells) -> tuple[float, float]:
    """Seconds to the first and to the last record; fails if a cell failed."""
    started = time.perf_counter()
    first = None
    for cell, outcome in executor.run(cells, lambda *_: None):
        assert outcome.record["status"] == "ok", outcome.record["error"]["message"]
        first = first or time.perf_counter() - started
    return first, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=40, help="number of cells (default: 40)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, from {', '.join(BACKENDS)}")
    args = parser.parse_args()

    ensure_dataset("toy")
    cells = Grid(methods=("random-codes",), datasets=("toy",), rates=(0.5,), bits=(16,), seeds=tuple(range(args.cells)),
                 cell_options={"threads": 1, "profile": "quick"}).cells()
    rows, reference = [], None
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            backend = make_backend(name, Path(scratch))
            if backend is None:
                print(f"{name}: not installed, skipped")
                continue
            executor, workers = backend
            first, wall = measure(executor, cells)
        reference = wall if name == "in-process" else reference
        rows.append({
            "backend": name, "workers": workers, "cells": len(cells), "first record (s)": first, "wall (s)": wall,
            "per cell (s)": wall / len(cells),
            "overhead per cell vs in-process (s)": None if reference is None else (wall - reference) / len(cells),
        })
    print(tabulate(rows, headers="keys", floatfmt=".2f", missingval="n/a"))


if __name__ == "__main__":
    main()
