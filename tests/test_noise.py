"""Tests of the label-noise injectors (specs/noise.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from sklearn.neighbors import NearestNeighbors

from cmh_bench import noise
from cmh_bench.errors import UserError
from cmh_bench.noise import NOISE_MODELS, get_noise_model, inject_noise, realised_noise

MIRFLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k"
SPEC_ORDER = ["pair-swap", "resample", "flip", "class-flip", "instance", "missing", "redundant"]
STAT_KEYS = {"requested_rate", "sample_fraction_changed", "entry_fraction_changed", "mean_jaccard", "added_per_true"}


@pytest.fixture(scope="module")
def mirflickr() -> np.ndarray:
    """The real MIRFlickr-25K label matrix (20015 × 24), read-only."""
    if not MIRFLICKR.is_dir():
        pytest.skip(f"MIRFlickr labels not found in {MIRFLICKR}")
    labels = scipy.io.loadmat(MIRFLICKR / "mirflickr25k-lall.mat")["LAll"]
    labels.setflags(write=False)
    return labels


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    """A random read-only 300 × 8 label matrix with some empty and some full rows, and features."""
    rng = np.random.default_rng(1)
    labels = (rng.random((300, 8)) < 0.3).astype(np.uint8)
    labels[:5] = 0
    labels[5:10] = 1
    labels.setflags(write=False)
    features = rng.standard_normal((300, 6)) + labels @ rng.standard_normal((8, 6))
    return labels, features


def run(name: str, labels, rate, seed=0, features=None, **options):
    return inject_noise(name, labels, rate, seed, features=features, **options)


# ---------------------------------------------------------------- registry


def test_registry_lists_every_model_in_spec_order():
    assert list(NOISE_MODELS) == [*SPEC_ORDER, "file"]  # file: the given labels of a noise file (test_noise_file.py)
    for name, model in NOISE_MODELS.items():
        assert get_noise_model(name) is model and model.name == name
        assert model.version and model.uses and model.summary and "\n" not in model.summary
        assert model.needs_features == (name == "instance")


def test_models_with_one_seed_use_different_streams():
    draws = {name: noise._generator(name, 7).random() for name in NOISE_MODELS}
    assert len(set(draws.values())) == len(draws)
    assert noise._generator("flip", 7).random() == draws["flip"]


# ---------------------------------------------------------------- every model


@pytest.mark.parametrize("name", SPEC_ORDER)
def test_every_model_contract(name, small):
    labels, features = small
    before = labels.copy()
    zero = run(name, labels, 0.0, features=features)
    assert np.array_equal(zero.labels, labels) and zero.labels is not labels
    assert not zero.corrupted.any()
    assert zero.stats == {"requested_rate": 0.0, "sample_fraction_changed": 0.0,
                          "entry_fraction_changed": 0.0, "mean_jaccard": 1.0, "added_per_true": 0.0}

    result = run(name, labels, 0.5, seed=3, features=features)
    again = run(name, labels, 0.5, seed=3, features=features)
    other = run(name, labels, 0.5, seed=4, features=features)
    assert np.array_equal(labels, before)
    assert result.labels.dtype == np.uint8 and result.labels.shape == labels.shape
    assert set(np.unique(result.labels)) <= {0, 1}
    assert np.array_equal(result.labels, again.labels) and result.stats == again.stats
    assert not np.array_equal(result.labels, other.labels)
    assert np.array_equal(result.corrupted, (result.labels != labels).any(1))
    assert result.corrupted.any()

    stats = result.stats
    assert set(stats) == STAT_KEYS and all(type(v) is float for v in stats.values())
    assert stats["requested_rate"] == 0.5
    assert all(0.0 <= stats[key] <= 1.0 for key in STAT_KEYS - {"added_per_true"}) and stats["added_per_true"] >= 0.0
    assert stats["sample_fraction_changed"] == result.corrupted.mean()
    json.dumps(stats)


# ---------------------------------------------------------------- pair-swap


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_pair_swap_invariants_on_mirflickr(mirflickr, rate):
    n = len(mirflickr)
    result = run("pair-swap", mirflickr, rate, seed=11)
    differences = (result.labels != mirflickr).sum(1)
    assert result.corrupted.sum() == math.floor(rate * n)
    assert set(differences[result.corrupted]) == {2}
    assert np.array_equal(result.labels.sum(1), mirflickr.sum(1))
    assert result.labels.any(1)[mirflickr.any(1)].all()
    assert result.stats["sample_fraction_changed"] == math.floor(rate * n) / n

    again = run("pair-swap", mirflickr, rate, seed=11)
    assert again.labels.tobytes() == result.labels.tobytes()
    other = run("pair-swap", mirflickr, rate, seed=12)
    assert not np.array_equal(other.corrupted, result.corrupted)


def test_pair_swap_count_is_exact_for_decimal_rates():
    labels = np.tile(np.array([[1, 0]], np.uint8), (100, 1))
    assert run("pair-swap", labels, 0.29).corrupted.sum() == 29  # 0.29 * 100 == 28.999... in floats


def test_pair_swap_rows_without_positives_or_negatives():
    labels = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 1]], np.uint8)
    noisy = run("pair-swap", labels, 1.0).labels
    assert noisy[0].sum() == 1  # only gains one
    assert noisy[1].sum() == 2  # only loses one
    for row in (2, 3):
        assert (noisy[row] != labels[row]).sum() == 2 and noisy[row].sum() == labels[row].sum()


# ---------------------------------------------------------------- flip, missing, resample, redundant


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_flip_rate_matches_requested(mirflickr, rate):
    entries = mirflickr.size
    realised = run("flip", mirflickr, rate).stats["entry_fraction_changed"]
    assert abs(realised - rate) < 4 * math.sqrt(rate * (1 - rate) / entries)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_missing_rate_matches_requested(mirflickr, rate):
    positives = mirflickr.sum()
    noisy = run("missing", mirflickr, rate, allow_empty=True).labels
    assert not (noisy > mirflickr).any()
    dropped = 1 - noisy.sum() / positives
    assert abs(dropped - rate) < 4 * math.sqrt(rate * (1 - rate) / positives)


def test_missing_never_empties_a_sample_by_default(mirflickr):
    noisy = run("missing", mirflickr, 0.9).labels
    assert not (noisy > mirflickr).any()
    assert noisy.any(1).all()
    single = mirflickr.sum(1) == 1
    assert np.array_equal(noisy[single], mirflickr[single])
    assert 1 - noisy.sum() / mirflickr.sum() < 0.9
    assert not run("missing", mirflickr, 1.0, allow_empty=True).labels.any()


def test_resample_keeps_cardinality_and_draws_uniform_sets(mirflickr):
    n, n_classes = mirflickr.shape
    result = run("resample", mirflickr, 0.4)
    assert np.array_equal(result.labels.sum(1), mirflickr.sum(1))
    assert result.corrupted.sum() <= math.floor(0.4 * n)
    assert result.corrupted.sum() > 0.9 * math.floor(0.4 * n)  # a redrawn set rarely equals the old one

    per_class = run("resample", mirflickr, 1.0).labels.sum(0)
    expected = mirflickr.sum() / n_classes
    assert np.all(np.abs(per_class - expected) < 5 * math.sqrt(expected))


@pytest.mark.parametrize("rate", [0.5, 1.0, 1.5, 2.0, 2.5])  # NACD's rates 1.0 / 1.5 / 2.0 / 2.5 accepted
def test_redundant_adds_rounded_share_of_extra_labels(mirflickr, rate):
    n_classes = mirflickr.shape[1]
    cardinality = mirflickr.sum(1).astype(int)
    noisy = run("redundant", mirflickr, rate).labels
    assert not (noisy < mirflickr).any()
    extra = np.round(rate * cardinality).astype(int)  # numpy, like torch.round, rounds halves to even
    assert np.array_equal(noisy.sum(1) - cardinality, np.minimum(extra, n_classes - cardinality))


def test_redundant_rounds_halves_to_even_as_the_authors_generator():
    # the spec's examples: r = 1.5 gives 1 -> 2, 3 -> 4, 5 -> 8; r = 2.5 gives 1 -> 2, 3 -> 8, 7 -> 18
    clean = np.zeros((4, 40), dtype=np.uint8)
    for row, k in enumerate((1, 3, 5, 7)):
        clean[row, :k] = 1
    added = lambda rate: (run("redundant", clean, rate).labels.sum(1) - clean.sum(1)).tolist()  # noqa: E731
    assert added(1.5) == [2, 4, 8, 10]
    assert added(2.5) == [2, 8, 12, 18]


def test_redundant_records_its_realised_rate_as_added_per_true():
    clean = np.zeros((2, 20), dtype=np.uint8)
    clean[0, :2], clean[1, :4] = 1, 1
    stats = run("redundant", clean, 1.5).stats  # 2 -> 3 and 4 -> 6 added: 9 of 6 true
    assert stats["added_per_true"] == 9 / 6


def test_redundant_fills_a_row_when_its_negatives_run_out():
    clean = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    assert run("redundant", clean, 2.5).labels.tolist() == [[1, 1, 1, 1]]  # m = 5 > the 2 negatives


def authors_redundant(clean: np.ndarray, rate: float, draws: np.ndarray) -> np.ndarray:
    """NACD's generator as its code does it (specs/recent-noisy.md): m = round-half-even(r·k) capped at C
    (not C − k), the positives' draws set to 0, and the m classes with the largest draws set to 1."""
    noisy = clean.copy()
    for i, row in enumerate(clean):
        k = int(row.sum())
        if k == 0:
            continue
        m = min(int(np.round(rate * k)), clean.shape[1])
        keys = np.where(row == 1, 0.0, draws[i])  # a draw of exactly 0 has probability 2^-53
        noisy[i, np.argsort(-keys, kind="stable")[:m]] = 1
    return noisy


