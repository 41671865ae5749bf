"""Tests of the synthetic stand-ins (cmh_bench.synthetic) and their dataset cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmh_bench.cards import get_card
from cmh_bench.errors import UserError
from cmh_bench.synthetic import SYNTHETIC_NAMES, generate, scaled_dim, scaled_sizes

STAND_INS = [n for n in SYNTHETIC_NAMES if n != "toy"]
SMALL = 0.05
REAL_FLICKR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mirflickr25k"


def small(name: str, seed: int = 0):
    """The stand-in at the small test scale (toy at its own default scale)."""
    return generate(name, seed=seed, scale=None if name == "toy" else SMALL)


@pytest.mark.parametrize("name", ["toy", "synth-flickr"])
def test_same_seed_same_arrays_other_seed_other_arrays(name):
    a, b, c = small(name), small(name), small(name, seed=1)
    for field in ("image", "text", "labels"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(getattr(a, field), getattr(c, field))
    assert a.description == b.description


@pytest.mark.parametrize("name", SYNTHETIC_NAMES)
def test_shapes_dtypes_and_sequential_split(name):
    card = get_card(name)
    scale = card.generator["default_scale"] if name == "toy" else SMALL
    data = small(name)
    n_query, n_train, n_total = scaled_sizes(card.sizes, scale, card.generator["database_extra_exponent"])
    d_img = scaled_dim(card.features["image"]["dim"], scale)
    d_txt = scaled_dim(card.features["text"]["dim"], scale)

    assert data.name == name and len(data.class_names) == card.classes == len(set(data.class_names))
    assert data.image.shape == (n_total, d_img) and data.image.dtype == np.float32
    assert data.image.min() >= 0 and 0.1 < (data.image > 0).mean() < 0.6
    assert data.labels.shape == (n_total, card.classes) and data.labels.dtype == np.uint8
    assert set(np.unique(data.labels)) <= {0, 1} and data.labels.sum(axis=1).min() >= 1
    assert data.text.shape == (n_total, d_txt)
    if card.features["text"]["kind"] == "bag-of-words":
        assert data.text.dtype == np.uint8 and set(np.unique(data.text)) <= {0, 1}
        assert data.text.sum(axis=1).min() >= 1
    else:
        assert data.text.dtype == np.float32
    assert all(np.isfinite(a).all() for a in (data.image, data.text))

    split = data.splits["default"]
    assert all(split[k].dtype == np.int64 for k in ("query", "train", "database"))
    assert np.array_equal(split["query"], np.arange(n_query))
    assert np.array_equal(split["train"], np.arange(n_query, n_query + n_train))
    assert np.array_equal(split["database"], np.arange(n_query, n_total))
    assert not np.intersect1d(split["query"], split["database"]).size


@pytest.mark.parametrize("name", SYNTHETIC_NAMES)
def test_scale_one_gives_the_card_sizes_and_the_default_scale_is_cpu_sized(name):
    card = get_card(name)
    g = card.generator
    q, t, n = scaled_sizes(card.sizes, 1.0, g["database_extra_exponent"])
    assert (q, t, n) == (card.sizes["query"], card.sizes["train"], card.sizes["total"])
    q, t, n = scaled_sizes(card.sizes, g["default_scale"], g["database_extra_exponent"])
    assert n <= 10_500 and scaled_dim(card.features["image"]["dim"], g["default_scale"]) <= 1024
    if name != "toy":
        assert 2000 <= t <= 2600 and q >= 400


@pytest.mark.parametrize("name", SYNTHETIC_NAMES)
def test_label_and_word_statistics_match_the_card(name):
    card = get_card(name)
    g = card.generator
    data = small(name)
    per_item = data.labels.sum(axis=1)
    freq = data.labels.mean(axis=0)
    assert abs(per_item.mean() - g["mean_labels_per_item"]) < 0.05
    assert per_item.max() <= g["max_labels_per_item"]
    assert abs(freq.max() - g["max_class_frequency"]) < 0.1
    assert freq.min() <= max(3 * g["min_class_frequency"], 5 / len(freq))
    if card.features["text"]["kind"] == "bag-of-words":
        assert abs(data.text.sum(axis=1).mean() - g["mean_words_per_item"]) < 0.1 * g["mean_words_per_item"]


def test_labels_co_occur_like_mirflickr():
    """Against the real MIRFlickr labels (../shared, skipped when absent): same cardinality,
    similar class-frequency profile and a comparable amount of co-occurrence."""
    scipy_io = pytest.importorskip("scipy.io")
    path = REAL_FLICKR / "mirflickr25k-lall.mat"
    if not path.is_file():
        pytest.skip(f"real MIRFlickr labels not found at {path}")
    real = scipy_io.loadmat(path)["LAll"].astype(float)
    synth = generate("synth-flickr").labels.astype(float)

    def mean_abs_phi(labels):
        phi = np.corrcoef(labels.T)
        return np.abs(phi[np.triu_indices_from(phi, 1)]).mean()

    assert abs(synth.sum(1).mean() - real.sum(1).mean()) < 0.05
    assert abs(synth.sum(1).std() - real.sum(1).std()) < 0.4
    top_real, top_synth = np.sort(real.mean(0))[::-1][:6], np.sort(synth.mean(0))[::-1][:6]
    assert np.abs(top_real - top_synth).max() < 0.08
    assert 0.5 < mean_abs_phi(synth) / mean_abs_phi(real) < 2


def _ridge_codes(data, modality, bits=32, ridge=1.0):
    """±1 codes from a ridge regression of the CLEAN train labels on one modality's features,
    the predicted label scores passed through a fixed random projection to ``bits`` bits."""
    train = data.splits["default"]["train"]
    x = getattr(data, modality).astype(np.float64)
    x -= x[train].mean(axis=0)
    y = data.labels[train].astype(np.float64)
    a = x[train]
    w = np.linalg.solve(a.T @ a + ridge * len(train) * a.var(axis=0).mean() * np.eye(a.shape[1]), a.T @ (y - y.mean(0)))
    projection = np.random.default_rng(0).standard_normal((y.shape[1], bits))
    return np.where(x @ w @ projection >= 0, 1, -1).astype(np.float32)


@pytest.mark.parametrize("name", ["toy", "synth-flickr"])
def test_retrieval_is_neither_trivial_nor_hopeless(name):
    metrics = pytest.importorskip("cmh_bench.metrics")
    data = small(name)
    split = data.splits["default"]
    q, db = split["query"], split["database"]
    img, txt = _ridge_codes(data, "image"), _ridge_codes(data, "text")
    ridge = metrics.evaluate(metrics.Retrieval(img[q], txt[q], img[db], txt[db], data.labels[q], data.labels[db]))
    const = np.ones_like(img)
    floor = metrics.evaluate(metrics.Retrieval(const[q], const[q], const[db], const[db], data.labels[q], data.labels[db]))
    for direction in ("i2t", "t2i"):
        assert floor[direction]["map"] + 0.08 < ridge[direction]["map"] < 0.9, (direction, ridge, floor)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "synth-mnist"}, "known: toy, synth-flickr"),
        ({"name": "toy", "scale": 0}, "scale"),
        ({"name": "toy", "scale": -0.5}, "scale"),
        ({"name": "toy", "scale": 1.5}, "scale"),
        ({"name": "toy", "scale": float("nan")}, "scale"),
        ({"name": "toy", "scale": "0.5"}, "scale"),
        ({"name": "toy", "seed": -1}, "seed"),
    ],
)
def test_bad_name_scale_or_seed_is_a_user_error(kwargs, match):
    with pytest.raises(UserError, match=match) as info:
        generate(**kwargs)
    assert "\n" not in str(info.value)
