"""The runner: expand a grid into cells, skip the complete ones, run the rest, write each record.

Resumable and kill-safe: each record is written atomically as soon as its cell finishes, so an
interrupted run loses no finished cell, and running the same command again skips complete cells,
retries failed ones and duplicates nothing. ``force`` redoes every cell of the grid.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cmh_bench.cell import Cell
from cmh_bench.errors import UserError
from cmh_bench.executors import Executor
from cmh_bench.record import existing_record, is_complete, write_record


@dataclass(frozen=True)
class Grid:
    """The axes of a run; ``cells()`` is their product (datasets x noise x rates x bits x methods x seeds)."""

    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    noise: tuple[str, ...] = ("pair-swap",)
    rates: tuple[float, ...] = (0.2, 0.5, 0.8)
    bits: tuple[int, ...] = (32,)
    seeds: tuple[int, ...] = (0,)
    cell_options: dict = field(default_factory=dict)  # the other Cell fields, shared by every cell

    def cells(self) -> list[Cell]:
        """Every cell of the grid, datasets outermost and methods innermost-but-one (seeds last)."""
        return [
            Cell(dataset=d, noise=n, rate=r, bits=b, method=m, seed=s, **self.cell_options)
            for d, n, r, b, m, s in itertools.product(self.datasets, self.noise, self.rates, self.bits, self.methods, self.seeds)
        ]


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
    return [c for c in cells if not is_complete(existing_record(results_dir / c.relative_path()), c, versions[c.method])]


def validate_grid(grid: Grid) -> None:
    """Fail fast, before any training, on names that cannot run (methods, datasets, noise models)."""
    from cmh_bench.catalog import available_datasets, synthetic_names
    from cmh_bench.noise import get_noise_model
    from cmh_bench.profiles import hparams_for
    from cmh_bench.registry import get_method, load_plugin_file

    for plugin in grid.cell_options.get("plugins", ()):
        load_plugin_file(plugin)
    options = grid.cell_options
    for method in grid.methods:
        entry = get_method(method)
        hparams_for(entry, options.get("profile", "quick"), {}, dict(options.get("hparams", ())))
    for noise in grid.noise:
        get_noise_model(noise)
    known = set(available_datasets(include_toy=True)) | set(synthetic_names())
    for dataset in grid.datasets:
        if dataset not in known:
            from cmh_bench.catalog import ensure_dataset

            ensure_dataset(dataset)  # raises a UserError saying how to get it
    for rate in grid.rates:
        if not 0.0 <= rate <= 1.0:
            raise UserError(f"noise rate {rate} is outside [0, 1]; give rates like 0.2,0.5,0.8")
    if options.get("val_fraction") is not None:
        from cmh_bench.splits import check_validation_fraction

        check_validation_fraction(options["val_fraction"])
    if options.get("val_every", 1) < 0:
        raise UserError(f"--val-every {options['val_every']}: give a number of epochs >= 0 (0: the final epoch only)")
    for bits in grid.bits:
        if bits < 1:
            raise UserError(f"code length {bits} must be a positive number of bits")


def run_grid(grid: Grid, results_dir: Path, executor: Executor, *, force: bool = False,
             console: Console | None = None) -> RunSummary:
    """Run every pending cell of ``grid`` with ``executor``, writing each record as it completes."""
    console = console or Console()
    results_dir = Path(results_dir)
    validate_grid(grid)
    cells = grid.cells()
    todo = pending_cells(cells, results_dir, force)
    summary = RunSummary(total=len(cells), skipped=len(cells) - len(todo))
    started = time.perf_counter()
    console.print(f"{len(cells)} cells, {summary.skipped} already complete, {len(todo)} to run -> {results_dir}")
    if not todo:
        return summary
    _prepare_datasets(todo)
    _check_validation_fits(todo)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal and bool(os.environ.get("CI"))) as progress:
        overall = progress.add_task("cells", total=len(todo))
        current = progress.add_task("", total=None)

        def on_epoch(cell: Cell, done: int, total: int) -> None:
            progress.update(current, description=_describe(cell), completed=done, total=total or None)

        for cell, outcome in executor.run(todo, on_epoch):
            write_record(results_dir, cell, outcome)
            record = outcome.record
            if record["status"] == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                summary.failures.append((cell, record["error"]["message"]))
                console.print(f"[red]failed[/red] {_describe(cell)}: {record['error']['type']}: {record['error']['message']}")
            progress.advance(overall)
    summary.seconds = time.perf_counter() - started
    return summary


def _prepare_datasets(cells: list[Cell]) -> None:
    """Make sure every dataset file exists before workers start (synthetic ones are generated once, here)."""
    from cmh_bench.catalog import ensure_dataset

    for name in dict.fromkeys(c.dataset for c in cells):
        ensure_dataset(name)


def _check_validation_fits(cells: list[Cell]) -> None:
    """Raise UserError, before any cell runs, when a cell's validation fraction holds out fewer than two
    items or leaves nothing to fit on (the datasets must exist: after ``_prepare_datasets``)."""
    from cmh_bench.cards import find_card
    from cmh_bench.catalog import ensure_dataset
    from cmh_bench.dataset import read_info
    from cmh_bench.harness import validation_fraction
    from cmh_bench.splits import validation_split

    for dataset, split, fraction in dict.fromkeys((c.dataset, c.split, validation_fraction(c, find_card(c.dataset))) for c in cells):
        info = read_info(ensure_dataset(dataset))
        sizes = info.split_sizes.get(split or info.default_split)
        if sizes is not None:  # an unknown preset fails in the cell with its own message
            validation_split(sizes["train"], fraction)


def _describe(cell: Cell) -> str:
    return f"{cell.method} {cell.dataset} {cell.noise}-{cell.rate:g} {cell.bits}bit seed{cell.seed}"

