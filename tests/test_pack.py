"""`data pack` (a dataset from one's own arrays in .npy, MATLAB v5 / v7.3 and HDF5), `data import
--allow-width`, and datasets by path or by name: `--datasets FILE`, `data info NAME`, `list datasets`,
and the warning for a card-less dataset. Every bad input: one line, exit code 2, nothing written."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from cmh_bench.catalog import cardless_warnings, dataset_key, ensure_dataset
from cmh_bench.cli import main
from cmh_bench.dataset import load_split, read_info
from cmh_bench.errors import UserError
from cmh_bench.importers import import_dataset
from cmh_bench.pack import pack_dataset

N, IMAGE_DIM, TEXT_DIM, CLASSES = 60, 12, 20, 5


def arrays(n=N, seed=0):
    """Image features (float32), bag-of-words text (0/1) and labels (every item has one) of n items."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, CLASSES)) < 0.3).astype(np.uint8)
    labels[np.arange(n), np.arange(n) % CLASSES] = 1
    return rng.random((n, IMAGE_DIM), dtype=np.float32), (rng.random((n, TEXT_DIM)) < 0.2).astype(np.uint8), labels


def write_hdf5(path: Path, matlab: bool = False, **matrices) -> None:
    """An HDF5 file; ``matlab``: as MATLAB v7.3 stores it (transposed, with a MATLAB_class attribute)."""
    with h5py.File(path, "w") as f:
        for key, matrix in matrices.items():
            node = f.create_dataset(key, data=matrix.T if matlab else matrix)
            if matlab:
                node.attrs["MATLAB_class"] = np.bytes_("double")


def save(container: str, folder: Path, stem: str, matrix: np.ndarray, key: str = "X") -> str:
    """Store ``matrix`` in ``container`` and return its reference (FILE or FILE:KEY)."""
    if container == "npy":
        np.save(folder / f"{stem}.npy", matrix)
        return str(folder / f"{stem}.npy")
    if container == "mat":
        scipy.io.savemat(folder / f"{stem}.mat", {key: matrix})
    else:
        write_hdf5(folder / f"{stem}.mat", matlab=container == "v7.3", **{key: matrix})
    return f"{folder / stem}.mat:{key}"


@pytest.mark.parametrize("container", ["npy", "mat", "v7.3", "hdf5"])
def test_pack_from_each_container_with_presets(tmp_path, container):
    image, text, labels = arrays()
    refs = [save(container, tmp_path, role, m) for role, m in (("image", image), ("text", text), ("labels", labels))]
    out = tmp_path / "mine.h5"
    assert main(["data", "pack", "--name", "mine", "--image", refs[0], "--text", refs[1], "--labels", refs[2],
                 "--split", "nrch,random", "--query", "10", "--train", "30", "--out", str(out)]) == 0
    info = read_info(out)
    assert (info.name, info.image_dim, info.text_dim, info.text_dtype) == ("mine", IMAGE_DIM, TEXT_DIM, "uint8")
    assert info.class_names == [f"class{c}" for c in range(CLASSES)]
    assert info.split_sizes == {"nrch": {"query": 10, "train": 30, "database": 50},
                                "random": {"query": 10, "train": 30, "database": 50}}
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["image"][()], image)
        np.testing.assert_array_equal(f["text"][()], text)
        np.testing.assert_array_equal(f["labels"][()], labels)
    np.testing.assert_array_equal(load_split(out, "nrch").query.index, np.arange(10))


def test_class_names_default_list_and_file(tmp_path):
    image, text, labels = arrays()
    refs = [save("npy", tmp_path, role, m) for role, m in (("image", image), ("text", text), ("labels", labels))]
    default = pack_dataset("a", *refs, tmp_path / "a.h5", presets=("nrch",), query=10, train=30)
    assert read_info(default).class_names == ["class0", "class1", "class2", "class3", "class4"]
    listed = pack_dataset("b", *refs, tmp_path / "b.h5", presets=("nrch",), query=10, train=30, class_names="a,b,c,d,e")
    assert read_info(listed).class_names == list("abcde")
    (tmp_path / "names.txt").write_text("sky\nsea\n\ntree\ndog\ncat\n")
    from_file = pack_dataset("c", *refs, tmp_path / "c.h5", presets=("nrch",), query=10, train=30,
                             class_names=str(tmp_path / "names.txt"))
    assert read_info(from_file).class_names == ["sky", "sea", "tree", "dog", "cat"]


