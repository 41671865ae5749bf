"""Published reference numbers (MAP reported in papers), stored as data under ``datasets/reported/``.

One YAML file per paper: ``method``, ``source`` (paper, authors, venue, doi), ``protocol`` (split,
noise, metric, model selection), ``bits`` and a ``table`` of rows ``{dataset, rate, map: [one per
bits]}``; the noise model is ``protocol.noise``. A paper that prints rows of several methods (e.g.
NACD's table) gives each row its own ``method`` instead of the top-level one. Reports show them beside measured results, never
ranked with them: the papers' protocols differ from the benchmark's (see ``protocol``).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd
import yaml

from cmh_bench.errors import UserError

COLUMNS = ["method", "dataset", "noise", "rate", "bits", "map", "source", "protocol"]


def reported_numbers() -> pd.DataFrame:
    """Every published number as a long frame with columns method, dataset, noise, rate, bits, map, source, protocol."""
    folder = resources.files("cmh_bench.datasets") / "reported"
    rows = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            rows += _rows(entry.name, yaml.safe_load(entry.read_text()))
    return pd.DataFrame(rows, columns=COLUMNS)


def _rows(name: str, doc: dict) -> list[dict]:
    """The rows of one reported-numbers file; a malformed file raises UserError naming it."""
    try:
        source = f"{doc['source']['paper']}, {doc['source']['venue']}, doi {doc['source']['doi']}"
        protocol = "; ".join(f"{k}: {v}" for k, v in doc["protocol"].items())
        rows = []
        for row in doc["table"]:
            if len(row["map"]) != len(doc["bits"]):
                raise ValueError(f"{row['dataset']} rate {row['rate']}: {len(row['map'])} values for {len(doc['bits'])} bit lengths")
            rows += [
                {"method": row.get("method") or doc["method"], "dataset": row["dataset"], "noise": doc["protocol"]["noise"],
                 "rate": float(row["rate"]), "bits": int(bits), "map": float(value),
                 "source": source, "protocol": protocol}
                for bits, value in zip(doc["bits"], row["map"])
            ]
        return rows
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"reported numbers {name}: malformed ({error!r}); see cmh_bench/reported.py for the format") from None
