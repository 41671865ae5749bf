"""Time and peak memory of the blocked N × N neighbour searches as N grows: SCBCH's CSCC weights
(cmh_bench.methods.scbch.cscc_weights, ``--graph cscc``) and DGCPN's neighbour distributions
(cmh_bench.methods.dgcpn.neighbour_distributions, ``--graph dgcpn``).

Each size runs in a fresh subprocess. CSCC: random unit-norm codes U, V (N × L) and random
multi-hot labels (N × C), k neighbours. DGCPN: random non-negative image and text features
(N × d_img, N × d_txt, ``--dims``), k kept entries per row (``--k``; the published 2000 by default,
since the benchmark's default k = 0.4 N is meant for its ~10k training items). Memory is the
process's peak resident set size (resource.getrusage ru_maxrss, which sees torch's allocations,
unlike tracemalloc), read once after the inputs are built and once after the search; their
difference is the extra memory of the search (for DGCPN it includes the N × (k − 1) result). The
N × N similarity matrix that a direct implementation would hold is shown for comparison.

    python benchmarks/bench_cscc.py [--graph cscc|dgcpn] [--sizes 10000,50000,200000] [--bits 64] [--k 20]
        [--classes 24] [--dims 4096,1386] [--threads 1]
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


def cscc_search(n: int, args: argparse.Namespace, g):
    """Inputs of cscc_weights at size ``n`` and a call that runs it and checks its result."""
    import torch

    from cmh_bench.methods.scbch import cscc_weights

    U, V = (torch.nn.functional.normalize(torch.randn(n, args.bits, generator=g), dim=1) for _ in range(2))
    y = (torch.rand(n, args.classes, generator=g) < 0.15).float()

    def run() -> bool:
        w = cscc_weights(U, V, y, k=args.k)
        return w.shape == (n,) and bool(torch.isfinite(w).all())

    return run


def dgcpn_search(n: int, args: argparse.Namespace, g):
    """Inputs of DGCPN's neighbour_distributions at size ``n`` and a call that runs it and checks its result."""
    import torch

    from cmh_bench.methods.dgcpn import neighbour_distributions

    image_dim, text_dim = (int(d) for d in args.dims.split(","))
    image, text = torch.rand(n, image_dim, generator=g), torch.rand(n, text_dim, generator=g)

    def run() -> bool:
        values, indices = neighbour_distributions(image, text, 0.01, min(args.k, n))
        return values.shape == (n, min(args.k, n) - 1) and torch.allclose(values.sum(1), torch.ones(n))

    return run


SEARCHES = {"cscc": cscc_search, "dgcpn": dgcpn_search}


def measure(n: int, args: argparse.Namespace) -> dict:
    """Run the chosen search once at size ``n`` in this process; its time and peak memory."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    run = SEARCHES[args.graph](n, args, torch.Generator().manual_seed(0))
    before = peak_rss_mb()
    started = time.perf_counter()
    assert run()
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    return {"n": n, "seconds": seconds, "peak_mb": peak, "extra_mb": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", choices=tuple(SEARCHES), default="cscc", help="which neighbour search")
    parser.add_argument("--sizes", default="10000,50000,200000", help="comma-separated N")
    parser.add_argument("--bits", type=int, default=64, help="cscc: code length L")
    parser.add_argument("--k", type=int, default=0, help="neighbours (cscc, default 20) / kept entries per row (dgcpn, default 2000)")
    parser.add_argument("--classes", type=int, default=24, help="cscc: label classes C")
    parser.add_argument("--dims", default="4096,1386", help="dgcpn: image,text feature dims")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # internal: measure one size
    args = parser.parse_args()
    args.k = args.k or {"cscc": 20, "dgcpn": 2000}[args.graph]
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return

    inputs = f"L = {args.bits}, C = {args.classes}" if args.graph == "cscc" else f"dims = {args.dims}, a1 = 0.01"
    print(f"{args.graph} neighbour search: k = {args.k}, {inputs}, threads = {args.threads or 'default'}; "
          "memory = peak RSS (getrusage) of a fresh process per size")
    print(f"| {'N':>7} | {'time (s)':>8} | {'peak RSS (MB)':>13} | {'extra over inputs (MB)':>22} | {'dense N×N fp32 (MB)':>19} |")
    print(f"|{'-' * 9}|{'-' * 10}|{'-' * 15}|{'-' * 24}|{'-' * 21}|")
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--worker", str(n), "--graph", args.graph, "--bits", str(args.bits),
                   "--k", str(args.k), "--classes", str(args.classes), "--dims", args.dims, "--threads", str(args.threads)]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        print(f"| {n:>7} | {row['seconds']:>8.2f} | {row['peak_mb']:>13.0f} | {row['extra_mb']:>22.0f} | {n * n * 4 / 2**20:>19.0f} |")


if __name__ == "__main__":
    main()
