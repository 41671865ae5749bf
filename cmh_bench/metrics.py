"""Retrieval metrics of Hamming ranking, computed from per-query distance histograms.

Definitions are those of shared/specs/metrics.md. For one query, n_d / r_d = items / relevant items
at Hamming distance d (d = 0..L), N_<d = Σ_{e<d} n_e, R_<d = Σ_{e<d} r_e, R = Σ_d r_d. The ranking
by distance is a sequence of tie groups; unless said otherwise a metric is its expectation over a
uniformly random order inside every group (McSherry & Najork, ECIR 2008), which depends on (n, r)
only, not on the database order. A relevant item at position k (1..n_d) of group d has on average
R_<d + 1 + (k−1)·β_d relevant items at or above it, β_d = (r_d − 1)/(n_d − 1) (β_d = 0 if n_d = 1),
so the expected sum of precisions at the relevant positions among the first m positions of group d is

    S_d(m) = (r_d/n_d) Σ_{k=1}^{m} (R_<d + 1 + (k−1)β_d) / (N_<d + k)
           = (r_d/n_d) · [m·β_d + (R_<d + 1 − β_d·(N_<d + 1)) · (H(N_<d + m) − H(N_<d))],

with H the harmonic numbers. MAP@all uses m = n_d, MAP@k uses m = clip(k − N_<d, 0, n_d). Every
per-query metric costs O(L); all functions are vectorised over queries (arrays of shape (Q, L+1)).
Queries without relevant items (R = 0) are excluded from every mean and counted separately.

``evaluate`` is the one entry point from codes: both directions, i2t = image queries against the
database's text codes, t2i = text queries against the database's image codes. Its input is one
:class:`Retrieval`: the six arrays (query / database × image / text codes, query / database labels).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from cmh_bench.hamming import hamming_histograms, to_numpy

DEFAULT_KS = (50, 100, 500, 1000, 5000)
"""Cut-offs for MAP@k and P@k: 50 (MAP@50 of the unsupervised DJSRH/JDSH family), 100, 500 and 1000
(top-N precision curves of hashing papers), 5000 (a deep cut-off, ~1/4 of MIRFlickr's database)."""

DIRECTIONS = ("i2t", "t2i")
_RADIUS_FOR_PRECISION = 2
_COUNT_KEYS = ("n_queries", "n_queries_without_relevant")



@dataclass(frozen=True)
class Retrieval:
    """The six arrays of one cross-modal retrieval evaluation.

    Codes: ±1 numpy arrays / torch tensors (rows, L) or ``PackedCodes``; labels: 0/1 matrices
    (rows, C). Row q of ``query_image``, ``query_text`` and ``query_labels`` is one item, likewise
    for the database. i2t ranks ``db_text`` for each ``query_image`` row, t2i ranks ``db_image``
    for each ``query_text`` row; relevance = at least one shared label.
    """

    query_image: Any
    query_text: Any
    db_image: Any
    db_text: Any
    query_labels: Any
    db_labels: Any


# Harmonic numbers: a table below _ASYMPTOTIC_FROM, the asymptotic series above it.
_ASYMPTOTIC_FROM = 64
_SMALL_HARMONIC = np.array([math.fsum(1.0 / i for i in range(1, m + 1)) for m in range(_ASYMPTOTIC_FROM)])
_EULER_GAMMA = 0.5772156649015329


def _harmonic_tail(x: np.ndarray) -> np.ndarray:
    """H(x) − ln x − γ = 1/(2x) − 1/(12x²) + 1/(120x⁴) − 1/(252x⁶) + O(x⁻⁸), for x ≥ 64 (error < 1e-17)."""
    inverse_square = 1.0 / (x * x)
    return 0.5 / x - inverse_square * (1.0 / 12 - inverse_square * (1.0 / 120 - inverse_square / 252))


def _harmonic(x: np.ndarray) -> np.ndarray:
    """H(x) = Σ_{i=1}^{x} 1/i for integer arrays x ≥ 0."""
    large = np.maximum(x, _ASYMPTOTIC_FROM).astype(np.float64)
    asymptotic = np.log(large) + _EULER_GAMMA + _harmonic_tail(large)
    return np.where(x < _ASYMPTOTIC_FROM, _SMALL_HARMONIC[np.minimum(x, _ASYMPTOTIC_FROM - 1)], asymptotic)


def harmonic_difference(start, count) -> np.ndarray:
    """H(start + count) − H(start) = Σ_{k=1}^{count} 1/(start + k), elementwise, relative error < 1e-13.

    For start ≥ 64 it is evaluated as log1p(count/start) plus the difference of the asymptotic tails,
    which avoids the cancellation of H(start + count) − H(start) when count ≪ start (a plain table
    or digamma difference loses ~log10(start) digits there); below 64 it is a difference of exactly
    rounded table values (absolute error < 1e-15).

    >>> harmonic_difference(np.array([0, 2]), np.array([3, 0])).tolist()  # 1 + 1/2 + 1/3, empty sum
    [1.8333333333333333, 0.0]
    >>> round(float(harmonic_difference(10**9, 1)) * (10**9 + 1), 14)  # 1/(10^9 + 1) to the last digits
    1.0
    """
    start, count = np.broadcast_arrays(np.asarray(start, dtype=np.int64), np.asarray(count, dtype=np.int64))
    result = np.zeros(start.shape)
    small = (count > 0) & (start < _ASYMPTOTIC_FROM)
    result[small] = _harmonic(start[small] + count[small]) - _SMALL_HARMONIC[start[small]]
    large = (count > 0) & (start >= _ASYMPTOTIC_FROM)
    large_start, large_end = start[large].astype(np.float64), (start + count)[large].astype(np.float64)
    result[large] = np.log1p(count[large] / large_start) + _harmonic_tail(large_end) - _harmonic_tail(large_start)
    return result


def _divide(numerator, denominator, fill=0.0) -> np.ndarray:
    """numerator / denominator elementwise, ``fill`` where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, np.float64), np.asarray(denominator, np.float64))
    out = np.full(numerator.shape, fill)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def _expected_precision_sum(n, r, n_before, r_before, m) -> np.ndarray:
    """S_d(m) of the module docstring, elementwise: the expected sum of precisions at the relevant
    positions among the first m positions of a group of n items (r relevant) after n_before items
    (r_before relevant)."""
    beta = _divide(r - 1, n - 1) * (n > 1)
    inside = m * beta + (r_before + 1 - beta * (n_before + 1)) * harmonic_difference(n_before, m)
    return _divide(r, n) * inside


class _TieGroups:
    """Validated (Q, L+1) histograms and their prefix sums; one method per metric (formulas above)."""

    def __init__(self, n, r):
        n, r = to_numpy(n).astype(np.int64), to_numpy(r).astype(np.int64)
        if n.ndim != 2 or n.shape != r.shape or n.shape[1] < 2:
            raise ValueError(f"histograms n and r must both have shape (Q, L+1) with L >= 1, got {n.shape} and {r.shape}")
        if np.any(r < 0) or np.any(r > n):
            raise ValueError("histograms must satisfy 0 <= r <= n in every cell")
        self.n, self.r = n, r
        self.rows = np.arange(n.shape[0])
        self.items_before = _prefix_sums(n)  # (Q, L+2): N_<d for d = 0..L+1
        self.relevant_before = _prefix_sums(r)  # (Q, L+2): R_<d; last column R
        self.n_before, self.r_before = self.items_before[:, :-1], self.relevant_before[:, :-1]
        self.n_relevant = self.relevant_before[:, -1]

    @functools.cached_property
    def precision_sums_before(self) -> np.ndarray:
        """(Q, L+2): Σ_{e<d} S_e(n_e), the expected precision sum of the groups before d."""
        return _prefix_sums(_expected_precision_sum(self.n, self.r, self.n_before, self.r_before, self.n))

    def straddling_group(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, d* = the number of groups entirely within the top k (so d* is the group that
        straddles rank k, or L+1) and m = k − N_<d*, the positions of d* within the top k (0 if none)."""
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        inside = (self.items_before[:, 1:] <= k).sum(axis=1)
        m = np.where(inside < self.n.shape[1], k - self.items_before[self.rows, inside], 0)
        return inside, m

    def average_precision(self) -> np.ndarray:
        return _divide(self.precision_sums_before[:, -1], self.n_relevant, fill=np.nan)

    def average_precision_at_k(self, k: int) -> np.ndarray:
        inside, m = self.straddling_group(k)
        cell = self.rows, np.minimum(inside, self.n.shape[1] - 1)
        straddling = _expected_precision_sum(self.n[cell], self.r[cell], self.n_before[cell], self.r_before[cell], m)
        precision_sum = self.precision_sums_before[self.rows, inside] + straddling
        return _divide(precision_sum, np.minimum(k, self.n_relevant), fill=np.nan)

    def precision_at_k(self, k: int) -> np.ndarray:
        inside, m = self.straddling_group(k)
        cell = self.rows, np.minimum(inside, self.n.shape[1] - 1)
        return (self.relevant_before[self.rows, inside] + _divide(self.r[cell] * m, self.n[cell])) / k

    def average_precision_optimistic(self) -> np.ndarray:
        gap = self.r_before - self.n_before
        sums = (self.r + gap * harmonic_difference(self.n_before, self.r)).sum(axis=1)
        return _divide(sums, self.n_relevant, fill=np.nan)

    def average_precision_pessimistic(self) -> np.ndarray:
        gap = self.r_before + self.r - self.n_before - self.n
        sums = (self.r + gap * harmonic_difference(self.n_before + self.n - self.r, self.r)).sum(axis=1)
        return _divide(sums, self.n_relevant, fill=np.nan)

    def precision_recall_by_radius(self) -> tuple[np.ndarray, np.ndarray]:
        retrieved, hits = self.items_before[:, 1:], self.relevant_before[:, 1:]
        return _divide(hits, retrieved), _divide(hits, self.n_relevant[:, None], fill=np.nan)


def _prefix_sums(counts: np.ndarray) -> np.ndarray:
    """(Q, L+1) -> (Q, L+2): column d holds the sum of columns < d."""
    prefix = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=counts.dtype)
    np.cumsum(counts, axis=1, out=prefix[:, 1:])
    return prefix


