"""The options the per-stand-in benchmark scripts share: which stand-ins, code length, seed and profile."""

from __future__ import annotations

import argparse

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
