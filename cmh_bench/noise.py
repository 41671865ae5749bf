"""Label-noise injectors (specs/noise.md): named, versioned, seeded corruptions of clean training labels.

Every injector is a pure function of (clean labels, rate, seed[, features, options]): it draws from its
own ``numpy.random.Generator(PCG64(SeedSequence(seed, spawn_key=<model name bytes>)))``, never from
global state, so two models run with the same seed use unrelated streams, and the same inputs give
the same output whatever runs before or after. Rate 0 returns a copy of the clean labels for every
model. ``inject_noise`` is the entry point: it validates the inputs, dispatches to the model and
reports the realised noise (``realised_noise``) and the per-sample ``corrupted`` mask.

The ``file`` model is the exception: it draws nothing and reads the noisy training labels that a
paper's authors published (``read_noise_file``), so that a cell runs on their exact draw; its rate is
the nominal rate of that file, stated by the user, and rate 0 does not make it clean.

Counts written ⌊r·N⌋ and round(r·k) are computed exactly on the decimal value of the rate
(``Fraction(repr(rate))``), so 0.29·100 selects 29 samples, not 28 as float arithmetic would.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping

import numpy as np

from cmh_bench.errors import UserError

_SKETCH_DIM = 512  # instance noise: wider standardised features are projected to this many dimensions
_CHUNK_ENTRIES = 1 << 24  # instance noise: distance entries computed at once (64 MB in float32)


@dataclass(frozen=True)
class NoiseModel:
    """One label-noise model.

    ``inject(clean, rate, rng, **options) -> noisy`` is the kernel: it receives validated inputs
    (uint8 N × C labels, a float rate in [0, ``max_rate``], the model's own Generator, and ``features=`` a list
    of 2-D arrays when ``needs_features``) and returns the noisy uint8 matrix. Its keyword-only
    parameters other than ``features`` are the model's options. At rate 0 every kernel returns a
    copy of the clean labels. Call it through ``inject_noise``.
    """

    name: str
    version: str
    summary: str
    uses: str
    needs_features: bool
    inject: Callable[..., np.ndarray]
    max_rate: float = 1.0  # the largest rate the model takes (a fraction for most; redundant: extra labels per true one)


@dataclass
class NoisyLabels:
    """The result of ``inject_noise``.

    ``labels``: the noisy uint8 matrix, same shape as the clean one. ``corrupted``: boolean (N,),
    True where a sample's label set differs from its clean one. ``stats``: ``realised_noise``.
    """

    labels: np.ndarray
    corrupted: np.ndarray
    stats: dict[str, float]


# ---------------------------------------------------------------- shared helpers


def _count(rate: float, n: int) -> int:
    """⌊rate·n⌋ in exact decimal arithmetic."""
    return math.floor(Fraction(repr(rate)) * n)


def _choose_rows(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """⌊rate·n⌋ row indices drawn uniformly without replacement, in increasing order."""
    return np.sort(rng.choice(n, size=_count(rate, n), replace=False))


def _random_subset(allowed: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row i, a uniformly random subset of ``sizes[i]`` of the True entries of ``allowed[i]``.

    Requires ``sizes[i] <= allowed[i].sum()``. Each entry gets an independent uniform key (disallowed
    ones -1); the ``sizes[i]`` largest keys are chosen.
    """
    keys = np.where(allowed, rng.random(allowed.shape), -1.0)
    ranks = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1)
    return ranks < np.asarray(sizes)[:, None]


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard index of label sets along the last axis (broadcasting); two empty sets give 1."""
    a, b = a.astype(bool), b.astype(bool)
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


# ---------------------------------------------------------------- the models


def _pair_swap(clean: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """⌊r·N⌋ uniformly chosen samples each lose one uniformly chosen positive and gain one uniformly
    chosen originally-negative label (a sample without positives only gains; one without negatives
    only loses), so the label cardinality of a sample with both is preserved."""
    noisy = clean.copy()
    rows = _choose_rows(rng, len(clean), rate)
    positive = clean[rows].astype(bool)
    has_pos = positive.any(1).astype(int)
    has_neg = (~positive).any(1).astype(int)
    lose = _random_subset(positive, has_pos, rng)
    gain = _random_subset(~positive, has_neg, rng)
    noisy[rows] = positive ^ lose ^ gain
    return noisy


def _resample(clean: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """⌊r·N⌋ uniformly chosen samples get a uniformly random label set of the same size (it may
    overlap, or equal, the true one; an empty set stays empty)."""
    noisy = clean.copy()
    rows = _choose_rows(rng, len(clean), rate)
    chosen = clean[rows]
    noisy[rows] = _random_subset(np.ones(chosen.shape, bool), chosen.sum(1), rng)
    return noisy


def _flip(clean: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Every entry flips (0→1 and 1→0) independently with probability r."""
    return clean ^ (rng.random(clean.shape) < rate).astype(np.uint8)


