"""Metrics from histograms against independent oracles: exact enumeration and sampling of the orders
inside tie groups, scikit-learn / torchmetrics on rankings without ties, and hand-computed cases."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torchmetrics.functional.retrieval import retrieval_precision

from cmh_bench.hamming import hamming_histograms
from cmh_bench.metrics import (
    average_precision,
    average_precision_at_k,
    average_precision_optimistic,
    average_precision_pessimistic,
    Retrieval,
    evaluate,
    harmonic_difference,
    metrics_from_histograms,
    precision_at_k,
    precision_recall_by_radius,
    report_from_histograms,
)


def textbook_ap_at_k(relevant, k):
    """AP@k of one ranking (0/1 vector, best first): (1/min(k, R)) Σ_{relevant rank i ≤ k} precision@i."""
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(relevant) + 1)
    top = relevant[:k].astype(bool)
    return (hits[:k][top] / ranks[:k][top]).sum() / min(k, relevant.sum())


def group_orders(n, r):
    """All rankings (0/1 vectors) whose tie groups have n[d] items of which r[d] are relevant, each
    arrangement inside a group equally likely (all combinations: they are equiprobable)."""
    per_group = []
    for size, hits in zip(n, r):
        arrangements = []
        for positions in itertools.combinations(range(size), hits):
            group = np.zeros(size, dtype=np.int64)
            group[list(positions)] = 1
            arrangements.append(group)
        per_group.append(arrangements)
    return [np.concatenate(choice) for choice in itertools.product(*per_group)]


def random_histogram(rng, n_bits, max_group):
    n = rng.integers(0, max_group + 1, n_bits + 1)
    r = rng.integers(0, n + 1)
    return n, r


def test_closed_forms_equal_exact_enumeration_of_tie_orders():
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 150:
        n, r = random_histogram(rng, int(rng.integers(1, 5)), 4)
        if r.sum() == 0:
            continue
        rankings = group_orders(n, r)
        total = int(n.sum())
        expected = np.mean([textbook_ap_at_k(x, total) for x in rankings])
        assert average_precision([n], [r])[0] == pytest.approx(expected, abs=1e-13)
        for k in (1, 2, 3, 5, 8, 40):
            expected_ap = np.mean([textbook_ap_at_k(x, k) for x in rankings])
            expected_precision = np.mean([x[:k].sum() / k for x in rankings])
            assert average_precision_at_k([n], [r], k)[0] == pytest.approx(expected_ap, abs=1e-13)
            assert precision_at_k([n], [r], k)[0] == pytest.approx(expected_precision, abs=1e-13)
        aps = [textbook_ap_at_k(x, total) for x in rankings]
        assert average_precision_optimistic([n], [r])[0] == pytest.approx(max(aps), abs=1e-13)
        assert average_precision_pessimistic([n], [r])[0] == pytest.approx(min(aps), abs=1e-13)
        checked += 1


def test_closed_forms_equal_the_mean_over_many_sampled_orders():
    """Larger groups (up to 40 items), 20,000 random orders inside the groups; within 5 standard errors."""
    rng = np.random.default_rng(1)
    n, r = random_histogram(rng, 8, 40)
    group_of_item = np.repeat(np.arange(len(n)), n)
    relevant_in_group = np.concatenate([np.arange(size) < hits for size, hits in zip(n, r)]).astype(np.int64)
    samples = 20_000
    keys = group_of_item + rng.random((samples, n.sum()))  # sort by group, random order inside it
    rankings = relevant_in_group[np.argsort(keys, axis=1)]
    for k in (5, 37, 100, int(n.sum())):
        hits = np.cumsum(rankings[:, :k], axis=1)
        per_sample = (rankings[:, :k] * hits / np.arange(1, k + 1)).sum(axis=1) / min(k, r.sum())
        standard_error = per_sample.std() / math.sqrt(samples)
        assert abs(average_precision_at_k([n], [r], k)[0] - per_sample.mean()) < 5 * standard_error + 1e-12
        assert precision_at_k([n], [r], k)[0] == pytest.approx(rankings[:, :k].sum(axis=1).mean() / k, abs=5e-3)


def test_hand_computed_case_with_ties():
    # group 0: 1 non-relevant item (rank 1); group 1: 3 items, 2 relevant (ranks 2-4);
    # group 2: 2 items, 1 relevant (ranks 5-6)
    n, r = [[1, 3, 2]], [[0, 2, 1]]
    # group 1: relevant pairs {2,3}, {2,4}, {3,4}: (1/2 + 2/3 + 1/2 + 2/4 + 1/3 + 2/4)/3 = 1; group 2: (3/5 + 3/6)/2 = 11/20
    assert average_precision(n, r)[0] == pytest.approx((1 + 11 / 20) / 3, abs=1e-15)  # 31/60
    assert average_precision_optimistic(n, r)[0] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3, abs=1e-15)
    assert average_precision_pessimistic(n, r)[0] == pytest.approx((1 / 3 + 2 / 4 + 3 / 6) / 3, abs=1e-15)
    # top 2: rank 2 relevant with probability 2/3, precision 1/2 there; divided by min(2, R=3) = 2
    assert average_precision_at_k(n, r, 2)[0] == pytest.approx((2 / 3 * 1 / 2) / 2, abs=1e-15)
    assert average_precision_at_k(n, r, 4)[0] == pytest.approx(1 / 3, abs=1e-15)
    assert average_precision_at_k(n, r, 5)[0] == pytest.approx((1 + 1 / 2 * 3 / 5) / 3, abs=1e-15)
    assert precision_at_k(n, r, 2)[0] == pytest.approx((2 / 3) / 2, abs=1e-15)
    assert precision_at_k(n, r, 5)[0] == pytest.approx((2 + 1 / 2) / 5, abs=1e-15)
    precision, recall = precision_recall_by_radius(n, r)
    np.testing.assert_allclose(precision[0], [0, 2 / 4, 3 / 6], atol=1e-15)
    np.testing.assert_allclose(recall[0], [0, 2 / 3, 1], atol=1e-15)


def test_all_codes_equal_gives_the_random_ranking_expectation():
    """One tie group: P@k and precision at every radius are exactly the relevance rate; AP is the
    expected AP of a random ranking, (1/n)[n(r−1)/(n−1) + (n−r)/(n−1)·H(n)], e.g. 49/72 (not 1/2) for 2 of 4."""
    assert average_precision([[4, 0]], [[2, 0]])[0] == pytest.approx(49 / 72, abs=1e-15)
    codes = np.ones((3, 16), dtype=np.int8)
    db_codes = np.ones((500, 16), dtype=np.int8)
    rng = np.random.default_rng(2)
    query_labels = np.eye(3, 5, dtype=np.uint8)
    db_labels = (rng.random((500, 5)) < 0.3).astype(np.uint8)
    result = evaluate(Retrieval(codes, codes, db_codes, db_codes, query_labels, db_labels), ks=(1, 10, 499))["i2t"]
    rates = db_labels[:, :3].mean(axis=0)
    harmonic_500 = math.fsum(1 / i for i in range(1, 501))
    counts = db_labels[:, :3].sum(axis=0)
    expected_ap = [(500 * (c - 1) / 499 + (500 - c) / 499 * harmonic_500) / 500 for c in counts]
    assert result["map"] == pytest.approx(np.mean(expected_ap), abs=1e-14)
    for k in ("1", "10", "499"):
        assert result["p@k"][k] == pytest.approx(rates.mean(), abs=1e-14)
    np.testing.assert_allclose(result["pr_by_radius"]["precision"], rates.mean(), atol=1e-14)
    assert result["map_optimistic"] == 1.0


def no_tie_case(rng, n_items, n_bits=128):
    """Codes whose distances to the query (all +1) are distinct: item i has its first d_i bits at -1."""
    distances = rng.choice(n_bits + 1, n_items, replace=False)
    db_codes = np.where(np.arange(n_bits) < distances[:, None], -1, 1).astype(np.int8)
    return np.ones((1, n_bits), dtype=np.int8), db_codes, distances


def test_without_ties_all_variants_equal_sklearn_and_torchmetrics():
    rng = np.random.default_rng(4)
    for trial in range(20):
        query, db_codes, distances = no_tie_case(rng, 60)
        query_labels = np.ones((1, 1), dtype=np.uint8)
        db_labels = (rng.random((60, 1)) < 0.3).astype(np.uint8)
        db_labels[trial % 60] = 1
        result = evaluate(Retrieval(query, query, db_codes, db_codes, query_labels, db_labels), ks=(1, 7, 30))["t2i"]
        relevant = db_labels[:, 0]
        expected = average_precision_score(relevant, -distances)
        for key in ("map", "map_optimistic", "map_pessimistic", "map_stable"):
            assert result[key] == pytest.approx(expected, abs=1e-12)
        ranking = relevant[np.argsort(distances)]
        for k in (1, 7, 30):
            assert result["map@k"][str(k)] == pytest.approx(textbook_ap_at_k(ranking, k), abs=1e-12)
            scores = torch.tensor(129.0 - distances)  # torchmetrics treats scores <= 0 as not retrieved
            torch_precision = retrieval_precision(scores, torch.tensor(relevant.astype(bool)), top_k=k)
            assert result["p@k"][str(k)] == pytest.approx(float(torch_precision), abs=1e-7)  # float32 there


def test_evaluate_hand_case_directions_and_mean():
    """i2t ranks database text codes, t2i database image codes."""
    query = np.array([[1, 1]], dtype=np.int8)
    # text codes: distances 0, 1, 1, 1, 2, 2; relevant items 1, 3, 5 (the hand case above in database order)
    db_text = np.array([[1, 1], [1, -1], [-1, 1], [1, -1], [-1, -1], [-1, -1]], dtype=np.int8)
    db_image = np.ones((6, 2), dtype=np.int8)  # every item ties with the query
    db_labels = np.array([[0], [1], [0], [1], [0], [1]], dtype=np.uint8)
    result = evaluate(Retrieval(query, query, db_image, db_text, np.ones((1, 1), dtype=np.uint8), db_labels), ks=(2,))
    assert result["i2t"]["map"] == pytest.approx(31 / 60, abs=1e-15)
    assert result["i2t"]["map_stable"] == pytest.approx((1 / 2 + 2 / 4 + 3 / 6) / 3, abs=1e-15)
    random_six = (6 * 2 / 5 + 3 / 5 * (1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5 + 1 / 6)) / 6  # 3 of 6 relevant, one group
    assert result["t2i"]["map"] == pytest.approx(random_six, abs=1e-15)
    assert result["t2i"]["map_stable"] == pytest.approx(1 / 2, abs=1e-15)  # relevant at ranks 2, 4, 6
    assert result["mean"]["map"] == pytest.approx((31 / 60 + random_six) / 2, abs=1e-15)
    assert result["i2t"]["p@r2"] == pytest.approx(1 / 2, abs=1e-15)
    assert result["i2t"]["map@k"] == {"2": pytest.approx(1 / 6, abs=1e-15)}
    assert "n_queries" not in result["mean"]


def random_codes_case(rng, n_queries, n_items, n_bits, n_classes):
    def codes(rows):
        return np.where(rng.random((rows, n_bits)) < 0.5, 1, -1).astype(np.int8)

    labels = (rng.random((n_queries + n_items, n_classes)) < 0.1).astype(np.uint8)
    return codes(n_queries), codes(n_queries), codes(n_items), codes(n_items), labels[:n_queries], labels[n_queries:]


@pytest.mark.parametrize("n_bits, n_classes", [(16, 24), (70, 100)])
def test_report_is_json_and_reproducible_from_histograms(n_bits, n_classes):
    rng = np.random.default_rng(n_bits)
    case = random_codes_case(rng, 40, 300, n_bits, n_classes)
    case[4][:3] = 0  # three queries without any relevant item, the others share class 0 with the database
    case[4][3:, 0] = 1
    case[5][::7, 0] = 1
    report, histograms = evaluate(Retrieval(*case), keep_histograms=True)
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert report_from_histograms(histograms) == report
    for direction in ("i2t", "t2i"):
        assert report[direction]["n_queries"] == 40
        assert report[direction]["n_queries_without_relevant"] == 3
        assert histograms[direction]["n"].shape == (40, n_bits + 1)
        assert len(report[direction]["pr_by_radius"]["precision"]) == n_bits + 1
        from_histograms = metrics_from_histograms(histograms[direction]["n"], histograms[direction]["r"])
        assert from_histograms == {**report[direction], "map_stable": None}
    without_stable = evaluate(Retrieval(*case), stable_ap=False)
    for direction in ("i2t", "t2i", "mean"):
        assert without_stable[direction] == {**report[direction], "map_stable": None}
    # stable AP excludes the same queries: it equals the mean of the kernel's per-query values
    stable = hamming_histograms(case[0], case[3], case[4], case[5], stable_ap=True).stable_ap
    assert report["i2t"]["map_stable"] == pytest.approx(np.nanmean(stable), abs=1e-15)


def test_tie_aware_report_does_not_depend_on_database_or_query_order():
    rng = np.random.default_rng(5)
    case = random_codes_case(rng, 30, 400, 8, 6)  # 8 bits: large tie groups
    report = evaluate(Retrieval(*case), stable_ap=False)
    query_order, db_order = rng.permutation(30), rng.permutation(400)
    query_image, query_text, db_image, db_text, query_labels, db_labels = case
    shuffled = evaluate(Retrieval(
        query_image[query_order], query_text[query_order], db_image[db_order], db_text[db_order],
        query_labels[query_order], db_labels[db_order],
    ), stable_ap=False)
    assert shuffled == report  # bit for bit: integer histograms, exactly rounded means


def test_queries_without_relevant_items_are_excluded_and_counted():
    n = [[2, 0], [1, 1], [0, 2]]
    r = [[1, 0], [0, 0], [0, 0]]
    result = metrics_from_histograms(n, r, ks=(1,))
    assert result["map"] == 0.75 and result["n_queries_without_relevant"] == 2 and result["n_queries"] == 3
    nobody = metrics_from_histograms([[1, 1]], [[0, 0]], ks=(1,))
    assert nobody["map"] is None and nobody["p@k"] == {"1": None} and nobody["pr_by_radius"]["recall"] == [None, None]
    assert json.dumps(nobody, allow_nan=False)


def test_harmonic_difference_is_accurate_for_small_and_large_starts():
    for start in (0, 1, 7, 63, 64, 65, 1000, 123_456, 10**6, 10**9):
        for count in (0, 1, 2, 5, 64, 1000):
            expected = math.fsum(1 / (start + k) for k in range(1, count + 1))
            assert harmonic_difference(start, count) == pytest.approx(expected, rel=1e-13, abs=0)


def test_invalid_histograms_are_rejected():
    with pytest.raises(ValueError, match="0 <= r <= n"):
        average_precision([[1, 1]], [[2, 0]])
    with pytest.raises(ValueError, match="shape"):
        average_precision([[1, 1]], [[1, 0, 0]])
    with pytest.raises(ValueError, match="positive integer"):
        precision_at_k([[1, 1]], [[1, 0]], 0)
