"""``cmh-bench data extract``: build a dataset file from raw images, texts and labels.

Inputs (item i is the i-th entry of each; the three counts must agree):

- images: a folder (every image file in it, sorted by file name) or a text file listing image paths,
  one a line (relative paths are relative to the list file's folder). Loaded with PIL, converted RGB.
- texts: a UTF-8 text file, one item a line (a caption or a tag list; an empty line is an empty text).
  Tokens are the lower-cased runs of letters, digits and underscores.
- labels: a ``.npy`` file holding an (items x classes) 0/1 matrix, or a text file, one item a line,
  either space-separated 0/1 entries (all lines the same length; classes named ``class0``...) or
  space-separated class names (classes = the sorted distinct names). A file whose every token is 0
  or 1 is read as 0/1 entries.

Image features are VGG-19 fc7 as in the hashing literature: torchvision's ``vgg19``, eval mode, the
output of ``classifier[:5]`` (fc6 -> ReLU -> dropout -> fc7 -> ReLU; the field's ``classifier[:6]`` adds
the following dropout, which is the identity in eval mode), 4096-d, non-negative, after the standard
ImageNet preprocessing (resize 256, centre crop 224, ImageNet mean / std). Weights: ``--weights FILE``
(a torchvision VGG-19 state dict) or torchvision's cached ``vgg19-dcbb9e9d.pth`` in the torch hub
cache; nothing is ever downloaded. Random weights exist only for tests and are recorded in the file.

Text features: a binary bag of words over the ``vocab`` most frequent tokens (document frequency,
ties alphabetical), or Doc2Vec vectors (gensim, PV-DM) trained on the texts themselves with one worker
and a fixed seed, then inferred for every text with the seed reset before each call. gensim seeds the
starting vector of ``infer_vector`` with Python's salted ``hash()`` of the text, so inferred vectors
would differ between processes; inference here swaps in a stable hash (CRC-32) for that one call,
which makes the vectors identical across processes. An empty text gets the zero vector.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from cmh_bench.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
VGG19_CHECKPOINT = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1 file name
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TOKEN = re.compile(r"\w+")
ImagesDoneFn = Callable[[int, int], None]  # (images done, images total)


def extract_dataset(
    images: str | Path,
    texts: str | Path,
    labels: str | Path,
    name: str,
    out: str | Path | None = None,
    *,
    text_kind: str = "bow",
    vocab: int = 1386,
    doc2vec_dim: int = 300,
    doc2vec_epochs: int = 20,
    weights: str | Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    presets: tuple[str, ...] = ("nrch",),
    query: int | None = None,
    train: int | None = None,
    seed: int = 0,
    progress: ImagesDoneFn | None = None,
) -> Path:
    """Extract features from raw data and write dataset ``name`` to ``out`` (default: the data directory).

    ``query`` / ``train`` default to the sizes of the card called ``name``, if there is one; ``seed``
    drives Doc2Vec and the ``random`` split; ``progress(done, total)`` is told the images done after
    each batch. Inputs are all checked before the slow image pass, and the
    file is written only at the end (atomically).
    """
    from cmh_bench.cards import find_card
    from cmh_bench.catalog import dataset_path
    from cmh_bench.dataset import write_dataset
    from cmh_bench.device import resolve_device
    from cmh_bench.splits import make_splits

    if text_kind not in ("bow", "doc2vec"):
        raise UserError(f"unknown text kind {text_kind!r}; choose bow or doc2vec")
    torch_device = resolve_device(device)
    card = find_card(name)
    query = query or (card.sizes.get("query") if card else None)
    train = train or (card.sizes.get("train") if card else None)
    if not query or not train:
        raise UserError(f"no split sizes for {name!r} (it has no card); give --query and --train")
    image_paths = list_images(images)
    lines = read_texts(texts)
    label_matrix, class_names = read_labels(labels)
    counts = {f"images ({images})": len(image_paths), f"texts ({texts})": len(lines), f"labels ({labels})": len(label_matrix)}
    if len(set(counts.values())) != 1:
        raise UserError("item counts disagree: " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "; item i must be line i of each")
    if not presets:
        raise UserError("give at least one split preset (nrch, ucch, random)")
    splits = make_splits(presets, len(lines), query, train, seed=seed)
    if text_kind == "bow":  # text first: it is fast, and its errors should not wait for the image pass
        text = bag_of_words(lines, vocab)
        text_note = f"binary bag of words, {text.shape[1]} most frequent tokens"
    else:
        text = doc2vec_vectors(lines, doc2vec_dim, doc2vec_epochs, seed)
        text_note = f"Doc2Vec PV-DM {doc2vec_dim}-d, {doc2vec_epochs} epochs, seed {seed}, trained on these texts"
    model, weights_note = load_vgg19_fc7(weights, random_weights)
    image = image_features(image_paths, model, torch_device, batch_size, progress)
    return write_dataset(
        out or dataset_path(name),
        name=name,
        image=image,
        text=text,
        labels=label_matrix,
        splits=splits,
        class_names=class_names,
        source=(
            f"extracted by `cmh-bench data extract`: images {images} (VGG-19 fc7, {weights_note}, "
            f"float32 on {torch_device.type}, TF32 off), "
            f"texts {texts} ({text_note}), labels {labels}"
        ),
        description=f"{len(lines)} items; split presets {', '.join(presets)} (Q {query}, T {train}, seed {seed}).",
        default_split=presets[0],
    )


def list_images(images: str | Path) -> list[Path]:
    """The image files of a folder (sorted by name) or of a list file (one path a line), in item order."""
    images = Path(images)
    if images.is_dir():
        paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UserError(f"{images}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return paths
    if not images.is_file():
        raise UserError(f"{images}: no such folder or image list file")
    paths = [images.parent / line.strip() for line in images.read_text().splitlines() if line.strip()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{images}: {len(missing)} listed images do not exist, e.g. {missing[0]}")
    return paths


def read_texts(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, one item each."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such text file (one caption or tag list per line)")
    return path.read_text(encoding="utf-8").splitlines()


def read_labels(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """The (items x classes) uint8 label matrix and the class names, from .npy or text (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such label file (.npy matrix, or one line of 0/1 entries or class names per item)")
    if path.suffix == ".npy":
        matrix = np.load(path, allow_pickle=False)
        if matrix.ndim != 2:
            raise UserError(f"{path}: expected a 2-D (items x classes) 0/1 matrix, found shape {matrix.shape}")
        names = [f"class{c}" for c in range(matrix.shape[1])]
    else:
        rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
        if all(token in ("0", "1") for row in rows for token in row):
            widths = {len(row) for row in rows}
            if len(widths) != 1:
                raise UserError(f"{path}: 0/1 label lines must all have the same number of entries, found {sorted(widths)}")
            matrix = np.array(rows, dtype=np.uint8).reshape(len(rows), widths.pop())
            names = [f"class{c}" for c in range(matrix.shape[1])]
        else:
            names = sorted({token for row in rows for token in row})
            column = {n: c for c, n in enumerate(names)}
            matrix = np.zeros((len(rows), len(names)), dtype=np.uint8)
            for i, row in enumerate(rows):
                matrix[i, [column[t] for t in row]] = 1
    if not ((matrix == 0) | (matrix == 1)).all():
        raise UserError(f"{path}: labels must be 0/1")
    return matrix.astype(np.uint8), names


def load_vgg19_fc7(weights: str | Path | None = None, random_weights: bool = False):
    """VGG-19 cut after the fc7 ReLU (eval mode) and a note saying which weights it carries.

    ``weights``: a torchvision VGG-19 state dict; else torchvision's cached checkpoint; else, only with
    ``random_weights``, a seeded random initialisation (meaningless features, for tests).
    """
    import torch
    from torchvision.models import vgg19

    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_CHECKPOINT
    path = Path(weights) if weights else (cached if cached.is_file() else None)
    if path is None and not random_weights:
        raise UserError(
            f"no VGG-19 weights offline: {cached} does not exist; copy torchvision's {VGG19_CHECKPOINT} "
            "there or pass --weights FILE (--random-weights gives meaningless features, for tests only)"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = vgg19(weights=None)
    if path is not None:
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise UserError(f"{path}: not a torchvision VGG-19 state dict ({str(error).splitlines()[0]})") from None
        note = f"weights {path}"
    else:
        note = "RANDOM WEIGHTS (seed 0; tests only, not meaningful features)"
    model.classifier = model.classifier[:5]
    return model.eval(), note


def image_features(paths: list[Path], model, device, batch_size: int = 32,
                   progress: ImagesDoneFn | None = None) -> np.ndarray:
    """Run ``model`` over the images in batches on ``device``; (items x d) float32.

    ``progress(done, total)`` is called after each batch with the number of images done so far.
    """
    import torch
    from torchvision import transforms

    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    preprocess = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    model = model.to(device)
    blocks = []
    # full float32 convolutions and matmuls: CUDA's default TF32 would give features that differ from a CPU extraction
    with torch.inference_mode(), torch.backends.cudnn.flags(allow_tf32=False), _no_tf32_matmul():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([preprocess(_load_rgb(p)) for p in paths[start : start + batch_size]])
            blocks.append(model(batch.to(device)).float().cpu().numpy())
            if progress is not None:
                progress(start + len(batch), len(paths))
    return np.concatenate(blocks)


@contextlib.contextmanager
def _no_tf32_matmul():
    """torch.backends.cuda.matmul.allow_tf32 off inside the block, restored after."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _load_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"{path}: cannot read this image ({error})") from None


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters, digits and underscores."""
    return _TOKEN.findall(text.lower())


def bag_of_words(texts: list[str], vocab: int) -> np.ndarray:
    """Binary (items x words) uint8 matrix over the ``vocab`` tokens in most texts (ties alphabetical)."""
    if vocab < 1:
        raise UserError(f"vocabulary size must be at least 1, got {vocab}")
    docs = [set(tokenize(t)) for t in texts]
    frequency = Counter(token for doc in docs for token in doc)
    if not frequency:
        raise UserError("the texts contain no words; check the text file")
    words = sorted(frequency, key=lambda w: (-frequency[w], w))[:vocab]
    column = {w: c for c, w in enumerate(words)}
    matrix = np.zeros((len(docs), len(words)), dtype=np.uint8)
    for i, doc in enumerate(docs):
        matrix[i, [column[w] for w in doc if w in column]] = 1
    return matrix


def doc2vec_vectors(texts: list[str], dim: int = 300, epochs: int = 20, seed: int = 0) -> np.ndarray:
    """(items x dim) float32 Doc2Vec vectors, trained on ``texts`` and inferred deterministically."""
    from unittest import mock

    import gensim.models.doc2vec as d2v

    if dim < 1 or epochs < 1:
        raise UserError(f"Doc2Vec needs a vector size and epochs of at least 1, got {dim} and {epochs}")
    docs = [tokenize(t) for t in texts]
    if not any(docs):
        raise UserError("the texts contain no words; check the text file")
    model = d2v.Doc2Vec(vector_size=dim, min_count=1, epochs=epochs, workers=1, seed=seed)
    corpus = [d2v.TaggedDocument(doc, [i]) for i, doc in enumerate(docs)]
    model.build_vocab(corpus)
    model.train(corpus, total_examples=len(corpus), epochs=model.epochs)
    vectors = np.zeros((len(docs), dim), dtype=np.float32)
    with mock.patch.object(d2v, "pseudorandom_weak_vector", _stable_weak_vector):
        for i, doc in enumerate(docs):
            if doc:
                model.random.seed(seed)
                vectors[i] = model.infer_vector(doc)
    return vectors


def _stable_weak_vector(size: int, seed_string: str | None = None, hashfxn=None) -> np.ndarray:
    """gensim's ``pseudorandom_weak_vector`` seeded with CRC-32 instead of the salted ``hash()``."""
    from gensim.models.keyedvectors import pseudorandom_weak_vector

    return pseudorandom_weak_vector(size, seed_string, hashfxn=lambda text: zlib.crc32(text.encode("utf-8")))