def _class_flip_targets(clean: np.ndarray, mapping: str) -> np.ndarray:
    """π as an int array (C,). ``"cooccur"``: π(c) = the class co-occurring most often with c in
    ``clean`` (c itself excluded, ties to the lowest index, c+1 mod C when c co-occurs with nothing);
    ``"next"``: π(c) = c+1 mod C. π need not be a permutation."""
    n_classes = clean.shape[1]
    following = (np.arange(n_classes) + 1) % n_classes
    if mapping == "next":
        return following
    if mapping != "cooccur":
        raise UserError(
            f"unknown class-flip mapping {mapping!r}; pass mapping='cooccur' (most co-occurring class) "
            "or mapping='next' (c -> c+1 mod C)"
        )
    counts = clean.T.astype(np.int64) @ clean.astype(np.int64)
    np.fill_diagonal(counts, 0)
    return np.where(counts.max(1) > 0, counts.argmax(1), following)


def _class_flip(
    clean: np.ndarray, rate: float, rng: np.random.Generator, *, mapping: str = "cooccur"
) -> np.ndarray:
    """⌊r·N⌋ uniformly chosen samples replace each positive class c by π(c) (see
    ``_class_flip_targets``). Positives mapped onto one class merge, so cardinality can drop; a set
    that π maps onto itself (e.g. {a, b} with π(a) = b, π(b) = a) does not change."""
    targets = _class_flip_targets(clean, mapping)
    noisy = clean.copy()
    rows = _choose_rows(rng, len(clean), rate)
    moved = np.zeros((len(rows), clean.shape[1]), np.uint8)
    sample, cls = np.nonzero(clean[rows])
    moved[sample, targets[cls]] = 1
    noisy[rows] = moved
    return noisy