@pytest.mark.parametrize("rate", [1.0, 1.5, 2.0, 2.5])
def test_redundant_equals_the_authors_cap_at_c_on_the_same_draws(mirflickr, rate):
    """The authors' cap at C instead of C − k gives exactly our label sets on the same uniform draws: for
    m ≤ C − k both take the m negatives with the largest draws, and for m > C − k their top-m takes every
    negative (then positives, already 1), as our cap at C − k does. So the cap quirk changes no label
    and there is nothing to put behind a switch."""
    draws = noise._generator("redundant", 0).random(mirflickr.shape)  # the stream run(..., seed=0) draws its keys from
    ours = run("redundant", mirflickr, rate).labels
    assert np.array_equal(ours, authors_redundant(mirflickr, rate, draws))
    cardinality = mirflickr.sum(1)
    capped = np.round(rate * cardinality) > mirflickr.shape[1] - cardinality  # rows where the caps differ
    assert capped.any() and ours[capped].all()  # MIRFlickr has such rows at every rate (1 at r = 1, 1,977 at 2.5)


def test_rates_above_one_only_for_redundant():
    with pytest.raises(UserError, match=r"outside \[0, 1\] for noise model 'pair-swap'"):
        run("pair-swap", np.eye(3, dtype=np.uint8), 1.5)
    with pytest.raises(UserError, match=r"outside \[0, 3\] for noise model 'redundant'"):
        run("redundant", np.eye(3, dtype=np.uint8), 3.5)


