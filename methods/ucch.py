"""UCCH: Unsupervised Contrastive Cross-modal Hashing (Hu et al., TPAMI 2023), specs/unsupervised.md §1.

A label-free reference row: it never reads the training labels. Loss terms, each a small function below:

- contrastive hashing loss L_c against binary keys sign(V) of a momentum memory bank V
  (:func:`contrastive_loss`, :func:`binary_keys`, :func:`warmup_keys`, :func:`memory_keys`,
  :func:`update_memory`);
- bidirectional cross-modal ranking loss L_r (:func:`ranking_loss`);
- total L = β L_c + (1 − β) L_r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cmh_bench.method import RunContext, TrainSet
from cmh_bench.methods import UCCH_PAPER
from cmh_bench.methods._common import EpochMeans, TwoNetHashing, adam, hash_nets

LR_MILESTONES = (30, 60, 90, 120)  # the authors' MultiStepLR (inactive within the published 20 epochs)
LR_DECAY = 0.1


# ---------------------------------------------------------------- loss terms


def binary_keys(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, as ±1 floats (the keys carry no gradient)."""
    return torch.where(x.detach() >= 0, 1.0, -1.0).to(x.dtype)


def contrastive_loss(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """mean_i −log softmax(z_i)₀ with z_ic = ⟨q_i, k_ic⟩ / (T √L): each query against its own keys.

    ``queries`` (B, L) unit rows; ``keys`` (B, 1 + K, L) ±1, the positive key in slot 0.
    """
    logits = torch.einsum("bl,bkl->bk", queries, keys) / (temperature * math.sqrt(queries.shape[1]))
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def warmup_keys(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The warm-up epoch's keys (B, B, L): item i's positive sign(w_i) first, then sign(w_j) for every
    other batch item j, with w = (u + v) / 2 (the memory is not read)."""
    keys = binary_keys((u + v) / 2)
    n = len(keys)
    anchors = torch.arange(n, device=keys.device).unsqueeze(1)
    others = torch.arange(n - 1, device=keys.device).unsqueeze(0)
    return keys[torch.cat([anchors, others + (others >= anchors).long()], dim=1)]


def memory_keys(memory: torch.Tensor, idx: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Keys (B, 1 + K, L) of the memory phase: [sign(V_i), sign(V_r1), …, sign(V_rK)] for batch item i,
    with ``negatives`` (B, K) the drawn memory rows."""
    return binary_keys(memory[torch.cat([idx.unsqueeze(1), negatives], dim=1)])


@torch.no_grad()
def update_memory(memory: torch.Tensor, idx: torch.Tensor, u: torch.Tensor, v: torch.Tensor, momentum: float) -> None:
    """In place: V_i ← normalize(δ V_i + (1 − δ) w_i), w_i = normalize((u_i + v_i) / 2), for each batch item i."""
    w = F.normalize((u + v) / 2, dim=1)
    memory[idx] = F.normalize(momentum * memory[idx] + (1 - momentum) * w, dim=1)


def ranking_loss(u: torch.Tensor, v: torch.Tensor, margin: float, shift: float, tau: float = 1.0) -> torch.Tensor:
    """L_r = mean_i [−S_ii + τ log Σ_j exp(C¹_ij/τ) + m] + mean_j [−S_jj + τ log Σ_i exp(C²_ij/τ) + m].

    S = u vᵀ; C¹_ij = S_ij if S_ij ≥ S_ii − m else S_ij − ξ (row anchors, image→text); C²_ij = S_ij if
    S_ij ≥ S_jj − m else S_ij − ξ (column anchors, text→image: column sums). The masks carry no
    gradient; the diagonal is always kept and never clamped.
    """
    sim = u @ v.T
    diagonal = sim.diagonal()
    rows = sim - shift * (sim < diagonal.unsqueeze(1) - margin).detach().to(sim.dtype)
    cols = sim - shift * (sim < diagonal.unsqueeze(0) - margin).detach().to(sim.dtype)
    image_to_text = -diagonal + tau * torch.logsumexp(rows / tau, dim=1) + margin
    text_to_image = -diagonal + tau * torch.logsumexp(cols / tau, dim=0) + margin
    return image_to_text.mean() + text_to_image.mean()


def step_lr(epoch: int, lr: float, milestones: tuple[int, ...] = LR_MILESTONES, decay: float = LR_DECAY) -> float:
    """The learning rate of (0-based) ``epoch``: lr · decay^|{m ∈ milestones : m < epoch}| (the authors'
    MultiStepLR stepped with an explicit epoch after each epoch: the first decay acts in epoch 31)."""
    return lr * decay ** sum(m < epoch for m in milestones)


# ---------------------------------------------------------------- method


@dataclass
class UCCHHparams:
    """Published run settings (MIRFlickr, README command): β = ``beta`` (the code's --alpha),
    ξ = ``shift``, m = ``margin``, δ = ``momentum``, T = ``temperature``, K = ``negatives``."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-4  # Adam
    weight_decay: float = 1e-6
    grad_clip: float = 1.0  # max gradient norm over all parameters
    hidden: int = 8192  # image: two hidden layers, text: one
    beta: float = 0.7
    shift: float = 0.1
    margin: float = 0.2
    momentum: float = 0.4
    temperature: float = 0.9
    negatives: int = 4096
    warmup_epochs: int = 1  # epochs with in-batch keys, memory not read (δ = 0 then)


class UCCH(TwoNetHashing):
    """Unsupervised contrastive cross-modal hashing, after the authors' code (specs/unsupervised.md §1).

    Networks: image Linear(d, 8192) → ReLU → Linear(8192, 8192) → ReLU → Linear(8192, L); text
    Linear(d, 8192) → ReLU → Linear(8192, L); tanh, row L2-normalised (u, v); test codes sign(·)
    with sign(0) = +1. One Adam (lr 1e-4, weight decay 1e-6) over both nets, gradient norm clipped
    at 1; batch 256 shuffled, drop_last; 20 epochs; MultiStepLR at 30/60/90/120 (never acts in 20).

    Per minibatch: L = β L_c + (1 − β) L_r. L_c: u and v each classified against binary keys; in
    the warm-up epoch (epoch 0) the keys are the batch's sign((u + v)/2) (K = B − 1 in-batch
    negatives) and the memory rows are set to normalize((u + v)/2) (δ = 0); afterwards the keys are
    sign(V_i) and sign(V_r) of K = 4096 memory rows drawn uniformly with replacement (the harness's
    generator), and V_i moves by momentum δ = 0.4. The memory starts as random ±1/√L rows.

    Per-dataset settings (dataset cards, family "ucch"): MIRFlickr and NUS β 0.7, ξ 0.1 (the
    defaults); MS-COCO β 0.6, ξ 7 (maintainer, issue #26); IAPR TC-12 has none published, so it
    uses MIRFlickr's (ours).

    Deviations from the authors' code (the spec's §1.9): trains on the benchmark's train split,
    not the whole retrieval database (so the row uses the same pairs as the supervised rows; the
    authors' ``ucch@database`` protocol is not offered); final epoch, no selection on clean
    validation labels; log-softmax instead of softmax-then-log; sign(0) = +1; negatives drawn with
    replacement from N_train rows, so K > N works.

    Quick profile: width 512 instead of 8192 and K = 256 negatives instead of 4096 (the spec's §1.9);
    lr and epochs from ``cmh-bench tune`` (methods/profiles/quick/ucch.yaml, with its provenance), the
    rule every method is tuned by (scored by the noisy-validation MAP of its final
    epoch, like every label-free row); every mechanism on.
    """

    version = "1"
    paper = UCCH_PAPER
    family = "ucch"
    Hparams = UCCHHparams
    quick = {"hidden": 512, "negatives": 256}
    uses_labels = False

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        """Build the two nets, the Adam optimiser and the random ±1/√L memory bank (N × L)."""
        hp = self.hp
        self.ctx = ctx
        self.nets = hash_nets(self.image_dim, self.text_dim, hp.hidden, self.bits).to(ctx.device)
        self.optimizer = adam(self.nets.parameters(), ctx.device, lr=hp.lr, weight_decay=hp.weight_decay)
        signs = torch.randint(0, 2, (len(train), self.bits), generator=ctx.generator).float() * 2 - 1
        self.memory = (signs / math.sqrt(self.bits)).to(ctx.device)

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        """One pass over shuffled full minibatches; returns the epoch's mean loss terms."""
        hp = self.hp
        for group in self.optimizer.param_groups:
            group["lr"] = step_lr(epoch, hp.lr)
        warmup = epoch < hp.warmup_epochs
        means = EpochMeans()
        for idx in ctx.batches(len(train), hp.batch_size, shuffle=True, drop_last=True):
            means.add(len(idx), self._step(train, idx, warmup, ctx))
        return means.result()

    def _step(self, train: TrainSet, idx: torch.Tensor, warmup: bool, ctx: RunContext) -> dict[str, torch.Tensor]:
        """One optimiser step on the batch ``idx``: L_c, then the memory update, then L_r."""
        hp = self.hp
        with ctx.autocast():
            u = self.nets["image"](train.image[idx])
            v = self.nets["text"](train.text[idx])
        if warmup:
            keys = warmup_keys(u, v)
        else:
            draws = torch.randint(0, len(train), (len(idx), hp.negatives), generator=ctx.generator).to(ctx.device)
            keys = memory_keys(self.memory, idx, draws)
        contrastive = contrastive_loss(u, keys, hp.temperature) + contrastive_loss(v, keys, hp.temperature)
        update_memory(self.memory, idx, u, v, 0.0 if warmup else hp.momentum)
        ranking = ranking_loss(u, v, hp.margin, hp.shift)
        loss = hp.beta * contrastive + (1 - hp.beta) * ranking
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.nets.parameters(), hp.grad_clip)
        self.optimizer.step()
        return {"loss": loss.detach(), "contrastive": contrastive.detach(), "ranking": ranking.detach()}