def average_precision(n, r) -> np.ndarray:
    """Tie-aware AP per query: AP = (1/R) Σ_d S_d(n_d) (expected AP over random orders inside ties).

    Shape (Q,); NaN for queries with R = 0.

    One tie group of 2 items, 1 relevant: AP is 1 or 1/2 with equal probability.

    >>> average_precision([[2, 0]], [[1, 0]]).tolist()
    [0.75]
    >>> average_precision([[1, 2, 1]], [[1, 1, 0]]).round(6).tolist()  # 1/2 (1/1 + (1/2)(2/2 + 2/3))
    [0.916667]
    """
    return _TieGroups(n, r).average_precision()


def average_precision_at_k(n, r, k: int) -> np.ndarray:
    """Tie-aware textbook AP@k per query: (1/min(k, R)) Σ_d S_d(clip(k − N_<d, 0, n_d)).

    The expectation of (1/min(k, R)) Σ_{relevant at rank i ≤ k} precision@i over random orders inside
    ties: groups entirely within the top k count fully, the group straddling rank k contributes its
    first k − N_<d positions. Shape (Q,); NaN if R = 0.

    >>> average_precision_at_k([[2, 2]], [[1, 1]], 1).tolist()  # rank 1 is relevant with probability 1/2
    [0.5]
    >>> average_precision_at_k([[2, 2]], [[1, 1]], 4).tolist() == average_precision([[2, 2]], [[1, 1]]).tolist()
    True
    """
    return _TieGroups(n, r).average_precision_at_k(k)