# ---------------------------------------------------------------- class-flip


CLASS_FLIP_LABELS = np.array(
    [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0],
     [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.uint8)


def test_class_flip_default_mapping_is_most_cooccurring_class():
    # co-occurrences: 0-1 twice, 0-2 once, 1-2 once, 3 with nothing, so
    # pi(0) = 1, pi(1) = 0, pi(2) = 0 (tie between 0 and 1 -> lowest), pi(3) = 3 + 1 mod 4 = 0
    noisy = run("class-flip", CLASS_FLIP_LABELS, 1.0).labels
    expected = np.array(
        [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0],
         [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], np.uint8)
    assert np.array_equal(noisy, expected)


def test_class_flip_next_mapping():
    noisy = run("class-flip", CLASS_FLIP_LABELS, 1.0, mapping="next").labels
    assert np.array_equal(noisy, np.roll(CLASS_FLIP_LABELS, 1, axis=1))


def test_class_flip_on_mirflickr_moves_chosen_rows_only(mirflickr):
    result = run("class-flip", mirflickr, 0.5)
    assert 0 < result.corrupted.sum() <= math.floor(0.5 * len(mirflickr))
    assert (result.labels.sum(1) <= mirflickr.sum(1)).all()
    assert result.labels.any(1).all()


# ---------------------------------------------------------------- instance


def ambiguous_clusters(seed: int = 0):
    """10 clear clusters (one class each, 5% mislabelled) and one ambiguous cluster whose samples
    carry {10}, {11} or {10, 11} at random; 2-D image-like and 3-D text-like features."""
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(11), 150)
    labels = np.zeros((len(cluster), 12), np.uint8)
    clear = cluster < 10
    labels[clear, cluster[clear]] = 1
    flipped = np.flatnonzero(clear & (rng.random(len(cluster)) < 0.05))
    labels[flipped] = 0
    labels[flipped, rng.integers(0, 10, len(flipped))] = 1
    sets = np.array([[1, 0], [0, 1], [1, 1]], np.uint8)
    labels[~clear, 10:] = sets[rng.integers(0, 3, (~clear).sum())]
    centres = rng.standard_normal((11, 5)) * 20
    points = centres[cluster] + rng.standard_normal((len(cluster), 5))
    return labels, (points[:, :2], points[:, 2:]), ~clear


