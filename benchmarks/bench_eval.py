"""Benchmark: the two-direction tie-aware evaluation (cmh_bench.metrics.evaluate) against the
per-query sort-and-cumsum loop of the field's published code.

    python benchmarks/bench_eval.py                       # all scales, 16/64/128 bits, 3 repeats
    python benchmarks/bench_eval.py --quick               # smoke run, a few seconds
    python benchmarks/bench_eval.py --scales nus-wide --bits 64 --repeats 5

Data. Codes are uniform random ±1 int8, independent for the four code sets. Labels come from the
real MIRFlickr-25K label matrix (LAll, 20,015 x 24):
- mirflickr: the usual split, queries = rows 0..1999, database = rows 2000..20014 (24 classes);
- nus-wide (2,100 x 193,734) and 1m (2,000 x 1,000,000), NUS-WIDE-like 21 classes: LAll restricted
  to its 21 most frequent classes, rows left without a label dropped, then rows resampled uniformly
  with replacement (seeded) for the queries and for the database.

Measurements. Each (scale, bits) runs in a fresh process.
- "ours s": median over --repeats runs of evaluate() on the ±1 inputs (packing, both directions'
  histograms and stable AP, all metrics), after a warm-up on a slice that loads the compiled
  kernels; "ours cpu s": its process CPU time (both threads), which does not depend on other load
  on the machine; "tie-aware only s": evaluate(..., stable_ap=False), everything but map_stable.
- "loop s": the published loop (per query: relevance by label product, Hamming distance
  0.5·(L − B q) in float32, np.argsort, cumsum, AP), one run over both directions; at mirflickr on
  every query, elsewhere on --loop-queries queries per direction, extrapolated linearly to all
  queries (marked "~"). "ratio" = loop s / ours s.
- "extra MiB": peak RSS during one full evaluate minus RSS just before it (peak reset through
  /proc/self/clear_refs, read as resource.getrusage ru_maxrss; counts numpy and numba allocations).
- "stable check": max |AP difference| between the loop with argsort(kind="stable") and evaluate's
  stable-tie AP, per query, on every query at mirflickr (and the MAP) and on the loop's queries
  elsewhere; the script fails if it exceeds 1e-9.
- "load": the 1-minute load average after the case; other processes on the 2 cores inflate
  wall-clock times (compare "ours cpu s").
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import re
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from tabulate import tabulate

LABELS_MAT = Path(__file__).resolve().parents[2] / "shared/data/mirflickr25k/mirflickr25k-lall.mat"
STABLE_TOLERANCE = 1e-9
TARGET_SECONDS, TARGET_RATIO = 1.5, 20.0


@dataclass(frozen=True)
class Scale:
    n_queries: int
    n_items: int
    labels: str  # "mirflickr" (real split) or "nus-like" (21 classes, resampled rows)
    full_loop: bool  # run the loop on every query (no extrapolation)


SCALES = {
    "mirflickr": Scale(2_000, 18_015, "mirflickr", True),
    "nus-wide": Scale(2_100, 193_734, "nus-like", False),
    "1m": Scale(2_000, 1_000_000, "nus-like", False),
    "quick": Scale(200, 5_000, "nus-like", True),
}


def make_labels(scale: Scale, labels_mat: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Query and database label matrices (uint8) following the rule in the module docstring."""
    all_labels = scipy.io.loadmat(labels_mat)["LAll"].astype(np.uint8)
    if scale.labels == "mirflickr":
        return all_labels[: scale.n_queries], all_labels[scale.n_queries : scale.n_queries + scale.n_items]
    top_classes = np.sort(np.argsort(-all_labels.sum(axis=0), kind="stable")[:21])
    pool = all_labels[:, top_classes]
    pool = pool[pool.any(axis=1)]
    return pool[rng.integers(0, len(pool), scale.n_queries)], pool[rng.integers(0, len(pool), scale.n_items)]


def random_codes(rng: np.random.Generator, rows: int, bits: int) -> np.ndarray:
    """Uniform ±1 int8 codes, built in place (no float temporaries that would inflate the memory peak)."""
    codes = rng.integers(0, 2, size=(rows, bits), dtype=np.int8)
    codes *= 2
    codes -= 1
    return codes


def loop_average_precisions(query_codes, db_codes, query_labels, db_labels, kind: str) -> np.ndarray:
    """The published per-query loop; AP per query (NaN when the query has no relevant item)."""
    n_bits = db_codes.shape[1]
    db = db_codes.astype(np.float32)
    db_labels = db_labels.astype(np.float32)
    aps = np.full(len(query_codes), np.nan)
    for q in range(len(query_codes)):
        relevant = db_labels @ query_labels[q].astype(np.float32) > 0
        if not relevant.any():
            continue
        hamming = 0.5 * (n_bits - db @ query_codes[q].astype(np.float32))
        ranked = relevant[np.argsort(hamming, kind=kind)]
        hits = np.cumsum(ranked)
        aps[q] = np.mean(hits[ranked] / (np.flatnonzero(ranked) + 1))
    return aps


def reset_peak_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def load() -> str:
    """The 1-minute load average: other processes on the machine inflate wall-clock times."""
    return f"{os.getloadavg()[0]:.1f}"


