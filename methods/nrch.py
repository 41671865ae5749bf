"""NRCH: robust contrastive cross-modal hashing with noisy labels (Wang et al., ACM MM 2024), specs/nrch.md.

Loss terms, each a small function below (δ = 0.2, ξ = 1, τ = 1, λ = 0.6 by default):

- RCH: a contrastive ranking loss whose only positive is the item's own image-text pair; pairs
  sharing a noisy label are neither pulled nor pushed (:func:`label_sharing_mask`,
  :func:`shifted_similarities`, :func:`rch_per_sample`);
- quantisation Q_i (:func:`quantisation_loss`); batch loss mean_i [λ ℓ_i + (1 − λ) Q_i];
- proxy loss fitting the class proxies W to the (detached) codes (:func:`proxy_loss`);
- DNS: per-sample scores against the proxies (:func:`dns_scores`) and the clean probability from
  a two-component Gaussian mixture (:func:`clean_probability`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cmh_bench.method import RunContext, TrainSet
from cmh_bench.methods import NRCH_PAPER
from cmh_bench.methods._common import EpochMeans, HashNet, TwoNetHashing, mlp

GMM_SETTINGS = {"n_components": 2, "max_iter": 10, "tol": 0.5, "reg_covar": 5e-4}  # the authors'
SCORE_BATCH = 4096  # rows per forward pass when scoring the training set for DNS


# ---------------------------------------------------------------- loss terms


def label_sharing_mask(labels: torch.Tensor) -> torch.Tensor:
    """T_ij = 1[ỹ_iᵀỹ_j > 0] with T_ii = 0, as float (B, B)."""
    shared = (labels @ labels.T > 0).to(labels.dtype)
    return shared.fill_diagonal_(0)


def shifted_similarities(sim: torch.Tensor, margin: float, shift: float) -> torch.Tensor:
    """Ĉ for row anchors: C_ij = S_ij if S_ij ≥ S_ii − δ, else S_ij − ξ; then the diagonal clamped at ≥ 0.

    Negatives already δ below the positive S_ii are shifted down by ξ (they barely count);
    the masks carry no gradient. Pass Sᵀ for column anchors.
    """
    positive = sim.diagonal().unsqueeze(1)
    easy = (sim < positive - margin).detach()
    shifted = sim - shift * easy.to(sim.dtype)
    diagonal = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return torch.where(diagonal, shifted.clamp(min=0), shifted)


def _anchor_loss(sim: torch.Tensor, mask: torch.Tensor, margin: float, shift: float, tau: float) -> torch.Tensor:
    """ℓ_i = −S_ii + τ · log Σ_j exp(Ĉ_ij (1 − T_ij)/τ) + δ for each row anchor i, shape (B,)."""
    shifted = shifted_similarities(sim, margin, shift)
    return -sim.diagonal() + tau * torch.logsumexp(shifted * (1 - mask) / tau, dim=1) + margin


def rch_per_sample(u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor,
                   margin: float = 0.2, shift: float = 1.0, tau: float = 1.0) -> torch.Tensor:
    """RCH per sample: ℓ_i = ℓ¹_i + ℓ²_i with S = u vᵀ, T = :func:`label_sharing_mask`, shape (B,).

    image→text (row anchor i): ℓ¹_i = −S_ii + τ log Σ_j exp(Ĉ¹_ij (1 − T_ij)/τ) + δ, with
    C¹_ij = S_ij if S_ij ≥ S_ii − δ else S_ij − ξ (diagonal clamped at ≥ 0);
    text→image (column anchor j): ℓ²_j = −S_jj + τ log Σ_i exp(Ĉ²_ij (1 − T_ij)/τ) + δ, with
    C²_ij = S_ij if S_ij ≥ S_jj − δ else S_ij − ξ: the same as ℓ¹ on Sᵀ (T is symmetric).
    """
    sim = u @ v.T
    mask = label_sharing_mask(labels)
    return _anchor_loss(sim, mask, margin, shift, tau) + _anchor_loss(sim.T, mask, margin, shift, tau)


def quantisation_loss(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Q_i = mean_k (|u_ik| − 1/√L)² + mean_k (|v_ik| − 1/√L)², shape (B,): unit rows with equal-size entries."""
    target = 1 / math.sqrt(u.shape[1])
    return (u.abs() - target).square().mean(1) + (v.abs() - target).square().mean(1)


