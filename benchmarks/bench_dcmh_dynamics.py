"""DCMH's training dynamics per stand-in, on clean labels: how far its outputs get from the likelihood's saddle.

DCMH's likelihood term is bilinear in the two nets' outputs (Theta = F G^T / 2), so F = G = 0 is a
saddle where the per-pair loss is log 2 = 0.693 and each net's gradient is proportional to the other
net's outputs. This script trains DCMH (the class in methods/dcmh.py, the profile's hyper-parameters
from the tuned file unless --lr-factor / --epochs / --batch-size change them) on all training items
with clean labels and prints, per stand-in:

- the inputs: mean squared norm of the text features |t|^2, and the share of the image features'
  squared norm that is their common mean, |mean x|^2 / mean |x|^2 (the direction the bit-balance
  term's gradient steps along for a linear hash layer);
- "lik/pair": the likelihood term per pair at the last epoch, on the full buffers (0.693: at the saddle);
- "|G|", "mean/|G|": the text outputs' mean norm and the norm of their mean over it at the last epoch
  (1: every text item has the same output, i.e. the text net ignores its input);
- "peak loss / first": the largest epoch loss of each net over its epoch-0 loss (>> 1: the
  balance term blew up);
- MAP of the final codes on the test queries, and the floor's (the ``floor-constant`` row through the harness).

``--text-scale S`` multiplies the text features (training and test alike): a diagnostic of the input
scale, not a setting of the method; ``--eta`` sets the bit-balance weight, a diagnostic too.

    python benchmarks/bench_dcmh_dynamics.py [--datasets synth-flickr,...] [--lr-factor 1] [--epochs N]
        [--batch-size B] [--text-scale S] [--eta E]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tabulate import tabulate
from torch.nn.functional import softplus

from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import Cell
from cmh_bench.dataset import load_split
from cmh_bench.harness import to_device
from cmh_bench.method import RunContext, TrainSet
from cmh_bench.methods.dcmh import DCMH
from cmh_bench.profiles import cell_hparams
from stand_ins import codes_map, harness_map, stand_in_parser  # benchmarks/: what the stand-in scripts share


def as_tensor(array: np.ndarray, scale: float = 1.0) -> torch.Tensor:
    """``array`` as a float32 CPU tensor, times ``scale``."""
    return to_device(array, torch.device("cpu")) * scale


def test_map(method: DCMH, data, text_scale: float) -> float:
    """Mean of I2T and T2I tie-aware MAP of the method's codes on the test queries against the database."""
    with torch.no_grad():
        codes = {(part, modality): method.encode(as_tensor(getattr(getattr(data, part), modality), text_scale if modality == "text" else 1.0), modality).numpy()
                 for part in ("query", "database") for modality in ("image", "text")}
    return codes_map(codes, data)


def dynamics_row(dataset: str, hp, bits: int, seed: int, text_scale: float) -> list:
    """Train DCMH on ``dataset`` with clean labels (text features times ``text_scale``); the row of the
    module docstring's columns."""
    data = load_split(ensure_dataset(dataset))
    train = TrainSet(as_tensor(data.train.image), as_tensor(data.train.text, text_scale), as_tensor(data.train.labels))
    torch.manual_seed(seed)
    ctx = RunContext(device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), seed=seed, profile="quick")
    method = DCMH(hp, bits, train.image.shape[1], train.text.shape[1], train.labels.shape[1])
    method.setup(train, ctx)
    losses = [method.train_epoch(epoch, train, ctx) for epoch in range(hp.epochs)]
    peak = {m: max(t[f"loss_{m}"] for t in losses) / losses[0][f"loss_{m}"] for m in ("image", "text")}
    f, g = method.buffers["image"], method.buffers["text"]
    similarity = (train.labels @ train.labels.T > 0).float()
    theta = 0.5 * f @ g.T
    likelihood = -(similarity * theta - softplus(theta)).mean().item()
    image = train.image.double()
    mean_share = (image.mean(0) ** 2).sum() / (image ** 2).sum(1).mean()
    g_norm = g.norm(dim=1).mean()
    return [dataset, f"{(train.text.double() ** 2).sum(1).mean():.1f}", f"{mean_share:.2f}", f"{likelihood:.3f}",
            f"{g_norm:.2f}", f"{g.mean(0).norm() / g_norm:.2f}", f"{peak['image']:.3g}", f"{peak['text']:.3g}",
            f"{test_map(method, data, text_scale):.3f}", f"{harness_map(dataset, 'floor-constant', bits, seed, 'quick'):.3f}"]


def main() -> None:
    parser = stand_in_parser(__doc__.split("\n")[0])
    parser.add_argument("--lr-factor", type=float, default=1.0, help="scales both ends of the profile's lr schedule")
    parser.add_argument("--epochs", type=int, help="default: the profile's")
    parser.add_argument("--batch-size", type=int, help="default: the profile's")
    parser.add_argument("--eta", type=float, help="the bit-balance weight (a diagnostic; default: the profile's)")
    parser.add_argument("--text-scale", type=float, default=1.0, help="multiplies the text features (a diagnostic: the input scale)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for dataset in args.datasets.split(","):
        hp = cell_hparams(Cell(dataset=dataset, method="dcmh", bits=args.bits, profile=args.profile))
        hp = dataclasses.replace(hp, lr_start=hp.lr_start * args.lr_factor, lr_end=hp.lr_end * args.lr_factor,
                                 epochs=args.epochs or hp.epochs, batch_size=args.batch_size or hp.batch_size,
                                 eta=hp.eta if args.eta is None else args.eta)
        rows.append(dynamics_row(dataset, hp, args.bits, args.seed, args.text_scale))
    print(f"DCMH on clean labels, all training items, {args.bits} bits, seed {args.seed}, {args.profile} profile x lr "
          f"{args.lr_factor:g}, epochs {hp.epochs}, batch {hp.batch_size}, eta {hp.eta:g}, text features x {args.text_scale:g}; saddle: lik/pair = log 2 = 0.693")
    print(tabulate(rows, headers=["dataset", "|t|^2", "|mean x|^2 share", "lik/pair", "|G|", "mean/|G|",
                                  "peak loss/first image", "text", "MAP", "floor"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