def precision_at_k(n, r, k: int) -> np.ndarray:
    """Tie-aware P@k per query: (1/k) Σ_d r_d · clip(k − N_<d, 0, n_d) / n_d.

    The straddling group contributes (k − N_<d) r_d / n_d. When k exceeds the database size the
    denominator stays k (as in published top-k code). Shape (Q,).

    >>> precision_at_k([[1, 4, 5]], [[1, 2, 0]], 3).tolist()  # (1 + 2 · 2/4) / 3
    [0.6666666666666666]
    """
    return _TieGroups(n, r).precision_at_k(k)


def average_precision_optimistic(n, r) -> np.ndarray:
    """AP per query with relevant items first inside every tie group (upper bound of tie-aware AP):

    AP = (1/R) Σ_d Σ_{j=1}^{r_d} (R_<d + j)/(N_<d + j) = (1/R) Σ_d [r_d + (R_<d − N_<d)(H(N_<d + r_d) − H(N_<d))].

    >>> average_precision_optimistic([[2, 0]], [[1, 0]]).tolist()
    [1.0]
    """
    return _TieGroups(n, r).average_precision_optimistic()


def average_precision_pessimistic(n, r) -> np.ndarray:
    """AP per query with relevant items last inside every tie group (lower bound of tie-aware AP):

    AP = (1/R) Σ_d Σ_{j=1}^{r_d} (R_<d + j)/(N_<d + n_d − r_d + j)
       = (1/R) Σ_d [r_d + (R_<d + r_d − N_<d − n_d)(H(N_<d + n_d) − H(N_<d + n_d − r_d))].

    >>> average_precision_pessimistic([[2, 0]], [[1, 0]]).tolist()
    [0.5]
    """
    return _TieGroups(n, r).average_precision_pessimistic()


