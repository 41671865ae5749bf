"""Synthetic stand-ins for the four benchmark datasets (and a tiny ``toy`` set for tests).

Each stand-in is generated deterministically from ``(seed, name)`` by one parameterised generator;
every parameter (sizes, dims, classes, label statistics, noise levels, default scale) is read from
the dataset card ``datasets/<name>.yaml``, so the cards are the single place to change them.
Random numbers come from ``numpy.random.Generator(PCG64(SeedSequence([seed, crc32(name)])))``,
split into independent child streams for labels, latent, image and text (no global state).

Generative model (card keys of the ``generator`` section in brackets):

1. Sizes. The scale s is in (0, 1], by default [default_scale]. At scale s the query and train
   splits have round(Q·s) and round(T·s) rows (at least 10 and 20); the rows after them
   (retrieval-only database items) number round((N − Q − T) · s^e) with
   e = [database_extra_exponent] (1 = proportional; 2 lets NUS-WIDE and MS-COCO, whose databases
   are over 10× their train sets, keep a usable train split at a CPU-friendly size while scale 1
   still gives the real sizes). Feature dims are round(d·s), at least 8. Class counts never scale.
2. Labels: a Gaussian-copula topic model. Each class c gets a frequency p_c along the profile
   p_max · exp(−ln(p_max / p_min) · (r / (C − 1))^η) of its (random) rank r
   ([max_class_frequency], [min_class_frequency]). Item i has a class score
   z_ic = √ρ · f_i·w_c + √(1 − ρ) · ε_ic with f_i ~ N(0, I_K) shared topics ([label_topics] = K,
   [label_topic_weight] = ρ), w_c a random unit vector and ε_ic ~ N(0, 1); so z_ic ~ N(0, 1),
   classes loading on the same topics co-occur and others exclude each other. Class c is on iff
   z_ic > Φ⁻¹(1 − p_c). An item with no class gets its highest-margin class; one with more than
   [max_labels_per_item] keeps its highest-margin ones. η is chosen by bisection so that the mean
   number of labels per item equals [mean_labels_per_item] after these two fix-ups.
3. Latent (dimension [latent_dim] = D). Every class has a random unit prototype; an item's label
   part is the normalised sum of its classes' prototypes. Shared content not described by the
   labels: a nuisance vector n_i ~ N(0, I/D) · [nuisance_std], the same for both modalities.
   Per-modality noise: N(0, I/D) · [image_noise_std] or [text_noise_std]. So
   h_m = label part + nuisance + modality noise.
4. Image (kind dense-nonneg, like VGG fc7): a = h_img·A / ‖h‖ with A ~ N(0, 1) of shape D × d_img
   (‖h‖ the expected norm), x = max(a − Φ⁻¹(1 − [image_active_fraction]), 0): non-negative, with
   about that fraction of non-zeros.
5. Text, bag-of-words: word j is present with probability sigmoid([text_signal] · h_txt·B_j / ‖h‖
   − [word_frequency_exponent] · ln(rank_j) + b), rank_j a random word-popularity rank (Zipf-like
   word frequencies), b set by bisection on the first rows so that an item has
   [mean_words_per_item] words on average; an empty row gets its most probable word.
   Text, dense (MS-COCO's Doc2Vec-like vectors): t = h_txt·B / ‖h‖ + N(0, [dense_noise_std]²).

Features therefore carry the label semantics only partly: a ridge regression from features to
clean labels retrieves well above the constant-code floor but far from perfectly (see the tests).
"""

from __future__ import annotations

import math
import numbers
import zlib
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, ndtri

from cmh_bench.cards import get_card
from cmh_bench.errors import UserError

SYNTHETIC_NAMES: tuple[str, ...] = ("toy", "synth-flickr", "synth-nus", "synth-coco", "synth-iapr")

MIN_QUERY, MIN_TRAIN, MIN_DIM = 10, 20, 8
_CALIBRATION_ROWS = 2000  # rows used to set the bag-of-words bias (keeps scale 1 fast)


@dataclass
class SyntheticData:
    """One generated stand-in: paired features, clean labels and the sequential split."""

    name: str
    image: np.ndarray  # (N, d_img) float32, non-negative
    text: np.ndarray  # (N, d_txt) uint8 0/1 for bag-of-words, float32 for dense
    labels: np.ndarray  # (N, C) uint8 0/1, clean
    class_names: list[str]
    splits: dict[str, dict[str, np.ndarray]]  # {"default": {"query", "train", "database"}}
    description: str


