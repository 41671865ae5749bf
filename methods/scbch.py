"""SCBCH: Semantic-Consistent Bidirectional Contrastive Hashing (Peng et al., arXiv 2511.07780, AAAI 2026).

Formulas and defaults follow specs/scbch.md, which was read from the authors' code. Notation:
a batch of B pairs, unit-norm continuous codes U (image) and V (text) of L bits, noisy multi-hot
labels Y (B × C). The loss functions below are public so that tests can check them on small tensors:

- :func:`pair_similarity` (with :func:`jaccard_matrix`): the soft pair target T,
- :func:`refinement_masks`: the bidirectional refined similarities D¹, D²,
- :func:`bsch_loss`: bidirectional soft contrastive hashing, as (L_rep, L_att),
- :func:`quantisation_loss`: L_q,
- :func:`classification_losses`: the per-sample classification loss ℓ_i,
- :func:`neighbour_topk`, :func:`soft_labels`, :func:`cscc_weights`: CSCC sample reliability,
  computed in row blocks without an N × N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cmh_bench.errors import UserError
from cmh_bench.method import MODALITIES, RunContext, TrainSet
from cmh_bench.methods._common import EpochMeans, TwoNetHashing, adam, hash_nets

EPS = 1e-8  # the authors' constant in the Jaccard and CSCC denominators
CSCC_BLOCK_ENTRIES = 1 << 24  # similarities held at once by the CSCC neighbour search (64 MB in float32)
EMBED_ROWS = 8192  # rows encoded at once when CSCC embeds the whole training set
PAIR_SIMILARITIES = ("jaccard", "binary")


# ------------------------------------------------------------------------------------ losses


def jaccard_matrix(y: torch.Tensor) -> torch.Tensor:
    """Jaccard similarity of the label sets of a batch:
    T_ij = y_iᵀy_j / (|y_i|₁ + |y_j|₁ − y_iᵀy_j + 1e-8), for multi-hot rows y (B × C) → (B × B).

    Two empty label sets give 0.
    """
    inter = y @ y.T
    size = y.sum(1)
    return inter / (size[:, None] + size[None, :] - inter + EPS)


def pair_similarity(y: torch.Tensor, kind: str = "jaccard") -> torch.Tensor:
    """The pair target T (B × B): ``"jaccard"`` = :func:`jaccard_matrix`;
    ``"binary"`` = 1[y_iᵀy_j > 0] (the scbch-hard-pairs ablation)."""
    if kind == "jaccard":
        return jaccard_matrix(y)
    if kind == "binary":
        return (y @ y.T > 0).to(y.dtype)
    raise UserError(f"pair_similarity must be one of {', '.join(PAIR_SIMILARITIES)}, got {kind!r}")


def refinement_masks(S: torch.Tensor, margin: float, shift: float, bidirectional: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The refined similarities (D¹, D²) of the cross-modal similarity S = U Vᵀ (row i = image i, column j = text j):

    - image→text: D¹_ij = S_ij if S_ij ≥ S_ii − m, else S_ij − μ
    - text→image: D²_ij = S_ij if S_ij ≥ S_jj − m, else S_ij − μ
    - both diagonals clamped: D_ii = max(S_ii, 0)

    with m = ``margin``, μ = ``shift``. The masks (which entries get −μ) carry no gradient; the
    gradient flows through S. ``bidirectional=False`` (scbch-one-way) returns D² := D¹.
    """
    diag = S.diagonal()
    eye = torch.eye(S.shape[0], dtype=torch.bool, device=S.device)
    clamped = S.clamp(min=0)

    def refine(keep: torch.Tensor) -> torch.Tensor:
        return torch.where(eye, clamped, torch.where(keep, S, S - shift))

    d1 = refine(S >= (diag - margin)[:, None])
    return d1, (refine(S >= (diag - margin)[None, :]) if bidirectional else d1)


