"""Codes files: round trips in both storage forms, evaluation, and one clear UserError per bad input."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from cmh_bench.codes_file import evaluate_codes_file, read_codes_file, write_codes_file
from cmh_bench.errors import UserError
from cmh_bench.hamming import pack_codes
from cmh_bench.metrics import Retrieval, evaluate, report_from_histograms


def arrays(retrieval):
    """The six arrays of a Retrieval, in field order."""
    return [getattr(retrieval, f.name) for f in dataclasses.fields(retrieval)]


@pytest.fixture
def case():
    rng = np.random.default_rng(0)

    def codes(rows):
        return np.where(rng.random((rows, 12)) < 0.5, 1, -1).astype(np.int8)

    labels = (rng.random((90, 6)) < 0.3).astype(np.uint8)
    return Retrieval(codes(20), codes(20), codes(70), codes(70), labels[:20], labels[20:])


@pytest.mark.parametrize("packed", [False, True])
def test_round_trip_and_evaluation(tmp_path, case, packed):
    report, histograms = evaluate(case, keep_histograms=True)
    path = write_codes_file(tmp_path / "codes.h5", Retrieval(*map(torch.from_numpy, arrays(case))), histograms=histograms, packed=packed)

    contents = read_codes_file(path)
    stored, original_case = arrays(contents.retrieval), arrays(case)
    for got, original in zip(stored[:4], original_case[:4]):
        assert got.n_bits == 12
        np.testing.assert_array_equal(got.words, pack_codes(original).words)
    np.testing.assert_array_equal(contents.retrieval.query_labels, case.query_labels)
    np.testing.assert_array_equal(contents.retrieval.db_labels, case.db_labels)
    for direction in ("i2t", "t2i"):
        for name in ("n", "r", "stable_ap"):
            np.testing.assert_array_equal(contents.histograms[direction][name], histograms[direction][name])
    assert report_from_histograms(contents.histograms) == report
    assert evaluate_codes_file(path) == report
    with h5py.File(path) as file:
        assert file["query/image_codes"].dtype == (np.uint8 if packed else np.int8)
        assert file.attrs["schema"] == "cmh-bench/codes" and file.attrs["schema_version"] == 1


def test_file_written_by_another_codebase_is_accepted(tmp_path, case):
    path = tmp_path / "external.h5"
    with h5py.File(path, "w") as file:
        file.attrs["schema"], file.attrs["schema_version"] = "cmh-bench/codes", 1
        for key, codes in zip(["query/image_codes", "query/text_codes", "database/image_codes", "database/text_codes"], arrays(case)):
            file[key] = codes.astype(np.float32)  # sign() output as float: still ±1
        file["query/labels"], file["database/labels"] = case.query_labels, case.db_labels
    contents = read_codes_file(path)
    assert contents.histograms is None
    assert evaluate_codes_file(path, ks=(5,)) == evaluate(case, ks=(5,))


def test_failed_write_keeps_the_previous_file(tmp_path, case):
    path = write_codes_file(tmp_path / "codes.h5", case)
    bad_labels = case.db_labels.copy()
    bad_labels[0, 0] = 2
    with pytest.raises(ValueError, match="labels must contain only 0 and 1"):
        write_codes_file(path, dataclasses.replace(case, db_labels=bad_labels))
    assert evaluate_codes_file(path) == evaluate(case)
    assert [p.name for p in tmp_path.iterdir()] == ["codes.h5"]


def rewrite(path, key, value, attrs=None):
    with h5py.File(path, "r+") as file:
        del file[key]
        file[key] = value
        for name, attr in (attrs or {}).items():
            file[key].attrs[name] = attr


def set_root_attribute(path, name, value):
    with h5py.File(path, "r+") as file:
        file.attrs[name] = value


def delete(path, key):
    with h5py.File(path, "r+") as file:
        del file[key]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p, c: set_root_attribute(p, "schema", "something/else"), "schema is 'something/else', expected 'cmh-bench/codes'"),
        (lambda p, c: set_root_attribute(p, "schema_version", 2), "schema_version is 2"),
        (lambda p, c: delete(p, "database/text_codes"), "missing dataset 'database/text_codes'"),
        (lambda p, c: rewrite(p, "query/text_codes", c.query_text[:5]), r"row counts differ \(query/image_codes: 20, query/text_codes: 5"),
        (lambda p, c: rewrite(p, "database/labels", c.db_labels[:3]), "row counts differ"),
        (lambda p, c: rewrite(p, "database/image_codes", np.ones((70, 16), np.int8)), "code lengths differ"),
        (lambda p, c: rewrite(p, "query/image_codes", np.zeros((20, 12), np.int8)), "'query/image_codes': codes must contain only -1 and 1, found 0"),
        (lambda p, c: rewrite(p, "query/image_codes", np.packbits(c.query_image > 0, axis=1)), "need an integer attribute 'bits'"),
        (lambda p, c: rewrite(p, "query/image_codes", np.full((20, 2), 255, np.uint8), {"bits": 12}), "nonzero padding bits"),
        (lambda p, c: rewrite(p, "query/labels", c.query_labels * 3), "'query/labels': labels must contain only 0 and 1, found 3"),
        (lambda p, c: rewrite(p, "query/labels", np.ones((20, 7), np.uint8)), "label columns differ"),
        (lambda p, c: rewrite(p, "histograms/i2t/n", np.zeros((20, 5), np.int64)), r"histograms/i2t/n has shape \(20, 5\)"),
    ],
)
def test_bad_files_raise_one_clear_user_error(tmp_path, case, damage, message):
    report, histograms = evaluate(case, keep_histograms=True)
    path = write_codes_file(tmp_path / "codes.h5", case, histograms=histograms)
    damage(path, case)
    with pytest.raises(UserError, match=message) as error:
        evaluate_codes_file(path)
    assert str(error.value).startswith(str(path))


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_codes_file(tmp_path / "absent.h5")
    text_file = tmp_path / "codes.h5"
    text_file.write_text("query,database\n")
    with pytest.raises(UserError, match=f"{text_file}: not an HDF5 file"):
        read_codes_file(text_file)
