"""``cmh-bench tune``: one tuning rule for every method, on the noisy validation part only.

The grid is the same for every method: each learning rate of the method (every float
hyper-parameter named ``lr``, ``lr_*`` or ``*_lr``, scaled together) at ``LR_FACTORS`` × its
published value, crossed with the epoch budgets (default ``DEFAULT_EPOCHS``, the same for every
method). When the best point lies at an edge of the factors tried (the smallest or the largest),
the grid extends one more factor of 4 beyond that edge, at most ``MAX_EXTENSIONS`` times
(:func:`extension_factor`): a published lr meant for another number of steps or another width
would otherwise decide the ranking, not the method. The rule is the same for every method; the
points each one ran are all in its provenance. Each grid point is one run grid (datasets × noise × rates × bits × seeds) at the profile's
other values; its score is the mean, over its cells, of the noisy-validation MAP at the epoch rule
``val`` selected (the record's ``selections.val.score``). No test-query metric and no clean label is
read. The best point (ties: the earlier in grid order, which starts at the published lr) is written
with its provenance to the method's tuned profile file (cmh_bench.profiles), which ``--profile``
then reads. A plugin author tunes a plugin method the same way (``--plugin``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import yaml

from cmh_bench import __version__
from cmh_bench.atomic import write_text_atomic
from cmh_bench.errors import UserError
from cmh_bench.profiles import profile_path
from cmh_bench.record import existing_record, git_revision
from cmh_bench.grid import Grid

LR_FACTORS = (1.0, 0.25, 4.0)  # published value first: it wins ties
EXTENSION_STEP = 4.0
MAX_EXTENSIONS = 2  # so factors range over 1/64 .. 64 at most
DEFAULT_EPOCHS = (50,)
RULE = "val"
_LEARNING_RATE = re.compile(r"^(lr|lr_.+|.+_lr)$")


def learning_rate_fields(hparams_cls: type) -> list[str]:
    """The names of the float hyper-parameters that are learning rates: ``lr``, ``lr_*`` or ``*_lr``."""
    return [f.name for f in dataclasses.fields(hparams_cls)
            if _LEARNING_RATE.match(f.name) and isinstance(getattr(hparams_cls(), f.name), float)]


def grid_points(entry, epochs: tuple[int, ...] = DEFAULT_EPOCHS, factors: tuple[float, ...] = LR_FACTORS) -> list[dict]:
    """The tuning grid of registered method ``entry`` at the given lr factors: {hyper-parameter: value}
    per point, in grid order (factors outer, epoch budgets inner)."""
    cls = entry.load()
    if cls.Hparams is None or "epochs" not in {f.name for f in dataclasses.fields(cls.Hparams)}:
        raise UserError(f"method {entry.name!r} has no epochs hyper-parameter to budget; tune trains epoch-based methods")
    rates = learning_rate_fields(cls.Hparams)
    if not rates:
        raise UserError(f"method {entry.name!r} has no learning-rate hyper-parameter (lr, lr_*, *_lr) to tune")
    if not epochs or min(epochs) < 1:
        raise UserError(f"--epochs {','.join(map(str, epochs))}: give one or more positive epoch budgets")
    published = cls.Hparams()
    return [{**{name: getattr(published, name) * factor for name in rates}, "epochs": budget}
            for factor, budget in itertools.product(factors, epochs)]


def lr_factor(entry, point: dict) -> float:
    """The factor of a grid point's learning rates over the published values (all scaled together),
    rounded to 12 digits so that equal factors compare equal."""
    name = learning_rate_fields(entry.load().Hparams)[0]
    return round(point[name] / getattr(entry.load().Hparams(), name), 12)


def tried_factors(entry, points: list[dict]) -> list[float]:
    """The distinct lr factors of the grid points, ascending."""
    return sorted({lr_factor(entry, p) for p in points})


def best_point(scored: list[dict]) -> int | None:
    """Index of the best grid point: the highest score among points whose cells all finished (ties: the
    earliest); None if none did."""
    candidates = [(s["score"], -i) for i, s in enumerate(scored) if s["score"] is not None and not s["failed"]]
    return -max(candidates)[1] if candidates else None


def extension_factor(entry, points: list[dict], scored: list[dict]) -> float | None:
    """The lr factor to add to the grid: a quarter of the smallest factor tried if the best point has it,
    4× the largest if the best point has that, while fewer than MAX_EXTENSIONS factors were added; else None."""
    best = best_point(scored)
    if best is None:
        return None
    factors = tried_factors(entry, points)
    if len(factors) >= len(LR_FACTORS) + MAX_EXTENSIONS:
        return None
    chosen = lr_factor(entry, points[best])
    if chosen == factors[0]:
        return factors[0] / EXTENSION_STEP
    if chosen == factors[-1]:
        return factors[-1] * EXTENSION_STEP
    return None


def point_grid(point: dict, base: Grid) -> Grid:
    """The run grid of one grid point: ``base`` with the point's values as hyper-parameter overrides."""
    hparams = tuple(sorted((key, repr(value) if isinstance(value, float) else str(value)) for key, value in point.items()))
    return dataclasses.replace(base, cell_options={**base.cell_options, "hparams": hparams})