def test_instance_corrupts_ambiguous_samples_more():
    labels, features, ambiguous = ambiguous_clusters()
    rate, n = 0.1, len(labels)
    corrupted = np.zeros(n)
    for seed in range(5):
        corrupted += run("instance", labels, rate, seed=seed, features=features).corrupted
    corrupted /= 5
    assert corrupted[ambiguous].mean() > 3 * corrupted[~ambiguous].mean()
    assert abs(corrupted.mean() - rate) < 4 * 0.5 / math.sqrt(5 * n)


def test_instance_takes_labels_of_a_differing_neighbour():
    labels, features, _ = ambiguous_clusters(seed=1)
    result = run("instance", labels, 0.3, features=features, k=5)
    z = np.hstack([(f - f.mean(0)) / f.std(0) / math.sqrt(f.shape[1]) for f in features])
    neighbours = NearestNeighbors(n_neighbors=5).fit(z).kneighbors(return_distance=False)
    for i in np.flatnonzero(result.corrupted):
        donors = [j for j in neighbours[i] if not np.array_equal(labels[j], labels[i])]
        assert any(np.array_equal(result.labels[i], labels[j]) for j in donors)


def test_instance_feature_forms_and_wide_features():
    labels, (image, text), _ = ambiguous_clusters()
    as_tuple = run("instance", labels, 0.2, features=(image, text))
    as_dict = run("instance", labels, 0.2, features={"text": text, "image": image})
    assert np.array_equal(as_tuple.labels, as_dict.labels)
    assert run("instance", labels, 0.2, features=np.hstack([image, text])).corrupted.any()

    rng = np.random.default_rng(0)
    wide = np.repeat(image, 300, axis=1) + 0.01 * rng.standard_normal((len(image), 600))  # sketched to 512
    first = run("instance", labels, 0.2, features=(wide, text))
    assert np.array_equal(first.labels, run("instance", labels, 0.2, features=(wide, text)).labels)
    assert abs(first.corrupted.mean() - 0.2) < 0.06


def test_instance_falls_back_to_any_differing_sample():
    labels = np.array([[1, 0]] * 4 + [[0, 1]], np.uint8)
    features = np.array([[0.0], [0.1], [0.2], [0.3], [100.0]])
    result = run("instance", labels, 1.0, features=features, k=1)
    assert result.corrupted.all() and np.array_equal(result.labels[:4], [[0, 1]] * 4)


def test_nearest_neighbours_exact_with_ties_to_lower_index():
    z = np.random.default_rng(0).standard_normal((500, 7)).astype(np.float32)
    reference = NearestNeighbors(n_neighbors=6).fit(z.astype(np.float64)).kneighbors(return_distance=False)
    assert np.array_equal(noise._nearest_neighbours(z, 6), np.sort(reference, axis=1))
    line = np.repeat(np.arange(5, dtype=np.float32), 4)[:, None]  # values 0..4, four samples each
    neighbours = noise._nearest_neighbours(line, 5)
    assert neighbours[0].tolist() == [1, 2, 3, 4, 5]  # three copies, then the lowest two at distance 1
    assert neighbours[4].tolist() == [0, 1, 5, 6, 7]  # three copies, then 0 and 1 (before 8 and 9)