def test_index_files_in_three_containers_and_matlab_base(tmp_path):
    image, text, labels = arrays()
    refs = [save("npy", tmp_path, role, m) for role, m in (("image", image), ("text", text), ("labels", labels))]
    np.save(tmp_path / "query.npy", np.arange(50, 60))
    scipy.io.savemat(tmp_path / "train.mat", {"idx": np.arange(1, 31, dtype=float)[None, :]})  # MATLAB: a 1 x 30 double row, 1-based
    write_hdf5(tmp_path / "db.h5", db=np.arange(0, 50))
    out = tmp_path / "given.h5"
    # the train file counts from 1: read with base 1 it is rows 0..29; the others count from 0
    with pytest.raises(UserError, match=r"database index 0 is outside 1\.\.60"):
        pack_dataset("g", *refs, out, index={"query": str(tmp_path / "query.npy"), "train": f"{tmp_path}/train.mat:idx",
                                             "database": f"{tmp_path}/db.h5:db"}, index_base=1)
    np.save(tmp_path / "query1.npy", np.arange(51, 61))
    write_hdf5(tmp_path / "db1.h5", db=np.arange(1, 51))
    pack_dataset("g", *refs, out, index={"query": str(tmp_path / "query1.npy"), "train": f"{tmp_path}/train.mat:idx",
                                         "database": f"{tmp_path}/db1.h5:db"}, index_base=1)
    split = load_split(out)
    assert split.split == "given"
    np.testing.assert_array_equal(split.query.index, np.arange(50, 60))
    np.testing.assert_array_equal(split.train.index, np.arange(30))
    np.testing.assert_array_equal(split.database.index, np.arange(50))


def test_the_files_own_parts_give_the_file_preset(tmp_path):
    image, text, labels = arrays()
    with h5py.File(tmp_path / "parts.h5", "w") as f:
        for part, rows in (("train", slice(0, 45)), ("test", slice(45, N))):
            f[f"{part}_x"], f[f"{part}_y"], f[f"{part}_l"] = image[rows], text[rows], labels[rows]
    ref = str(tmp_path / "parts.h5")
    path = pack_dataset("parts", f"{ref}:train_x+test_x", f"{ref}:train_y+test_y", f"{ref}:train_l+test_l",
                        tmp_path / "out.h5")
    info = read_info(path)
    assert info.split_sizes == {"file": {"query": 15, "train": 45, "database": 45}}
    np.testing.assert_array_equal(load_split(path).query.index, np.arange(45, N))


def test_a_hand_made_file_without_class_names_is_repacked(tmp_path):
    """The file a user made by hand is refused (no class_names); `data pack` reads its arrays and split back."""
    image, text, labels = arrays()
    hand = tmp_path / "hand.h5"
    with h5py.File(hand, "w") as f:
        f.attrs.update(schema="cmh-bench/dataset", schema_version=1, name="hand", source="me", default_split="s")
        f["image"], f["text"], f["labels"] = image, text, labels
        f["splits/s/query"], f["splits/s/train"], f["splits/s/database"] = np.arange(10), np.arange(10, 40), np.arange(10, N)
    with pytest.raises(UserError, match="class_names"):
        read_info(hand)
    h = str(hand)
    assert main(["data", "pack", "--name", "hand", "--image", f"{h}:image", "--text", f"{h}:text", "--labels", f"{h}:labels",
                 "--query-index", f"{h}:splits/s/query", "--train-index", f"{h}:splits/s/train",
                 "--database-index", f"{h}:splits/s/database", "--out", str(tmp_path / "fixed.h5")]) == 0
    assert read_info(tmp_path / "fixed.h5").split_sizes == {"given": {"query": 10, "train": 30, "database": 50}}


def make_refs(folder: Path, n=(N, N, N), labels_scale=1):
    image, text, labels = arrays()
    return [save("npy", folder, "image", image[: n[0]]), save("mat", folder, "text", text[: n[1]], "YAll"),
            save("hdf5", folder, "labels", labels[: n[2]] * labels_scale, "LAll")]


def index_case(query, database, base="0"):
    def build(folder):
        np.save(folder / "q.npy", np.asarray(query))
        np.save(folder / "t.npy", np.arange(10, 40))
        np.save(folder / "d.npy", np.asarray(database))
        return ["--query-index", str(folder / "q.npy"), "--train-index", str(folder / "t.npy"),
                "--database-index", str(folder / "d.npy"), "--index-base", base]
    return build