def current_rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def median_times(run, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU seconds of ``repeats`` calls of ``run``."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def run_case(scale_name: str, bits: int, repeats: int, loop_queries: int, labels_mat: Path, seed: int) -> dict:
    """One (scale, bits) measurement; runs in its own process."""
    from cmh_bench.metrics import Retrieval, evaluate

    scale = SCALES[scale_name]
    rng = np.random.default_rng(seed)
    query_labels, db_labels = make_labels(scale, labels_mat, rng)
    query_image, query_text = random_codes(rng, scale.n_queries, bits), random_codes(rng, scale.n_queries, bits)
    db_image, db_text = random_codes(rng, scale.n_items, bits), random_codes(rng, scale.n_items, bits)
    inputs = Retrieval(query_image, query_text, db_image, db_text, query_labels, db_labels)

    warm_up = Retrieval(query_image[:4], query_text[:4], db_image[:64], db_text[:64], query_labels[:4], db_labels[:64])
    for stable_ap in (True, False):  # loads both compiled specialisations
        evaluate(warm_up, stable_ap=stable_ap)
    rss_before = current_rss_kib()
    peak_reset = reset_peak_memory()
    report, histograms = evaluate(inputs, keep_histograms=True)
    extra_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024 if peak_reset else None
    seconds, cpu_seconds = median_times(lambda: evaluate(inputs), repeats)
    tie_aware_seconds, _ = median_times(lambda: evaluate(inputs, stable_ap=False), repeats)

    n_loop = scale.n_queries if scale.full_loop else min(loop_queries, scale.n_queries)
    directions = {"i2t": (query_image, db_text), "t2i": (query_text, db_image)}
    loop_seconds, stable_error = 0.0, 0.0
    for direction, (queries, database) in directions.items():
        start = time.perf_counter()
        loop_average_precisions(queries[:n_loop], database, query_labels[:n_loop], db_labels, kind="quicksort")
        loop_seconds += (time.perf_counter() - start) * scale.n_queries / n_loop
        stable_loop = loop_average_precisions(queries[:n_loop], database, query_labels[:n_loop], db_labels, kind="stable")
        ours = histograms[direction]["stable_ap"][:n_loop]
        assert np.array_equal(np.isnan(stable_loop), np.isnan(ours))
        stable_error = max(stable_error, float(np.nanmax(np.abs(stable_loop - ours))))
        if n_loop == scale.n_queries:
            stable_error = max(stable_error, abs(float(np.nanmean(stable_loop)) - report[direction]["map_stable"]))
    return {
        "scale": scale_name,
        "queries x items": f"{scale.n_queries:,} x {scale.n_items:,}",
        "bits": bits,
        "ours s": seconds,
        "ours cpu s": cpu_seconds,
        "tie-aware only s": tie_aware_seconds,
        "ns/pair": seconds / (2 * scale.n_queries * scale.n_items) * 1e9,
        "loop s": loop_seconds,
        "loop queries": ("" if n_loop == scale.n_queries else "~ ") + f"{2 * n_loop}/{2 * scale.n_queries}",
        "ratio": loop_seconds / seconds,
        "extra MiB": extra_mib,
        "stable check": stable_error,
        "map (i2t/t2i)": f"{report['i2t']['map']:.4f}/{report['t2i']['map']:.4f}",
        "load": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    full_scales = [name for name in SCALES if name != "quick"]
    parser.add_argument("--scales", nargs="+", choices=full_scales, default=full_scales)
    parser.add_argument("--bits", nargs="+", type=int, default=[16, 64, 128])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of evaluate per case (median reported)")
    parser.add_argument(
        "--loop-queries", type=int, default=100, help="queries per direction for the loop where it is extrapolated"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 x 5,000 at 16 and 64 bits, 1 repeat")
    parser.add_argument("--labels-mat", type=Path, default=LABELS_MAT, help="MIRFlickr-25K LAll .mat file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.labels_mat.is_file():
        parser.error(f"{args.labels_mat} not found; pass --labels-mat with the MIRFlickr-25K mirflickr25k-lall.mat")
    scales, bits_list, repeats = (["quick"], [16, 64], 1) if args.quick else (args.scales, args.bits, args.repeats)

    rows = []
    context = multiprocessing.get_context("spawn")
    for scale_name in scales:
        for bits in bits_list:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                job = pool.submit(run_case, scale_name, bits, repeats, args.loop_queries, args.labels_mat, args.seed)
                row = job.result()
            rows.append(row)
            print(f"done {scale_name} {bits} bits: {row['ours s']:.3f} s", flush=True)
    print()
    formats = ("", "", "", ".3f", ".3f", ".3f", ".2f", ".1f", "", ".0f", ".1f", ".1e", "", "")
    print(tabulate(rows, headers="keys", floatfmt=formats))
    worst = max(row["stable check"] for row in rows)
    print(f"\nstable variant vs loop with argsort(kind='stable'): max |AP difference| {worst:.1e}", end="")
    print(f" (tolerance {STABLE_TOLERANCE:g})")
    for row in rows:
        if row["scale"] == "nus-wide":
            verdict = "met" if row["ours s"] <= TARGET_SECONDS and row["ratio"] >= TARGET_RATIO else "MISSED"
            print(f"target at nus-wide {row['bits']} bits (<= {TARGET_SECONDS} s, >= {TARGET_RATIO:g}x): {verdict}", end="")
            print(f" (wall {row['ours s']:.2f} s, CPU {row['ours cpu s']:.2f} s on {os.cpu_count()} cores, load {row['load']})")
    if worst > STABLE_TOLERANCE:
        raise SystemExit("stable variant disagrees with the stable-sort loop")


if __name__ == "__main__":
    main()
