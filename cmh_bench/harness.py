"""The training harness: runs one cell end to end and returns its result record.

It owns everything a method must not reimplement: loading the dataset, injecting label noise
(the method sees only the noisy training labels; a label-free method, ``uses_labels = False``, sees
none: its TrainSet raises on ``labels``), seeding (noise seed and training seed are
separate), choosing the device and moving the data there once, mixed precision where the device
supports it, calling ``fit``, encoding queries and database, evaluation, noise-detection scoring
of the method's sample weights, wall time and peak memory, and the record (cmh_bench.record).
Model selection is the final epoch; ``selection="best-on-test"`` reproduces the authors'
protocol (best epoch on the test queries) and is recorded so reports can flag it as optimistic.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Callable

import numpy as np
import torch

from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import Cell
from cmh_bench.dataset import LoadedSplit, load_split
from cmh_bench.device import resolve_device
from cmh_bench.method import MODALITIES, EncodeInput, HashingMethod, LabelFreeTrainSet, RunContext, TrainSet, resolve_hparams
from cmh_bench.metrics import evaluate
from cmh_bench.noise import inject_noise, get_noise_model
from cmh_bench.record import build_record, peak_memory
from cmh_bench.registry import get_method, load_plugin_file
from cmh_bench.validation import check_selection

ProgressFn = Callable[[int, int], None]  # (epochs done, epochs total)


def weight_auc(weights: np.ndarray, corrupted: np.ndarray) -> float | None:
    """ROC-AUC of sample weights for separating clean (positive) from corrupted samples; None if one class is empty."""
    from sklearn.metrics import roc_auc_score

    clean = ~corrupted
    if clean.all() or corrupted.all():
        return None
    return float(roc_auc_score(clean, weights))


def run_cell(cell: Cell, progress: ProgressFn | None = None) -> dict:
    """Train and evaluate one cell; return its record (status "ok"). Errors propagate to the caller."""
    started = time.perf_counter()
    check_selection(cell.selection)
    for plugin in cell.plugins:
        load_plugin_file(plugin)
    entry = get_method(cell.method)
    method_cls: type[HashingMethod] = entry.load()
    path = ensure_dataset(cell.dataset)
    data = load_split(path, cell.split)
    card_overrides = _card_overrides(cell.dataset, method_cls.family)
    hp = resolve_hparams(method_cls, cell.profile, card_overrides, entry.variant, dict(cell.hparams))

    noise_model = get_noise_model(cell.noise)
    noisy = inject_noise(
        cell.noise, data.train.labels, cell.rate, cell.effective_noise_seed,
        features=(data.train.image, data.train.text) if noise_model.needs_features else None,
        **({"file": cell.noise_file} if cell.noise_file else {}),
    )
    uses_clean = method_cls.uses_clean_labels or entry.role == "upper-bound"
    train_labels = data.train.labels if uses_clean else noisy.labels
    label_free = not method_cls.uses_labels

    if cell.threads:
        torch.set_num_threads(cell.threads)
    device = resolve_device(cell.device)
    torch.manual_seed(cell.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    features = (_to_device(data.train.image, device), _to_device(data.train.text, device))
    train = LabelFreeTrainSet(*features) if label_free else TrainSet(*features, _to_device(train_labels, device))
    parts = {part: _encode_input(getattr(data, part), device, uses_clean) for part in ("query", "database")}
    method = method_cls(hp, cell.bits, train.image.shape[1], train.text.shape[1], data.train.labels.shape[1])

    epochs: list[dict] = []
    best: dict = {}

    def scored_weights() -> np.ndarray | None:
        """The method's sample weights to score against the corrupted flags; None if it has none or
        trained on clean labels (there is no corruption to detect then)."""
        weights = None if uses_clean else method.sample_weights()
        return None if weights is None else weights.detach().float().cpu().numpy()

    def on_epoch_end(epoch: int, terms: dict) -> None:
        row = {"epoch": epoch, **{k: float(v) for k, v in terms.items()}}
        weights = scored_weights()
        if weights is not None:
            row["weight_auc"] = weight_auc(weights, noisy.corrupted)
        evaluate_now = cell.selection == "best-on-test" or (cell.curve_every and (epoch + 1) % cell.curve_every == 0)
        if evaluate_now:
            codes = _encode_all(method, parts)
            scores = _evaluate(codes, data, stable_ap=False)
            row.update(map_i2t=scores["i2t"]["map"], map_t2i=scores["t2i"]["map"])
            if cell.selection == "best-on-test" and scores["mean"]["map"] > best.get("map", -1.0):
                best.update(map=scores["mean"]["map"], epoch=epoch, codes=codes)
        epochs.append(row)
        if progress is not None:
            progress(epoch + 1, method.epochs)

    ctx = RunContext(
        device=device, seed=cell.seed, profile=cell.profile,
        generator=torch.Generator().manual_seed(cell.seed),
        mixed_precision=cell.mixed_precision, on_epoch_end=on_epoch_end,
    )
    method.fit(train, ctx)
    train_seconds = time.perf_counter() - started

    codes = best["codes"] if best.get("codes") is not None else _encode_all(method, parts)
    metrics, histograms = _evaluate(codes, data, keep_histograms=True)
    weights = scored_weights()
    detection = None if weights is None else _detection_summary(weights, noisy.corrupted)

    return build_record(
        cell=cell,
        entry=entry,
        method_version=str(method_cls.version),
        hparams=asdict(hp) if hp is not None else {},
        labels_used="none" if label_free else "clean" if uses_clean else "noisy",
        dataset=data,
        noise={"model": cell.noise, "version": noise_model.version, "seed": cell.effective_noise_seed, **noisy.stats},
        metrics=metrics,
        epochs=epochs,
        best_epoch=best.get("epoch"),
        detection=detection,
        seconds={"train": train_seconds, "total": time.perf_counter() - started},
        memory=peak_memory(device),
        device=device,
        codes_file=_codes_file(codes, data, histograms) if cell.save_codes else None,
    )


def _codes_file(codes: dict[str, np.ndarray], data: LoadedSplit, histograms: dict) -> dict:
    """The arguments of write_codes_file for this cell's codes, labels and histograms."""
    return {
        "query_image_codes": codes["query_image"], "query_text_codes": codes["query_text"],
        "db_image_codes": codes["database_image"], "db_text_codes": codes["database_text"],
        "query_labels": data.query.labels, "db_labels": data.database.labels, "histograms": histograms,
    }