def bsch_loss(
    u: torch.Tensor, v: torch.Tensor, y: torch.Tensor, margin: float, shift: float,
    pair_similarity_kind: str = "jaccard", bidirectional: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional soft contrastive hashing loss of a batch, as (L_rep, L_att); L_bsch = L_rep + L_att.

    With S = U Vᵀ, T = :func:`pair_similarity` of the noisy labels, D¹, D² = :func:`refinement_masks`:

    - L_rep = mean_ij [ exp((1 − T_ij) D¹_ij) + exp((1 − T_ij) D²_ij) ]   (τ = 1)
    - L_att = (1/B²) Σ_ij P_ij exp(μ − S_ij) − mean_i S_ii,  P_ij = 1[T_ij > 0 and i ≠ j]

    Identical label sets contribute the constant 1 per direction to L_rep (no push), disjoint ones
    are pushed fully, partial overlaps softly.
    """
    S = u @ v.T
    T = pair_similarity(y, pair_similarity_kind)
    d1, d2 = refinement_masks(S, margin, shift, bidirectional)
    l_rep = (torch.exp((1 - T) * d1) + torch.exp((1 - T) * d2)).mean()
    off_diagonal = ~torch.eye(S.shape[0], dtype=torch.bool, device=S.device)
    positives = (T > 0) & off_diagonal
    l_att = torch.where(positives, torch.exp(shift - S), 0.0).sum() / S.numel() - S.diagonal().mean()
    return l_rep, l_att


def quantisation_loss(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """L_q = ‖U − sign(U)‖₁ / (B·L) + ‖V − sign(V)‖₁ / (B·L)."""
    return (u - u.sign()).abs().mean() + (v - v.sign()).abs().mean()


def classification_losses(logits_u: torch.Tensor, logits_v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample classification loss (B,): ℓ_i = ½ [ mean_c BCE(p_u,ic, y_ic) + mean_c BCE(p_v,ic, y_ic) ],
    p_u = sigmoid(U W_u), p_v = sigmoid(V W_v), BCE(p, y) = −y log p − (1 − y) log(1 − p).

    Takes the logits U W_u and V W_v and evaluates BCE from them (same value as sigmoid then BCE,
    without its overflow).
    """
    bce_u = F.binary_cross_entropy_with_logits(logits_u, y, reduction="none").mean(1)
    bce_v = F.binary_cross_entropy_with_logits(logits_v, y, reduction="none").mean(1)
    return 0.5 * (bce_u + bce_v)


# -------------------------------------------------------------------------------------- CSCC


def neighbour_topk(U: torch.Tensor, V: torch.Tensor, k: int, block_entries: int = CSCC_BLOCK_ENTRIES) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-k of Ŝ = ½ (U Uᵀ + V Vᵀ) with its diagonal set to 0: (similarities, indices), each N × k.

    Computed in blocks of max(1, block_entries // N) rows (one matmul of [U V] against itself per
    block, then torch.topk), so no N × N matrix exists: the extra memory is one block of
    block_entries similarities plus the N × k result.
    As in the spec (the authors' code) the diagonal is set to 0 and the top k are taken, not the
    top k + 1 minus self: sample i is its own neighbour only when fewer than k other samples have
    Ŝ_ij > 0 (ties at 0 are ordered by torch.topk), and then it adds nothing to its soft label
    (a_ii = 0) but displaces a neighbour of negative similarity.
    """
    n = U.shape[0]
    z = torch.cat([U, V], dim=1)
    rows = max(1, block_entries // n)
    values, indices = [], []
    for start in range(0, n, rows):
        block = (z[start : start + rows] @ z.T).mul_(0.5)
        local = torch.arange(block.shape[0], device=block.device)
        block[local, local + start] = 0.0
        top = block.topk(k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def soft_labels(sims: torch.Tensor, indices: torch.Tensor, y: torch.Tensor, block_entries: int = CSCC_BLOCK_ENTRIES) -> torch.Tensor:
    """Neighbour soft labels p_i = Σ_{j∈N_i} a_ij ỹ_j with a_ij = Ŝ_ij / (Σ_{j'∈N_i} Ŝ_ij' + 1e-8), (N × C).

    ``sims``/``indices`` (N × k) from :func:`neighbour_topk`; the gathered neighbour labels
    (rows × k × C) exist for at most block_entries entries at a time.
    """
    a = sims / (sims.sum(1, keepdim=True) + EPS)
    rows = max(1, block_entries // (indices.shape[1] * y.shape[1]))
    return torch.cat([
        torch.einsum("rk,rkc->rc", a[start : start + rows], y[indices[start : start + rows]])
        for start in range(0, len(indices), rows)
    ])


def cscc_weights(
    U: torch.Tensor, V: torch.Tensor, y: torch.Tensor, k: int = 20, gamma: float = 0.5,
    block_entries: int = CSCC_BLOCK_ENTRIES,
) -> torch.Tensor:
    """CSCC confidence of every training sample (N,): w_i = γ + (1 − γ) · cos(ỹ_i, p_i).

    p_i = :func:`soft_labels` over the k nearest neighbours of i under Ŝ = ½ (U Uᵀ + V Vᵀ)
    (:func:`neighbour_topk`; k is capped at N − 1). w ∈ [γ, 1] whenever the neighbours'
    similarities are non-negative (the usual case). An all-zero label (or soft label) has cosine 0,
    so w = γ.
    """
    sims, indices = neighbour_topk(U, V, min(k, U.shape[0] - 1), block_entries)
    p = soft_labels(sims, indices, y, block_entries)
    return gamma + (1 - gamma) * F.cosine_similarity(y, p, dim=1, eps=EPS)


# ---------------------------------------------------------------------------------- networks


def classifier_head(bits: int, n_classes: int) -> nn.Linear:
    """W ∈ R^{L×C} without bias, orthogonal init (logits = u W)."""
    head = nn.Linear(bits, n_classes, bias=False)
    nn.init.orthogonal_(head.weight)
    return head


# ------------------------------------------------------------------------------------ method


@dataclass
class SCBCHHparams:
    """Published defaults (specs/scbch.md); margin and shift are overridden per dataset by the cards."""

    hidden: int = 8192  # width of the hidden layers of both networks
    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-5
    alpha: float = 0.7  # weight of L_bsch (0: the scbch-no-bsch ablation)
    beta: float = 0.3  # weight of L_q
    k: int = 20  # CSCC neighbours
    gamma: float = 0.5  # CSCC confidence floor
    warmup_epochs: int = 5  # epochs of plain classification loss before CSCC weighting (epoch numbers from 0)
    margin: float = 0.2  # m of the refinement masks
    shift: float = 1.0  # μ of the refinement masks and of L_att
    use_cscc: bool = True  # False: w ≡ 1 in every epoch (scbch-no-cscc)
    pair_similarity: str = "jaccard"  # "binary": T = 1[ỹ_iᵀỹ_j > 0] (scbch-hard-pairs)
    bidirectional: bool = True  # False: D² := D¹ (scbch-one-way)

    def __post_init__(self):
        if self.pair_similarity not in PAIR_SIMILARITIES:
            raise UserError(f"scbch: pair_similarity must be one of {', '.join(PAIR_SIMILARITIES)}, got {self.pair_similarity!r}")


class SCBCH(TwoNetHashing):
    """CSCC sample reliability + bidirectional soft contrastive hashing (specs/scbch.md).

    Per batch: L = α (L_rep + L_att) + β L_q + L_cls, with L_cls = mean_i ℓ_i before epoch
    ``warmup_epochs`` and mean_i w_i ℓ_i from then on; w (CSCC) is recomputed at the start of every
    such epoch from the whole training set and held fixed (detached) during it. Two Adam optimisers
    (image net + W_u; text net + W_v) step on the same total loss.

    Variants (registered in cmh_bench.methods): ``use_cscc=False``, ``alpha=0``, ``warmup_epochs=0``,
    ``pair_similarity="binary"``, ``bidirectional=False``; scbch-clean is this class with the
    upper-bound role, for which the harness hands the clean training labels (nothing differs here).

    Codes: sign(u), sign(v) (``TwoNetHashing.encode``; the heads are not used at test time).
    ``sample_weights()`` is None until CSCC first runs (epoch ``warmup_epochs``; never with
    ``use_cscc=False``), then the w used in the current epoch (computed from the model at its start).

    Deviations from the paper / authors' code:

    - α = 0.7, β = 0.3, the values of the authors' run command; their argument defaults are the
      other way round (0.3 / 0.7).
    - BCE is evaluated from the logits (binary_cross_entropy_with_logits), not as sigmoid then BCE:
      the same value, without overflow, and allowed under autocast.
    - the model is selected by the harness on the noisy validation part (rule ``val``), not at the
      authors' best epoch on the test queries (recorded as the flagged ``best-on-test`` selection).

    Quick profile (``quick``, CPU): hidden width 512 instead of 8192 (1024 costs 2.5× the time of 512);
    lr and epochs from ``cmh-bench tune`` (methods/profiles/quick/scbch.yaml, with its provenance), the
    rule every method is tuned by; everything else as published (batch 128, warm-up 5, k = 20,
    α/β, per-dataset m/μ).
    """

    version = "1"
    paper = "Peng et al., SCBCH, arXiv 2511.07780 (AAAI 2026)"
    family = "scbch"
    Hparams = SCBCHHparams
    quick = {"hidden": 512}

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        """Networks, classifier heads and the two Adam optimisers (fused where the device supports it)."""
        hp = self.hp
        self.ctx = ctx
        self.nets = hash_nets(self.image_dim, self.text_dim, hp.hidden, self.bits).to(ctx.device)
        self.heads = nn.ModuleDict({m: classifier_head(self.bits, self.n_classes) for m in MODALITIES}).to(ctx.device)
        self.optimizers = [
            adam([*self.nets[m].parameters(), *self.heads[m].parameters()], ctx.device, lr=hp.lr, weight_decay=hp.weight_decay)
            for m in MODALITIES
        ]
        self.weights: torch.Tensor | None = None

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        """One shuffled pass; returns the sample means of loss, rep, att, quant and cls."""
        hp = self.hp
        if hp.use_cscc and epoch >= hp.warmup_epochs:
            self.weights = self.reliability(train)
        means = EpochMeans()
        for idx in ctx.batches(len(train), hp.batch_size):
            y = train.labels[idx]
            with ctx.autocast():
                u = self.nets["image"](train.image[idx])
                v = self.nets["text"](train.text[idx])
            l_rep, l_att = bsch_loss(u, v, y, hp.margin, hp.shift, hp.pair_similarity, hp.bidirectional)
            l_q = quantisation_loss(u, v)
            ell = classification_losses(self.heads["image"](u), self.heads["text"](v), y)
            l_cls = (ell if self.weights is None else self.weights[idx] * ell).mean()
            loss = hp.alpha * (l_rep + l_att) + hp.beta * l_q + l_cls
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in self.optimizers:
                optimizer.step()
            means.add(len(idx), {"loss": loss.detach(), "rep": l_rep.detach(), "att": l_att.detach(),
                                 "quant": l_q.detach(), "cls": l_cls.detach()})
        return means.result()

    @torch.no_grad()
    def reliability(self, train: TrainSet) -> torch.Tensor:
        """CSCC weights w (N,) of the training set under the current networks (evaluation mode)."""
        self.train_mode(False)
        with self.ctx.autocast():
            U, V = (torch.cat([self.nets[m](x) for x in train.features(m).split(EMBED_ROWS)]) for m in MODALITIES)
        self.train_mode(True)
        return cscc_weights(U, V, train.labels, self.hp.k, self.hp.gamma)

    def sample_weights(self) -> torch.Tensor | None:
        """The CSCC weights w of the current epoch, or None before CSCC first runs (see the class docstring)."""
        return self.weights
