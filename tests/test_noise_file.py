"""The ``file`` noise model: the noisy training labels of an authors' noise file (NRCH / SCBCH / NACD
``result`` + ``True`` HDF5, MGSH ``noisy_labels`` + ``true_labels``, ``.npy``, MATLAB v5 and v7.3), its
checks, its provenance in the record and the result path, and a run on a file holding the built-in
pair-swap draw, which must give the pair-swap record apart from the noise provenance."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import Cell
from cmh_bench.cli import main
from cmh_bench.dataset import load_split
from cmh_bench.errors import UserError
from cmh_bench.filehash import file_sha256
from cmh_bench.harness import run_cell
from cmh_bench.noise import inject_noise, read_noise_file


@pytest.fixture(scope="module")
def toy_train():
    """The clean training labels of the toy dataset's default split, and the pair-swap draw at 0.5, seed 0."""
    clean = load_split(ensure_dataset("toy")).train.labels
    return clean, inject_noise("pair-swap", clean, 0.5, 0).labels


def write(path: Path, **matrices) -> Path:
    """An HDF5 file holding ``matrices`` as written by Python (items first)."""
    with h5py.File(path, "w") as f:
        for key, matrix in matrices.items():
            f[key] = matrix
    return path


def layouts(folder: Path, clean, noisy) -> dict[str, str]:
    np.save(folder / "noisy.npy", noisy)
    scipy.io.savemat(folder / "noisy-v5.mat", {"noisy_labels": noisy, "true_labels": clean})
    with h5py.File(folder / "noisy-v73.mat", "w") as f:  # MATLAB v7.3: column-major, so stored transposed
        for key, matrix in (("result", noisy), ("True", clean)):
            f.create_dataset(key, data=matrix.T).attrs["MATLAB_class"] = np.bytes_("uint8")
    return {
        "NRCH / SCBCH / NACD h5 (result, True)": str(write(folder / "mirflickr-lall-noise_0.5.h5", result=noisy, **{"True": clean})),
        "noisy labels alone (result)": str(write(folder / "result-only.h5", result=noisy)),
        "MGSH (noisy_labels, true_labels)": str(write(folder / "mgsh.h5", noisy_labels=noisy, true_labels=clean)),
        "MGSH (2-D noisy, True)": str(write(folder / "mgsh2.h5", noisy=noisy, **{"True": clean})),
        ".npy": str(folder / "noisy.npy"),
        "MATLAB v5": str(folder / "noisy-v5.mat"),
        "MATLAB v7.3 (transposed)": str(folder / "noisy-v73.mat"),
        "PATH:KEY": f"{write(folder / 'named.h5', mine=noisy, other=clean)}:mine",
    }


def test_every_layout_gives_the_stored_draw(tmp_path, toy_train):
    clean, noisy = toy_train
    for layout, ref in layouts(tmp_path, clean, noisy).items():
        np.testing.assert_array_equal(read_noise_file(ref, clean), noisy, err_msg=layout)


def test_stats_record_the_file_and_its_sha256(tmp_path, toy_train):
    clean, noisy = toy_train
    path = write(tmp_path / "n.h5", result=noisy, **{"True": clean})
    given = inject_noise("file", clean, 0.5, 0, file=str(path))
    drawn = inject_noise("pair-swap", clean, 0.5, 0)
    assert given.stats == {**drawn.stats, "file": str(path), "file_sha256": file_sha256(path)}
    np.testing.assert_array_equal(given.corrupted, drawn.corrupted)
    with pytest.raises(UserError, match="--noise-file"):
        inject_noise("file", clean, 0.5, 0)


