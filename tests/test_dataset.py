"""The dataset file format v1: writing, loading, and every validation rule."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cmh_bench.cli import main
from cmh_bench.dataset import SCHEMA_VERSION, load_split, read_info, write_dataset
from cmh_bench.errors import UserError


def _arrays(n=40, c=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, c, n)] = 1
    return {
        "image": rng.random((n, 6), dtype=np.float32),
        "text": (rng.random((n, 7)) < 0.2).astype(np.uint8),
        "labels": labels,
        "splits": {"default": {"query": np.arange(0, 5), "train": np.arange(5, 25), "database": np.arange(5, n)}},
        "class_names": [f"c{i}" for i in range(c)],
    }


def _write(path, **changes):
    kwargs = {**_arrays(), "name": "tiny", "source": "test", **changes}
    return write_dataset(path, **kwargs)


def test_round_trip_loads_the_split_as_contiguous_arrays(tmp_path):
    arrays = _arrays()
    path = _write(tmp_path / "d.h5")
    info = read_info(path)
    assert (info.name, info.n_items, info.image_dim, info.text_dim, info.n_classes) == ("tiny", 40, 6, 7, 5)
    assert info.split_sizes == {"default": {"query": 5, "train": 20, "database": 35}}
    assert len(info.content_sha256) == 64
    loaded = load_split(path)
    np.testing.assert_array_equal(loaded.train.image, arrays["image"][5:25])
    np.testing.assert_array_equal(loaded.database.labels, arrays["labels"][5:])
    np.testing.assert_array_equal(loaded.query.text, arrays["text"][:5])
    assert loaded.train.image.flags.c_contiguous and loaded.query.labels.dtype == np.uint8


def test_checksum_depends_on_content_only(tmp_path):
    first = read_info(_write(tmp_path / "a.h5")).content_sha256
    second = read_info(_write(tmp_path / "b.h5")).content_sha256
    other = read_info(_write(tmp_path / "c.h5", image=_arrays(seed=1)["image"])).content_sha256
    assert first == second != other


def _corrupt(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


def _replace(key, value):
    def edit(f):
        del f[key]
        f[key] = value

    return edit


BROKEN_FILES = {
    "missing key": (lambda f: f.__delitem__("text"), "missing dataset 'text'"),
    "row counts": (_replace("image", np.zeros((39, 6), np.float32)), "has 39 rows but labels has 40"),
    "nan": (_replace("image", np.full((40, 6), np.nan, np.float32)), "NaN or inf"),
    "inf in text": (_replace("text", np.full((40, 7), np.inf, np.float32)), "NaN or inf"),
    "index out of range": (_replace("splits/default/train", np.array([5, 40])), "outside 0..39"),
    "repeated index": (_replace("splits/default/train", np.array([5, 5, 6])), "repeats an index"),
    "overlap": (_replace("splits/default/query", np.array([0, 5])), "query and database overlap"),
    "non-binary labels": (_replace("labels", np.full((40, 5), 2, np.uint8)), "other than 0 and 1"),
    "empty split": (_replace("splits/default/query", np.array([], np.int64)), "is empty"),
    "other schema": (lambda f: f.attrs.__setitem__("schema", "something/else"), "not a cmh-bench dataset file"),
    "other version": (lambda f: f.attrs.__setitem__("schema_version", SCHEMA_VERSION + 1), "schema version 2"),
    "missing split part": (lambda f: f.__delitem__("splits/default/database"), "has no 'database'"),
    "no splits": (lambda f: f.__delitem__("splits"), "no split presets"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_a_broken_file_is_rejected_with_one_clear_error(tmp_path, case):
    edit, message = BROKEN_FILES[case]
    path = _write(tmp_path / "d.h5")
    _corrupt(path, edit)
    with pytest.raises(UserError, match=message) as error:
        read_info(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_not_hdf5_and_missing_file(tmp_path):
    text_file = tmp_path / "x.h5"
    text_file.write_text("hello")
    with pytest.raises(UserError, match="not an HDF5 file"):
        read_info(text_file)
    with pytest.raises(UserError, match="no such dataset file"):
        read_info(tmp_path / "missing.h5")


def test_writer_validates_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(UserError, match="NaN"):
        _write(tmp_path / "d.h5", image=np.full((40, 6), np.nan, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_unknown_split_preset(tmp_path):
    path = _write(tmp_path / "d.h5")
    with pytest.raises(UserError, match="no split preset 'nope'"):
        load_split(path, "nope")


def test_cli_data_info_and_exit_code_2(tmp_path, capsys):
    path = _write(tmp_path / "d.h5")
    assert main(["data", "info", str(path)]) == 0
    assert "tiny" in capsys.readouterr().out
    _corrupt(path, BROKEN_FILES["nan"][0])
    assert main(["data", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "NaN" in err and "Traceback" not in err