def _row_chunks(n_rows: int, row_width: int) -> list[slice]:
    """Slices covering ``n_rows`` rows in chunks of about 2**24 entries of width ``row_width``."""
    step = max(1, _CHUNK_ENTRIES // row_width)
    return [slice(start, start + step) for start in range(0, n_rows, step)]


def _embed(blocks: list[np.ndarray]) -> np.ndarray:
    """Float32 embedding for the neighbour search: every column standardised (constant columns
    become 0), each block divided by sqrt(its number of non-constant columns) so each block
    (modality) carries total variance 1, blocks concatenated; if that is wider than 512 columns, a
    fixed Gaussian sketch (seed 0, independent of the noise seed) projects it to 512 dimensions.
    Works in row chunks, so no full-size copy of a block is made."""
    width = sum(block.shape[1] for block in blocks)
    if width > _SKETCH_DIM:
        sketch = _generator("instance-sketch", 0).standard_normal((width, _SKETCH_DIM), dtype=np.float32)
        projection = sketch / np.float32(math.sqrt(_SKETCH_DIM))
    else:
        projection = np.eye(width, dtype=np.float32)
    n = len(blocks[0])
    z = np.zeros((n, projection.shape[1]), np.float32)
    offset = 0
    for block in blocks:
        d = block.shape[1]
        chunks = _row_chunks(n, d)
        mean = block.mean(0, dtype=np.float64).astype(np.float32)
        var = sum(np.square(block[rows] - mean).sum(0, dtype=np.float64) for rows in chunks) / n
        varying = var > 0
        scale = np.divide(1.0, np.sqrt(var), out=np.zeros_like(var), where=varying)
        scale /= math.sqrt(max(1, varying.sum()))
        block_projection = (scale[:, None] * projection[offset : offset + d]).astype(np.float32)
        for rows in chunks:
            z[rows] += (block[rows] - mean) @ block_projection
        offset += d
    return z


def _nearest_neighbours(z: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest neighbours (Euclidean, the sample itself excluded) of every row of ``z``, as
    an int array (N, k) sorted by index; ties at the k-th distance go to the lower indices. Computed
    in row chunks, so memory stays O(chunk · N)."""
    n = len(z)
    squared = np.einsum("ij,ij->i", z, z)
    neighbours = np.empty((n, k), np.int64)
    for rows in _row_chunks(n, n):
        own = np.arange(n)[rows]
        # ‖z_i‖² is the same for the whole row, so it is left out of the ranking
        dist = z[rows] @ z.T
        dist *= -2.0
        dist += squared
        dist[np.arange(len(own)), own] = np.inf
        nearest = np.argpartition(dist, k, axis=1)[:, : k + 1]  # the k+1 smallest, the largest last
        values = np.take_along_axis(dist, nearest, 1)
        kth = values[:, :k].max(1)
        chosen = nearest[:, :k]
        # rows whose (k+1)-th distance equals the k-th: among the tied candidates take the lowest indices
        tie = values[:, k] == kth
        d, t = dist[tie], kth[tie, None]
        tied = d == t
        tied &= np.cumsum(tied, axis=1, dtype=np.int32) <= k - (d < t).sum(1, keepdims=True)
        chosen[tie] = np.nonzero((d < t) | tied)[1].reshape(-1, k)
        neighbours[rows] = np.sort(chosen, axis=1)
    return neighbours


def _corruption_probabilities(ambiguity: np.ndarray, rate: float) -> np.ndarray:
    """Per-sample probabilities p_i = min(1, s·a_i) with the scale s chosen so that mean p = rate
    (mass clipped at 1 is redistributed over the others: water-filling). When fewer than rate·N
    samples have a_i > 0, those get p = 1 and the rest share the remaining mass uniformly; when no
    sample is ambiguous, p = rate everywhere. The mean is therefore always exactly ``rate``."""
    n = len(ambiguity)
    target = rate * n
    n_positive = int((ambiguity > 0).sum())
    if target >= n_positive:
        rest = (target - n_positive) / (n - n_positive) if n > n_positive else 0.0
        return np.where(ambiguity > 0, 1.0, rest)
    descending = np.sort(ambiguity)[::-1]
    tail = np.cumsum(descending[::-1])[::-1]  # tail[t] = sum of all but the t largest
    clipped = np.arange(n_positive)
    fits = (target - clipped) * descending[:n_positive] <= tail[:n_positive]
    t = int(np.argmax(fits))  # fewest samples at p = 1 that make the others fit below 1
    return np.minimum(1.0, ambiguity * ((target - t) / tail[t]))


def _instance(
    clean: np.ndarray, rate: float, rng: np.random.Generator, *, features: list[np.ndarray], k: int = 10
) -> np.ndarray:
    """Instance-dependent noise. Features (see ``_embed``) give each sample its k nearest neighbours
    (``_nearest_neighbours``; k is capped at N-1); its ambiguity a_i is the mean over them of
    1 - Jaccard(y_i, y_j). Sample i is corrupted with probability p_i ∝ a_i, mean p = r
    (``_corruption_probabilities``). A corrupted sample takes the label set of a uniformly chosen
    neighbour whose set differs from its own; if none differs, that of a uniformly chosen sample in
    the whole set whose set differs; if no sample differs at all, it stays clean."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise UserError(f"instance noise option k must be a positive integer, got {k!r}; e.g. k=10")
    n = len(clean)
    if n < 2:
        raise UserError("instance noise needs at least 2 samples to find neighbours; pass more labels")
    neighbours = _nearest_neighbours(_embed(features), min(int(k), n - 1))
    ambiguity = 1.0 - _jaccard(clean[:, None, :], clean[neighbours]).mean(1)
    corrupt = np.flatnonzero(rng.random(n) < _corruption_probabilities(ambiguity, rate))

    _, group = np.unique(clean, axis=0, return_inverse=True)
    group = group.ravel()  # samples with the same label set share a group id
    differs = group[neighbours[corrupt]] != group[corrupt, None]
    has_donor = differs.any(1)
    picks = _random_subset(differs, has_donor.astype(int), rng).argmax(1)
    donors = np.where(has_donor, neighbours[corrupt, picks], corrupt)  # own index: stays clean

    # fallback: a uniform sample outside the own group, drawn by position in the group-sorted order
    fallback = np.flatnonzero(~has_donor)
    sizes = np.bincount(group)
    fallback = fallback[sizes[group[corrupt[fallback]]] < n]
    own = group[corrupt[fallback]]
    slot = rng.integers(0, n - sizes[own])
    starts = np.cumsum(sizes) - sizes
    slot += np.where(slot >= starts[own], sizes[own], 0)
    donors[fallback] = np.argsort(group, kind="stable")[slot]

    noisy = clean.copy()
    noisy[corrupt] = clean[donors]
    return noisy


def _missing(
    clean: np.ndarray, rate: float, rng: np.random.Generator, *, allow_empty: bool = False
) -> np.ndarray:
    """Every positive label is dropped independently with probability r. Unless ``allow_empty``, a
    sample that would lose all its positives keeps one of them, chosen uniformly (so the realised
    drop rate is slightly below r when some samples have few labels)."""
    if not isinstance(allow_empty, (bool, np.bool_)):
        raise UserError(f"missing noise option allow_empty must be True or False, got {allow_empty!r}")
    positive = clean.astype(bool)
    kept = positive & (rng.random(clean.shape) >= rate)
    if not allow_empty:
        emptied = np.flatnonzero(positive.any(1) & ~kept.any(1))
        kept[emptied] = _random_subset(positive[emptied], np.ones(len(emptied), int), rng)
    return kept.astype(np.uint8)


def _redundant(clean: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Every sample with k positives gains m = round(r·k) extra positives, halves to even as the
    authors' generator (NACD's noise_label/generate.py, torch.round) does: r = 1.5 gives 1 → 2,
    3 → 4, 5 → 8; r = 2.5 gives 1 → 2, 3 → 8. They are chosen uniformly among its negatives, at most
    all of them. The authors cap m at C, not C − k, and take the m largest of uniform draws with the
    positives' draws set to 0; for m > C − k that picks every negative (the row becomes all ones),
    which is exactly this cap, so the two give the same label sets and no switch is needed.
    Rows without positives are untouched; no positive is removed."""
    positive = clean.astype(bool)
    cardinality = positive.sum(1)
    extra = np.array([round(Fraction(repr(rate)) * k) for k in range(clean.shape[1] + 1)])[cardinality]
    gained = _random_subset(~positive, np.minimum(extra, clean.shape[1] - cardinality), rng)
    return (positive | gained).astype(np.uint8)


NOISY_KEYS = ("result", "noisy_labels", "noisy")  # NRCH / SCBCH / NACD: result; MGSH: noisy_labels or 2-D noisy
CLEAN_KEYS = ("True", "true_labels", "clean")
_NEEDS_FILE = "noise model 'file' reads the noisy labels from a file: pass --noise-file PATH[:KEY]"


def _given(clean: np.ndarray, rate: float, rng: np.random.Generator, *, file: str | None = None) -> np.ndarray:
    """The noisy labels stored in ``file`` (``read_noise_file``), checked against ``clean``; ``rate``
    and ``rng`` are not used (the file holds one draw, made elsewhere)."""
    if file is None:
        raise UserError(_NEEDS_FILE)
    return read_noise_file(file, clean)


NOISE_MODELS: dict[str, NoiseModel] = {
    model.name: model
    for model in (
        NoiseModel(
            "pair-swap", "1", "floor(r*N) samples each lose one positive label and gain one negative one",
            "NRCH, SCBCH, MGSH, RFCMH: the standard protocol of noisy multi-label CMH", False, _pair_swap,
        ),
        NoiseModel(
            "resample", "1", "floor(r*N) samples get a uniformly random label set of the same size",
            'RSHNL ("sym")', False, _resample,
        ),
        NoiseModel(
            "flip", "1", "every label entry flips independently with probability r",
            "classic symmetric multi-label noise", False, _flip,
        ),
        NoiseModel(
            "class-flip", "1", "floor(r*N) samples move each positive class c to a confusable class pi(c)",
            'asymmetric noise (RFCMH\'s "asym")', False, _class_flip,
        ),
        NoiseModel(
            "instance", "1", "samples in label-ambiguous feature neighbourhoods are corrupted more (mean r)",
            "the open question of the SCBCH paper: real noise correlates with content", True, _instance,
        ),
        NoiseModel(
            "missing", "1", "each positive label is dropped with probability r (no sample left empty)",
            "partial annotation", False, _missing,
        ),
        NoiseModel(
            "redundant", "2", "each sample gains round(r*|y|) random extra positive labels (halves to even; r up to 3)",
            'NACD\'s "redundant annotations" (rates 1.0 / 1.5 / 2.0 / 2.5)', False, _redundant, max_rate=3.0,
        ),
        NoiseModel(
            "file", "1", "the noisy training labels of a given file (--noise-file), e.g. the authors' published draw",
            "reproducing a published NRCH / SCBCH / NACD / MGSH cell on the authors' noise file", False, _given,
        ),
    )
}


# ---------------------------------------------------------------- validation and entry points


def _generator(name: str, seed: int) -> np.random.Generator:
    """The Generator of model ``name`` for ``seed``: the name's bytes are the SeedSequence spawn key."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=tuple(name.encode()))))


def get_noise_model(name: str) -> NoiseModel:
    """The model registered as ``name``; an unknown name raises UserError listing the known ones."""
    if isinstance(name, str) and name in NOISE_MODELS:
        return NOISE_MODELS[name]
    close = difflib.get_close_matches(str(name).lower(), NOISE_MODELS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(f"unknown noise model {name!r}; {hint}known noise models: {', '.join(NOISE_MODELS)}")


def _options(model: NoiseModel) -> list[str]:
    """The model's options: the keyword-only parameters of its kernel other than ``features``."""
    parameters = inspect.signature(model.inject).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "features"]


def _check_labels(labels: Any) -> np.ndarray:
    """``labels`` as a uint8 N × C matrix (N, C >= 1) of zeros and ones, else UserError."""
    array = np.asarray(labels)
    if array.ndim != 2 or 0 in array.shape:
        raise UserError(
            f"clean labels must be a non-empty 2-D (samples x classes) multi-hot matrix, got shape "
            f"{array.shape}; pass one row per training sample and one column per class"
        )
    if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
        raise UserError(
            "clean labels must contain only 0 and 1 (multi-hot); binarise them first, "
            "e.g. (labels > 0).astype(numpy.uint8)"
        )
    return array.astype(np.uint8)


def check_rate(rate: Any, name: str) -> float:
    """``rate`` as a float in [0, the model's ``max_rate``] (1 for every model but ``redundant``), else UserError."""
    top = get_noise_model(name).max_rate
    span = f"[0, {top:g}]"
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise UserError(f"noise rate must be a number in {span}, got {rate!r}; pass e.g. rate=0.2")
    rate = float(rate)
    if math.isnan(rate):
        raise UserError(f"noise rate is NaN; pass a number in {span}, e.g. rate=0.2")
    if not 0.0 <= rate <= top:
        hint = "a fraction such as 0.2 (not a percentage like 20)" if top == 1.0 else f"a rate such as 1.0 or 2.5 for {name}"
        raise UserError(f"noise rate {rate!r} is outside {span} for noise model {name!r}; pass {hint}")
    return rate


def _check_seed(seed: Any) -> int:
    """``seed`` as a non-negative int, else UserError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise UserError(f"noise seed must be a non-negative integer, got {seed!r}; pass e.g. seed=0")
    return int(seed)


def _check_features(features: Any, n: int) -> list[np.ndarray]:
    """``features`` (one matrix, a tuple/list of matrices, or a dict of them, taken in key order) as
    a list of finite numeric 2-D arrays with ``n`` rows each, else UserError."""
    if features is None:
        raise UserError(
            "noise model 'instance' needs the training features; pass features=(image, text), "
            "arrays with one row per training sample"
        )
    if isinstance(features, Mapping):
        blocks = [features[key] for key in sorted(features)]
    elif isinstance(features, (tuple, list)):
        blocks = list(features)
    else:
        blocks = [features]
    checked = []
    for i, block in enumerate(blocks):
        array = np.asarray(block)
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] == 0 or array.dtype.kind not in "biuf":
            raise UserError(
                f"feature block {i} must be a numeric 2-D array with one row per sample ({n} rows), "
                f"got shape {array.shape} and dtype {array.dtype}; "
                "pass features=(image, text) of the training set"
            )
        if not np.isfinite(array).all():
            raise UserError(f"feature block {i} contains NaN or infinite values; clean the features first")
        checked.append(array)
    if not checked:
        raise UserError("features is empty; pass features=(image, text) for the training samples")
    return checked


def realised_noise(clean: np.ndarray, noisy: np.ndarray, requested_rate: float) -> dict[str, float]:
    """The realised corruption of ``noisy`` against ``clean`` (both N × C, 0/1), as plain floats:
    ``requested_rate``; ``sample_fraction_changed``: fraction of rows whose label set changed;
    ``entry_fraction_changed``: fraction of all N·C entries that differ; ``mean_jaccard``: mean over
    rows of the Jaccard index of the clean and noisy label sets (two empty sets count as 1);
    ``added_per_true``: added positives over true positives, Σ(noisy ∧ ¬clean) / Σ clean (NACD's
    redundancy rate, #redundant / #true; 0 when there is no true positive)."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
    changed = clean != noisy
    true = int(clean.astype(bool).sum())
    added = int((noisy.astype(bool) & ~clean.astype(bool)).sum())
    return {
        "requested_rate": float(requested_rate),
        "sample_fraction_changed": float(changed.any(1).mean()),
        "entry_fraction_changed": float(changed.mean()),
        "mean_jaccard": float(_jaccard(clean, noisy).mean()),
        "added_per_true": added / true if true else 0.0,
    }


def read_noise_file(ref: str, clean: Any) -> np.ndarray:
    """The noisy training labels of noise file ``ref`` (``PATH`` or ``PATH:KEY``), checked against the
    clean training labels ``clean`` (T × C), as uint8.

    The noisy matrix is KEY, else the first of ``NOISY_KEYS`` the file holds (NRCH / SCBCH / NACD
    ``result``; MGSH ``noisy_labels`` or 2-D ``noisy``), else the file's only matrix (a ``.npy`` file
    is one). Files are ``.npy``, MATLAB v5, MATLAB v7.3 or HDF5. Checks, each a UserError naming the
    file and the first problem: the shape is T × C (a MATLAB v7.3 file may store it transposed), the
    values are 0/1, and where the file also holds the clean labels (the first of ``CLEAN_KEYS``:
    ``True``, ``true_labels``, ``clean``) they equal ``clean`` row for row.
    """
    from cmh_bench.matrices import list_matrices, parse_ref, probe

    clean = _check_labels(clean)
    path, keys = parse_ref(ref)
    if keys is not None and len(keys) > 1:
        raise UserError(f"noise file {ref!r}: name one matrix, as PATH or PATH:KEY")
    held = list_matrices(path, "noise file")
    matrices = {k: s for k, s in held.items() if len(s) == 2}
    key = keys[0] if keys else next((k for k in NOISY_KEYS if k in matrices), None)
    if key is None and len(held) != 1:
        listing = ", ".join(f"{k} {s}" for k, s in held.items())
        raise UserError(f"noise file {path}: none of the keys {', '.join(NOISY_KEYS)} holds the noisy labels; "
                        f"name the matrix as {path}:KEY (the file holds: {listing or 'no matrices'})")
    noisy = _given_matrix(probe(path, key, "noisy labels"), clean.shape)
    clean_key = next((k for k in CLEAN_KEYS if k in matrices and k != key), None)
    if clean_key is not None:
        stored_clean = _given_matrix(probe(path, clean_key, "clean labels"), clean.shape)
        differs = np.flatnonzero((stored_clean != clean).any(1))
        if differs.size:
            row = int(differs[0])
            raise UserError(
                f"noise file {path}: its clean labels {clean_key!r} differ from the dataset's training labels at "
                f"training row {row} (of {len(clean)}; {differs.size} rows differ); it was made for another "
                "dataset, split or row order: use the noise file of this split or the matching --split"
            )
    return noisy


def _given_matrix(matrix, shape: tuple[int, int]) -> np.ndarray:
    """``matrix`` (a cmh_bench.matrices.Matrix) loaded as a 0/1 uint8 array of ``shape`` (T × C), items first."""
    rows, classes = shape
    stored = tuple(matrix.shape)
    if stored == (classes, rows) and (rows != classes or matrix.column_major):
        matrix.items_first = False
    elif stored != (rows, classes):
        raise UserError(
            f"noise file {matrix.describe()}: expected the {matrix.role} of the {rows} training items x {classes} "
            f"classes, found shape {stored}; is it the noise file of this dataset and split?"
        )
    array = np.asarray(matrix.load())
    if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
        found = np.unique(array)[:6].tolist() if array.dtype.kind in "biuf" else str(array.dtype)
        raise UserError(f"noise file {matrix.describe()}: the {matrix.role} must be 0/1 multi-hot, found values such as {found}")
    return array.astype(np.uint8)


def check_noise_options(noise_file: str | None, noise: tuple[str, ...], rates: tuple[float, ...]) -> None:
    """A run's noise options agree: noise model ``file`` has a ``noise_file`` that exists, and goes
    alone with one (nominal) rate; a ``noise_file`` goes with ``file`` only. Else UserError."""
    if noise_file is None:
        if "file" in noise:
            raise UserError(_NEEDS_FILE)
        return
    if tuple(noise) != ("file",):
        raise UserError(f"--noise-file goes with --noise file alone (got --noise {','.join(noise)}); run other noise models separately")
    if len(rates) != 1:
        raise UserError("a noise file holds one draw: give its nominal rate once, e.g. --rates 0.5 (it labels the cell)")
    from cmh_bench.matrices import list_matrices, parse_ref

    list_matrices(parse_ref(noise_file)[0], "noise file")


def check_noise_file(noise_file: str | None, dataset_file, split: str | None) -> None:
    """``noise_file`` (if any) fits the training labels of ``split`` of the dataset file (``read_noise_file``); else UserError."""
    if noise_file is not None:
        from cmh_bench.dataset import load_split

        read_noise_file(noise_file, load_split(dataset_file, split).train.labels)


def inject_noise(
    name: str, clean_labels: Any, rate: float, seed: int, features: Any = None, **options: Any
) -> NoisyLabels:
    """Corrupt ``clean_labels`` (N × C, 0/1) with noise model ``name`` at ``rate`` in [0, 1] (redundant: [0, 3]) and
    ``seed`` (non-negative int); ``clean_labels`` is not modified.

    ``features`` is required by models with ``needs_features`` (``instance``: one N-row matrix, a
    tuple/list of them, or a dict of them taken in key order) and ignored by the others.
    ``options`` are the model's own keywords: ``mapping="cooccur"|"next"`` for class-flip,
    ``allow_empty=False`` for missing, ``k=10`` for instance, ``file="PATH[:KEY]"`` for file (whose
    stats also hold the file and its ``file_sha256``). Rate 0 returns a copy of the clean labels
    (except for file). Any invalid input raises UserError. Returns ``NoisyLabels`` (uint8 labels,
    corrupted mask = rows whose label set changed, stats = ``realised_noise``).

    >>> import numpy as np
    >>> clean = np.array([[1, 0, 0], [0, 1, 1]], dtype=np.uint8)
    >>> result = inject_noise("pair-swap", clean, 0.5, seed=0)
    >>> int(result.corrupted.sum()), result.stats["entry_fraction_changed"]
    (1, 0.3333333333333333)
    """
    model = get_noise_model(name)
    unknown = sorted(set(options) - set(_options(model)))
    if unknown:
        known = ", ".join(_options(model)) or "none"
        raise UserError(f"noise model {model.name!r} has no option {unknown[0]!r}; its options: {known}")
    clean = _check_labels(clean_labels)
    rate = check_rate(rate, model.name)
    seed = _check_seed(seed)
    if model.needs_features:
        options["features"] = _check_features(features, len(clean))
    noisy = model.inject(clean, rate, _generator(model.name, seed), **options)
    stats = realised_noise(clean, noisy, rate)
    if model.inject is _given:
        from cmh_bench.filehash import file_sha256
        from cmh_bench.matrices import parse_ref

        stats.update(file=str(options["file"]), file_sha256=file_sha256(parse_ref(options["file"])[0]))
    return NoisyLabels(noisy, (clean != noisy).any(1), stats)
