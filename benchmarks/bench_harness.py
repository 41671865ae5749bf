"""Harness overhead: DCMH trained through the harness vs a bare hand-written PyTorch loop.

Like for like: both train DCMH (quick widths, a fixed number of epochs) on the same tensors of the
same dataset with the same seed, then encode queries and database once and evaluate them with the
same metric function; neither evaluates during training (the harness with ``val_fraction=0, val_every=0``). The
harness run also loads the file, injects the noise, logs epochs and builds the record; the bare loop
gets its tensors ready-made (loading and noise are done before its clock starts). One untimed run of
each first (numba's kernels compile on the first evaluation), then the two alternate.

A third row prices the training curve separately: the harness with the CLI's default
``--val-every 5`` with no validation part (the test queries evaluated every 5 epochs for the record's curve and the flagged rules).

    python benchmarks/bench_harness.py [--dataset synth-flickr] [--epochs 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
from functools import partial
import statistics
import time

import numpy as np
import torch
from tabulate import tabulate

from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import Cell
from cmh_bench.dataset import load_split
from cmh_bench.harness import run_cell, to_device
from cmh_bench.methods.dcmh import dcmh_batch_loss, geometric_lr, release_init
from cmh_bench.profiles import cell_hparams
from cmh_bench.metrics import Retrieval, evaluate
from cmh_bench.noise import inject_noise


def bare_loop(data, noisy_labels: np.ndarray, bits: int, hp, seed: int) -> float:
    """DCMH (methods/dcmh.py, version 4) written out as one plain PyTorch loop with hyper-parameters ``hp``;
    returns the mean MAP (so the work is not skipped)."""
    tensor = partial(to_device, device=torch.device("cpu"))
    image, text, labels = tensor(data.train.image), tensor(data.train.text), tensor(noisy_labels)
    text_mean = text.mean(0)
    torch.manual_seed(seed)
    nets = {"image": torch.nn.Linear(image.shape[1], bits),
            "text": torch.nn.Sequential(torch.nn.Linear(text.shape[1], hp.hidden), torch.nn.ReLU(), torch.nn.Linear(hp.hidden, bits))}
    for net in nets.values():
        release_init(net, hp.init_std)
    features = {"image": image, "text": text - text_mean}
    optimisers = {m: torch.optim.SGD(nets[m].parameters(), lr=hp.lr_start, weight_decay=hp.weight_decay) for m in nets}
    n = len(labels)
    buffers = {m: torch.zeros(n, bits) for m in nets}
    codes = torch.sign(buffers["image"] + buffers["text"])
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(hp.epochs):
        lr = geometric_lr(epoch, hp.epochs, hp.lr_start, hp.lr_end)
        for modality, other in (("text", "image"), ("image", "text")):
            for group in optimisers[modality].param_groups:
                group["lr"] = lr
            for index in torch.randperm(n, generator=generator).split(hp.batch_size):
                f = nets[modality](features[modality][index])
                similarity = (labels[index] @ labels.T > 0).float()
                rest = buffers[modality].sum(0) - buffers[modality][index].sum(0)
                loss = dcmh_batch_loss(f, buffers[other], similarity, codes[index], rest, hp.gamma, hp.eta, n)
                optimisers[modality].zero_grad()
                loss.backward()
                optimisers[modality].step()
                buffers[modality][index] = f.detach()
        codes = torch.sign(buffers["image"] + buffers["text"])
    with torch.no_grad():
        inputs = {"image": lambda x: x, "text": lambda x: x - text_mean}
        encoded = [torch.where(nets[m](inputs[m](tensor(getattr(getattr(data, part), m)))) >= 0, 1, -1).numpy()
                   for part in ("query", "database") for m in ("image", "text")]
    return evaluate(Retrieval(*encoded, data.query.labels, data.database.labels))["mean"]["map"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synth-flickr")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_split(ensure_dataset(args.dataset))
    noisy = inject_noise("pair-swap", data.train.labels, 0.5, 0).labels
    base = dict(dataset=args.dataset, method="dcmh", bits=args.bits, rate=0.5, seed=0, profile="quick",
                hparams=(("epochs", str(args.epochs)),), threads=args.threads, val_fraction=0.0)
    hp = cell_hparams(Cell(**base))  # the quick profile's tuned values with --epochs, as the harness resolves them
    final_map = lambda record: record["selections"]["final"]["metrics"]["mean"]["map"]  # noqa: E731
    runs = {
        "bare loop": lambda: bare_loop(data, noisy, args.bits, hp, seed=0),
        "harness": lambda: final_map(run_cell(Cell(**base, val_every=0))),
        "harness + curve every 5": lambda: final_map(run_cell(Cell(**base, val_every=5))),
    }
    timings = {name: [] for name in runs}
    maps = {name: run() for name, run in runs.items()}  # warm-up, untimed
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            maps[name] = run()
            timings[name].append(time.perf_counter() - started)
    bare = statistics.median(timings["bare loop"])
    harness = statistics.median(timings["harness"])
    rows = [[name, f"{statistics.median(t):.2f}", f"{statistics.median(t) / bare:.3f}", f"{maps[name]:.4f}"]
            for name, t in timings.items()]
    print(f"DCMH quick profile (hidden {hp.hidden}), {args.epochs} epochs, {args.dataset}, {args.bits} bits, "
          f"{args.threads} thread(s), median of {args.repeats} after one warm-up run each")
    print(tabulate(rows, headers=["run", "seconds", "ratio to bare", "MAP"], tablefmt="github"))
    curve = statistics.median(timings["harness + curve every 5"]) - harness
    print(f"harness overhead (like for like): {harness / bare - 1:+.1%}; "
          f"training curve (every 5 epochs): {curve:+.2f} s = {curve / harness:+.1%} of the harness run")


if __name__ == "__main__":
    main()
