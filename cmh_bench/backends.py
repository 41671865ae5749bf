"""Choosing an executor by name: the one place that knows every backend (local and cluster)."""

from __future__ import annotations

from cmh_bench.errors import UserError
from cmh_bench.executors import Executor, InProcessExecutor, ProcessPoolExecutorBackend
from cmh_bench.executors_cluster import CLUSTER_EXECUTORS, make_cluster_executor, reject_misplaced


def make_executor(name: str, jobs: int = 1, **options) -> Executor:
    """The executor called ``name`` ("local": in-process for jobs=1, a process pool for jobs>1; "ray", "slurm",
    "slurm-local": cmh_bench.executors_cluster), given the ``run`` command's options (``results`` and cluster flags)."""
    if name not in ("local", *CLUSTER_EXECUTORS):
        raise UserError(f"unknown executor {name!r}; use local, {', '.join(CLUSTER_EXECUTORS)}")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: give at least 1")
    reject_misplaced(name, options)
    if name == "local":
        return InProcessExecutor() if jobs <= 1 else ProcessPoolExecutorBackend(jobs)
    return make_cluster_executor(name, jobs, **options)