def test_checks_name_the_file_and_the_first_problem(tmp_path, toy_train):
    clean, noisy = toy_train
    other = clean.copy()
    other[7] ^= 1
    cases = {
        "shape": (write(tmp_path / "short.h5", result=noisy[:-1]), ["short.h5", f"{len(clean)} training items", "this dataset and split"]),
        "binary": (write(tmp_path / "two.h5", result=noisy * 2), ["two.h5", "0/1"]),
        "clean": (write(tmp_path / "other.h5", result=noisy, **{"True": other}), ["other.h5", "training row 7", "1 rows differ"]),
        "no known key": (write(tmp_path / "keys.h5", a=noisy, b=noisy), ["keys.h5", "none of the keys", ":KEY"]),
        "missing key": (f"{write(tmp_path / 'k.h5', a=noisy)}:b", ["k.h5", "no key 'b'", "a ("]),
    }
    (tmp_path / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # an HDF5 signature, then nothing
    (tmp_path / "page.mat").write_text("<html>quota exceeded</html>")
    cases["damaged HDF5"] = (tmp_path / "garbage.h5", ["garbage.h5"])
    cases["not a matrix file"] = (tmp_path / "page.mat", ["page.mat", "not a MATLAB"])
    for case, (ref, fragments) in cases.items():
        with pytest.raises(UserError) as error:
            read_noise_file(str(ref), clean)
        for fragment in fragments:
            assert fragment in str(error.value), (case, fragment, str(error.value))


def test_cell_key_and_path_carry_the_file_sha256(tmp_path, toy_train):
    clean, noisy = toy_train
    path = write(tmp_path / "n.h5", result=noisy)
    cell = Cell(dataset="toy", method="dcmh", bits=16, noise="file", rate=0.5, noise_file=str(path))
    sha = file_sha256(path)
    assert cell.key()["noise_file_sha256"] == sha
    assert cell.relative_path().parts[2] == f"file-{sha[:12]}-0.5"
    assert "noise_file_sha256" not in Cell(dataset="toy", method="dcmh", bits=16).key()  # old records stay complete
    before = cell.relative_path()
    write(path, result=np.ascontiguousarray(noisy[::-1]))  # another draw in the same file: another key and path
    assert cell.relative_path() != before and cell.key()["noise_file_sha256"] != sha


def test_a_file_holding_the_pair_swap_draw_gives_the_pair_swap_record(tmp_path, toy_train):
    clean, noisy = toy_train
    path = write(tmp_path / "toy-lall-noise_0.5.h5", result=noisy, **{"True": clean})
    options = dict(dataset="toy", method="dcmh", bits=16, rate=0.5, seed=0, threads=1, device="cpu", curve_every=2,
                   hparams=(("epochs", "4"),))
    drawn = run_cell(Cell(noise="pair-swap", **options))
    given = run_cell(Cell(noise="file", noise_file=str(path), **options))
    assert given["noise"] == {**drawn["noise"], "model": "file", "file": str(path), "file_sha256": file_sha256(path)}
    assert given["cell"] == {**drawn["cell"], "noise": "file", "noise_file_sha256": file_sha256(path)}
    for key in ("metrics", "epochs", "noise_detection", "dataset", "method", "selection"):
        assert given[key] == drawn[key], key
    assert drawn["metrics"]["mean"]["map"] > 0


def test_a_noise_file_for_another_split_is_refused_before_any_cell(tmp_path, toy_train, capsys):
    clean, noisy = toy_train
    wrong = write(tmp_path / "wrong.h5", result=noisy[:-2], **{"True": clean[:-2]})
    right = write(tmp_path / "right.h5", result=noisy)
    two = write(tmp_path / "two.h5", result=noisy * 2)
    results = tmp_path / "results"
    base = ["run", "--methods", "dcmh", "--datasets", "toy", "--bits", "16", "--results", str(results), "--device", "cpu"]
    cases = [
        ([*base, "--noise", "file", "--noise-file", str(wrong), "--rates", "0.5"], "wrong.h5"),
        ([*base, "--noise", "file", "--rates", "0.5"], "--noise-file PATH"),
        ([*base, "--noise", "file", "--noise-file", str(right)], "--rates 0.5"),
        ([*base, "--noise", "pair-swap", "--noise-file", str(right), "--rates", "0.5"], "--noise file alone"),
        ([*base, "--noise", "file", "--noise-file", str(tmp_path / "none.h5"), "--rates", "0.5"], "none.h5: no such file"),
        ([*base, "--noise", "file", "--noise-file", str(two), "--rates", "0.5"], "must be 0/1"),
        ([*base, "--noise", "file", "--noise-file", f"{right}:noisy", "--rates", "0.5"], "no key 'noisy'"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and fragment in err, (fragment, err)
    assert not results.exists()


def test_the_record_and_the_report_name_the_noise_file(tmp_path, toy_train, capsys):
    clean, noisy = toy_train
    path = write(tmp_path / "toy-lall-noise_0.5.h5", result=noisy, **{"True": clean})
    results, board = tmp_path / "results", tmp_path / "board"
    argv = ["run", "--methods", "floor-constant", "--datasets", "toy", "--bits", "16", "--noise", "file",
            "--noise-file", str(path), "--rates", "0.5", "--results", str(results), "--device", "cpu"]
    assert main(argv) == 0
    (record_path,) = results.rglob("*.json")
    assert record_path.relative_to(results).parts[2] == f"file-{file_sha256(path)[:12]}-0.5"
    assert main(argv) == 0 and "1 already complete" in capsys.readouterr().out  # the path is the key: resumed
    assert main(["report", "--results", str(results), "--out", str(board)]) == 0
    assert f"--noise file --rates 0.5 --bits 16 --seeds 0 --noise-file {path}" in (board / "README.md").read_text()