def generate(name: str, seed: int = 0, scale: float | None = None) -> SyntheticData:
    """Generate the stand-in ``name`` from ``seed`` at ``scale`` (None: the card's default scale).

    Returns the features, clean labels and the "default" split: query = rows 0..Q-1,
    train = rows Q..Q+T-1, database = rows Q..N-1 (it contains the training set).
    """
    if name not in SYNTHETIC_NAMES:
        raise UserError(f"unknown synthetic dataset {name!r}; known: {', '.join(SYNTHETIC_NAMES)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    card = get_card(name)
    g = card.generator
    if scale is None:
        scale = g["default_scale"]
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 1:
        raise UserError(f"scale must be a number in (0, 1], got {scale!r}")
    text_kind = card.features["text"]["kind"]
    if card.features["image"]["kind"] != "dense-nonneg" or text_kind not in ("bag-of-words", "dense"):
        raise UserError(f"card {name}: feature kinds must be image dense-nonneg, text bag-of-words or dense")

    n_query, n_train, n_total = scaled_sizes(card.sizes, scale, g["database_extra_exponent"])
    d_img = scaled_dim(card.features["image"]["dim"], scale)
    d_txt = scaled_dim(card.features["text"]["dim"], scale)

    streams = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).spawn(4)
    rng_labels, rng_latent, rng_image, rng_text = (np.random.Generator(np.random.PCG64(s)) for s in streams)

    labels = _labels(rng_labels, n_total, card.classes, g)
    h_img, h_txt = _latents(rng_latent, labels, g)
    image = _image_features(rng_image, h_img, d_img, g["image_active_fraction"])
    if text_kind == "bag-of-words":
        text = _bag_of_words(rng_text, h_txt, d_txt, g)
    else:
        text = _dense_features(rng_text, h_txt, d_txt, g["dense_noise_std"])

    split = {
        "query": np.arange(0, n_query, dtype=np.int64),
        "train": np.arange(n_query, n_query + n_train, dtype=np.int64),
        "database": np.arange(n_query, n_total, dtype=np.int64),
    }
    width = len(str(card.classes - 1))
    description = " ".join(card.description.split()) + (
        f" Generated with seed {seed} at scale {scale:g}: {n_total} items (query {n_query}, train {n_train}, "
        f"database {n_total - n_query}), image {d_img}-d, text {d_txt}-d, {card.classes} classes."
    )
    return SyntheticData(
        name=name,
        image=image,
        text=text,
        labels=labels,
        class_names=[f"class{c:0{width}d}" for c in range(card.classes)],
        splits={"default": split},
        description=description,
    )


def scaled_sizes(sizes: dict, scale: float, extra_exponent: float) -> tuple[int, int, int]:
    """(query, train, total) rows at ``scale``: query and train shrink proportionally (at least
    MIN_QUERY / MIN_TRAIN), the retrieval-only rows after them by ``scale ** extra_exponent``."""
    n_query = max(round(sizes["query"] * scale), MIN_QUERY)
    n_train = max(round(sizes["train"] * scale), MIN_TRAIN)
    n_extra = round((sizes["total"] - sizes["query"] - sizes["train"]) * scale**extra_exponent)
    return n_query, n_train, n_query + n_train + n_extra


def scaled_dim(dim: int, scale: float) -> int:
    """A feature dimension at ``scale``: round(dim · scale), at least MIN_DIM (never above dim)."""
    return min(dim, max(round(dim * scale), MIN_DIM))


