"""`data import`: every source layout on generated files (and the real MIRFlickr labels and tags), the
MATLAB v5 and v7.3 storage orders, every error case (exit code 2, nothing written), and the published
reference numbers that ship beside the cards."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from cmh_bench.cli import main
from cmh_bench.dataset import load_split, read_info
from cmh_bench.errors import UserError
from cmh_bench.importers import import_dataset
from cmh_bench.reported import reported_numbers

MIRFLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k"
SMALL = {"query": 60, "train": 300}
MATLAB_CLASS = {np.dtype(np.float32): "single", np.dtype(np.float64): "double", np.dtype(np.uint8): "uint8"}


# ---- writers of the two MATLAB formats -------------------------------------------------------------

def save_v5(path: Path, **matrices) -> None:
    """A MATLAB v5 file, as scipy (and MATLAB's default -v7 without compression) writes it."""
    scipy.io.savemat(path, matrices)


def save_v73(path: Path, **matrices) -> None:
    """A MATLAB v7.3 file: HDF5 with a 512-byte MAT header, matrices stored column-major (transposed)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, matrix in matrices.items():
            dataset = f.create_dataset(key, data=np.ascontiguousarray(np.asarray(matrix).T))
            if matrix.dtype in MATLAB_CLASS:  # MATLAB has no half class: float16 test data goes without
                dataset.attrs["MATLAB_class"] = np.bytes_(MATLAB_CLASS[matrix.dtype])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")


SAVERS = {"v5": save_v5, "v7.3": save_v73}


def features(n: int, dim: int = 4096, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, dim), dtype=np.float32)


def multi_hot(n: int, classes: int, seed: int = 1) -> np.ndarray:
    labels = (np.random.default_rng(seed).random((n, classes)) < 0.2).astype(np.uint8)
    labels[np.arange(n), np.arange(n) % classes] = 1
    return labels


@pytest.fixture(scope="module")
def real_mirflickr():
    """The real MIRFlickr-25K labels (LAll) and tags (YAll) from ../shared/data."""
    if not (MIRFLICKR / "mirflickr25k-lall.mat").is_file():
        pytest.skip(f"real MIRFlickr files not in {MIRFLICKR}")
    labels = scipy.io.loadmat(MIRFLICKR / "mirflickr25k-lall.mat")["LAll"]
    tags = scipy.io.loadmat(MIRFLICKR / "mirflickr25k-yall.mat")["YAll"]
    return labels, tags


def assert_imported(path, image, text, labels, name):
    info = read_info(path)
    assert info.name == name
    with h5py.File(path) as f:
        for key, expected in (("image", image), ("text", text), ("labels", labels)):
            assert f[key].dtype == expected.dtype and np.array_equal(f[key][()], expected), key
    return info


# ---- MIRFlickr-25K ----------------------------------------------------------------------------------

def test_mirflickr_full_size_with_the_real_labels_and_tags(real_mirflickr, tmp_path, monkeypatch):
    """All 20,015 real rows; image features generated (float16 to stay fast, v7.3 order); default output path."""
    labels, tags = real_mirflickr
    source = tmp_path / "src"
    source.mkdir()
    for name in ("mirflickr25k-lall.mat", "mirflickr25k-yall.mat"):
        (source / name).symlink_to(MIRFLICKR / name)
    stored = np.empty((4096, len(labels)), dtype=np.float16)  # built in MATLAB's storage order: no copy
    stored[:] = np.arange(len(labels)) % 251
    stored[::3] += 1
    image = stored.T
    save_v73(source / "mirflickr25k-iall-vgg.mat", XAll=image)
    monkeypatch.setenv("CMH_BENCH_DATA", str(tmp_path / "data"))

    assert main(["data", "import", "mirflickr", "--from", str(source)]) == 0
    info = assert_imported(tmp_path / "data" / "mirflickr.h5", image, tags, labels, "mirflickr")
    assert info.default_split == "nrch" and info.class_names[0] == "animals" and info.n_classes == 24
    assert info.split_sizes["nrch"] == {"query": 2000, "train": 10000, "database": 18015}
    assert set(info.split_sizes) == {"nrch", "ucch", "random"}
    split = load_split(info.path, "ucch")
    np.testing.assert_array_equal(split.query.index, np.arange(18015, 20015))


@pytest.mark.parametrize("fmt", sorted(SAVERS))
def test_mirflickr_subset_in_both_matlab_formats(real_mirflickr, tmp_path, fmt):
    labels, tags = (m[:600] for m in real_mirflickr)
    image = features(600)
    save = SAVERS[fmt]
    save(tmp_path / "mirflickr25k-iall-vgg.mat", XAll=image)
    save(tmp_path / "mirflickr25k-yall.mat", YAll=tags)
    save(tmp_path / "mirflickr25k-lall.mat", LAll=labels)
    path = import_dataset("mirflickr", tmp_path, tmp_path / "out.h5", sizes=SMALL)
    info = assert_imported(path, image, tags, labels, "mirflickr")
    assert info.text_dtype == "uint8" and info.image_dtype == "float32"
    assert info.split_sizes["nrch"] == {"query": 60, "train": 300, "database": 540}


def test_mirflickr_dcmh_file_with_features(tmp_path):
    image, tags, labels = features(80), multi_hot(80, 1386, seed=2), multi_hot(80, 24)
    save_v73(tmp_path / "FLICKR-25K.mat", images=image, YAll=tags, LAll=labels)
    path = import_dataset("mirflickr", tmp_path, tmp_path / "out.h5", sizes={"query": 10, "train": 30})
    assert_imported(path, image, tags, labels, "mirflickr")
    assert "DCMH" in read_info(path).source


# ---- NUS-WIDE, MS-COCO, IAPR TC-12 --------------------------------------------------------------------

@pytest.mark.parametrize("variant, dataset, classes, prefix", [
    (None, "nus-wide", 21, "nus-wide-tc21-{}-clean.mat"),
    ("tc10", "nus-wide-tc10", 10, "nus-wide-tc10-{}.mat"),
])
def test_nus_wide_variants(tmp_path, variant, dataset, classes, prefix):
    image, tags, labels = features(70), multi_hot(70, 1000, seed=3), multi_hot(70, classes)
    save_v5(tmp_path / prefix.format("xall-vgg"), XAll=image)
    save_v73(tmp_path / prefix.format("yall"), YAll=tags)  # mixed formats, as in some releases
    save_v5(tmp_path / prefix.format("lall"), LAll=labels)
    path = import_dataset("nus-wide", tmp_path, tmp_path / "out.h5", variant=variant, sizes={"query": 10, "train": 40})
    info = assert_imported(path, image, tags, labels, dataset)
    assert info.n_classes == classes
    assert f"{classes} most frequent" in read_info(path).description


def test_coco_train_and_test_parts(tmp_path):
    """The h5py file written by Python (items first, no MATLAB attributes); its test part gives the 'file' preset."""
    image, text, labels = features(60), np.random.default_rng(4).standard_normal((60, 300)), multi_hot(60, 80)
    with h5py.File(tmp_path / "MSCOCO_deep_doc2vec_data.h5py", "w") as f:
        for part, rows in (("train", slice(0, 45)), ("test", slice(45, 60))):
            f[f"{part}_imgs_deep"], f[f"{part}_text"], f[f"{part}_imgs_labels"] = image[rows], text[rows], labels[rows]
    path = import_dataset("coco", tmp_path, tmp_path / "out.h5", sizes={"query": 10, "train": 20})
    info = assert_imported(path, image, text.astype(np.float32), labels, "coco")
    assert info.text_dtype == "float32"
    assert info.split_sizes["file"] == {"query": 15, "train": 20, "database": 45}
    np.testing.assert_array_equal(load_split(path, "file").query.index, np.arange(45, 60))


def test_coco_single_matrix_file_and_a_square_matrix(tmp_path):
    """300 items of 300-d text: the square matrix is oriented by its storage order (MATLAB: transposed)."""
    image, text, labels = features(300), features(300, 300, seed=5), multi_hot(300, 80)
    save_v73(tmp_path / "MSCOCO_deep_doc2vec_data_rand.h5py", XAll=image, YAll=text, LAll=labels)
    path = import_dataset("coco", tmp_path, tmp_path / "out.h5", sizes={"query": 50, "train": 100})
    info = assert_imported(path, image, text, labels, "coco")
    assert "file" not in info.split_sizes  # no test part in this source


@pytest.mark.parametrize("fmt", sorted(SAVERS))
def test_iapr_database_and_test_parts(tmp_path, fmt):
    image, text, labels = features(50), multi_hot(50, 2912, seed=6), multi_hot(50, 255)
    SAVERS[fmt](tmp_path / "iapr-tc12-rand.mat",
                VDatabase=image[:40], YDatabase=text[:40], databaseL=labels[:40],
                VTest=image[40:], YTest=text[40:], testL=labels[40:])
    path = import_dataset("iapr", tmp_path, tmp_path / "out.h5", sizes={"query": 10, "train": 20})
    info = assert_imported(path, image, text, labels, "iapr")
    assert info.split_sizes["file"] == {"query": 10, "train": 20, "database": 40}
    assert info.split_sizes["nrch"] == {"query": 10, "train": 20, "database": 40}
    np.testing.assert_array_equal(load_split(path, "file").query.index, np.arange(40, 50))


# ---- errors: one line, exit code 2, nothing written ---------------------------------------------------

def mirflickr_files(folder: Path, n=(40, 40, 40), image_dim=4096, fmt="v5"):
    SAVERS[fmt](folder / "mirflickr25k-iall-vgg.mat", XAll=features(n[0], image_dim))
    SAVERS[fmt](folder / "mirflickr25k-yall.mat", YAll=multi_hot(n[1], 1386))
    SAVERS[fmt](folder / "mirflickr25k-lall.mat", LAll=multi_hot(n[2], 24))


def missing_file(folder):
    mirflickr_files(folder)
    (folder / "mirflickr25k-iall-vgg.mat").unlink()


def missing_key(folder):
    mirflickr_files(folder)
    save_v5(folder / "mirflickr25k-lall.mat", Labels=multi_hot(40, 24))


def raw_pixels(folder):
    pixels = np.zeros((16, 16, 3, 40), dtype=np.uint8)  # MATLAB: height x width x channels x items
    save_v73(folder / "FLICKR-25K.mat", images=pixels, YAll=multi_hot(40, 1386), LAll=multi_hot(40, 24))


def not_a_mat_file(folder):
    mirflickr_files(folder)
    (folder / "mirflickr25k-yall.mat").write_text("<html>download quota exceeded</html>" * 10)


def non_binary_labels(folder):
    mirflickr_files(folder)
    save_v5(folder / "mirflickr25k-lall.mat", LAll=multi_hot(40, 24) * 2)


ERRORS = {
    "missing file": (missing_file, ["mirflickr25k-iall-vgg.mat", "XAll", "missing"]),
    "missing key": (missing_key, ["mirflickr25k-lall.mat", "no key 'LAll'", "Labels"]),
    "wrong width": (lambda d: mirflickr_files(d, image_dim=512), ["XAll", "expected image features 4096 wide", "x 512"]),
    "wrong width v7.3": (lambda d: mirflickr_files(d, image_dim=512, fmt="v7.3"), ["XAll", "4096 wide", "x 512"]),
    "item counts": (lambda d: mirflickr_files(d, n=(40, 39, 40)), ["no common item count", "YAll", "(39, 1386)"]),
    "raw pixels": (raw_pixels, ["FLICKR-25K.mat", "'images'", "raw pixels", "cmh-bench data extract"]),
    "not a MAT file": (not_a_mat_file, ["mirflickr25k-yall.mat", "not a MATLAB"]),
    "labels not 0/1": (non_binary_labels, ["LAll", "0/1"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_exit_2_and_write_nothing(tmp_path, capsys, case):
    make, fragments = ERRORS[case]
    source, out_dir = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    make(source)
    assert main(["data", "import", "mirflickr", "--from", str(source), "--out", str(out_dir / "m.h5")]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error:") and "Traceback" not in message
    flat = " ".join(message.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, flat)
    assert not out_dir.exists()


@pytest.mark.parametrize("args, fragment", [
    (["nus-wide", "--variant", "tc99"], "no variant 'tc99'"),
    (["synth-flickr"], "has no importer"),
    (["mirflickr", "--from", "/nonexistent/folder"], "no such folder"),
])
def test_bad_names_and_options(tmp_path, capsys, args, fragment):
    if "--from" not in args:
        args = [*args, "--from", str(tmp_path)]
    assert main(["data", "import", *args, "--out", str(tmp_path / "x.h5")]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_sizes_that_do_not_fit_raise(tmp_path):
    mirflickr_files(tmp_path)
    with pytest.raises(UserError, match="do not fit"):
        import_dataset("mirflickr", tmp_path, tmp_path / "out.h5")  # the card's 2000 / 10000 in 40 rows
    assert not (tmp_path / "out.h5").exists()


# ---- published reference numbers ---------------------------------------------------------------------

def test_reported_numbers():
    table = reported_numbers()
    assert list(table.columns) == ["method", "dataset", "noise", "rate", "bits", "map", "source", "protocol"]
    nrch = table[table.source.str.contains("10.1145/3664647.3680564")]  # NRCH's own table
    assert len(nrch) == 4 * 3 * 4 and set(nrch.method) == {"nrch"}
    assert set(nrch.dataset) == {"mirflickr", "nus-wide", "coco", "iapr"}
    assert set(nrch.noise) == {"pair-swap"}

    def value(dataset, rate, bits):
        return nrch[(nrch.dataset == dataset) & (nrch.rate == rate) & (nrch.bits == bits)]["map"].item()

    assert value("mirflickr", 0.2, 16) == 0.748
    assert value("coco", 0.8, 128) == 0.690
    assert value("iapr", 0.5, 32) == 0.526
    assert nrch.source.str.contains("10.1145/3664647.3680564").all()
    assert nrch.protocol.str.contains("best epoch on the test").all()


def test_reported_numbers_of_nacd_one_row_per_method():
    nacd = reported_numbers().query("noise == 'redundant'")
    assert set(nacd.method) == {"ucch", "djsrh", "dgcpn", "nrch", "rshnl", "nacd"} and len(nacd) == 6 * 3 * 4 * 3
    assert nacd.source.str.contains("Neighbor-aware Contrastive Disambiguation").all()
    flickr = nacd[(nacd.dataset == "mirflickr") & (nacd.bits == 32)].groupby("method")["map"]
    assert flickr.nunique()[["ucch", "djsrh", "dgcpn"]].eq(1).all()  # label-free rows: constant across rates
    assert flickr.first()[["ucch", "dgcpn", "djsrh"]].tolist() == [0.710, 0.692, 0.634]  # NACD Table 1, 32 bits
    own = nacd[nacd.method == "nacd"].set_index(["dataset", "rate", "bits"])["map"]
    assert (own[("mirflickr", 1.0, 32)], own[("nus-wide", 2.0, 64)], own[("coco", 2.5, 128)]) == (0.765, 0.690, 0.688)
