"""Where one SCBCH cell's time goes on this machine's device, and its GPU memory peaks.

For GPU users: on CUDA it runs the paper profile (8192-wide networks, 50 epochs, batch 128) of one
cell; on a CPU it runs the quick profile and says so. The cell runs through the harness as usual;
the parts are timed by wrapping the functions that do them (each timer synchronises the device
first, so asynchronous GPU work is charged to the part that launched it):

- loading the dataset file and injecting the noise;
- data movement: the harness's host -> device copies of features and labels;
- CSCC: SCBCH's sample-reliability weights (the blocked neighbour search and soft labels);
- evaluation: encoding and scoring (validation part, the test queries for the curve and the flagged
  rules, and the final metrics of each rule's epoch);
- training: the rest (forward, backward, optimiser steps; and building the record).

    python benchmarks/bench_gpu_cell.py [--dataset synth-flickr] [--bits 32] [--device auto] [--epochs N]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

import torch
from tabulate import tabulate

from cmh_bench import harness, selection
from cmh_bench.cell import Cell
from cmh_bench.device import resolve_device
from cmh_bench.methods import scbch


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(module, name: str, part: str, seconds: dict, device: torch.device, depth: list) -> None:
    """Replace ``module.name`` by a wrapper that adds its (outermost) wall time to ``seconds[part]``."""
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if depth:  # nested inside another timed part: charged there already
            return original(*args, **kwargs)
        synchronise(device)
        depth.append(part)
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            synchronise(device)
            seconds[part] += time.perf_counter() - started
            depth.pop()

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synth-flickr")
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (default: the profile's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    profile = "paper" if device.type == "cuda" else "quick"
    if profile == "quick":
        print(f"no CUDA device here ({device}): running the quick profile, not the paper one")
    seconds: dict[str, float] = defaultdict(float)
    depth: list[str] = []
    timed(harness, "load_split", "loading the dataset and injecting noise", seconds, device, depth)
    timed(harness, "inject_noise", "loading the dataset and injecting noise", seconds, device, depth)
    timed(harness, "to_device", "data movement", seconds, device, depth)
    timed(scbch, "cscc_weights", "CSCC", seconds, device, depth)
    for module in (harness, selection):
        timed(module, "evaluate_keeping_threads", "evaluation", seconds, device, depth)
    timed(selection, "encode_parts", "evaluation", seconds, device, depth)
    hparams = (("epochs", str(args.epochs)),) if args.epochs else ()
    cell = Cell(dataset=args.dataset, method="scbch", bits=args.bits, rate=0.5, profile=profile, device=args.device,
                hparams=hparams)
    started = time.perf_counter()
    record = harness.run_cell(cell)
    total = time.perf_counter() - started
    fit = record["seconds"]["train"]
    other = total - sum(seconds.values())
    rows = [[part, f"{value:.2f}", f"{value / total:.1%}"] for part, value in seconds.items()]
    rows.append(["training (the rest: forward, backward, steps; and the record)", f"{other:.2f}", f"{other / total:.1%}"])
    rows.append(["whole cell", f"{total:.2f}", "100.0%"])
    print(f"SCBCH, {profile} profile, {args.dataset}, {args.bits} bits, pair-swap 0.5, device {record['environment']['device']}; "
          f"hidden {record['method']['hparams']['hidden']}, {record['method']['hparams']['epochs']} epochs; start to end of fit {fit:.2f} s")
    print(tabulate(rows, headers=["part", "seconds", "share"], tablefmt="github"))
    memory = record["memory"]
    print("memory (MiB): " + ", ".join(f"{key} {value}" for key, value in memory.items()))


if __name__ == "__main__":
    main()