def _labels(rng: np.random.Generator, n: int, n_classes: int, g: dict) -> np.ndarray:
    """Multi-hot labels from the Gaussian-copula topic model (module docstring, step 2)."""
    rho, n_topics = g["label_topic_weight"], g["label_topics"]
    loadings = rng.standard_normal((n_topics, n_classes))
    loadings /= np.linalg.norm(loadings, axis=0)
    z = math.sqrt(rho) * (rng.standard_normal((n, n_topics)) @ loadings)
    z += math.sqrt(1 - rho) * rng.standard_normal((n, n_classes))
    rank_position = rng.permutation(n_classes) / max(n_classes - 1, 1)
    p_max, p_min, max_per_item = g["max_class_frequency"], g["min_class_frequency"], g["max_labels_per_item"]

    def labels_for(eta: float) -> tuple[np.ndarray, np.ndarray]:
        freq = p_max * np.exp(-math.log(p_max / p_min) * rank_position**eta)
        margin = z - ndtri(1 - freq)
        count = np.clip((margin > 0).sum(axis=1), 1, max_per_item)
        return margin, count

    log_eta = _bisect(lambda x: labels_for(math.exp(x))[1].mean(), g["mean_labels_per_item"], -7.0, 7.0)
    margin, count = labels_for(math.exp(log_eta))
    # an item keeps its `count` highest-margin classes: all positives, at least the best one, at most the cap
    order = np.argsort(-margin, axis=1, kind="stable")
    labels = np.zeros((n, n_classes), dtype=np.uint8)
    keep = np.arange(n_classes)[None, :] < count[:, None]
    np.put_along_axis(labels, order, keep.astype(np.uint8), axis=1)
    return labels


def _latents(rng: np.random.Generator, labels: np.ndarray, g: dict) -> tuple[np.ndarray, np.ndarray]:
    """Image and text latents: normalised label prototypes + shared nuisance + per-modality noise,
    each divided by its expected norm (module docstring, step 3)."""
    n, dim = labels.shape[0], g["latent_dim"]
    prototypes = rng.standard_normal((labels.shape[1], dim))
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    semantic = labels.astype(np.float64) @ prototypes
    semantic /= np.linalg.norm(semantic, axis=1, keepdims=True)
    shared = semantic + g["nuisance_std"] / math.sqrt(dim) * rng.standard_normal((n, dim))
    latents = []
    for noise_std in (g["image_noise_std"], g["text_noise_std"]):
        h = shared + noise_std / math.sqrt(dim) * rng.standard_normal((n, dim))
        latents.append((h / math.sqrt(1 + g["nuisance_std"] ** 2 + noise_std**2)).astype(np.float32))
    return latents[0], latents[1]


def _image_features(rng: np.random.Generator, h: np.ndarray, dim: int, active_fraction: float) -> np.ndarray:
    """Non-negative, sparse-ish image features ReLU(h·A − threshold) (module docstring, step 4)."""
    x = h @ rng.standard_normal((h.shape[1], dim), dtype=np.float32)
    x -= np.float32(ndtri(1 - active_fraction))
    return np.maximum(x, 0, out=x)


def _bag_of_words(rng: np.random.Generator, h: np.ndarray, dim: int, g: dict) -> np.ndarray:
    """Binary bag-of-words text, every row non-empty (module docstring, step 5)."""
    logits = g["text_signal"] * (h @ rng.standard_normal((h.shape[1], dim), dtype=np.float32))
    logits -= np.float32(g["word_frequency_exponent"]) * np.log(rng.permutation(dim) + 1).astype(np.float32)

    def expected_words(bias: float) -> float:
        x = logits[:_CALIBRATION_ROWS] + np.float32(bias)
        # an empty row gets one word: E[count] = sum p + P(empty), with ln(1 - p) = log_expit(-x)
        return float((expit(x).sum(axis=1) + np.exp(log_expit(-x).sum(axis=1))).mean())

    logits += np.float32(_bisect(expected_words, g["mean_words_per_item"], -20.0, 10.0, steps=20))
    words = (rng.random(logits.shape, dtype=np.float32) < expit(logits)).astype(np.uint8)
    empty = np.flatnonzero(words.sum(axis=1) == 0)
    words[empty, logits[empty].argmax(axis=1)] = 1
    return words


def _dense_features(rng: np.random.Generator, h: np.ndarray, dim: int, noise_std: float) -> np.ndarray:
    """Dense float text (Doc2Vec-like): a linear map of the latent plus Gaussian noise."""
    t = h @ rng.standard_normal((h.shape[1], dim), dtype=np.float32)
    t += np.float32(noise_std) * rng.standard_normal(t.shape, dtype=np.float32)
    return t


def _bisect(increasing, target: float, lo: float, hi: float, steps: int = 30) -> float:
    """The x in [lo, hi] where the non-decreasing function ``increasing`` crosses ``target``."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if increasing(mid) < target else (lo, mid)
    return (lo + hi) / 2
