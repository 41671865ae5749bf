"""A grid of cells: the axes of a run (datasets x noise x rates x bits x methods x seeds) and their product."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from cmh_bench.cell import Cell


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
        """Every cell of the grid, datasets outermost and methods innermost-but-one (seeds last).

        A cell's clean meta set is the ``clean_meta`` option, else its method's declared default
        (cmh_bench.metaset.meta_size)."""
        from cmh_bench.metaset import meta_size
        from cmh_bench.registry import get_method

        options = {k: v for k, v in self.cell_options.items() if k != "clean_meta"}
        meta = {m: meta_size(get_method(m).load(), self.cell_options.get("clean_meta")) for m in self.methods}
        return [
            Cell(dataset=d, noise=n, rate=r, bits=b, method=m, seed=s, clean_meta=meta[m], **options)
            for d, n, r, b, m, s in itertools.product(self.datasets, self.noise, self.rates, self.bits, self.methods, self.seeds)
        ]
