"""What the per-stand-in benchmark scripts share: their options, and the MAP of a harness cell or of codes."""

from __future__ import annotations

import argparse

from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell
from cmh_bench.metrics import Retrieval, evaluate

STAND_INS = "synth-flickr,synth-nus,synth-coco,synth-iapr"


def stand_in_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with --datasets (default: the four stand-ins), --bits (32), --seed (0) and
    --profile (quick)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datasets", default=STAND_INS)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="quick")
    return parser


def harness_map(dataset: str, method: str, bits: int, seed: int, profile: str) -> float:
    """Mean MAP of ``method`` trained on clean labels (noise rate 0) through the harness, at the epoch of rule val."""
    record = run_cell(Cell(dataset=dataset, method=method, bits=bits, rate=0.0, seed=seed, profile=profile, threads=1))
    return record["selections"]["val"]["metrics"]["mean"]["map"]


def codes_map(codes: dict, data) -> float:
    """Mean of I2T and T2I tie-aware MAP of ``codes`` ({(part, modality): ±1 array}, part query or database)
    for the test queries of ``data`` (a loaded split) against its database."""
    return evaluate(Retrieval(codes["query", "image"], codes["query", "text"], codes["database", "image"],
                              codes["database", "text"], data.query.labels, data.database.labels))["mean"]["map"]
