"""Dataset cards: one YAML file per dataset under datasets/ (installed as ``cmh_bench.datasets``).

A card states what a dataset is (title, classes, sizes, feature kinds), how to get it (generator
parameters for synthetic stand-ins; importer files for real sets) and per-dataset method
hyper-parameters (``method_overrides``), and optionally the share of training items held out for
validation (``validation_fraction``; default cmh_bench.splits.DEFAULT_VALIDATION_FRACTION).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from cmh_bench.errors import UserError


@dataclass(frozen=True)
class Card:
    """The parsed contents of one dataset card."""

    name: str
    title: str
    kind: str  # "synthetic" or "real"
    classes: int
    description: str
    mirrors: str | None = None
    sizes: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    generator: dict = field(default_factory=dict)
    split_presets: tuple[str, ...] = ()
    default_split: str = "default"
    validation_fraction: float | None = None  # share of training items held out for validation (None: 0.1)
    method_overrides: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # kind-specific keys (e.g. the importer's files)

    def overrides_for(self, method_family: str) -> dict:
        """Hyper-parameter overrides this dataset sets for one method family (may be empty)."""
        return dict(self.method_overrides.get(method_family, {}))


_KNOWN = {f for f in Card.__dataclass_fields__ if f != "extra"}


@cache
def all_cards() -> dict[str, Card]:
    """Every card shipped with the package, by name, in name order."""
    cards = {}
    for entry in sorted(resources.files("cmh_bench.datasets").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            raw = yaml.safe_load(entry.read_text())
            known = {k: v for k, v in raw.items() if k in _KNOWN}
            known["split_presets"] = tuple(known.get("split_presets", ()))
            card = Card(**known, extra={k: v for k, v in raw.items() if k not in _KNOWN})
            cards[card.name] = card
    return cards


def get_card(name: str) -> Card:
    """The card called ``name``; an unknown name raises UserError suggesting the closest ones."""
    cards = all_cards()
    if name not in cards:
        close = difflib.get_close_matches(name, cards, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(cards)}"
        raise UserError(f"unknown dataset {name!r}; {hint}")
    return cards[name]


def find_card(name: str) -> Card | None:
    """The card called ``name``, or None for a dataset without a card (e.g. a user's own file)."""
    return all_cards().get(name)
