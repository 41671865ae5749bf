"""DJSRH: Deep Joint-Semantics Reconstructing Hashing (Su et al., ICCV 2019), feature version,
specs/unsupervised.md §2.

A label-free reference row: it never reads the training labels. Per minibatch the code cosines
(image–image, image–text, text–text) reconstruct a joint-semantics affinity S built from the input
features (:func:`rescaled_cosine`, :func:`joint_semantics`, :func:`djsrh_loss`); the output head
tanh(α ·) sharpens with α = √(epoch + 1) (:func:`alpha_at`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cmh_bench.method import RunContext, TrainSet
from cmh_bench.methods import DJSRH_PAPER
from cmh_bench.methods._common import EpochMeans, TwoNetHashing, mlp


# ---------------------------------------------------------------- loss terms


def rescaled_cosine(features: torch.Tensor, rescale: bool) -> torch.Tensor:
    """Ŝ = 2 cos(F) − 1 if ``rescale`` (non-negative features: cos ∈ [0, 1] → Ŝ ∈ [−1, 1]), else cos(F);
    cos(F) is the Gram matrix of the L2-normalised rows."""
    unit = F.normalize(features.float(), dim=1)
    cosine = unit @ unit.T
    return 2 * cosine - 1 if rescale else cosine


def joint_semantics(image: torch.Tensor, text: torch.Tensor, beta: float, eta: float, mu: float,
                    rescale_image: bool = True, rescale_text: bool = True) -> torch.Tensor:
    """S = μ [(1 − η) S̃ + η S̃ S̃ᵀ / m], S̃ = β Ŝ_I + (1 − β) Ŝ_T (:func:`rescaled_cosine`), m = batch size.

    Built from the input features of one batch; a constant for the nets (no gradient).
    """
    fused = beta * rescaled_cosine(image, rescale_image) + (1 - beta) * rescaled_cosine(text, rescale_text)
    return (mu * ((1 - eta) * fused + eta * fused @ fused.T / len(fused))).detach()


def djsrh_loss(h_image: torch.Tensor, h_text: torch.Tensor, target: torch.Tensor,
               lambda_image: float, lambda_text: float) -> torch.Tensor:
    """L = λ₁ mean((B_I B_Iᵀ − S)²) + mean((B_I B_Tᵀ − S)²) + λ₂ mean((B_T B_Tᵀ − S)²), each mean over m²
    entries, with B = the row-L2-normalised head outputs."""
    b_image, b_text = F.normalize(h_image.float(), dim=1), F.normalize(h_text.float(), dim=1)
    return (lambda_image * (b_image @ b_image.T - target).square().mean()
            + (b_image @ b_text.T - target).square().mean()
            + lambda_text * (b_text @ b_text.T - target).square().mean())


def alpha_at(epoch: int) -> float:
    """The head's sharpness in (0-based) ``epoch``: α = √(epoch + 1)."""
    return math.sqrt(epoch + 1)


# ---------------------------------------------------------------- method


@dataclass
class DJSRHHparams:
    """Published settings for MIRFlickr (settings.py): β = ``beta``, η = ``eta``, μ = ``mu``, λ₁ / λ₂ =
    ``lambda_image`` / ``lambda_text``."""

    epochs: int = 80
    batch_size: int = 32
    lr_image: float = 1e-3  # SGD, momentum 0.9
    lr_text: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    hidden: int = 4096  # text net's hidden width
    beta: float = 0.9
    eta: float = 0.4
    mu: float = 1.5
    lambda_image: float = 0.1
    lambda_text: float = 0.1


class DJSRH(TwoNetHashing):
    """Deep joint-semantics reconstructing hashing, feature version (specs/unsupervised.md §2).

    Networks: image Linear(d, L) (the feature version's head on fixed features); text
    Linear(d, 4096) → ReLU → Linear(4096, L); in training tanh(α ·) with α = √(epoch + 1); test
    codes sign(·) with sign(0) = +1 (independent of α). Two SGD optimisers (momentum 0.9, weight
    decay 5e-4; lr 1e-3 image, 1e-2 text), both stepped on the same loss; batch 32 shuffled,
    drop_last; 80 epochs, final epoch.

    Per minibatch: S = :func:`joint_semantics` of the batch's input features (β 0.9, η 0.4, μ 1.5),
    loss :func:`djsrh_loss` (λ₁ = λ₂ = 0.1). Per-dataset β (dataset cards, family "djsrh"): NUS 0.6
    (published); COCO 0.6 and IAPR 0.9 (not published: NUS's and MIRFlickr's, ours).

    Deviations from the authors' code (the spec's §2.9): image net Linear(4096, L) on the
    precomputed features, with S_I from those same features, instead of fine-tuning AlexNet on pixels
    with a frozen copy for S_I; trains on the benchmark's train split (the authors' class-stratified
    sampling reads labels); the 2 cos − 1 rescale only for a modality whose training features are all
    non-negative (signed Doc2Vec text uses cos as is; the choice is made once, in setup); m = the
    actual batch size; sign(0) = +1.

    Quick profile: text width 512 instead of 4096; lr and epochs from ``cmh-bench tune`` (methods/profiles/quick/djsrh.yaml, with its provenance), the
    rule every method is tuned by
    (scored by the noisy-validation MAP of its final epoch, like every label-free row); every mechanism on.
    """

    version = "1"
    paper = DJSRH_PAPER
    family = "djsrh"
    Hparams = DJSRHHparams
    quick = {"hidden": 512}
    uses_labels = False

    def setup(self, train: TrainSet, ctx: RunContext) -> None:
        """Build the two nets and their SGD optimisers; decide per modality whether to rescale cosines."""
        hp = self.hp
        self.ctx = ctx
        self.nets = nn.ModuleDict({
            "image": nn.Linear(self.image_dim, self.bits),
            "text": mlp(self.text_dim, [hp.hidden], self.bits),
        }).to(ctx.device)
        self.optimizers = [
            torch.optim.SGD(self.nets[m].parameters(), lr=lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
            for m, lr in (("image", hp.lr_image), ("text", hp.lr_text))
        ]
        self.rescale = {m: bool((train.features(m) >= 0).all()) for m in ("image", "text")}

    def train_epoch(self, epoch: int, train: TrainSet, ctx: RunContext) -> dict[str, float]:
        """One pass over shuffled full minibatches at α = √(epoch + 1); returns the epoch's mean loss."""
        hp = self.hp
        alpha = alpha_at(epoch)
        means = EpochMeans()
        for idx in ctx.batches(len(train), hp.batch_size, shuffle=True, drop_last=True):
            target = joint_semantics(train.image[idx], train.text[idx], hp.beta, hp.eta, hp.mu,
                                     self.rescale["image"], self.rescale["text"])
            with ctx.autocast():
                h_image = torch.tanh(alpha * self.nets["image"](train.image[idx]).float())
                h_text = torch.tanh(alpha * self.nets["text"](train.text[idx]).float())
            loss = djsrh_loss(h_image, h_text, target, hp.lambda_image, hp.lambda_text)
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in self.optimizers:
                optimizer.step()
            means.add(len(idx), {"loss": loss.detach()})
        return {**means.result(), "alpha": alpha}
