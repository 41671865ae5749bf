"""Time and peak memory of SCBCH's CSCC weights (cmh_bench.methods.scbch.cscc_weights) as N grows.

Each size runs in a fresh subprocess on random unit-norm codes U, V (N × L) and random multi-hot
labels (N × C). Memory is the process's peak resident set size (resource.getrusage ru_maxrss,
which sees torch's allocations, unlike tracemalloc), read once after the inputs are built and
once after cscc_weights; their difference is the extra memory of the neighbour search. The
N × N similarity matrix that a direct implementation would hold is shown for comparison.

    python benchmarks/bench_cscc.py [--sizes 10000,50000,200000] [--bits 64] [--k 20] [--classes 24] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, bits: int, k: int, classes: int, threads: int) -> dict:
    """Run cscc_weights once at size ``n`` in this process; its time and peak memory."""
    import torch

    from cmh_bench.methods.scbch import cscc_weights

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    U, V = (torch.nn.functional.normalize(torch.randn(n, bits, generator=g), dim=1) for _ in range(2))
    y = (torch.rand(n, classes, generator=g) < 0.15).float()
    before = peak_rss_mb()
    started = time.perf_counter()
    w = cscc_weights(U, V, y, k=k)
    seconds = time.perf_counter() - started
    assert w.shape == (n,) and torch.isfinite(w).all()
    peak = peak_rss_mb()
    return {"n": n, "seconds": seconds, "peak_mb": peak, "extra_mb": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,50000,200000", help="comma-separated N")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # internal: measure one size
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.bits, args.k, args.classes, args.threads)))
        return

    print(f"CSCC weights: L = {args.bits}, k = {args.k}, C = {args.classes}, threads = {args.threads or 'default'}; "
          "memory = peak RSS (getrusage) of a fresh process per size")
    print(f"| {'N':>7} | {'time (s)':>8} | {'peak RSS (MB)':>13} | {'extra over inputs (MB)':>22} | {'dense N×N fp32 (MB)':>19} |")
    print(f"|{'-' * 9}|{'-' * 10}|{'-' * 15}|{'-' * 24}|{'-' * 21}|")
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--worker", str(n), "--bits", str(args.bits), "--k", str(args.k),
                   "--classes", str(args.classes), "--threads", str(args.threads)]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        print(f"| {n:>7} | {row['seconds']:>8.2f} | {row['peak_mb']:>13.0f} | {row['extra_mb']:>22.0f} | {n * n * 4 / 2**20:>19.0f} |")


if __name__ == "__main__":
    main()
