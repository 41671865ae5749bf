"""The leaderboard as a static website: Jinja2 templates (package data) filled from the records' frame.

``render_with_site(results_dir, out_dir)`` renders the markdown leaderboard (``cmh_bench.report``) and
the site into ``out_dir/site``; ``render_site(frame, out, site_dir)`` writes the site alone, each atomically and deterministically (same records ->
byte-identical files: no timestamps, everything sorted):

- ``index.html``: per profile and table (dataset, noise model), the robustness summary
  (:mod:`cmh_bench.robustness`), rows in rank order, linking to the table and method pages;
- ``tables/<table slug>.html``: the table's robustness rows; one sortable table per selection rule
  (rows: entries, columns: noise rate · code length, mean ± std of the test MAP at that rule's epoch;
  a switch shows one rule at a time, the flagged rules marked optimistic); the table's plots (the PNGs
  of the markdown leaderboard, ``../../plots/``); each cell's provenance (seeds, records, the
  regenerating command, versions, git revision, device) in a ``<details>`` per row;
- ``methods/<method>.html``: paper, role, the registry's summary, variant and the deviations paragraph
  of the class docstring (for a name this cmh-bench registers), profiles with their hyper-parameters,
  and every cell of the method;
- ``static/``: the stylesheet and the sort/switch script (hand-written, no network at view time).

HTML files of earlier renders that no longer have data are removed.
"""

from __future__ import annotations

import inspect
import json
import re
from importlib import resources
from pathlib import Path

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from cmh_bench import robustness
from cmh_bench.atomic import write_text_atomic
from cmh_bench.cell import RANKABLE_SELECTIONS, SELECTIONS
from cmh_bench.errors import UserError
from cmh_bench.report import (GROUP_LABELS, GROUPS, ROBUSTNESS_NOTE, Output, Shown, build_table, dataset_name,
                              distinct_values, drop_text, format_cell, format_number, mean_std, percent, rank_kept_text,
                              table_slug, tau_text, write_leaderboard)
from cmh_bench.results import TABLE_KEYS, aggregate, load, ranking_rule, row_group, run_commands

SITE_DIR = "site"  # the site's folder inside the leaderboard
PAGE_KEYS = ["profile", "precision", "dataset", "split", "noise"]  # one table page per value
TEXT = {"pm": " ± ", "bold": "{}", "tied": " ≈", "dagger": "†", "missing": "—"}  # cell text; bold is a CSS class
STATIC_FILES = ("style.css", "leaderboard.js")
VERSION_KEYS = ("cmh_bench", "python", "torch", "numpy")
RULE_NOTES = {
    "val": "best epoch on the noisy validation part (the practitioner's protocol)",
    "final": "the last epoch",
    "val-clean": "best epoch on clean validation labels: optimistic, never ranked",
    "best-on-test": "best epoch on the test queries (the authors' protocol): optimistic, never ranked",
}


def render_with_site(results_dir: Path, out_dir: Path, reported: pd.DataFrame | None = None,
                     rank_by: str = "val") -> list[Path]:
    """``cmh_bench.report.render_report`` (same arguments) plus the site in ``out_dir/site``; the files written."""
    frame = load(results_dir, rank_by)
    written, out = write_leaderboard(frame, out_dir, reported)
    return written + render_site(frame, out, Path(out_dir) / SITE_DIR)


