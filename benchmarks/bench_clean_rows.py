"""Clean-label context for DCMH: per stand-in, DCMH trained on clean labels next to the floor,
a ridge regression on clean labels and the label oracle (mean of I2T and T2I tie-aware MAP).

- floor: ``floor-constant``; oracle: ``label-oracle`` (sign(Y_clean R)); DCMH: ``dcmh`` at noise
  rate 0 (quick profile unless --profile); all three through the harness.
- ridge: for each modality, a linear map W = argmin ||X W − Y R||² + α||W||² from the training
  features to the oracle's continuous targets Y_clean R (the same R as ``label-oracle``), codes
  sign(X W); α by leave-one-out cross-validation on the training items only (sklearn RidgeCV).

    python benchmarks/bench_clean_rows.py [--datasets synth-flickr,...] [--bits 32] [--seed 0]
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from tabulate import tabulate

from cmh_bench.catalog import ensure_dataset
from cmh_bench.dataset import load_split
from stand_ins import codes_map, harness_map, stand_in_parser  # benchmarks/: what the stand-in scripts share

RIDGE_ALPHAS = np.logspace(-2, 4, 13)


def ridge_map(dataset: str, bits: int, seed: int) -> float:
    """Mean MAP of ridge-regression codes sign(X W) fitted to Y_clean R on the training items."""
    data = load_split(ensure_dataset(dataset))
    projection = torch.randn(data.train.labels.shape[1], bits, generator=torch.Generator().manual_seed(seed)).numpy()
    targets = data.train.labels.astype(np.float64) @ projection
    codes = {}
    for modality in ("image", "text"):
        model = RidgeCV(alphas=RIDGE_ALPHAS).fit(getattr(data.train, modality).astype(np.float64), targets)
        for part in ("query", "database"):
            codes[part, modality] = np.where(model.predict(getattr(getattr(data, part), modality).astype(np.float64)) >= 0, 1, -1).astype(np.int8)
    return codes_map(codes, data)


def main() -> None:
    parser = stand_in_parser(__doc__.split("\n")[0])
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        floor, dcmh, oracle = (harness_map(dataset, m, args.bits, args.seed, args.profile)
                               for m in ("floor-constant", "dcmh", "label-oracle"))
        rows.append([dataset, f"{floor:.3f}", f"{dcmh:.3f}", f"{dcmh - floor:+.3f}", f"{ridge_map(dataset, args.bits, args.seed):.3f}", f"{oracle:.3f}"])
    print(f"clean labels, {args.bits} bits, seed {args.seed}, {args.profile} profile, mean of I2T and T2I tie-aware MAP")
    print(tabulate(rows, headers=["dataset", "floor", "DCMH", "DCMH − floor", "ridge", "label-oracle"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
