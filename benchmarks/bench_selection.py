"""Benchmark: what the per-epoch model-selection evaluations cost in a quick cell.

Runs one quick-profile cell per method through the harness (default validation part: 10 % of the
training items, evaluated every 5 epochs and at the last) and times, inside that run, the two
per-epoch evaluations of cmh_bench.selection: the validation part (held-out items against the
fitting items, noisy and clean labels) and the test queries (best-on-test and the MAP curve, which
the harness evaluated every 5 epochs before validation existed too). Columns:

- "cell s": wall time of the whole cell (``seconds.total`` of its record);
- "validation s" / "%": time in ``validation_scores`` (encoding both parts + two evaluations) per cell,
  and its share of the cell: the extra cost of validation evaluation;
- "test-curve s" / "%": time in the per-epoch test-query evaluations;
- "evals": per-epoch evaluations in the cell.

    python benchmarks/bench_selection.py --methods scbch,rshnl,nrch,dcmh --dataset synth-flickr --rate 0.8
"""

from __future__ import annotations

import argparse
import time

from tabulate import tabulate

from cmh_bench import selection
from cmh_bench.cell import Cell
from cmh_bench.harness import run_cell


def timed(function, seconds: list[float]):
    """``function`` wrapped so that each call's wall time is appended to ``seconds``."""

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    return wrapper


def measure(cell: Cell) -> list[str]:
    """Run ``cell`` with the validation and the per-epoch test evaluations timed; one table row."""
    validation, epochs = [], []
    original_scores, original_epoch = selection.validation_scores, selection.Selection.evaluate_epoch
    selection.validation_scores = timed(original_scores, validation)
    selection.Selection.evaluate_epoch = timed(original_epoch, epochs)
    try:
        record = run_cell(cell)
    finally:
        selection.validation_scores, selection.Selection.evaluate_epoch = original_scores, original_epoch
    total = record["seconds"]["total"]
    test_curve = sum(epochs) - sum(validation)  # evaluate_epoch = test evaluation + validation_scores
    return [cell.method, f"{total:.1f}", f"{sum(validation):.2f}", f"{100 * sum(validation) / total:.1f}",
            f"{test_curve:.2f}", f"{100 * test_curve / total:.1f}", str(len(epochs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="scbch,rshnl,nrch,dcmh")
    parser.add_argument("--dataset", default="synth-flickr")
    parser.add_argument("--rate", type=float, default=0.8)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    run_cell(Cell(dataset="toy", method="dcmh", bits=args.bits, hparams=(("epochs", "1"), ("hidden", "8")),
                  threads=args.threads))  # compiles the evaluation kernels outside the timed cells
    rows = [measure(Cell(dataset=args.dataset, method=method, bits=args.bits, rate=args.rate, profile="quick",
                         threads=args.threads)) for method in args.methods.split(",")]
    print(f"quick profile, {args.dataset}, pair-swap {args.rate:g}, {args.bits} bits, {args.threads} thread(s); "
          "validation 10 % of the training items, evaluated every 5 epochs and at the last")
    print(tabulate(rows, headers=["method", "cell s", "validation s", "%", "test-curve s", "%", "evals"], tablefmt="github"))


if __name__ == "__main__":
    main()
