"""The training harness: runs one cell end to end and returns its result record.

It owns everything a method must not reimplement: loading the dataset, injecting label noise
(the method sees only the noisy training labels; a label-free method, ``uses_labels = False``, sees
none: its TrainSet raises on ``labels``), seeding (noise seed and training seed are
separate), choosing the device and moving the data there once, mixed precision where the device
supports it, calling ``fit``, encoding queries and database, evaluation, noise-detection scoring
of the method's sample weights and entry scores, wall time and peak memory, and the record (cmh_bench.record).

Validation and model selection: a seeded share of the training items (``validation_fraction``,
default 10 %; cmh_bench.splits.validation_split) is held out of training, with the cell's noisy
labels. Every ``val_every`` epochs and at the last one, cmh_bench.selection evaluates one half of
the held-out items against the other and the test queries against the test database; the record holds
the test metrics of every rule's epoch (``val``, ``final``, ``val-clean``, ``best-on-test``), all
from the one ``fit``. The method trains on 90 % of the training items the authors' protocol uses:
the price of choosing an epoch without test queries or clean labels (README, "Model selection").

Clean meta set: a cell with ``clean_meta`` = M hands the method, in ``train.meta``, M of the items it
fits on (seeded, cmh_bench.metaset.draw_meta) with their clean labels; its other labels stay noisy.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from cmh_bench.cards import find_card
from cmh_bench.catalog import ensure_dataset
from cmh_bench.cell import SELECTIONS, Cell
from cmh_bench.dataset import LoadedSplit, load_split
from cmh_bench.device import check_precision, resolve_device
from cmh_bench.metaset import LABELS_USED as META_LABELS_USED, MetaSet, check_meta_size, draw_meta, meta_summary
from cmh_bench.method import EncodeInput, HashingMethod, LabelFreeTrainSet, RunContext, TrainSet
from cmh_bench.noise import inject_noise, get_noise_model
from cmh_bench.profiles import cell_hparams, recorded_hparams
from cmh_bench.record import CellOutcome, build_record, peak_memory
from cmh_bench.registry import get_method, load_plugin_file
from cmh_bench.selection import Chosen, Selection, ValidationPart, as_retrieval, evaluate_keeping_threads
from cmh_bench.splits import VALIDATION_SEED, validation_fraction, validation_split

ProgressFn = Callable[[int, int], None]  # (epochs done, epochs total)


def weight_auc(weights: np.ndarray, corrupted: np.ndarray) -> float | None:
    """ROC-AUC of reliability scores for separating clean (positive) from corrupted items (samples, or
    label entries for ``entry_auc``); None if one class is empty."""
    from sklearn.metrics import roc_auc_score

    clean = ~corrupted
    if clean.all() or corrupted.all():
        return None
    return float(roc_auc_score(clean, weights))


def entry_auc(scores: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> float | None:
    """Per-entry detection AUC: :func:`weight_auc` of the entry scores (N × C) over the noisy positive entries
    (ỹ_jk = 1), true positives (y_jk = 1) positive vs added ones (y_jk = 0); None if one kind is absent."""
    candidates = noisy.astype(bool)
    return weight_auc(scores[candidates], ~clean.astype(bool)[candidates])


def run_cell(cell: Cell, progress: ProgressFn | None = None) -> dict:
    """Train and evaluate one cell; return its record (status "ok"). Errors propagate to the caller."""
    return run_cell_with_codes(cell, progress).record


def run_cell_with_codes(cell: Cell, progress: ProgressFn | None = None) -> CellOutcome:
    """Train and evaluate one cell: its record and, when ``cell.save_codes``, the ranked selection's codes."""
    started = time.perf_counter()
    for plugin in cell.plugins:
        load_plugin_file(plugin)
    entry = get_method(cell.method)
    method_cls: type[HashingMethod] = entry.load()
    path = ensure_dataset(cell.dataset)
    data = load_split(path, cell.split)
    hp = cell_hparams(cell)
    check_meta_size(cell.method, method_cls, cell.clean_meta)

    noise_model = get_noise_model(cell.noise)
    noisy = inject_noise(
        cell.noise, data.train.labels, cell.rate, cell.effective_noise_seed,
        features=(data.train.image, data.train.text) if noise_model.needs_features else None,
        **({"file": cell.noise_file} if cell.noise_file else {}),
    )
    fraction = validation_fraction(cell, find_card(cell.dataset))
    fit, val_queries, val_database = validation_split(len(data.train), fraction)
    uses_clean = method_cls.uses_clean_labels or entry.role == "upper-bound"
    train_labels = data.train.labels if uses_clean else noisy.labels
    corrupted = noisy.corrupted[fit]
    noisy_fit, clean_fit = noisy.labels[fit], data.train.labels[fit]
    label_free = not method_cls.uses_labels

    if cell.threads:
        torch.set_num_threads(cell.threads)
    device = resolve_device(cell.device)
    check_precision(device, cell.mixed_precision)
    torch.manual_seed(cell.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    features = (to_device(data.train.image[fit], device), to_device(data.train.text[fit], device))
    train = LabelFreeTrainSet(*features) if label_free else TrainSet(*features, to_device(train_labels[fit], device))
    meta_positions = None if cell.clean_meta is None else draw_meta(len(fit), cell.clean_meta)
    if meta_positions is not None:  # the only clean labels a noisy-label method is handed
        train.meta = MetaSet(torch.from_numpy(meta_positions).to(device),
                             to_device(data.train.labels[fit[meta_positions]], device))
    test_parts = {part: _encode_input(getattr(data, part), device, uses_clean) for part in ("query", "database")}
    validation = None
    if len(val_queries):
        validation = ValidationPart(
            query=_encode_input(data.train, device, uses_clean, val_queries),
            database=_encode_input(data.train, device, uses_clean, val_database),
            labels={"val": (noisy.labels[val_queries], noisy.labels[val_database]),
                    "val-clean": (data.train.labels[val_queries], data.train.labels[val_database])},
        )
    selection = Selection(test_parts, (data.query.labels, data.database.labels), validation)
    method = method_cls(hp, cell.bits, train.image.shape[1], train.text.shape[1], data.train.labels.shape[1])

    epochs: list[dict] = []

    def scored(scores: torch.Tensor | None) -> np.ndarray | None:
        """A method's reliability scores (sample weights or entry scores) to score against the noise; None
        if it has none or trained on clean labels (there is no corruption to detect then)."""
        return None if uses_clean or scores is None else scores.detach().float().cpu().numpy()

    def on_epoch_end(epoch: int, terms: dict) -> None:
        row = {"epoch": epoch, **{k: float(v) for k, v in terms.items()}}
        weights, entries = scored(method.sample_weights()), scored(method.entry_scores())
        if weights is not None:
            row["weight_auc"] = weight_auc(weights, corrupted)
        if entries is not None:
            row["entry_auc"] = entry_auc(entries, noisy_fit, clean_fit)
        if (cell.val_every and (epoch + 1) % cell.val_every == 0) or epoch + 1 == method.epochs:
            row.update(selection.evaluate_epoch(method, epoch))
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
    if not epochs or "map_i2t" not in epochs[-1]:  # a method with its own fit, or fewer epochs than announced
        final = selection.evaluate_epoch(method, epochs[-1]["epoch"] if epochs else None)
        if epochs:
            epochs[-1].update(final)

    if label_free and validation is not None:
        # a label-free method is not selected by labels: its rule "val" is its final epoch, scored (for
        # `cmh-bench tune` alone) by the noisy-validation MAP there
        final = selection.chosen["final"]
        selection.chosen["val"] = Chosen(final.epoch, epochs[-1].get("val_map") if epochs else None, final.codes)
    selections, histograms = _selected_metrics(selection.chosen, data)
    ranked = "val" if "val" in selections else "final"
    weights, entries = scored(method.sample_weights()), scored(method.entry_scores())
    detection = {**({} if weights is None else _detection_summary(weights, corrupted)),
                 **({} if entries is None else _entry_summary(entries, noisy_fit, clean_fit))} or None

    record = build_record(
        cell=cell,
        entry=entry,
        method_version=str(method_cls.version),
        hparams=recorded_hparams(hp),
        labels_used="none" if label_free else "clean" if uses_clean else META_LABELS_USED if meta_positions is not None else "noisy",
        dataset=data,
        validation={"fraction": fraction, "seed": VALIDATION_SEED, "size": len(val_queries) + len(val_database),
                    "queries": len(val_queries), "database": len(val_database), "fit_size": len(fit), "every": cell.val_every},
        noise={"model": cell.noise, "version": noise_model.version, "seed": cell.effective_noise_seed, **noisy.stats},
        selections=selections,
        epochs=epochs,
        detection=detection,
        seconds={"train": train_seconds, "total": time.perf_counter() - started},
        memory=peak_memory(device),
        device=device,
        clean_meta=None if meta_positions is None else meta_summary(meta_positions),
    )
    if not cell.save_codes:
        return CellOutcome(record)
    codes = as_retrieval(selection.chosen[ranked].codes, data.query.labels, data.database.labels)
    return CellOutcome(record, codes, histograms[ranked])


def _selected_metrics(chosen: dict[str, Chosen], data: LoadedSplit) -> tuple[dict, dict]:
    """Per rule, {"epoch", "score", "metrics"} with the full test metrics of its codes, and the distance
    histograms per rule; epochs chosen by several rules are evaluated once."""
    by_epoch: dict = {}
    selections, histograms = {}, {}
    for rule in SELECTIONS:
        if rule not in chosen:
            continue
        pick = chosen[rule]
        if pick.epoch not in by_epoch:
            retrieval = as_retrieval(pick.codes, data.query.labels, data.database.labels)
            by_epoch[pick.epoch] = evaluate_keeping_threads(retrieval, keep_histograms=True)
        metrics, histograms[rule] = by_epoch[pick.epoch]
        selections[rule] = {"epoch": pick.epoch, "score": pick.score, "metrics": metrics}
    return selections, histograms


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a contiguous float32 tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)


def _encode_input(part, device: torch.device, with_labels: bool, rows: np.ndarray | None = None) -> EncodeInput:
    """The part's items (all, or its ``rows``) on the device; clean labels only for opted-in references."""
    take = (lambda array: array) if rows is None else (lambda array: array[rows])
    return EncodeInput(
        image=to_device(take(part.image), device),
        text=to_device(take(part.text), device),
        clean_labels=to_device(take(part.labels), device) if with_labels else None,
    )


def _entry_summary(scores: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> dict:
    """Final entry-score AUC (true vs added positives among the noisy positive entries), the shape of the
    scores, and the number and mean score of the true and the added positive entries."""
    candidates = noisy.astype(bool)
    true, added = candidates & clean.astype(bool), candidates & ~clean.astype(bool)
    return {
        "entry_auc": entry_auc(scores, noisy, clean),
        "entry_shape": list(scores.shape),
        "entries_true": int(true.sum()), "entries_added": int(added.sum()),
        "mean_true_entry": float(scores[true].mean()) if true.any() else None,
        "mean_added_entry": float(scores[added].mean()) if added.any() else None,
    }


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