PRESET = ["--split", "nrch", "--query", "10", "--train", "30"]
ERRORS = {
    "missing key": (lambda d: (make_refs(d), PRESET, 1), ["text.mat", "no key 'Z'", "YAll"]),
    "wrong shape": (lambda d: (make_refs(d, n=(N, N - 1, N)), PRESET, None), ["no common item count", "(59, 20)"]),
    "labels not 0/1": (lambda d: (make_refs(d, labels_scale=2), PRESET, None), ["labels.mat", "0/1"]),
    "index out of range": (lambda d: (make_refs(d), index_case(range(50, 61), range(0, 50)), None), ["q.npy", "index 60", "outside 0..59"]),
    "1-based index read as 0-based": (lambda d: (make_refs(d), index_case(range(51, 61), range(1, 51)) , None), ["--index-base 1"]),
    "query and database overlap": (lambda d: (make_refs(d), index_case(range(0, 10), range(5, 50)), None), ["query and database overlap"]),
    "missing index part": (lambda d: (make_refs(d), lambda f: index_case(range(10), range(10, N))(f)[:4], None), ["--database-index"]),
    "preset without sizes": (lambda d: (make_refs(d), ["--split", "ucch"], None), ["'ucch' needs the sizes", "--query Q --train T"]),
    "sizes that do not fit": (lambda d: (make_refs(d), ["--split", "nrch", "--query", "30", "--train", "40"], None), ["do not fit"]),
    "class names": (lambda d: (make_refs(d), [*PRESET, "--class-names", "a,b"], None), ["2 class names", "5 label columns"]),
    "not a matrix file": (lambda d: (make_refs(d), PRESET, "html"), ["image.npy", "not a readable .npy"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_pack_errors_exit_2_and_write_nothing(tmp_path, capsys, case):
    build, fragments = ERRORS[case]
    refs, split, damage = build(tmp_path)
    if damage == 1:
        refs[1] = refs[1].replace(":YAll", ":Z")
    if damage == "html":
        Path(refs[0]).write_text("<html>quota exceeded</html>")
    split = split(tmp_path) if callable(split) else split
    out = tmp_path / "out" / "x.h5"
    code = main(["data", "pack", "--name", "x", "--image", refs[0], "--text", refs[1], "--labels", refs[2], *split, "--out", str(out)])
    message = capsys.readouterr().err
    assert code == 2 and message.startswith("error:") and "Traceback" not in message
    assert len(message.strip().splitlines()) == 1
    flat = " ".join(message.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, flat)
    assert not out.parent.exists()


def mirflickr_like(folder: Path, image_dim: int) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 24)) < 0.2).astype(np.uint8)
    labels[np.arange(40), np.arange(40) % 24] = 1
    scipy.io.savemat(folder / "mirflickr25k-iall-vgg.mat", {"XAll": rng.random((40, image_dim), dtype=np.float32)})
    scipy.io.savemat(folder / "mirflickr25k-yall.mat", {"YAll": (rng.random((40, 1386)) < 0.1).astype(np.uint8)})
    scipy.io.savemat(folder / "mirflickr25k-lall.mat", {"LAll": labels})


def test_allow_width_imports_other_feature_widths_and_records_them(tmp_path, capsys):
    mirflickr_like(tmp_path, 512)
    out = tmp_path / "m.h5"
    assert main(["data", "import", "mirflickr", "--from", str(tmp_path), "--out", str(out)]) == 2
    assert "--allow-width" in capsys.readouterr().err and not out.exists()
    path = import_dataset("mirflickr", tmp_path, out, sizes={"query": 10, "train": 20}, allow_width=True)
    info = read_info(path)
    assert info.image_dim == 512 and info.n_classes == 24
    assert "Non-standard feature widths, imported with --allow-width: image 512-d (card: 4096)" in info.description


def test_allow_width_still_checks_the_class_count(tmp_path):
    mirflickr_like(tmp_path, 512)
    scipy.io.savemat(tmp_path / "mirflickr25k-lall.mat", {"LAll": np.eye(40, 23, dtype=np.uint8)})
    with pytest.raises(UserError, match="expected labels 24 wide"):
        import_dataset("mirflickr", tmp_path, tmp_path / "m.h5", sizes={"query": 10, "train": 20}, allow_width=True)


# ---- datasets by path or by name ---------------------------------------------------------------------------

@pytest.fixture()
def own_dataset(tmp_path):
    image, text, labels = arrays()
    refs = [save("npy", tmp_path, role, m) for role, m in (("image", image), ("text", text), ("labels", labels))]
    return pack_dataset("own", *refs, tmp_path / "own.h5", presets=("nrch",), query=10, train=30)


