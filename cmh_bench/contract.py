"""``cmh-bench check NAME``: the method contract of DESIGN.md, checked on the ``toy`` dataset.

Checks: codes are +-1 with the right shape; two runs with the same seeds give identical codes;
every logged loss term is finite; the method trained on noisy labels (plus its default clean meta
set, for a method that declares one; unless it is an opted-in upper bound, or a label-free method,
which is handed no labels and whose codes must then be the same at another noise rate); sample
weights, if any, have one finite value per training sample, and entry scores, if any, one per
training label entry.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell_with_codes
from cmh_bench.metaset import LABELS_USED as META_LABELS_USED, meta_size
from cmh_bench.registry import get_method, load_plugin_file


def check_method(name: str, plugins: tuple[str, ...] = (), bits: int = 16) -> list[tuple[str, bool, str]]:
    """Run ``name`` twice on toy (pair-swap 0.5, quick profile) and return (check, passed, detail) rows."""
    for plugin in plugins:
        load_plugin_file(plugin)
    entry = get_method(name)
    cell = Cell(dataset="toy", method=name, bits=bits, rate=0.5, profile="quick", save_codes=True, plugins=plugins, threads=1,
                clean_meta=meta_size(entry.load(), None))
    first_run, second_run = run_cell_with_codes(cell), run_cell_with_codes(cell)
    first = first_run.record
    names = ("query_image", "query_text", "db_image", "db_text")
    codes = {k: getattr(first_run.codes, k) for k in names}
    again = {k: getattr(second_run.codes, k) for k in names}
    sizes = first["dataset"]["sizes"]
    rows = []
    expected_rows = {"query": sizes["query"], "db": sizes["database"]}
    shapes_ok = all(c.shape == (expected_rows[k.split("_")[0]], bits) for k, c in codes.items())
    values_ok = all(np.isin(c, (-1, 1)).all() for c in codes.values())
    rows.append(("codes are +-1 with shape (n, bits)", shapes_ok and values_ok, f"{bits} bits; query and database, both modalities"))
    same = all(np.array_equal(codes[k], again[k]) for k in codes)
    rows.append(("deterministic under the seed", same, "two runs, same seeds"))
    terms = [v for row in first["epochs"] for k, v in row.items() if k.startswith("loss") and isinstance(v, float)]
    rows.append(("loss terms finite", all(math.isfinite(v) for v in terms), f"{len(terms)} logged values"))
    expected = {"upper-bound": "clean", "label-free": "none"}.get(entry.role, META_LABELS_USED if cell.clean_meta else "noisy")
    used = first["method"]["labels_used"]
    rows.append(("trains on noisy labels only (clean only for upper bounds and a declared meta set, none for label-free)",
                 used == expected,
                 f"labels used: {used}"))
    if used == "none":
        other = run_cell_with_codes(replace(cell, rate=0.2))
        same_codes = all(np.array_equal(codes[k], getattr(other.codes, k)) for k in codes)
        rows.append(("label-free: codes independent of the noise rate", same_codes, "pair-swap 0.5 vs 0.2, same seeds"))
    detection = first.get("noise_detection") or {}
    if "clean" in detection:
        total = sum(detection["clean"]) + sum(detection["corrupted"])
        rows.append(("one sample weight per training item", total == sizes["train"], f"{total} weights, {sizes['train']} items"))
    if "entry_shape" in detection:
        n_rows, n_classes = detection["entry_shape"]
        rows.append(("one entry score per training label entry", n_rows == sizes["train"],
                     f"{n_rows} x {n_classes} scores, {sizes['train']} items"))
    return rows