def render_site(frame: pd.DataFrame, out: Output, site_dir: Path) -> list[Path]:
    """Write the site of a ``cmh_bench.results.load`` frame into ``site_dir``; return the files written.

    ``out``: the markdown render's plots (``Output.table_plots``), which the table pages show from
    ``<site_dir>/../plots``."""
    site_dir = Path(site_dir)
    environment = jinja2.Environment(loader=jinja2.PackageLoader("cmh_bench", "templates"), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["strong"] = strong
    summary = robustness.summary(frame)
    pages = {"index.html": environment.get_template("index.html").render(_index(frame, summary), root="")}
    for key, records in frame.groupby(PAGE_KEYS, sort=True):
        slug = table_slug(*key)
        context = _table_page(key, records, summary, [(f"../../{p}", out.alts[p]) for p in out.table_plots.get(slug, [])])
        pages[f"tables/{slug}.html"] = environment.get_template("table.html").render(context, root="../")
    for method, records in frame.groupby("method", sort=True):
        pages[f"methods/{method}.html"] = environment.get_template("method.html").render(_method_page(method, records),
                                                                                         root="../")
    static = resources.files("cmh_bench") / "static"
    pages.update({f"static/{name}": (static / name).read_text(encoding="utf-8") for name in STATIC_FILES})
    written = []
    for relative, text in pages.items():
        write_text_atomic(site_dir / relative, text)
        written.append(site_dir / relative)
    for stale in sorted(set(site_dir.glob("*/*.html")) - set(written)):
        stale.unlink()
    return written


def strong(text: str) -> markupsafe.Markup:
    """``text`` HTML-escaped, with markdown's **bold** spans as <strong>.

    >>> strong("the **area** < 1")
    Markup('the <strong>area</strong> &lt; 1')
    """
    return markupsafe.Markup(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", str(markupsafe.escape(text))))


def page_of(profile: str, precision: str, dataset: str, split: str, noise: str) -> str:
    """The path of a table's page relative to the site root."""
    return f"tables/{table_slug(profile, precision, dataset, split, noise)}.html"


# ---------------------------------------------------------------- the overview


def _index(frame: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The overview: per profile, its tables with their robustness rows in rank order, and the method pages."""
    profiles = []
    for profile, part in frame.groupby("profile", sort=True):
        tables = []
        for key, records in part.groupby(PAGE_KEYS, sort=True):
            tables.append({"title": _title(*key), "href": page_of(*key),
                           "robustness": _robustness_rows(_summary_rows(summary, key, records), root=""),
                           "records": len(records), "failed": int((records.status == "failed").sum())})
        profiles.append({"name": profile, "tables": tables})
    failed = int((frame.status == "failed").sum())
    return {"title": "cmh-bench leaderboard", "profiles": profiles, "note": ROBUSTNESS_NOTE,
            "records": len(frame), "failed": failed, "ranking_rule": ranking_rule(frame),
            "methods": [{"name": m, "href": f"methods/{m}.html", "role": part.role.iloc[0]}
                        for m, part in frame.groupby("method", sort=True)]}


def _robustness_rows(rows: pd.DataFrame, root: str) -> list[dict]:
    """Robustness rows as template values (text already formatted; numbers kept for sorting)."""
    return [{"group": GROUP_LABELS[r.group], "rank": int(r.rank), "entry": r.entry, "method_href": f"{root}methods/{_method_of(r.entry)}.html",
             "area": mean_std(r.area, r.area_std), "area_value": round(float(r.area), 6),
             "drop": drop_text(r), "drop_value": round(float(r.drop), 6) if r.clean_reference else "",
             "seeds": int(r.n_seeds), "rank_kept": rank_kept_text(r), "tau": tau_text(r.kendall_tau),
             "rates": " / ".join(percent(rate) for rate in r.rates), "bits": " / ".join(map(str, r.bits))}
            for r in rows.itertuples()]


def _summary_rows(summary: pd.DataFrame, key: tuple, records: pd.DataFrame) -> pd.DataFrame:
    """The robustness rows of one page (``PAGE_KEYS`` value ``key``): its table's rows of the page's entries."""
    page = dict(zip(PAGE_KEYS, key))
    same_table = np.logical_and.reduce([summary[name] == page[name] for name in TABLE_KEYS])
    return summary[same_table & summary.entry.isin(records.entry)]


def _method_of(entry: str) -> str:
    """The method name of an entry (the method folder without its "+…" options)."""
    return entry.split("+", 1)[0]


def _title(profile: str, precision: str, dataset: str, split: str, noise: str) -> str:
    """A table's title: dataset · noise (profile[, precision])."""
    return f"{dataset_name(dataset, split)} · {noise} ({profile}{'' if precision == 'fp32' else ', ' + precision})"


# ---------------------------------------------------------------- a table page


def _table_page(key: tuple, records: pd.DataFrame, summary: pd.DataFrame, plots: list[tuple[str, str]]) -> dict:
    """One (profile, precision, dataset, noise) page: robustness rows, one table per rule, plots, provenance."""
    rows = _summary_rows(summary, key, records)
    ok = records[records.status == "ok"]
    rules = [rule for rule in SELECTIONS if ok[f"map@{rule}"].notna().any()]
    shown = ranking_rule(records) if ranking_rule(records) in rules else (rules[0] if rules else None)
    return {"title": _title(*key), "robustness": _robustness_rows(rows, root="../"), "note": ROBUSTNESS_NOTE,
            "rules": [_rule_table(records, rule, rule == shown) for rule in rules],
            "plots": [{"src": src, "alt": alt} for src, alt in plots],
            "provenance": _provenance(records)}


def _rule_table(records: pd.DataFrame, rule: str, shown: bool) -> dict:
    """The table of one selection rule: entries × (rate, bits) of the test MAP at the rule's epoch (``build_table``:
    bold best and ≈ ties among the ranked groups for a rankable rule; none for a flagged one)."""
    meta = records.groupby("entry")[["role", "labels_used"]].first()
    meta["selection"] = rule
    meta["group"] = [row_group(role, labels, rule) for role, labels in zip(meta.role, meta.labels_used)]
    table = build_table(rule, "Test MAP (mean of I2T and T2I, tie-aware MAP@all)",
                        aggregate(records, f"map@{rule}").droplevel(TABLE_KEYS), meta, rank=rule in RANKABLE_SELECTIONS)
    rows = [{"group": GROUPS[group] or "ranked", "entry": label, "method_href": f"../methods/{_method_of(label)}.html",
             "cells": [_cell(c) for c in cells]}
            for group, label, cells in table.rows]
    flagged = rule not in RANKABLE_SELECTIONS
    return {"name": rule, "label": rule + (" † (optimistic)" if flagged else ""), "note": RULE_NOTES[rule],
            "flagged": flagged, "shown": shown, "caption": table.caption, "columns": table.columns, "rows": rows,
            "notes": table.notes}


def _cell(cell: Shown) -> dict:
    """A table cell: its text, its sort value ("" when it has none) and its marks."""
    return {"text": format_cell(cell, TEXT), "value": round(float(cell.mean), 6) if cell.kind == "value" else "",
            "best": cell.best, "tied": cell.tied}


def _provenance(records: pd.DataFrame) -> list[dict]:
    """Per entry, per (rate, bits) cell: seeds, statuses, record paths, the command that regenerates it,
    versions, git revisions and devices."""
    entries = []
    for entry, part in records.groupby("entry", sort=True):
        cells = []
        for (rate, bits), cell in part.groupby(["rate", "bits"], sort=True):
            ok = cell[cell.status == "ok"]
            cells.append({
                "cell": f"{percent(rate)} · {bits} bit", "seeds": ", ".join(str(s) for s in sorted(cell.seed)),
                "status": ", ".join(f"seed {r.seed}: {r.status}" + (f" ({r.error})" if r.status == "failed" else "")
                                    for r in cell.sort_values("seed").itertuples()),
                "records": sorted(cell.path), "command": run_commands(cell.profile.iloc[0], cell)[0],
                "versions": "; ".join(f"{key} {distinct_values(ok[key])}" for key in VERSION_KEYS),
                "git": distinct_values(ok.git_revision), "device": distinct_values(ok.device),
                "threads": distinct_values(ok.torch_threads),
                "noise_seeds": ", ".join(str(int(s)) for s in sorted(cell.noise_seed.dropna().unique())) or "as the seeds",
            })
        entries.append({"entry": entry, "cells": cells})
    return entries


# ---------------------------------------------------------------- a method page


def _method_page(method: str, records: pd.DataFrame) -> dict:
    """One method: paper, role, registry summary, variant and deviations, profiles, and every cell."""
    registered = _registered(method)
    papers = sorted({p for p in records.paper.dropna()})
    profiles = [{"name": profile, "versions": ", ".join(sorted({str(v) for v in part.method_version.dropna()})),
                 "hparams": json.dumps(_first(part.method_hparams), sort_keys=True) if part.method_hparams.notna().any() else "unknown",
                 "records": len(part)}
                for profile, part in records.groupby("profile", sort=True)]
    cells = [{"table": _title(*key), "href": f"../{page_of(*key)}", "entry": r.entry, "rate": percent(r.rate),
              "rate_value": float(r.rate), "bits": int(r.bits), "seed": int(r.seed), "status": r.status,
              "maps": [format_number(r[f"map@{rule}"]) if pd.notna(r[f"map@{rule}"]) else "—" for rule in SELECTIONS],
              "values": [round(float(r[f"map@{rule}"]), 6) if pd.notna(r[f"map@{rule}"]) else "" for rule in SELECTIONS]}
             for key, part in records.groupby(PAGE_KEYS, sort=True) for _, r in part.sort_values(["entry", "rate", "bits", "seed"]).iterrows()]
    return {"title": method, "papers": papers or ["unknown"], "role": records.role.iloc[0], **registered,
            "profiles": profiles, "rules": [rule + ("" if rule in RANKABLE_SELECTIONS else " †") for rule in SELECTIONS],
            "cells": cells}


def _first(values: pd.Series) -> dict:
    """The first non-missing value of a column of dicts."""
    return values.dropna().iloc[0]


def _registered(method: str) -> dict:
    """What this cmh-bench's registry says of ``method``: summary, variant overrides and the class docstring's
    "Deviations" paragraph (empty strings for a name it does not register, e.g. a removed plugin)."""
    from cmh_bench.registry import get_method

    try:
        entry = get_method(method)
    except UserError:
        return {"registered": False, "summary": "", "variant": "", "deviations": ""}
    return {"registered": True, "summary": entry.summary, "variant": json.dumps(entry.variant, sort_keys=True) if entry.variant else "",
            "deviations": deviations(inspect.getdoc(entry.load()) or "")}


def deviations(docstring: str) -> str:
    """The paragraph of ``docstring`` that starts with "Deviations" and the bullet paragraphs after it; "" if none.

    >>> deviations("A method.\\n\\nDeviations from the paper:\\n\\n- one\\n  more\\n- two\\n\\nCodes: sign.")
    'Deviations from the paper:\\n\\n- one\\n  more\\n- two'
    """
    paragraphs = docstring.split("\n\n")
    start = next((i for i, p in enumerate(paragraphs) if p.lstrip().startswith("Deviations")), None)
    if start is None:
        return ""
    end = start + 1
    while end < len(paragraphs) and paragraphs[end].lstrip().startswith("- "):
        end += 1
    return "\n\n".join(paragraphs[start:end]).strip()