def test_datasets_by_path_and_by_name(own_dataset, tmp_path, private_data_dir, capsys):
    assert dataset_key(str(own_dataset)) == str(own_dataset.resolve())
    assert ensure_dataset(str(own_dataset)) == own_dataset
    with pytest.raises(UserError, match="no such dataset file"):
        ensure_dataset(str(tmp_path / "nope.h5"))
    in_data_dir = private_data_dir / "own-copy.h5"
    in_data_dir.write_bytes(own_dataset.read_bytes())
    assert dataset_key(str(in_data_dir)) == "own-copy"  # the data directory's NAME.h5 is dataset NAME
    try:
        assert main(["data", "info", "own-copy"]) == 0 and "own" in capsys.readouterr().out
        assert main(["data", "info", str(own_dataset)]) == 0
        capsys.readouterr()
        assert main(["list", "datasets"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if "own-copy" in line)
        assert "no card" in row and "present" in row
    finally:
        in_data_dir.unlink()


def test_run_on_a_dataset_file_warns_of_the_generic_defaults(own_dataset, tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["run", "--methods", "dcmh,scbch", "--datasets", str(own_dataset), "--rates", "0.5",
                 "--bits", "16", "--hp", "epochs=1", "--results", str(results), "--device", "cpu"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    warnings = [line for line in out.split("warning: ")[1:]]
    assert len(warnings) == 1  # one line, for scbch only (no card sets dcmh values)
    assert "has no card: scbch uses the generic margin=0.2, shift=1.0" in warnings[0] and "mirflickr margin=0.15, shift=0.8" in warnings[0]
    assert "--hp margin=VALUE --hp shift=VALUE" in warnings[0]
    records = sorted(results.rglob("*.json"))
    assert len(records) == 2 and all(r.parts[-5].startswith("own-") for r in records)


def test_no_warning_for_a_card_or_set_values():
    assert cardless_warnings(["synth-flickr"], ["scbch"], "quick", {}) == []
    assert cardless_warnings(["/x/own.h5"], ["scbch"], "quick", {"margin": "0.1", "shift": "0.9"}) == []
    assert len(cardless_warnings(["/x/own.h5"], ["scbch"], "quick", {"margin": "0.1"})) == 1


MIRFLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k"


def test_the_three_readme_commands_on_real_mirflickr_labels_and_tags(tmp_path, capsys):
    """The issue's user: the real MIRFlickr labels and tags (MATLAB files, read in place) plus 512-d
    image features of their own (.npy): pack, run, report."""
    if not (MIRFLICKR / "mirflickr25k-lall.mat").is_file():
        pytest.skip(f"real MIRFlickr files not in {MIRFLICKR}")
    n = scipy.io.whosmat(MIRFLICKR / "mirflickr25k-lall.mat")[0][1][0]
    np.save(tmp_path / "vgg512.npy", np.random.default_rng(0).random((n, 512), dtype=np.float32))
    out, results, board = tmp_path / "flickr512.h5", tmp_path / "results", tmp_path / "board"
    assert main(["data", "pack", "--name", "flickr512", "--image", str(tmp_path / "vgg512.npy"),
                 "--text", f"{MIRFLICKR}/mirflickr25k-yall.mat:YAll", "--labels", f"{MIRFLICKR}/mirflickr25k-lall.mat:LAll",
                 "--split", "nrch", "--query", "200", "--train", "500", "--out", str(out)]) == 0
    info = read_info(out)
    assert (info.n_items, info.image_dim, info.text_dim, info.n_classes) == (20015, 512, 1386, 24)
    assert main(["run", "--methods", "dcmh", "--datasets", str(out), "--rates", "0.5", "--bits", "16",
                 "--hp", "epochs=1", "--results", str(results), "--device", "cpu"]) == 0
    assert main(["report", "--results", str(results), "--out", str(board)]) == 0
    capsys.readouterr()
    leaderboard = (board / "README.md").read_text()
    assert f"### {out.resolve()} · pair-swap" in leaderboard and f"--datasets {out.resolve()}" in leaderboard


def test_one_warning_line_per_family_of_methods():
    (line,) = cardless_warnings(["mine"], ["scbch", "scbch-no-cscc", "rshnl"], "quick", {})
    assert line.startswith("dataset 'mine' has no card: scbch, scbch-no-cscc use the generic margin=0.2, shift=1.0")
