"""The runner: expand a grid into cells, skip the complete ones, run the rest, write each record.

Resumable and kill-safe: each record is written atomically as soon as its cell finishes, so an
interrupted run loses no finished cell, and running the same command again skips complete cells,
retries failed ones and duplicates nothing. ``force`` redoes every cell of the grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cmh_bench.cell import Cell
from cmh_bench.grid import Grid
from cmh_bench.executors import Executor
from cmh_bench.profiles import cell_hparams, recorded_hparams
from cmh_bench.record import existing_record, is_complete, write_record


@dataclass
class RunSummary:
    """What a run did: cells in the grid, skipped as complete, run ok, failed; records written."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[Cell, str]] = field(default_factory=list)


def pending_cells(cells: list[Cell], results_dir: Path, force: bool = False) -> list[Cell]:
    """The cells without a complete record (all of them when ``force``)."""
    if force:
        return list(cells)
    from cmh_bench.registry import get_method

    versions = {m: get_method(m).version for m in {c.method for c in cells}}
    return [c for c in cells
            if not is_complete(existing_record(results_dir / c.relative_path()), c, versions[c.method], resolved_hparams(c))]


def resolved_hparams(cell: Cell) -> dict:
    """The cell's resolved hyper-parameters as its record stores them ({} for a method without any)."""
    return recorded_hparams(cell_hparams(cell))


class RunObserver(Protocol):
    """What a run tells its onlooker (the CLI's progress display): the plan, epochs, finished cells."""

    def planned(self, total: int, skipped: int, todo: list[Cell], results_dir: Path) -> None: ...

    def epoch(self, cell: Cell, done: int, total: int) -> None: ...

    def cell_done(self, cell: Cell, record: dict) -> None: ...


class SilentObserver:
    """An observer that ignores everything (library use, tests)."""

    def planned(self, total: int, skipped: int, todo: list[Cell], results_dir: Path) -> None:
        """Ignore the plan."""

    def epoch(self, cell: Cell, done: int, total: int) -> None:
        """Ignore an epoch."""

    def cell_done(self, cell: Cell, record: dict) -> None:
        """Ignore a finished cell."""


def run_grid(grid: Grid, results_dir: Path, executor: Executor, *, force: bool = False,
             observer: RunObserver | None = None) -> RunSummary:
    """Run every pending cell of ``grid`` with ``executor``, writing each record as it completes.

    Every input is checked (cmh_bench.validation) before the first cell runs or the first record is written.
    """
    from cmh_bench.noise import check_noise_file
    from cmh_bench.validation import check_dataset, check_device, validate_grid

    observer = observer or SilentObserver()
    results_dir = Path(results_dir)
    validate_grid(grid, results_dir)
    check_device(grid.cell_options.get("device", "auto"), grid.cell_options.get("mixed_precision", False),
                 runs_here=executor.runs_here, pins_gpus=executor.pins_gpus)
    cells = grid.cells()
    todo = pending_cells(cells, results_dir, force)
    split = grid.cell_options.get("split")
    for name, path in _prepare_datasets(todo).items():
        check_dataset(path, split, [c for c in todo if c.dataset == name])
        check_noise_file(grid.cell_options.get("noise_file"), path, split)
    summary = RunSummary(total=len(cells), skipped=len(cells) - len(todo))
    started = time.perf_counter()
    observer.planned(summary.total, summary.skipped, todo, results_dir)
    for cell, outcome in executor.run(todo, observer.epoch):
        write_record(results_dir, cell, outcome)
        record = outcome.record
        if record["status"] == "ok":
            summary.ok += 1
        else:
            summary.failed += 1
            summary.failures.append((cell, record["error"]["message"]))
        observer.cell_done(cell, record)
    summary.seconds = time.perf_counter() - started
    return summary


def _prepare_datasets(cells: list[Cell]) -> dict[str, Path]:
    """Make sure every dataset file exists before workers start (synthetic ones are generated once, here); name -> file."""
    from cmh_bench.catalog import ensure_dataset

    return {name: ensure_dataset(name) for name in dict.fromkeys(c.dataset for c in cells)}