def _card_overrides(dataset: str, family: str) -> dict:
    from cmh_bench.cards import find_card

    card = find_card(dataset)
    return card.overrides_for(family) if card is not None and family else {}


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)


def _encode_input(part, device: torch.device, with_labels: bool) -> EncodeInput:
    return EncodeInput(
        image=_to_device(part.image, device),
        text=_to_device(part.text, device),
        clean_labels=_to_device(part.labels, device) if with_labels else None,
    )


def _encode_all(method: HashingMethod, parts: dict[str, EncodeInput]) -> dict[str, np.ndarray]:
    """Codes of query and database items in both modalities, as int8 +-1 numpy arrays."""
    codes = {}
    for part, items in parts.items():
        for modality in MODALITIES:
            c = method.encode_items(items, modality)
            if c.shape[1] != method.bits:
                raise RuntimeError(f"{type(method).__name__}.encode returned {c.shape[1]} bits, expected {method.bits}")
            codes[f"{part}_{modality}"] = torch.where(c >= 0, 1, -1).to(torch.int8).cpu().numpy()
    return codes


def _evaluate(codes: dict[str, np.ndarray], data: LoadedSplit, keep_histograms: bool = False, stable_ap: bool = True):
    """Evaluate the codes; torch's thread count is restored afterwards, because numba's parallel
    kernel shares the OpenMP runtime with torch and leaves it at numba's own thread count."""
    threads = torch.get_num_threads()
    try:
        return evaluate(
            codes["query_image"], codes["query_text"], codes["database_image"], codes["database_text"],
            data.query.labels, data.database.labels, keep_histograms=keep_histograms, stable_ap=stable_ap,
        )
    finally:
        torch.set_num_threads(threads)


def _detection_summary(weights: np.ndarray, corrupted: np.ndarray, bins: int = 20) -> dict:
    """Final-weight AUC and histograms of the weights of clean and corrupted samples (paper's Fig. 6)."""
    low, high = float(weights.min()), float(weights.max())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    return {
        "weight_auc": weight_auc(weights, corrupted),
        "edges": edges.tolist(),
        "clean": np.histogram(weights[~corrupted], edges)[0].tolist(),
        "corrupted": np.histogram(weights[corrupted], edges)[0].tolist(),
        "mean_clean": float(weights[~corrupted].mean()) if (~corrupted).any() else None,
        "mean_corrupted": float(weights[corrupted].mean()) if corrupted.any() else None,
    }
