"""Tests of the harness's noise-detection scores (cmh_bench/harness.py) on hand-made cases."""

from __future__ import annotations

import numpy as np

from cmh_bench.harness import entry_auc, weight_auc


def test_entry_auc_scores_true_against_added_positives_only():
    clean = np.array([[1, 0, 0], [0, 1, 0]])
    noisy = np.array([[1, 1, 0], [1, 1, 0]])  # added: (0, 1) and (1, 0); column 2 is no candidate
    scores = np.array([[0.9, 0.2, 0.99], [0.3, 0.8, 0.99]])
    # candidates: true 0.9, 0.8; added 0.2, 0.3: every true entry above every added one
    assert entry_auc(scores, noisy, clean) == 1.0
    scores[0, 1] = 0.85  # added 0.85 now beats the true 0.8: 3 of the 4 (true, added) pairs are ordered
    assert entry_auc(scores, noisy, clean) == 0.75
    assert entry_auc(scores, noisy, clean) == weight_auc(np.array([0.9, 0.85, 0.3, 0.8]), np.array([False, True, True, False]))


def test_entry_auc_is_none_without_added_positives():
    clean = np.array([[1, 0], [0, 1]])
    assert entry_auc(np.ones((2, 2)), clean, clean) is None
