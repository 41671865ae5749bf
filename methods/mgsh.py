"""MGSH: meta-guided sample reweighting for robust cross-modal hashing with noisy labels (Tan, An & Yang,
AAAI 2026), after the authors' code (specs/recent-noisy.md §2).

Loss terms and mechanisms, each a small function below (m = 0.5, τ = 0.5, ξ = 1, λ = 0.7, r = 0.5):

- the NRCH-family robust LSE contrastive as MGSH and RFCMH code it, both directions summed over rows
  (:func:`family_lse_per_sample`), on ũ = tanh(u), ṽ = tanh(v) (the family's double tanh);
- quantisation Q_i to 1/√L (cmh_bench.methods.nrch.quantisation_loss) and the centre aggregation
  q-loss L_ca against fixed random centres (:func:`centre_aggregation`);
- the per-sample loss ℓ_i = λ ℓ_r,i + (1 − λ)(L_ca + Q_i) (:func:`mgsh_per_sample`) and its weighted
  mean Σ w_i ℓ_i / (Σ w_i + 1e-8) (:func:`weighted_mean`);
- small-loss selection against fixed prototypes W (:func:`selection_scores`, :func:`kept_count`,
  :func:`small_loss_mask`);
- the pair-agreement target w_det (:func:`agreement_target`) that the meta-similarity weighting
  network (:class:`MSWN`) regresses by BCE (:func:`mswn_loss`), one Adam step per batch
  (:func:`mswn_step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cmh_bench.errors import UserError
from cmh_bench.method import RunContext, TrainSet
from cmh_bench.methods import MGSH_PAPER
from cmh_bench.methods._common import EpochMeans, TwoNetHashing, adam, hash_nets
from cmh_bench.methods.nrch import (clean_minibatches, dns_scores, label_sharing_mask, quantisation_loss,
                                    shifted_similarities)
from cmh_bench.methods.rshnl import cal_per_sample, class_probabilities

SCORE_BATCH = 4096  # rows per forward pass when scoring the training set for the selection
_WEIGHT_EPS = 1e-8  # the authors' Σ w + 1e-8
_MINMAX_EPS = 1e-8  # the authors' (s − min + 1e-8) / (max − min + 1e-8)


# ---------------------------------------------------------------- loss terms


def family_lse_per_sample(u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor,
                          margin: float, shift: float, tau: float) -> torch.Tensor:
    """The robust LSE contrastive of MGSH's and RFCMH's code, per sample, shape (B,):

        ℓ_i = [−S_ii + τ log Σ_j exp(Ĉᵗᵉ_ij (1 − T_ij)/τ) + m] + [−S_ii + τ log Σ_j exp(Ĉⁱᵐ_ij (1 − T_ij)/τ) + m]

    with S = u vᵀ, T = label sharing (T_ii = 0), Cᵗᵉ_ij = S_ij if S_ij ≥ S_ii − m else S_ij − ξ,
    Cⁱᵐ_ij = S_ij if S_ij ≥ S_jj − m else S_ij − ξ (masks detached), Ĉ = C with its diagonal clamped at
    ≥ 0. Both sums run over the row j (the "im" direction differs only in its hardness mask, the
    family quirk), and a T-masked entry adds exp(0) = 1 to its sum.
    """
    sim = u @ v.T
    keep = 1 - label_sharing_mask(labels)
    text = shifted_similarities(sim, margin, shift)
    image = shifted_similarities(sim.T, margin, shift).T  # mask by the column's S_jj, summed over rows
    lse = lambda cost: tau * torch.logsumexp(cost * keep / tau, dim=1)  # noqa: E731
    return 2 * (margin - sim.diagonal()) + lse(text) + lse(image)


def random_centres(n_classes: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """Fixed class centres C ∈ R^{K×L}: sign(N(0, 1)) entries scaled to 1/√L (rows of unit norm)."""
    signs = torch.where(torch.randn(n_classes, bits, generator=generator) >= 0, 1.0, -1.0)
    return signs / math.sqrt(bits)


def centre_aggregation(u: torch.Tensor, v: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor,
                       r: float) -> torch.Tensor:
    """L_ca = mean_i [g_r(aᵘ_i) + g_r(aᵛ_i)], a scalar: aᵘ_i = Σ_k ỹ_ik softmax_k(u_i·C_k), likewise aᵛ_i,
    and g_r(a) = (1 − r)(1 − a^r)/r + r(1 − a) (RSHNL's q-robust loss). With all-ones labels a = 1: L_ca = 0."""
    return cal_per_sample(class_probabilities(u, centres), class_probabilities(v, centres), labels, r).mean()


def mgsh_per_sample(u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, hp) -> torch.Tensor:
    """ℓ_i = λ ℓ_r,i + (1 − λ)(L_ca + Q_i), shape (B,), on ũ = tanh(u), ṽ = tanh(v): ℓ_r the family LSE
    (margin m, shift ξ, τ), L_ca the centre aggregation (a batch scalar, r), Q_i the quantisation to 1/√L."""
    ut, vt = torch.tanh(u), torch.tanh(v)
    robust = family_lse_per_sample(ut, vt, labels, hp.margin, hp.shift, hp.tau)
    return hp.lam * robust + (1 - hp.lam) * (centre_aggregation(ut, vt, centres, labels, hp.r) + quantisation_loss(ut, vt))


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L = Σ_i w_i ℓ_i / (Σ_i w_i + 1e-8): invariant to w → c·w, the plain mean when all w are equal."""
    return (weights * losses).sum() / (weights.sum() + _WEIGHT_EPS)


def selection_scores(u: torch.Tensor, v: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ŝ: min-max normalised s_i = max_{k: ỹ_ik = 1} (1 − u_i·tanh W_k)² + (1 − v_i·tanh W_k)² (0 without
    a positive), ŝ = (s − min s + 1e-8)/(max s − min s + 1e-8) ∈ (0, 1]; low = judged clean."""
    s = dns_scores(u, v, prototypes, labels)
    return (s - s.min() + _MINMAX_EPS) / (s.max() - s.min() + _MINMAX_EPS)


def kept_count(n: int, epoch: int, forget_rate: float, ramp_epochs: int) -> int:
    """int((1 − ρ_e) N) with the forget rate ρ_e = ρ · min((e + 1)/E_g, 1) (epochs counted from 0)."""
    return int((1 - forget_rate * min((epoch + 1) / ramp_epochs, 1.0)) * n)


def small_loss_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep`` samples with the smallest ``scores`` (stable order on ties), as a boolean mask."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[torch.argsort(scores, stable=True)[:keep]] = True
    return mask


def agreement_target(u: torch.Tensor, v: torch.Tensor, permutation: torch.Tensor, pm1: bool = False) -> torch.Tensor:
    """w_det,i = σ(d⁻_i − d⁺_i): the Hamming distance to a shuffled partner v_π(i) minus that to the own one.

    Faithful (``pm1`` False): codes β = 1[· > 0] ∈ {0,1} in the ±1 formula d = ½(L − βᵘ·βᵛ), so
    w_det = σ(½(c⁺ − c⁻)) with c the count of jointly-one bits; ``pm1``: the true Hamming distance of
    b = sign(·) ∈ {±1}, d = ½(L − bᵘ·bᵛ). Detached.
    """
    u, v = u.detach(), v.detach()
    if pm1:
        bu, bv = torch.where(u >= 0, 1.0, -1.0), torch.where(v >= 0, 1.0, -1.0)
    else:
        bu, bv = (u > 0).float(), (v > 0).float()
    bits = u.shape[1]
    own = 0.5 * (bits - (bu * bv).sum(1))
    shuffled = 0.5 * (bits - (bu * bv[permutation]).sum(1))
    return torch.sigmoid(shuffled - own)


class MSWN(nn.Module):
    """Meta-similarity weighting network on s_i = u_i ⊙ v_i: Linear(L, 64) → ReLU → LayerNorm → Dropout(0.2) →
    Linear(64, 32) → ReLU → LayerNorm → Dropout(0.2) → Linear(32, 1) → Sigmoid; Xavier-uniform weights, zero biases."""

    def __init__(self, bits: int, widths: tuple[int, int] = (64, 32), dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        width = bits
        for h in widths:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.LayerNorm(h), nn.Dropout(dropout)]
            width = h
        layers += [nn.Linear(width, 1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """w_i = G(u_i ⊙ v_i) ∈ (0, 1), shape (B,)."""
        return self.body(u * v).squeeze(1)


def mswn_loss(weights: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_meta = BCE(w, w_det) = −mean_i [w_det,i log w_i + (1 − w_det,i) log(1 − w_i)], target detached."""
    return F.binary_cross_entropy(weights, target.detach())


def mswn_step(mswn: MSWN, optimizer: torch.optim.Optimizer, u: torch.Tensor, v: torch.Tensor,
              target: torch.Tensor) -> torch.Tensor:
    """One meta step: an Adam step of the MSWN on L_meta = BCE(G(u ⊙ v), w_det) (u, v detached); returns L_meta."""
    loss = mswn_loss(mswn(u.detach(), v.detach()), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------- method


@dataclass
class MGSHHparams:
    """Published defaults (the authors' code at HEAD bad7ef4; the paper's Table 3 differs, see the class docstring)."""

    epochs: int = 100
    batch_size: int = 128
    meta_batch_size: int = 64
    lr: float = 1e-5  # main Adam (image + text nets)
    weight_decay: float = 1e-5
    meta_lr: float = 1e-5  # MSWN Adam, no weight decay
    hidden: int = 8192  # image: two hidden layers, text: one
    lam: float = 0.7  # λ
    r: float = 0.5  # centre q-loss exponent
    margin: float = 0.5  # m (γ)
    tau: float = 0.5
    shift: float = 1.0
    warmup_epochs: int = 5
    forget_rate: float = 0.5  # ρ: the authors pass the true noise rate (an oracle); see the class docstring
    meta_labels: bool = False  # fix: the meta step uses the meta set's clean labels (the code: all-ones)
    hamming_pm1: bool = False  # fix: w_det from the ±1 Hamming distance (the code: {0,1} codes in the ±1 formula)
    mswn_eval_mode: bool = False  # fix: the weights w come from the MSWN in eval mode (the code: dropout on)


class MGSH(TwoNetHashing):
    """MGSH after the authors' code (supertanziang/MGSH, specs/recent-noisy.md §2), with a clean meta set.

    Networks: image Linear(d, h) → ReLU → Linear(h, h) → ReLU → Linear(h, L), text Linear(d, h) → ReLU →
    Linear(h, L), h = 8192, unit-tanh heads u, v; test codes sign(·). Fixed prototypes W ∈ R^{K×L}
    (orthogonal init, never trained: the code hands them to Adam but no loss reaches them, so they are
    left out of the optimiser here, which changes nothing), fixed random centres C (sign(N(0,1))/√L,
    never updated, as in the code), and the MSWN. Adam(lr 1e-5, wd 1e-5) over the nets; MSWN Adam(lr 1e-5).
    Batch 128 shuffled (last partial kept), meta batch 64 (shuffled, drop_last), 100 epochs, no schedule.

    Epochs 0..4 (warm-up): mean_i ℓ_i over each minibatch, noisy labels, one Adam step. Every epoch from 5:
    the minibatches are restricted to the kept samples (the int((1 − ρ_e) N) smallest selection scores ŝ of
    the whole training set, computed with the nets of the end of the previous epoch; an empty batch is
    skipped), and each batch runs the authors' ``l2m``: (a) one Adam step of the nets on the mean ℓ_i of the
    next meta batch with all-ones labels (a pure paired alignment); (b) w_det on the kept batch (eval mode,
    no gradient); (c) one MSWN Adam step on BCE(G(u ⊙ v), w_det); (d) w = G(u ⊙ v) again (train mode,
    dropout on), detached; (e) one Adam step of the nets on Σ w_i ℓ_i / (Σ w_i + 1e-8).

    Clean meta set (``clean_meta_default`` = 50 items): the harness hands the method ``train.meta``, a
    seeded subset of its own training items with their clean labels (cmh_bench.metaset); 50 is 2 % (the
    authors' META_RATE) of the stand-ins' 2,500 training items; give ``--clean-meta N`` for another size
    (2 % of MIRFlickr's 10,000 training items: 200). The faithful code never reads the meta labels
    (``meta_labels`` uses them); the rows still used clean data and are reported in their own group.

    Deviations from the authors' code, each measured (quick profile, synth-flickr and synth-coco,
    pair-swap 0.5, 32 bits, seed 0; README's methods table):
    1. The meta set is drawn from the items the method trains on (the harness's rule, never the validation
       part or the test set); the authors draw 2 % of the retrieval database, about half of it training rows.
    2. The forget rate ρ is a hyper-parameter (0.5, fixed), not the true noise rate the authors pass:
       no other method is told the rate. The ramp E_g is the number of epochs, as in the code.
    3. Seeded: the meta-batch order, the permutation π of w_det and the dropout draw come from the run's
       seeds (the code sets none).
    4. The adaptive margin γ̂ (computed but unused by the code) and the unused ``q_loss_vec`` are left out.
    Fixes offered as named switches, off by default: ``meta_labels``, ``hamming_pm1``, ``mswn_eval_mode``.
    Not implemented: the paper's (not the code's) triplet loss, 2-logit MSWN, dynamic centres and Θ′ step.

    ``sample_weights()``: 1 − ŝ_i for every training item, from the nets at the end of the latest epoch
    (the score the next epoch selects by; high = judged clean). As the spec expects (the prototypes are
    never trained), it is near chance: weight AUC .53 at the end (at most .56) on synth-flickr, pair-swap 0.5,
    32 bits, seed 0, lr 1e-5, 50 epochs (test MAP at the ``val`` epoch .752).

    Quick profile: hidden 512 instead of 8192; every mechanism on; lr and epochs from the tuned file.
    """

    version = "1"
    paper = MGSH_PAPER
    family = "mgsh"
    Hparams = MGSHHparams
    quick = {"hidden": 512}
    clean_meta_default = 50
    scores: torch.Tensor | None = None  # ŝ of the latest pass

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        """Build the nets, prototypes, centres, MSWN and both optimisers; score the initial selection."""
        hp = self.hp
        if train.meta is None:
            raise UserError("MGSH needs a clean meta set: run it with --clean-meta N (N >= 1)")
        self.ctx = ctx
        self.nets = hash_nets(self.image_dim, self.text_dim, hp.hidden, self.bits).to(ctx.device)
        self.prototypes = nn.init.orthogonal_(torch.empty(self.n_classes, self.bits)).to(ctx.device)
        self.centres = random_centres(self.n_classes, self.bits, ctx.generator).to(ctx.device)
        self.mswn = MSWN(self.bits).to(ctx.device)
        self.optimizer = adam(self.nets.parameters(), ctx.device, lr=hp.lr, weight_decay=hp.weight_decay)
        self.meta_optimizer = adam(self.mswn.parameters(), ctx.device, lr=hp.meta_lr)
        self.meta = train.meta
        self.meta_batches = iter(())
        self.scores = self._score(train, ctx)

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        """One pass: the warm-up on all samples, else ``l2m`` on the kept ones; then the selection scores."""
        hp = self.hp
        n = len(train)
        batches = list(ctx.batches(n, hp.batch_size, shuffle=True, drop_last=False))
        means = EpochMeans()
        if epoch < hp.warmup_epochs:
            kept = torch.ones(n, dtype=torch.bool, device=ctx.device)
            for idx in batches:
                means.add(len(idx), self._warmup_step(train, idx))
        else:
            kept = small_loss_mask(self.scores, kept_count(n, epoch, hp.forget_rate, hp.epochs))
            for idx in clean_minibatches(batches, kept):
                means.add(len(idx), self._meta_guided_step(train, idx, ctx))
        self.scores = self._score(train, ctx)
        return {**means.result(), "kept_fraction": float(kept.float().mean())}

    def _forward(self, train: TrainSet, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.ctx.autocast():
            return self.nets["image"](train.image[idx]), self.nets["text"](train.text[idx])

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def _warmup_step(self, train: TrainSet, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        u, v = self._forward(train, idx)
        loss = mgsh_per_sample(u, v, train.labels[idx], self.centres, self.hp).mean()
        self._step(loss)
        return {"loss": loss.detach()}

    def _next_meta_batch(self) -> torch.Tensor:
        """The next meta batch (shuffled, drop_last), a new pass over the meta set when one is used up."""
        batch = next(self.meta_batches, None)
        if batch is None:
            self.meta_batches = iter(list(self.ctx.batches(len(self.meta), self.hp.meta_batch_size, drop_last=True)))
            batch = next(self.meta_batches)
        return batch

    def _meta_guided_step(self, train: TrainSet, idx: torch.Tensor, ctx: RunContext) -> dict[str, torch.Tensor]:
        """The authors' ``l2m`` on one kept minibatch (class docstring, steps a–e)."""
        hp = self.hp
        meta = self._next_meta_batch()
        meta_idx = self.meta.index[meta]
        meta_labels = self.meta.labels[meta] if hp.meta_labels else torch.ones_like(train.labels[meta_idx])
        mu, mv = self._forward(train, meta_idx)
        alignment = mgsh_per_sample(mu, mv, meta_labels, self.centres, hp).mean()
        self._step(alignment)

        self.nets.eval()
        with torch.no_grad():
            u, v = self._forward(train, idx)
        self.nets.train()
        permutation = torch.randperm(len(idx), generator=ctx.generator).to(ctx.device)
        target = agreement_target(u, v, permutation, hp.hamming_pm1)
        meta_loss = mswn_step(self.mswn, self.meta_optimizer, u, v, target)
        self.mswn.train(not hp.mswn_eval_mode)
        with torch.no_grad():
            weights = self.mswn(u, v)
        self.mswn.train()

        u, v = self._forward(train, idx)
        loss = weighted_mean(mgsh_per_sample(u, v, train.labels[idx], self.centres, hp), weights)
        self._step(loss)
        return {"loss": loss.detach(), "loss_meta_alignment": alignment.detach(), "loss_mswn": meta_loss,
                "mean_weight": weights.mean()}

    @torch.no_grad()
    def _score(self, train: TrainSet, ctx: RunContext) -> torch.Tensor:
        """ŝ for every training item from the current nets (codes in batches, no gradient)."""
        codes = [self._forward(train, torch.arange(s, min(s + SCORE_BATCH, len(train)), device=ctx.device))
                 for s in range(0, len(train), SCORE_BATCH)]
        u, v = (torch.cat(part) for part in zip(*codes))
        return selection_scores(u, v, self.prototypes, train.labels)

    def sample_weights(self) -> torch.Tensor | None:
        """1 − ŝ_i (N,) of the latest selection pass (high = judged clean); None before setup."""
        return None if self.scores is None else 1 - self.scores
