"""`data extract`: raw images + texts + labels -> dataset file (VGG-19 with random weights: no download)."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torchvision")
pytest.importorskip("gensim")
from PIL import Image, ImageDraw  # noqa: E402

from cmh_bench.cli import main  # noqa: E402
from cmh_bench.dataset import load_split, read_info  # noqa: E402
from cmh_bench.errors import UserError  # noqa: E402
from cmh_bench.extract import (  # noqa: E402
    bag_of_words,
    doc2vec_vectors,
    list_images,
    load_vgg19_fc7,
    read_labels,
    tokenize,
)

CAPTIONS = [
    "A red square on a white table",
    "two dogs play in the park",
    "a red car parked near the park",
    "",  # an item may have no text
    "sunset over the sea, red sky",
    "A dog and a cat on a sofa",
]
LABELS = ["red table", "dog park", "red car park", "sky", "red sky sea", "dog cat"]


@pytest.fixture
def raw(tmp_path):
    """Six small images (PNG and JPEG, one greyscale), their captions and their class-name labels."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        image = Image.new("RGB", (64, 48 + 8 * i), (40 * i, 255 - 40 * i, 128))
        ImageDraw.Draw(image).rectangle((8 * i, 4, 8 * i + 20, 30), fill=(255, 255, 0))
        if i == 2:
            image = image.convert("L")
        image.save(folder / f"img{i:02d}.{'jpg' if i % 2 else 'png'}")
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    (tmp_path / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return tmp_path


def extract_args(raw, *extra):
    return ["data", "extract", "--images", str(raw / "images"), "--texts", str(raw / "captions.txt"),
            "--labels", str(raw / "labels.txt"), "--name", "tiny", "--out", str(raw / "out" / "tiny.h5"), *extra]


def test_extract_end_to_end_with_doc2vec(raw):
    args = extract_args(raw, "--random-weights", "--device", "cpu", "--batch-size", "4", "--text-kind", "doc2vec",
                        "--doc2vec-dim", "16", "--doc2vec-epochs", "10", "--split", "nrch,random",
                        "--query", "2", "--train", "3")
    assert main(args) == 0
    info = read_info(raw / "out" / "tiny.h5")
    assert (info.n_items, info.image_dim, info.text_dim) == (6, 4096, 16)
    assert (info.image_dtype, info.text_dtype) == ("float32", "float32")
    assert info.class_names == ["car", "cat", "dog", "park", "red", "sea", "sky", "table"]
    assert info.split_sizes == {"nrch": {"query": 2, "train": 3, "database": 4},
                                "random": {"query": 2, "train": 3, "database": 4}}
    assert info.default_split == "nrch"
    assert "RANDOM WEIGHTS" in info.source and "Doc2Vec" in info.source
    data = load_split(info.path, "nrch")
    image = np.concatenate([data.query.image, data.database.image])
    assert (image >= 0).all() and np.isfinite(image).all()  # fc7 after ReLU
    assert len({row.tobytes() for row in image}) == 6  # different images, different features
    np.testing.assert_array_equal(data.query.labels[0], [0, 0, 0, 0, 1, 0, 0, 1])  # "red table"
    text = np.concatenate([data.query.text, data.database.text])
    np.testing.assert_array_equal(text, doc2vec_vectors(CAPTIONS, dim=16, epochs=10, seed=0))
    assert not text[3].any()  # the empty caption


def test_doc2vec_vectors_are_the_same_in_another_process():
    """gensim seeds inference with Python's salted hash(); the vectors must not depend on it."""
    here = doc2vec_vectors(CAPTIONS, dim=16, epochs=10, seed=3)
    code = ("import sys, numpy as np; from cmh_bench.extract import doc2vec_vectors; "
            f"np.save(sys.stdout.buffer, doc2vec_vectors({CAPTIONS!r}, dim=16, epochs=10, seed=3))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    np.testing.assert_array_equal(np.load(io.BytesIO(done.stdout)), here)
    assert not np.array_equal(doc2vec_vectors(CAPTIONS, dim=16, epochs=10, seed=4), here)


def test_bag_of_words():
    assert tokenize("A red_car, 2 dogs!") == ["a", "red_car", "2", "dogs"]
    bow = bag_of_words(CAPTIONS, vocab=4)
    assert bow.dtype == np.uint8 and bow.shape == (6, 4)
    # document frequencies: a 4, red 3, the 3, on 2, park 2, ...; ties alphabetical
    np.testing.assert_array_equal(bow[:, 0], [1, 0, 1, 0, 0, 1])  # "a"
    np.testing.assert_array_equal(bow[:, 1], [1, 0, 1, 0, 1, 0])  # "red"
    assert bag_of_words(CAPTIONS, vocab=1000).shape == (6, 23)  # fewer distinct tokens than asked


def test_label_formats(tmp_path):
    (tmp_path / "bits.txt").write_text("1 0 1\n0 1 0\n")
    matrix, names = read_labels(tmp_path / "bits.txt")
    np.testing.assert_array_equal(matrix, [[1, 0, 1], [0, 1, 0]])
    assert names == ["class0", "class1", "class2"]
    np.save(tmp_path / "labels.npy", np.eye(3, dtype=np.float32))
    matrix, names = read_labels(tmp_path / "labels.npy")
    assert matrix.dtype == np.uint8 and matrix.shape == (3, 3) and len(names) == 3
    (tmp_path / "ragged.txt").write_text("1 0 1\n0 1\n")
    with pytest.raises(UserError, match="same number of entries"):
        read_labels(tmp_path / "ragged.txt")
    np.save(tmp_path / "bad.npy", np.full((2, 2), 3))
    with pytest.raises(UserError, match="0/1"):
        read_labels(tmp_path / "bad.npy")


def test_image_list_file(raw):
    names = ["img03.jpg", "img01.jpg", "img00.png"]
    (raw / "list.txt").write_text("".join(f"images/{n}\n" for n in names))
    assert [p.name for p in list_images(raw / "list.txt")] == names
    assert [p.name for p in list_images(raw / "images")] == [f"img{i:02d}.{'jpg' if i % 2 else 'png'}" for i in range(6)]
    (raw / "bad-list.txt").write_text("images/missing.png\n")
    with pytest.raises(UserError, match="do not exist"):
        list_images(raw / "bad-list.txt")


def test_no_weights_offline_is_a_clear_error(raw, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(raw / "empty-hub"))
    with pytest.raises(UserError, match="no VGG-19 weights offline"):
        load_vgg19_fc7()
    assert main(extract_args(raw, "--device", "cpu", "--query", "2", "--train", "3")) == 2
    assert "--weights FILE" in capsys.readouterr().err
    assert not (raw / "out").exists()


def test_bad_weights_file(raw):
    (raw / "weights.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a torchvision VGG-19 state dict"):
        load_vgg19_fc7(raw / "weights.pth")


@pytest.mark.parametrize("change, extra, fragment", [
    (lambda raw: (raw / "captions.txt").write_text("one\ntwo\n"), [], "item counts disagree"),
    (lambda raw: (raw / "images" / "img00.png").write_bytes(b"broken"), [], "cannot read this image"),
    (None, ["--device", "tpu"], "unknown device"),
    (None, ["--text-kind", "glove"], "unknown text kind"),
    (None, ["--split", "nrch,bogus"], "unknown split preset"),
])
def test_input_errors_exit_2_and_write_nothing(raw, capsys, change, extra, fragment):
    if change:
        change(raw)
    assert main(extract_args(raw, "--random-weights", "--device", "cpu", "--query", "2", "--train", "3", *extra)) == 2
    assert fragment in " ".join(capsys.readouterr().err.split())
    assert not (raw / "out").exists()


def test_sizes_come_from_the_card_or_the_options(raw, capsys):
    """A name without a card needs --query / --train; a card's sizes (here 2000 / 10000) must fit."""
    assert main(extract_args(raw, "--random-weights", "--device", "cpu")) == 2
    assert "give --query and --train" in capsys.readouterr().err
    args = extract_args(raw, "--random-weights", "--device", "cpu")
    args[args.index("tiny")] = "mirflickr"
    assert main(args) == 2
    assert "do not fit in 6 items" in " ".join(capsys.readouterr().err.split())
    assert not (raw / "out").exists()
