"""Model selection: per-epoch evaluation of the validation part and the test queries, and the best epoch of each rule.

One training run yields every rule of ``cmh_bench.cell.SELECTIONS``. The harness calls
:meth:`Selection.evaluate_epoch` every ``val_every`` epochs and at the last epoch; each call encodes

- the **validation part** (:class:`ValidationPart`): one half of the held-out training items as
  queries, ranked against the other half (cmh_bench.splits.validation_split). Rule ``val`` judges
  relevance by the cell's noisy labels on both sides (the same noise draw as the rest of the
  training set): everything in it is what a practitioner holds, and it reads no test query, no test
  database item and no clean label. Rule ``val-clean`` (flagged, optimistic) ranks the same codes
  with the clean labels of the same items: RSHNL's clean validation split.
- the **test queries** against the test database (clean labels, as always for the test): the
  flagged ``best-on-test`` rule (the authors' protocol) and the record's MAP curve.

Why a held-out validation database, not the fitting items: the test database must not be touched
(its labels are clean), and with noisy labels on the database side, a database of training items
rewards memorisation: a network that has memorised a training item's wrong label codes it next to
the queries of that wrong class, which the noisy labels count as relevant. Measured with the
fitting items as database (synth-flickr, pair-swap 0.8, 32 bits, seed 0), the noisy-validation MAP
of SCBCH rose over all 50 epochs while its test MAP peaked at epoch 9 and fell, so ``val``
picked the final epoch. Items nobody trained on carry label noise that does not depend on the
model, so their noisy-label MAP tracks retrieval quality. Each evaluation costs one encoding of the
V held-out items and a (V/2 × V/2) ranking.

Each rule keeps the test codes of its best epoch (the earliest on ties); ``final`` is the last
evaluated epoch, which is the last epoch trained. A label-free method (``uses_labels = False``) is not
selected by noisy labels either: the harness records its final epoch as its ``val`` selection, so its
codes and test metrics stay independent of the noise rate and model; that selection's score (and the
epochs' ``val_map``) is the noisy-validation MAP, which ``cmh-bench tune`` scores it by, as every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cmh_bench.method import MODALITIES, EncodeInput, HashingMethod
from cmh_bench.metrics import Retrieval, evaluate


@dataclass
class ValidationPart:
    """The validation retrieval task: held-out training items, one half (queries) against the other (database).

    ``labels``: rule -> (query labels, database labels), the noisy labels for "val" and the clean
    ones for "val-clean". ``query`` / ``database`` carry clean labels only for opted-in references
    (e.g. the label oracle encodes from them), as the test parts do.
    """

    query: EncodeInput
    database: EncodeInput
    labels: dict[str, tuple[np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return self.query.image.shape[0]


@dataclass(frozen=True)
class Chosen:
    """What a rule selected: the epoch (None for a method that reports no epochs), the rule's score
    there (None for ``final``) and the test codes of that epoch."""

    epoch: int | None
    score: float | None
    codes: dict[str, np.ndarray]


def encode_parts(method: HashingMethod, parts: dict[str, EncodeInput]) -> dict[str, np.ndarray]:
    """Codes of each part in both modalities, keyed "<part>_<modality>", as int8 ±1 numpy arrays."""
    codes = {}
    for part, items in parts.items():
        for modality in MODALITIES:
            c = method.encode_items(items, modality)
            if c.shape[1] != method.bits:
                raise RuntimeError(f"{type(method).__name__}.encode returned {c.shape[1]} bits, expected {method.bits}")
            codes[f"{part}_{modality}"] = torch.where(c >= 0, 1, -1).to(torch.int8).cpu().numpy()
    return codes


def as_retrieval(codes: dict[str, np.ndarray], query_labels: np.ndarray, db_labels: np.ndarray) -> Retrieval:
    """The Retrieval of ``encode_parts`` codes of a "query" and a "database" part with the given labels."""
    return Retrieval(codes["query_image"], codes["query_text"], codes["database_image"], codes["database_text"],
                     query_labels, db_labels)


def evaluate_keeping_threads(retrieval: Retrieval, **options):
    """``metrics.evaluate``; torch's thread count is restored afterwards, because numba's parallel kernel
    shares the OpenMP runtime with torch and leaves it at numba's own thread count."""
    threads = torch.get_num_threads()
    try:
        return evaluate(retrieval, **options)
    finally:
        torch.set_num_threads(threads)


def validation_scores(method: HashingMethod, part: ValidationPart) -> dict[str, float | None]:
    """Per validation rule, the mean of I2T and T2I tie-aware MAP of the validation queries against the
    validation database, relevance judged by that rule's labels (see :class:`ValidationPart`)."""
    codes = encode_parts(method, {"query": part.query, "database": part.database})
    return {rule: evaluate_keeping_threads(as_retrieval(codes, *labels), stable_ap=False)["mean"]["map"]
            for rule, labels in part.labels.items()}


class Selection:
    """Evaluates epochs and keeps, per rule, the best one so far (see the module docstring)."""

    def __init__(self, test_parts: dict[str, EncodeInput], test_labels: tuple[np.ndarray, np.ndarray],
                 validation: ValidationPart | None):
        self.test_parts = test_parts
        self.test_labels = test_labels
        self.validation = validation
        self.chosen: dict[str, Chosen] = {}

    def evaluate_epoch(self, method: HashingMethod, epoch: int | None) -> dict[str, float]:
        """Evaluate the method as it is after ``epoch``; return the epoch's log entries (test MAP per
        direction; noisy and clean validation MAP when there is a validation part)."""
        codes = encode_parts(method, self.test_parts)
        test = evaluate_keeping_threads(as_retrieval(codes, *self.test_labels), stable_ap=False)
        scores = {"best-on-test": test["mean"]["map"]}
        if self.validation is not None:
            scores.update(validation_scores(method, self.validation))
        for rule, score in scores.items():
            if score is not None and (rule not in self.chosen or score > self.chosen[rule].score):
                self.chosen[rule] = Chosen(epoch, score, codes)
        self.chosen["final"] = Chosen(epoch, None, codes)
        entries = {"map_i2t": test["i2t"]["map"], "map_t2i": test["t2i"]["map"]}
        entries.update({f"{rule.replace('-', '_')}_map": scores[rule] for rule in ("val", "val-clean") if rule in scores})
        return entries
