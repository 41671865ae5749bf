"""Packing and the histogram kernel against direct numpy computations (matmul distances, argsort)."""

import numba
import numpy as np
import pytest
import torch

from cmh_bench.hamming import PackedCodes, hamming_histograms, pack_codes, pack_labels


def random_case(rng, n_queries, n_items, n_bits, n_classes, label_density=0.2):
    """±1 int8 codes and 0/1 labels; some items repeat so that distance 0 and heavy ties occur."""
    codes = np.where(rng.random((n_queries + n_items, n_bits)) < 0.5, 1, -1).astype(np.int8)
    codes[n_queries : n_queries + n_items // 4] = codes[rng.integers(0, n_queries, n_items // 4)]
    labels = (rng.random((n_queries + n_items, n_classes)) < label_density).astype(np.uint8)
    return codes[:n_queries], codes[n_queries:], labels[:n_queries], labels[n_queries:]


def reference_distances(query_codes, db_codes, query_labels, db_labels):
    """Distances as in published code, 0.5·(L − B q), and relevance = shared label."""
    n_bits = query_codes.shape[1]
    distances = (0.5 * (n_bits - query_codes.astype(np.float64) @ db_codes.T.astype(np.float64))).astype(np.int64)
    relevant = (query_labels.astype(np.int64) @ db_labels.T.astype(np.int64)) > 0
    return distances, relevant


def reference_stable_ap(distances, relevant):
    """AP per query after argsort(kind="stable"): ties keep database order (MATLAB's sort)."""
    aps = []
    for row_distances, row_relevant in zip(distances, relevant):
        ranked = row_relevant[np.argsort(row_distances, kind="stable")]
        if not ranked.any():
            aps.append(np.nan)
            continue
        hits = np.cumsum(ranked)
        aps.append(np.mean(hits[ranked] / (np.flatnonzero(ranked) + 1)))
    return np.array(aps)


@pytest.mark.parametrize(
    "n_bits, n_classes",
    [(16, 24), (32, 21), (64, 24), (128, 10), (12, 5), (70, 24), (16, 100), (8, 255)],
)
def test_histograms_and_stable_ap_match_direct_computation(n_bits, n_classes):
    rng = np.random.default_rng(n_bits * 1000 + n_classes)
    query_codes, db_codes, query_labels, db_labels = random_case(rng, 23, 301, n_bits, n_classes)
    query_labels[0] = 0  # a query without any relevant item
    distances, relevant = reference_distances(query_codes, db_codes, query_labels, db_labels)

    n, r, stable_ap = hamming_histograms(query_codes, db_codes, query_labels, db_labels, stable_ap=True)

    for q in range(len(query_codes)):
        np.testing.assert_array_equal(n[q], np.bincount(distances[q], minlength=n_bits + 1))
        np.testing.assert_array_equal(r[q], np.bincount(distances[q], weights=relevant[q], minlength=n_bits + 1))
    np.testing.assert_allclose(stable_ap, reference_stable_ap(distances, relevant), rtol=0, atol=1e-12)
    assert np.isnan(stable_ap[0])


def test_stable_ap_with_massive_ties():
    rng = np.random.default_rng(7)
    query_codes, db_codes, query_labels, db_labels = random_case(rng, 40, 2000, 3, 4, label_density=0.4)
    distances, relevant = reference_distances(query_codes, db_codes, query_labels, db_labels)
    result = hamming_histograms(query_codes, db_codes, query_labels, db_labels, stable_ap=True)
    np.testing.assert_allclose(result.stable_ap, reference_stable_ap(distances, relevant), rtol=0, atol=1e-12)


def test_packed_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(3)
    query_codes, db_codes, query_labels, db_labels = random_case(rng, 9, 120, 70, 30)
    expected = hamming_histograms(query_codes, db_codes, query_labels, db_labels, stable_ap=True)
    packed = [PackedCodes.from_bytes(np.packbits(codes > 0, axis=1), 70) for codes in (query_codes, db_codes)]
    tensors = [torch.from_numpy(array).float() for array in (query_codes, db_codes, query_labels, db_labels)]
    for inputs in (packed + [query_labels, db_labels], tensors):
        result = hamming_histograms(*inputs, stable_ap=True)
        for got, want in zip(result, expected):
            np.testing.assert_array_equal(got, want)
    assert hamming_histograms(query_codes, db_codes, query_labels, db_labels).stable_ap is None


def test_result_does_not_depend_on_thread_count():
    rng = np.random.default_rng(11)
    case = random_case(rng, 17, 500, 16, 8)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = hamming_histograms(*case, stable_ap=True)
    finally:
        numba.set_num_threads(before)
    for got, want in zip(hamming_histograms(*case, stable_ap=True), single):
        np.testing.assert_array_equal(got, want)


def test_packing_layout_and_round_trip():
    codes = np.array([[1, -1, 1, 1, -1, -1, -1, 1, 1, 1, -1, -1]], dtype=np.int8)
    packed = pack_codes(codes)
    assert packed.n_bits == 12 and packed.words.shape == (1, 1)
    np.testing.assert_array_equal(packed.to_bytes(), np.packbits(codes > 0, axis=1))
    assert pack_codes(packed) is packed
    labels = np.zeros((2, 130), dtype=np.uint8)
    labels[0, [0, 64, 129]] = 1
    words = pack_labels(labels)
    assert words.shape == (2, 3) and np.count_nonzero(words[0]) == 3 and not words[1].any()


@pytest.mark.parametrize(
    "bad_codes, message",
    [
        (np.array([[1, 0, -1]]), "only -1 and 1"),
        (np.array([1, -1, 1]), "2-D"),
        (np.array([[0.5, 1.0]]), "only -1 and 1"),
    ],
)
def test_pack_codes_rejects_non_sign_codes(bad_codes, message):
    with pytest.raises(ValueError, match=message):
        pack_codes(bad_codes)


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="only 0 and 1"):
        pack_labels(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="padding bits"):
        PackedCodes.from_bytes(np.array([[0b11111111, 0b00000001]], dtype=np.uint8), 12)
    with pytest.raises(ValueError, match="shape"):
        PackedCodes.from_bytes(np.zeros((2, 3), dtype=np.uint8), 12)
    codes, labels = np.ones((3, 8)), np.ones((3, 2))
    with pytest.raises(ValueError, match="bits"):
        hamming_histograms(codes, np.ones((3, 16)), labels, labels)
    with pytest.raises(ValueError, match="same classes"):
        hamming_histograms(codes, codes, labels, np.ones((3, 3)))
    with pytest.raises(ValueError, match="3 database codes but 2 database label rows"):
        hamming_histograms(codes, codes, labels, labels[:2])