def precision_recall_by_radius(n, r) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of retrieving everything within Hamming radius ρ, for ρ = 0..L.

    precision[q, ρ] = R_≤ρ / N_≤ρ (0 when nothing is retrieved), recall[q, ρ] = R_≤ρ / R (NaN if R = 0),
    with R_≤ρ = Σ_{d≤ρ} r_d, N_≤ρ = Σ_{d≤ρ} n_d. Ties do not matter: a radius takes whole groups.

    >>> precision, recall = precision_recall_by_radius([[1, 3, 0]], [[1, 1, 0]])
    >>> precision.tolist(), recall.tolist()
    ([[1.0, 0.5, 0.5]], [[0.5, 1.0, 1.0]])
    """
    return _TieGroups(n, r).precision_recall_by_radius()


def _mean(values: np.ndarray, included: np.ndarray) -> float | None:
    """Exactly rounded mean (math.fsum) of the included queries, None if there are none."""
    selected = values[included]
    return math.fsum(selected.tolist()) / selected.size if selected.size else None


def metrics_from_histograms(n, r, *, ks: Sequence[int] = DEFAULT_KS, stable_ap=None) -> dict:
    """All metrics of one retrieval direction from its histograms, averaged over queries with R > 0.

    ``n``, ``r``: (Q, L+1) histograms (``hamming_histograms``); ``stable_ap``: optional per-query AP
    with ties broken by database index (it needs the codes; ``map_stable`` is None without it).
    Returns a JSON-serialisable dict (floats; None when no query has a relevant item):

    - ``map``, ``map_optimistic``, ``map_pessimistic``, ``map_stable``: mean AP (tie-aware, bounds, stable)
    - ``map@k`` / ``p@k``: {str(k): mean tie-aware AP@k / P@k} for k in ``ks``
    - ``p@r2``: mean precision within Hamming radius 2 (radius L if L < 2)
    - ``pr_by_radius``: {"precision": [...], "recall": [...]}, L+1 means, one per radius 0..L
    - ``n_queries`` (Q) and ``n_queries_without_relevant`` (excluded from all means)

    >>> result = metrics_from_histograms([[2, 0], [1, 1]], [[1, 0], [0, 0]], ks=(1,))
    >>> result["map"], result["map@k"], result["p@k"], result["n_queries_without_relevant"]
    (0.75, {'1': 0.5}, {'1': 0.5}, 1)
    """
    groups = _TieGroups(n, r)
    included = groups.n_relevant > 0
    precision, recall = groups.precision_recall_by_radius()
    return {
        "map": _mean(groups.average_precision(), included),
        "map_optimistic": _mean(groups.average_precision_optimistic(), included),
        "map_pessimistic": _mean(groups.average_precision_pessimistic(), included),
        "map_stable": None if stable_ap is None else _mean(to_numpy(stable_ap).astype(np.float64), included),
        "map@k": {str(k): _mean(groups.average_precision_at_k(k), included) for k in ks},
        "p@k": {str(k): _mean(groups.precision_at_k(k), included) for k in ks},
        "p@r2": _mean(precision[:, min(_RADIUS_FOR_PRECISION, precision.shape[1] - 1)], included),
        "pr_by_radius": {
            "precision": [_mean(column, included) for column in precision.T],
            "recall": [_mean(column, included) for column in recall.T],
        },
        "n_queries": int(groups.n.shape[0]),
        "n_queries_without_relevant": int((~included).sum()),
    }


def _mean_of_directions(first, second):
    """Elementwise (first + second) / 2 through nested dicts and lists; None if either is None."""
    if isinstance(first, dict):
        return {key: _mean_of_directions(first[key], second[key]) for key in first if key not in _COUNT_KEYS}
    if isinstance(first, list):
        return [_mean_of_directions(a, b) for a, b in zip(first, second)]
    return None if first is None or second is None else (first + second) / 2


def report_from_histograms(histograms: Mapping[str, Mapping[str, np.ndarray]], *, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """The ``evaluate`` result from stored histograms: {"i2t": ..., "t2i": ..., "mean": ...}.

    ``histograms[direction]`` holds "n", "r" and optionally "stable_ap" (the second value that
    ``evaluate(..., keep_histograms=True)`` returns). Each direction is ``metrics_from_histograms``;
    "mean" is (i2t + t2i)/2 for every metric (elementwise for dicts and lists), without the counts.
    """
    report = {
        direction: metrics_from_histograms(
            histograms[direction]["n"], histograms[direction]["r"], ks=ks, stable_ap=histograms[direction].get("stable_ap")
        )
        for direction in DIRECTIONS
    }
    report["mean"] = _mean_of_directions(report["i2t"], report["t2i"])
    return report


def evaluate(
    retrieval: Retrieval,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    keep_histograms: bool = False,
    stable_ap: bool = True,
):
    """Evaluate cross-modal Hamming retrieval in both directions.

    i2t ranks the database's text codes by distance to each image query code, t2i the database's
    image codes by distance to each text query code; relevance = at least one shared label
    (see :class:`Retrieval`).

    Returns ``report_from_histograms`` of the two directions: a JSON-serialisable dict
    {"i2t": {...}, "t2i": {...}, "mean": {...}} (keys in ``metrics_from_histograms``), including
    ``map_stable`` (ties broken by database index; ``stable_ap=False`` skips it, map_stable is then
    None, and saves about 60% of the time). With ``keep_histograms=True`` returns
    ``(report, histograms)`` where histograms = {"i2t": {"n", "r", "stable_ap"}, "t2i": {...}} are
    numpy arrays ((Q, L+1) int64, (Q, L+1) int64, (Q,) float64 with NaN where R = 0, or None), from
    which ``report_from_histograms`` recomputes the identical report.

    >>> codes, labels = np.array([[1, 1], [1, -1], [-1, -1]]), np.array([[1], [1], [0]])
    >>> report = evaluate(Retrieval(codes[:1], codes[:1], codes, codes, labels[:1], labels), ks=(2,))
    >>> sorted(report), report["i2t"]["map"], report["mean"]["p@k"], report["t2i"]["pr_by_radius"]["recall"]
    (['i2t', 'mean', 't2i'], 1.0, {'2': 1.0}, [0.5, 1.0, 1.0])
    """
    query_codes = {"i2t": retrieval.query_image, "t2i": retrieval.query_text}
    db_codes = {"i2t": retrieval.db_text, "t2i": retrieval.db_image}
    histograms = {
        direction: hamming_histograms(
            query_codes[direction], db_codes[direction], retrieval.query_labels, retrieval.db_labels, stable_ap=stable_ap
        )._asdict()
        for direction in DIRECTIONS
    }
    report = report_from_histograms(histograms, ks=ks)
    return (report, histograms) if keep_histograms else report