def proxy_loss(u: torch.Tensor, v: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean((2ỹ − 1) − u tanh(W)ᵀ)² + mean((2ỹ − 1) − v tanh(W)ᵀ)², means over the B × C entries.

    u and v are detached here: the loss trains the proxies W only.
    """
    target = 2 * labels - 1
    tanh_w = torch.tanh(proxies)
    return sum(((target - h.detach() @ tanh_w.T) ** 2).mean() for h in (u, v))


def dns_scores(u: torch.Tensor, v: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DNS score ℓ_i = max over the noisy positive classes c of (1 − u_i·tanh(w_c))² + (1 − v_i·tanh(w_c))².

    The worst-fitting claimed class; shape (N,). A sample without positive labels scores 0.
    """
    tanh_w = torch.tanh(proxies)
    fit = (1 - u @ tanh_w.T) ** 2 + (1 - v @ tanh_w.T) ** 2  # (N, C), non-negative
    return (fit * labels).amax(1)


def clean_probability(scores: np.ndarray, seed: int) -> np.ndarray:
    """p_i: posterior of the low-mean component of a two-component 1-D Gaussian mixture fitted to the
    min-max normalised scores (scikit-learn, the authors' settings :data:`GMM_SETTINGS`, seeded)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    scores = np.asarray(scores, dtype=np.float64)
    span = scores.max() - scores.min()
    x = ((scores - scores.min()) / (span if span > 0 else 1.0)).reshape(-1, 1)
    gmm = GaussianMixture(**GMM_SETTINGS, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 10 iterations at tol 0.5 often stop early by design
        gmm.fit(x)
    return gmm.predict_proba(x)[:, int(np.argmin(gmm.means_[:, 0]))]


# ---------------------------------------------------------------- method


@dataclass
class NRCHHparams:
    """Published defaults (the authors' code): δ = ``margin``, ξ = ``shift``, λ = ``lam``."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-5  # RMSprop
    weight_decay: float = 1e-5
    hidden: int = 8192  # width of the hidden layers (image: two, text: one)
    lam: float = 0.6  # λ: RCH weight; 1 − λ: quantisation weight
    margin: float = 0.2
    shift: float = 1.0
    tau: float = 1.0
    warmup_epochs: int = 19  # DNS selection from epoch index 19 on (the 20th epoch counted from 1)
    clean_threshold: float = 0.3  # a sample is clean iff p_i ≥ this


def clean_minibatches(batches: list[torch.Tensor], clean: torch.Tensor) -> list[torch.Tensor]:
    """Each minibatch of sample indices restricted to the samples ``clean`` marks (empty ones dropped).

    The same batches as ``[b[clean[b]] for b in batches]`` minus the empty ones, but with two
    host–device syncs per epoch (the selection and the batch sizes) instead of one per minibatch.

    >>> clean_minibatches([torch.tensor([3, 0]), torch.tensor([2]), torch.tensor([1, 4])],
    ...                   torch.tensor([True, False, False, True, True]))
    [tensor([3, 0]), tensor([4])]
    """
    order = torch.cat(batches)
    batch_of = torch.repeat_interleave(torch.arange(len(batches), device=order.device),
                                       torch.tensor([len(b) for b in batches], device=order.device))
    keep = clean[order]
    sizes = torch.bincount(batch_of[keep], minlength=len(batches)).tolist()
    return [part for part in torch.split(order[keep], sizes) if len(part)]


class NRCH(TwoNetHashing):
    """Robust contrastive hashing (RCH) with a dynamic noise separator (DNS), after the authors'
    code (specs/nrch.md).

    Networks: image Linear(d, 8192) → ReLU → Linear(8192, 8192) → ReLU → Linear(8192, L); text
    Linear(d, 8192) → ReLU → Linear(8192, L); tanh, row L2-normalised (u, v); test codes sign(·);
    class proxies W ∈ R^{C×L}, orthogonal init. One RMSprop (lr 1e-5, weight decay 1e-5) over
    all parameters (the authors' two RMSprop optimisers with equal settings, image net + W and
    text net, update identically); batch 128 shuffled, last partial batch kept; 100 epochs.

    Per minibatch (of its clean samples, see DNS): mean_i [λ ℓ_i + (1 − λ) Q_i] + proxy loss,
    with ℓ_i the RCH loss (margin/shift masks, label-sharing mask T in both directions) and the
    proxy loss training W only.

    DNS: at the end of every epoch the whole training set is encoded (eval mode, no gradient, in
    batches), scored against the proxies, and a two-component Gaussian mixture (scikit-learn,
    n_components 2, max_iter 10, tol 0.5, reg_covar 5e-4, random_state = the run's training seed)
    gives p_i. A sample is clean iff p_i ≥ 0.3. Selection starts at epoch index 19 counted from 0
    (the 20th epoch counted from 1, as published), using the p_i of the end of the previous
    epoch; epochs 0..18 train on all samples. A minibatch without clean samples is skipped.

    ``sample_weights()``: the p_i of the latest DNS pass (end of the latest epoch, so it reflects
    the model being evaluated); None before the first epoch has ended. DNS also runs during the
    warm-up (its p_i are recorded, not used), so the weight AUC has a curve from epoch 0.

    Deviations from the published code, both treated as bugs (the spec's decision):
    1. text→image uses the column sums of Ĉ² (ℓ²_j = −S_jj + τ log Σ_i exp(Ĉ²_ij(1 − T_ij)/τ) + δ),
       as UCCH, whose ranking loss this is, does; the code builds Ĉ² but sums the rows of Ĉ¹.
    2. One tanh: the code applies tanh a second time to outputs already tanh'd and normalised.

    Multi-label: the method is multi-label as published (T_ij from label overlap; the proxy
    targets are 2ỹ − 1; the DNS score takes the worst of the claimed classes).

    Quick profile (CPU): hidden width 512 instead of 8192; lr and epochs from ``cmh-bench tune`` (methods/profiles/quick/nrch.yaml, with its provenance), the
    rule every method is tuned by; all
    else as published (batch 128, weight decay 1e-5, warm-up 19). RMSprop moves each weight by ~lr
    per step whatever the width, so a 512-wide layer's outputs move roughly 16× less per step than an
    8192-wide one's, and the quick run makes far fewer steps than the published ~7,900: the tuning
    grid's edge extension exists for such cases.
    """

    version = "1"
    paper = NRCH_PAPER
    family = "nrch"
    Hparams = NRCHHparams
    quick = {"hidden": 512}
    clean_prob: torch.Tensor | None = None  # DNS p_i of the latest pass

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        """Build the two nets, the proxies W and the RMSprop optimiser."""
        hp = self.hp
        self.ctx = ctx
        self.nets = nn.ModuleDict({
            "image": HashNet(mlp(self.image_dim, [hp.hidden, hp.hidden], self.bits)),
            "text": HashNet(mlp(self.text_dim, [hp.hidden], self.bits)),
        }).to(ctx.device)
        self.proxies = nn.Parameter(nn.init.orthogonal_(torch.empty(self.n_classes, self.bits, device=ctx.device)))
        self.optimizer = torch.optim.RMSprop(
            [*self.nets.parameters(), self.proxies], lr=hp.lr, weight_decay=hp.weight_decay
        )
        self.clean_prob = None

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        """One pass over the (selected) minibatches, then a DNS pass; returns the epoch's mean terms."""
        hp = self.hp
        clean = self._clean_mask(epoch, len(train))
        means = EpochMeans()
        for idx in clean_minibatches(list(ctx.batches(len(train), hp.batch_size, shuffle=True, drop_last=False)), clean):
            means.add(len(idx), self._step(train, idx, ctx))
        self.clean_prob = self._separate_noise(train, ctx)
        return {**means.result(), "clean_fraction": float(clean.float().mean())}

    def _clean_mask(self, epoch: int, n: int) -> torch.Tensor:
        """The samples this epoch trains on: all during the warm-up, then those with p_i ≥ threshold."""
        if epoch < self.hp.warmup_epochs or self.clean_prob is None:
            return torch.ones(n, dtype=torch.bool, device=self.ctx.device)
        return self.clean_prob >= self.hp.clean_threshold

    def _step(self, train: TrainSet, idx: torch.Tensor, ctx: RunContext) -> dict[str, torch.Tensor]:
        """One optimiser step on the samples ``idx``; returns the batch means of the terms."""
        hp = self.hp
        with ctx.autocast():
            u = self.nets["image"](train.image[idx])
            v = self.nets["text"](train.text[idx])
        labels = train.labels[idx]
        rch = rch_per_sample(u, v, labels, hp.margin, hp.shift, hp.tau).mean()
        quant = quantisation_loss(u, v).mean()
        proxy = proxy_loss(u, v, self.proxies, labels)
        loss = hp.lam * rch + (1 - hp.lam) * quant + proxy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), "rch": rch.detach(), "quant": quant.detach(), "proxy": proxy.detach()}

    @torch.no_grad()
    def _separate_noise(self, train: TrainSet, ctx: RunContext) -> torch.Tensor:
        """DNS: p_i for every training sample from the current nets and proxies (eval mode, batched)."""
        self.train_mode(False)
        scores = []
        for start in range(0, len(train), SCORE_BATCH):
            rows = slice(start, start + SCORE_BATCH)
            with ctx.autocast():
                u = self.nets["image"](train.image[rows])
                v = self.nets["text"](train.text[rows])
            scores.append(dns_scores(u, v, self.proxies, train.labels[rows]))
        self.train_mode(True)
        p = clean_probability(torch.cat(scores).cpu().numpy(), ctx.seed)
        return torch.from_numpy(p).float().to(ctx.device)

    def sample_weights(self) -> torch.Tensor | None:
        """DNS clean probabilities p_i (N,) of the latest pass (see the class docstring); None before it."""
        return self.clean_prob