def test_corruption_probabilities_keep_the_mean_and_clip():
    a = np.array([0.0, 0.1, 0.2, 0.4, 1.0, 1.0, 0.05, 0.0])
    for rate in (0.0, 0.1, 0.3, 0.6, 0.75, 0.9, 1.0):
        p = noise._corruption_probabilities(a, rate)
        assert p.mean() == pytest.approx(rate) and p.min() >= 0 and p.max() <= 1
        assert np.all(np.diff(p[np.argsort(a, kind="stable")]) >= 0)  # grows with ambiguity
        below = (p < 1) & (a > 0)
        assert np.allclose(p[below] / a[below], (p[below] / a[below])[0]) if below.any() else True
    assert np.array_equal(noise._corruption_probabilities(np.zeros(4), 0.25), [0.25] * 4)


# ---------------------------------------------------------------- realised_noise


def test_realised_noise_hand_computed():
    clean = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], np.uint8)
    noisy = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1]], np.uint8)
    assert realised_noise(clean, noisy, 0.2) == {
        "requested_rate": 0.2,
        "sample_fraction_changed": 1 / 3,
        "entry_fraction_changed": 2 / 9,
        "mean_jaccard": pytest.approx((1 + 1 + 1 / 3) / 3),  # empty vs empty counts as 1
        "added_per_true": 1 / 3,  # one added positive, three true ones
    }
    stats = realised_noise(np.array([[1, 1], [0, 0]]), np.array([[0, 0], [1, 0]]), 1)
    assert stats["mean_jaccard"] == 0.0 and stats["entry_fraction_changed"] == 0.75 and stats["added_per_true"] == 0.5


# ---------------------------------------------------------------- bad input


GOOD = np.array([[1, 0], [0, 1], [1, 1]], np.uint8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": -0.1}, "outside [0, 1]"),
        ({"rate": 1.5}, "outside [0, 1]"),
        ({"rate": 20}, "not a percentage like 20"),
        ({"rate": float("inf")}, "outside [0, 1]"),
        ({"rate": float("nan")}, "NaN"),
        ({"rate": "0.2"}, "must be a number"),
        ({"rate": True}, "must be a number"),
        ({"seed": -1}, "non-negative integer"),
        ({"seed": 1.5}, "non-negative integer"),
        ({"clean_labels": np.array([1, 0, 1])}, "2-D"),
        ({"clean_labels": np.zeros((2, 2, 2))}, "2-D"),
        ({"clean_labels": np.zeros((0, 3))}, "non-empty"),
        ({"clean_labels": np.array([[0, 2], [1, 0]])}, "only 0 and 1"),
        ({"clean_labels": np.array([[0.0, np.nan]])}, "only 0 and 1"),
        ({"clean_labels": np.array([["a", "b"]])}, "only 0 and 1"),
        ({"name": "pairswap"}, "did you mean 'pair-swap'"),
        ({"name": "gaussian"}, "known noise models: pair-swap, resample, flip"),
        ({"name": "class-flip", "mapping": "random"}, "mapping='next'"),
        ({"name": "missing", "allow_empty": "yes"}, "True or False"),
        ({"name": "missing", "allow_emtpy": True}, "no option 'allow_emtpy'; its options: allow_empty"),
        ({"name": "flip", "k": 3}, "its options: none"),
        ({"name": "instance"}, "needs the training features"),
        ({"name": "instance", "features": np.zeros((2, 4))}, "one row per sample (3 rows)"),
        ({"name": "instance", "features": (np.zeros((3, 2)), np.zeros(3))}, "feature block 1"),
        ({"name": "instance", "features": np.array([[0.0], [np.nan], [1.0]])}, "NaN or infinite"),
        ({"name": "instance", "features": ()}, "features is empty"),
        ({"name": "instance", "features": np.zeros((3, 2)), "k": 0}, "k must be a positive integer"),
    ],
)
def test_bad_input_raises_user_error(kwargs, message):
    call = {"name": "pair-swap", "clean_labels": GOOD, "rate": 0.2, "seed": 0} | kwargs
    with pytest.raises(UserError) as error:
        inject_noise(**call)
    assert message in str(error.value)


def test_unknown_model_name_lists_all_known_ones():
    with pytest.raises(UserError, match="unknown noise model 'Flip'; did you mean 'flip'"):
        get_noise_model("Flip")
    with pytest.raises(UserError) as error:
        get_noise_model(None)
    assert ", ".join(SPEC_ORDER) in str(error.value)
