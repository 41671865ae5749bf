"""The benchmark scripts still run against the current API (on toy, a few epochs): a script that broke
would otherwise only be found when its numbers are next re-measured."""

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import pytest

from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import Cell
from cmh_bench.dataset import load_split
from cmh_bench.harness import run_cell
from cmh_bench.profiles import cell_hparams

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    """The benchmark script ``name`` as a module (benchmarks/ on the path, as when it runs as a script)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def floor_on_toy():
    return run_cell(Cell(dataset="toy", method="floor-constant", bits=16, rate=0.0))["selections"]["val"]["metrics"]["mean"]["map"]


def test_dcmh_dynamics_row_on_toy(floor_on_toy):
    script = load_script("bench_dcmh_dynamics")
    hp = dataclasses.replace(cell_hparams(Cell(dataset="toy", method="dcmh", bits=16)), epochs=2)
    row = script.dynamics_row("toy", hp, 16, 0, 1.0)
    assert row[0] == "toy" and len(row) == 10
    assert all(math.isfinite(float(value)) for value in row[1:])
    assert float(row[-1]) == pytest.approx(floor_on_toy, abs=5e-4)  # the script's floor is the floor-constant row


def test_dcmh_dynamics_text_scale_reaches_the_training_features():
    script = load_script("bench_dcmh_dynamics")
    hp = dataclasses.replace(cell_hparams(Cell(dataset="toy", method="dcmh", bits=16)), epochs=1)
    text = load_split(ensure_dataset("toy")).train.text.astype(float)
    squared_norm = (text ** 2).sum(1).mean()
    assert float(script.dynamics_row("toy", hp, 16, 0, 2.0)[1]) == pytest.approx(4 * squared_norm, rel=1e-2, abs=0.05)


def test_clean_rows_on_toy(floor_on_toy):
    script = load_script("bench_clean_rows")
    assert script.harness_map("toy", "floor-constant", 16, 0, "quick") == pytest.approx(floor_on_toy)
    assert script.ridge_map("toy", 16, 0) > floor_on_toy