def check_tuning_grid(base: Grid) -> None:
    """Raise UserError unless the base grid has one method and a validation part (tuning needs ``val``)."""
    if len(base.methods) != 1:
        raise UserError(f"tune one method at a time (got {', '.join(base.methods)})")
    if base.cell_options.get("val_fraction") == 0:
        raise UserError("tune selects on the validation part: give a --val-fraction above 0")
    if base.cell_options.get("hparams"):
        raise UserError("tune sets the hyper-parameters itself; drop the --hp overrides")


def score_point(grid: Grid, results_dir: Path) -> dict:
    """{"score", "cells", "failed"}: the mean ``val`` score over the grid's cells with one (None if none has)."""
    scores, failed = [], 0
    for cell in grid.cells():
        record = existing_record(Path(results_dir) / cell.relative_path())
        score = ((record or {}).get("selections") or {}).get(RULE, {}).get("score")
        if score is None:
            failed += 1
        else:
            scores.append(score)
    return {"score": sum(scores) / len(scores) if scores else None, "cells": len(scores), "failed": failed}


def write_tuned_profile(entry, base: Grid, points: list[dict], scored: list[dict], command: str) -> Path:
    """Choose the best-scoring point and write it with its provenance to the method's tuned profile file."""
    best = best_point(scored)
    if best is None:
        raise UserError(f"no grid point of {entry.name} finished all its cells with a validation score; see the failed cells above")
    chosen = points[best]
    options = base.cell_options
    published = entry.load().Hparams()
    provenance = {
        "tool": f"cmh-bench tune ({__version__}, git {git_revision()})",
        "command": command,
        "rule": "the grid point with the highest mean, over its cells, of the noisy-validation MAP at the epoch selected "
                "by rule val; no test query and no clean label is read",
        "grid": {"lr_factors": tried_factors(entry, points),
                 "extension": f"beyond an edge winner, one more factor of {EXTENSION_STEP:g}, at most {MAX_EXTENSIONS} times",
                 "published": {k: getattr(published, k) for k in chosen if k != "epochs"},
                 "epochs": sorted({p["epochs"] for p in points})},
        "cells": {"datasets": list(base.datasets), "noise": list(base.noise), "rates": list(base.rates),
                  "bits": list(base.bits), "seeds": list(base.seeds), "val_fraction": options.get("val_fraction"),
                  "val_every": options.get("val_every"), "clean_meta": options.get("clean_meta")},
        "scores": [{"values": point, **score} for point, score in zip(points, scored)],
    }
    profile = options.get("profile", "quick")
    path = profile_path(entry, profile)
    document = {"method": entry.name, "profile": profile, "values": dict(chosen), "provenance": provenance}
    write_text_atomic(path, yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120))
    return path
