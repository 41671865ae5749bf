"""Tuned profile files: hyper-parameter values chosen by ``cmh-bench tune``, with their provenance.

A method's tuned file for a profile lives beside the module that defines the method class:

    <folder of the method's module>/profiles/<profile>/<method name>.yaml

(built-ins: ``methods/profiles/quick/scbch.yaml``; a plugin file ``my/method.py``:
``my/profiles/quick/<name>.yaml``), so a plugin author's tuned values travel with their code. Its keys:
``method``, ``profile``, ``values`` (hyper-parameter -> value) and ``provenance`` (grid, datasets,
seeds, the validation scores of every grid point; see cmh_bench.tune). ``--profile quick`` reads it:
the values apply after the class's ``quick`` overrides and before the dataset card, the registered
variant and the user's ``--hp`` overrides. A file that does not parse raises UserError before any
cell runs.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict
from pathlib import Path

import yaml

from cmh_bench.cards import find_card
from cmh_bench.errors import UserError
from cmh_bench.method import resolve_hparams


def profile_path(entry, profile: str) -> Path:
    """Where the tuned file of registered method ``entry`` for ``profile`` lives (it may not exist)."""
    module = importlib.import_module(entry.target.partition(":")[0])
    return Path(module.__file__).resolve().parent / "profiles" / profile / f"{entry.name}.yaml"


def read_profile_file(path: Path) -> dict:
    """The parsed tuned file at ``path``: a mapping with ``values`` (a mapping); anything else raises UserError."""
    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"profile file {path} does not parse ({first}); fix it or regenerate it with `cmh-bench tune`") from None
    if not isinstance(content, dict) or not isinstance(content.get("values"), dict):
        raise UserError(f"profile file {path} has no mapping 'values'; regenerate it with `cmh-bench tune`")
    return content


def tuned_values(entry, profile: str) -> dict:
    """The tuned hyper-parameter values of ``entry`` for ``profile``; empty without a tuned file."""
    path = profile_path(entry, profile)
    return dict(read_profile_file(path)["values"]) if path.is_file() else {}


def hparams_for(entry, profile: str, card_overrides: dict, user_overrides: dict):
    """The hyper-parameters of one cell: published defaults, the profile's class overrides, the tuned
    file, the dataset card, the registered variant, then the user's overrides (``resolve_hparams``)."""
    return resolve_hparams(entry.load(), profile, tuned_values(entry, profile), card_overrides, entry.variant, user_overrides)


def cell_hparams(cell):
    """The hyper-parameters a cell trains with (``hparams_for`` with its dataset card's overrides for the
    method's family); None for a method without hyper-parameters."""
    from cmh_bench.registry import get_method

    entry = get_method(cell.method)
    return hparams_for(entry, cell.profile, card_overrides(cell.dataset, entry.load().family), dict(cell.hparams))


def recorded_hparams(hp) -> dict:
    """The hyper-parameters as a record stores them: the dataclass as a dict ({} for a method without any)."""
    return asdict(hp) if hp is not None else {}


def card_overrides(dataset: str, family: str) -> dict:
    """The hyper-parameter overrides the dataset's card sets for a method family (none without a card or family)."""
    card = find_card(dataset)
    return card.overrides_for(family) if card is not None and family else {}
