"""Named, frozen grids ("suites"); command-line options override their axes.

- ``quick``: every dataset available here (the synthetic stand-ins at least), pair-swap at
  0.2 / 0.5 / 0.8, 32 bits, seed 0 — the CPU-sized default.
- ``paper``: the four benchmark datasets, pair-swap at 0.2 / 0.5 / 0.8, 16 / 32 / 64 / 128 bits,
  seed 0 — the grid of the SCBCH / NRCH papers, for GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmh_bench.errors import UserError
from cmh_bench.grid import Grid


@dataclass(frozen=True)
class Suite:
    """Default axes of a grid (methods are always given by the user)."""

    datasets: tuple[str, ...]  # ("all",) = every dataset available here
    noise: tuple[str, ...]
    rates: tuple[float, ...]
    bits: tuple[int, ...]
    seeds: tuple[int, ...]


SUITES = {
    "quick": Suite(datasets=("all",), noise=("pair-swap",), rates=(0.2, 0.5, 0.8), bits=(32,), seeds=(0,)),
    "paper": Suite(datasets=("mirflickr", "nus-wide", "coco", "iapr"), noise=("pair-swap",), rates=(0.2, 0.5, 0.8),
                   bits=(16, 32, 64, 128), seeds=(0,)),
}


def grid_from_options(*, suite: str, methods: tuple, datasets: tuple, noise: tuple, rates: tuple, bits: tuple,
                      seeds: tuple, cell_options: dict) -> Grid:
    """The suite's grid with every non-empty option replacing its axis; ``all`` expands to the available
    datasets; a dataset given as a path is named by its absolute path (cmh_bench.catalog.dataset_key)."""
    from cmh_bench.catalog import available_datasets, dataset_key

    if suite not in SUITES:
        raise UserError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if not methods:
        raise UserError("no methods given; pass --methods NAME[,NAME...] (see `cmh-bench list methods`)")
    base = SUITES[suite]
    datasets = datasets or base.datasets
    if "all" in datasets:
        datasets = tuple(available_datasets())
    datasets = tuple(dataset_key(d) for d in datasets)
    return Grid(
        methods=methods, datasets=datasets, noise=noise or base.noise, rates=rates or base.rates,
        bits=bits or base.bits, seeds=seeds or base.seeds, cell_options=cell_options,
    )
