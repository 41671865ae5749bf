"""The leaderboard: result records -> long frame -> pivot tables -> markdown (tabulate), CSV, LaTeX and PNG plots.

``render_report(results_dir, out_dir)`` reads the records under ``results_dir`` and nothing else,
except the published numbers of :mod:`cmh_bench.reported` (unranked "reported" rows). It writes
``README.md``, ``leaderboard.csv``, ``leaderboard.tex`` and ``plots/*.png`` into ``out_dir``, each
atomically and deterministically: no timestamps, no absolute paths, everything sorted, so a committed
leaderboard can be checked by rendering it again. ``load_records`` gives the long frame on its own.

The rules (also stated in the rendered protocol):

- one table per (profile, dataset[@split], noise model): rows are the method folders of the record
  paths ("entries": method, plus "+hp-…" for overrides, "+val-…" / "+every-…" for validation options),
  columns noise rate × bits;
- a cell is the mean ± sample std (ddof 1) over seeds of the record's tie-aware MAP@all at the epoch of
  the ranking rule (``ranking_rule``): ``val`` (best epoch on the noisy validation part) when every
  successful record has it, else ``final`` (records of schema 1 predate the validation part), stated
  at the top of the page;
- "ranked" rows are role "method", trained on noisy labels, selected by a rule that sees no clean label
  and no test query. The best
  mean per column is bold; a ranked row is marked tied (≈) when a one-sided Welch t-test does not
  find it below the bold one at 5 % (at least 2 seeds on each side);
- ranked rows come first, ordered by mean rank over the table's columns, then the label-free rows
  (role "label-free"), ranked the same way among themselves, then the unranked groups
  (best-on-test selection, reported numbers, reference rows, upper bounds) under their own headings;
- per (dataset, noise) a selection table shows every rule's MAP side by side (final, val, and the
  flagged val-clean and best-on-test) with its inflation over ``val``, and the training curves mark the
  epoch each rule picked.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from tabulate import tabulate

from cmh_bench import plots
from cmh_bench.atomic import write_text_atomic
from cmh_bench.cell import DEFAULT_VAL_EVERY, RANKABLE_SELECTIONS, SELECTIONS
from cmh_bench.reported import reported_numbers
from cmh_bench.errors import UserError
from cmh_bench.record import read_record

TABLE_KEYS = ["profile", "dataset", "split", "noise"]
CELL_COLUMNS = ("rate", "bits")
METRICS = {  # frame column -> what its table shows
    "map": "Mean of I2T and T2I MAP (tie-aware MAP@all)",
    "map_i2t": "I2T MAP (image queries against text codes)",
    "map_t2i": "T2I MAP (text queries against image codes)",
}
GROUPS = {  # row group -> heading row inside a table (None: no heading); the order is the display order
    "ranked": None,
    "label-free": "label-free (no labels read), ranked among themselves",
    "optimistic": "selected on the test queries (†), not ranked",
    "reported": "reported by the authors under their protocol, not ranked",
    "reference": "reference rows, not ranked",
    "upper-bound": "upper bounds (clean labels), never ranked",
}
GROUP_ORDER = {group: i for i, group in enumerate(GROUPS)}
RANKED_GROUPS = ("ranked", "label-free")  # groups whose rows are ranked, each among its own rows
LABEL_FREE_NOTE = ("**Label-free rows** (role label-free: UCCH, DJSRH, DGCPN): the harness hands these methods no "
                   "labels, so their MAP does not depend on the noise model or rate; they follow the ranked rows under "
                   "their own heading and are ranked the same way among themselves (their own bold and ≈), never "
                   "with the noisy-label methods.")
ALPHA = 0.05
MIN_SEEDS_FOR_TEST = 2
CONSTANT_SPREAD = 1e-12  # per-seed values closer than this are one constant (float noise of a mean)
PROFILES = {
    "paper": "the published hyper-parameters (network widths, epochs, batch sizes), meant for a GPU",
    "quick": "reduced widths and epochs, for CPU runs and CI",
}
ENVIRONMENT_KEYS = ("device", "device_name", "cpu", "torch_threads", "platform", "git_revision", "cmh_bench",
                    "python", "torch", "numpy")
REPORTED_COLUMNS = ["method", "dataset", "noise", "rate", "bits", "map", "source", "protocol"]
DAGGER_NOTE = "† optimistic: model selected on the test queries (best epoch, the authors' protocol)."
MARKDOWN = {"pm": " ± ", "bold": "**{}**", "tied": " ≈", "dagger": "†", "missing": "—"}
LATEX = {"pm": r" $\pm$ ", "bold": r"\textbf{{{}}}", "tied": r" $\approx$", "dagger": r"$^\dagger$", "missing": "--"}
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "·": r"$\cdot$", "†": r"$^\dagger$",
    "≈": r"$\approx$", "—": "---", "×": r"$\times$",
}


# ---------------------------------------------------------------- records -> long frame


def load_records(results_dir: Path, rank_by: str = "val") -> pd.DataFrame:
    """One row per result record under ``results_dir`` (the files ``**/seed*.json``), sorted by path.

    Columns: ``path`` (relative to ``results_dir``); the cell: profile, dataset, split ("" = the file's
    default preset), noise, rate, bits, method, entry (the method folder of the path: the method plus
    "+hp-…" / "+val-…"), hparams (dict), seed, noise_seed, method_version, val_fraction, val_every; status;
    role and labels_used (for failed records, which lack them: from the method's other records, else
    the registry); schema_version; per rule of ``SELECTIONS``, ``map@<rule>`` and ``epoch@<rule>`` (mean tie-aware MAP@all
    and the selected epoch; None where the record lacks the rule); lacks (rules without metrics);
    selection (the rule shown in the tables: ``ranking_rule`` of the frame, else the record's only rule),
    group (the table row group, see ``GROUPS``); map, map_i2t, map_t2i (tie-aware MAP@all of the shown
    rule: mean of the directions, I2T, T2I); weight_auc, entry_auc; train_seconds, total_seconds;
    noise_version, noise_file (the given noise file, "" for none); split_preset, sizes, dataset_sha256;
    the environment (``ENVIRONMENT_KEYS``);
    error ("Type: message" of failed records); and the raw epochs (list of dicts) and
    noise_detection (dict or None). ``rank_by``: the rule asked for (``val`` or ``final``; ``ranking_rule``
    gives the one in force). A file that is not a readable result record, or another rule, raises UserError.
    """
    if rank_by not in RANKABLE_SELECTIONS:
        raise UserError(f"cannot rank by {rank_by!r}: rank by {' or '.join(RANKABLE_SELECTIONS)} "
                        f"({', '.join(r for r in SELECTIONS if r not in RANKABLE_SELECTIONS)} read clean labels or the test queries and are never ranked)")
    results_dir = Path(results_dir)
    paths = sorted(results_dir.rglob("seed*.json"))
    if not paths:
        raise UserError(f"no result records under {results_dir}; run `cmh-bench run` first")
    records = [read_record(path) for path in paths]
    frame = pd.DataFrame([_record_row(path.relative_to(results_dir), record) for path, record in zip(paths, records)])
    _fill_roles(frame)
    every_record_has_val = frame[frame.status == "ok"]["map@val"].notna().all()
    frame.attrs["rank_by"] = rank_by
    frame.attrs["ranking_rule"] = rule = "val" if rank_by == "val" and every_record_has_val else "final"
    shown = [rule if rule not in lacks else next((r for r in SELECTIONS if r not in lacks), rule) for lacks in frame.lacks]
    frame["selection"] = shown
    for column, key in (("map", "mean"), ("map_i2t", "i2t"), ("map_t2i", "t2i")):
        frame[column] = [_selected_map(record, selection, key) for record, selection in zip(records, shown)]
    frame["group"] = [_group(*row) for row in zip(frame.role, frame.labels_used, frame.selection)]
    return frame


def ranking_rule(frame: pd.DataFrame) -> str:
    """The rule the tables of a ``load_records`` frame rank by: ``val`` when asked and every successful record
    has it, else ``final``."""
    return frame.attrs["ranking_rule"]


def _selected_map(record: dict, rule: str, direction: str) -> float | None:
    """The record's tie-aware MAP@all of one direction (or "mean") at the epoch of ``rule``; None if it lacks it."""
    selected = record.get("selections", {}).get(rule)
    return None if selected is None else selected["metrics"].get(direction, {}).get("map")


def _record_row(path: Path, record: dict) -> dict:
    """The frame row of one record (see ``load_records``); missing optional parts become None."""
    cell = record["cell"]
    method = record.get("method", {})
    selections = record.get("selections", {})
    detection = record.get("noise_detection")
    dataset = record.get("dataset", {})
    environment = record.get("environment", {})
    error = record.get("error")
    return {
        "path": path.as_posix(),
        "profile": cell["profile"], "dataset": cell["dataset"], "split": cell.get("split") or "", "noise": cell["noise"],
        "rate": float(cell["rate"]), "bits": int(cell["bits"]), "method": cell["method"], "entry": path.parent.name,
        "hparams": cell.get("hparams") or {}, "seed": int(cell["seed"]),
        "noise_seed": cell.get("noise_seed"), "method_version": cell.get("method_version"),
        "val_fraction": cell.get("val_fraction"), "val_every": cell.get("val_every"),
        "precision": cell.get("precision", "fp32"),
        "status": record["status"], "schema_version": record.get("schema_version"),
        "role": method.get("role"), "labels_used": method.get("labels_used"),
        **{f"map@{rule}": _selected_map(record, rule, "mean") for rule in SELECTIONS},
        **{f"epoch@{rule}": selections.get(rule, {}).get("epoch") for rule in SELECTIONS},
        "lacks": tuple(record.get("lacks", ())) if record["status"] == "ok" else (),
        "weight_auc": (detection or {}).get("weight_auc"), "entry_auc": (detection or {}).get("entry_auc"),
        "train_seconds": record.get("seconds", {}).get("train"), "total_seconds": record.get("seconds", {}).get("total"),
        "noise_version": record.get("noise", {}).get("version"), "noise_file": record.get("noise", {}).get("file") or "",
        "split_preset": dataset.get("split"), "sizes": dataset.get("sizes"), "dataset_sha256": dataset.get("sha256"),
        **{key: environment.get(key) for key in ENVIRONMENT_KEYS},
        "error": f"{error['type']}: {error['message']}" if error else None,
        "epochs": record.get("epochs") or [],
        "noise_detection": detection,
    }


def _fill_roles(frame: pd.DataFrame) -> None:
    """Give failed records (which carry no method block) the role and labels of their method's other records,
    or the registry's role when the method has no successful record."""
    known = frame.dropna(subset=["role"]).groupby("method")[["role", "labels_used"]].first()
    missing = frame.role.isna()
    names = frame.loc[missing, "method"]
    frame.loc[missing, "labels_used"] = names.map(known.labels_used)
    frame.loc[missing, "role"] = [known.role.get(name) or _registered_role(name) for name in names]


def _registered_role(name: str) -> str:
    """The registry's role of method ``name``; "method" for a name it does not know (e.g. a removed plugin)."""
    from cmh_bench.registry import get_method

    try:
        return get_method(name).role
    except UserError:
        return "method"


def _group(role: str, labels_used: str | None, selection: str) -> str:
    """The row group of a record: upper bounds and reference rows by role, then optimistic selections, then ranked."""
    if role == "upper-bound" or labels_used == "clean":
        return "upper-bound"
    if role == "reference":
        return "reference"
    if selection not in RANKABLE_SELECTIONS:
        return "optimistic"
    return "label-free" if role == "label-free" else "ranked"


def aggregate(frame: pd.DataFrame, value: str, columns: tuple[str, ...] = CELL_COLUMNS) -> pd.DataFrame:
    """Per (table, entry, *columns): mean, std (ddof 1), n and samples (tuple) of ``value`` over the successful
    records that have it, and n_failed (failed records). Keys with only failed records have n = 0."""
    keys = [*TABLE_KEYS, "entry", *columns]
    ok = frame[(frame.status == "ok") & frame[value].notna()]
    grouped = ok.groupby(keys)[value]
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(), "n": grouped.count(), "samples": grouped.agg(tuple)})
    failed = frame[frame.status == "failed"].groupby(keys).size().rename("n_failed")
    stats = stats.join(failed, how="outer").fillna({"n": 0, "n_failed": 0})
    return stats.astype({"n": int, "n_failed": int})


# ---------------------------------------------------------------- tables


@dataclass(frozen=True)
class Shown:
    """One table cell before formatting: a mean ± std over ``n`` seeds, or a failed / missing cell."""

    kind: str  # "value", "failed" or "missing"
    mean: float = float("nan")
    std: float = float("nan")
    n: int = 0
    samples: tuple = ()
    optimistic: bool = False  # selected on the test queries
    best: bool = False
    tied: bool = False
    show_n: bool = False  # n differs from the table's usual number of seeds


@dataclass(frozen=True)
class Table:
    """A table ready to format: rows (group, label, cells) in display order, a caption and footnotes."""

    title: str
    caption: str
    columns: list[str]
    rows: list[tuple[str, str, list[Shown]]]
    notes: list[str]


def build_table(title: str, what: str, stats: pd.DataFrame, meta: pd.DataFrame, *, rank: bool = True,
                unit: str = "seed", reported: pd.DataFrame | None = None) -> Table:
    """The table of one (profile, dataset, noise): the one builder of the mean, I2T, T2I and weight-AUC tables.

    ``stats``: ``aggregate`` of that table, indexed by (entry, *column keys); ``meta``: group and
    selection per entry; ``unit``: what the samples of a cell are (a singular noun). ``rank``: bold the
    best ranked row per column, mark the rows tied with it, and order ranked rows by mean rank (else by
    name). ``reported``: published numbers matching the table (columns ``REPORTED_COLUMNS``), shown as
    unranked rows at the table's (rate, bits) columns. ``title`` names the table in the LaTeX export.
    """
    names = stats.index.names[1:]
    keys = sorted({index[1:] for index in stats.index})
    found = dict(zip(stats.index, stats.itertuples(index=False)))
    cells = {entry: [_shown(found.get((entry, *key)), meta.selection[entry] not in RANKABLE_SELECTIONS) for key in keys]
             for entry in stats.index.unique("entry")}
    ranks = {}
    for group in RANKED_GROUPS if rank else ():
        members = {entry: cells[entry] for entry in cells if meta.group[entry] == group}
        cells.update(_mark_best(members))
        ranks.update(_mean_ranks(members))
    counts = [c.n for row in cells.values() for c in row if c.kind == "value"]
    seeds = max(set(counts), key=lambda n: (counts.count(n), n), default=0)
    cells = {entry: [replace(c, show_n=c.kind == "value" and c.n != seeds) for c in row] for entry, row in cells.items()}
    order = sorted(cells, key=lambda entry: (GROUP_ORDER[meta.group[entry]], ranks.get(entry, 0.0), entry))
    rows = [(meta.group[entry], entry, cells[entry]) for entry in order]
    notes = [DAGGER_NOTE] if any(c.optimistic and c.kind == "value" for row in cells.values() for c in row) else []
    if reported is not None:
        reported_rows, sources = _reported_rows(reported, keys)
        rows, notes = sorted(rows + reported_rows, key=lambda row: GROUP_ORDER[row[0]]), notes + sources
    uneven = any(c.show_n for row in cells.values() for c in row)
    spread = f"mean ± std over {seeds} {unit}{'' if seeds == 1 else 's'}" if seeds else "no successful run"
    caption = (f"{what} at {' · '.join(_AXES[name][0] for name in names)}; {spread}"
               + ("; (n=k): a cell with k instead" if uneven else "") + ".")
    return Table(title, caption, [" · ".join(_AXES[n][1](v) for n, v in zip(names, key)) for key in keys], rows, notes)


def _shown(stats, optimistic: bool) -> Shown:
    """The cell of one ``aggregate`` row (None: no record at all -> missing; only failed records -> failed)."""
    if stats is None:
        return Shown("missing")
    if stats.n == 0:
        return Shown("failed")
    return Shown("value", stats.mean, stats.std, stats.n, stats.samples, optimistic)


def _mark_best(cells: dict[str, list[Shown]]) -> dict[str, list[Shown]]:
    """Per column, bold the highest mean and mark the rows tied with it (compared with the first best row by name)."""
    marked = {entry: list(row) for entry, row in cells.items()}
    for j in range(len(next(iter(cells.values()), []))):
        values = {entry: row[j] for entry, row in cells.items() if row[j].kind == "value"}
        if not values:
            continue
        top = max(c.mean for c in values.values())
        leader = next(c for c in values.values() if c.mean == top)
        for entry, c in values.items():
            marked[entry][j] = replace(c, best=c.mean == top, tied=c.mean != top and _tied(leader.samples, c.samples))
    return marked


def _tied(best: tuple, other: tuple) -> bool:
    """True if ``other`` is not significantly below ``best``: one-sided Welch t-test on the per-seed values, p ≥ ALPHA.

    Needs MIN_SEEDS_FOR_TEST values on each side; two constant samples (different means) are never tied.
    When one side is constant (spread ≤ CONSTANT_SPREAD, e.g. a method stuck at the floor), Welch's test
    reduces exactly to a one-sample t-test of the other side against that constant (its variance term
    is zero), which is what is computed then: scipy's two-sample moments lose all precision on such data.

    >>> _tied((0.70, 0.72, 0.74), (0.69, 0.71, 0.73))
    True
    >>> _tied((0.80, 0.81, 0.82), (0.60, 0.61, 0.62))
    False
    >>> _tied((0.70,), (0.69, 0.71))
    False
    >>> _tied((0.456, 0.456, 0.456), (0.40, 0.46, 0.50))
    True
    >>> _tied((0.456, 0.456, 0.456), (0.455, 0.455, 0.455))
    False
    """
    if min(len(best), len(other)) < MIN_SEEDS_FOR_TEST:
        return False
    best_constant, other_constant = np.ptp(best) <= CONSTANT_SPREAD, np.ptp(other) <= CONSTANT_SPREAD
    if best_constant and other_constant:
        return False
    if best_constant:
        test = scipy_stats.ttest_1samp(other, popmean=float(np.mean(best)), alternative="less")
    elif other_constant:
        test = scipy_stats.ttest_1samp(best, popmean=float(np.mean(other)), alternative="greater")
    else:
        test = scipy_stats.ttest_ind(best, other, equal_var=False, alternative="greater")
    return bool(test.pvalue >= ALPHA)


def _mean_ranks(cells: dict[str, list[Shown]]) -> dict[str, float]:
    """Each row's mean rank (1 = best, ties averaged) over the columns where it has a value; inf if none."""
    means = pd.DataFrame({entry: [c.mean if c.kind == "value" else np.nan for c in row] for entry, row in cells.items()})
    return means.rank(axis=1, ascending=False).mean(axis=0).fillna(np.inf).to_dict()


def _reported_rows(reported: pd.DataFrame, keys: list[tuple]) -> tuple[list, list[str]]:
    """Rows "<method> (reported) [k]" of the published numbers at the table's (rate, bits) columns, and their notes:
    one note [k] per (source, protocol), naming every method of that source shown in the table."""
    position = {(round(rate, 6), int(bits)): j for j, (rate, bits) in enumerate(keys)}
    rows, shown = [], {}  # shown: (source, protocol) -> methods, in note order
    for (method, source, protocol), part in reported.groupby(["method", "source", "protocol"], sort=True):
        values = {position[key]: value for key, value in zip(zip(part.rate.round(6), part.bits.astype(int)), part["map"])
                  if key in position}
        if values:
            methods = shown.setdefault((source, protocol), [])
            methods.append(method)
            k = list(shown).index((source, protocol)) + 1
            cells = [Shown("value", values[j]) if j in values else Shown("missing") for j in range(len(keys))]
            rows.append(("reported", f"{method} (reported) [{k}]", cells))
    notes = [f"[{k}] {', '.join(methods)} as published: {source}. Their protocol: {protocol}."
             for k, ((source, protocol), methods) in enumerate(shown.items(), start=1)]
    return rows, notes


# ---------------------------------------------------------------- formatting


def format_number(x: float) -> str:
    """Three decimals without the leading zero of a value below 1.

    >>> format_number(0.7421), format_number(0.0063), format_number(1.0)
    ('.742', '.006', '1.000')
    """
    text = f"{x:.3f}"
    return text[1:] if text.startswith("0.") else text


def format_cell(cell: Shown, markup: dict) -> str:
    """The text of one cell in ``MARKDOWN`` or ``LATEX`` markup.

    >>> format_cell(Shown("value", 0.7421, 0.0063, 3, best=True), MARKDOWN)
    '**.742 ± .006**'
    >>> format_cell(Shown("value", 0.7, 0.01, 2, optimistic=True, show_n=True, tied=True), MARKDOWN)
    '.700 ± .010† (n=2) ≈'
    """
    if cell.kind != "value":
        return markup["missing"] if cell.kind == "missing" else "failed"
    text = format_number(cell.mean) + (markup["pm"] + format_number(cell.std) if cell.n >= 2 else "")
    if cell.best:
        text = markup["bold"].format(text)
    return (text + (markup["dagger"] if cell.optimistic else "") + (f" (n={cell.n})" if cell.show_n else "")
            + (markup["tied"] if cell.tied else ""))


def _sections(table: Table) -> list[tuple[str | None, list[tuple[str, list[Shown]]]]]:
    """The table's rows split by group: (heading or None, [(label, cells)]), in display order."""
    return [(GROUPS[group], [(label, cells) for _, label, cells in rows])
            for group, rows in itertools.groupby(table.rows, key=lambda row: row[0])]


def markdown_table(table: Table) -> str:
    """The table as markdown: caption, pipe table (group headings as italic rows), footnotes."""
    body = []
    for heading, rows in _sections(table):
        if heading:
            body.append([f"*{heading}*", *[""] * len(table.columns)])
        body += [[label, *(format_cell(c, MARKDOWN) for c in cells)] for label, cells in rows]
    text = tabulate(body, ["method", *table.columns], tablefmt="pipe", disable_numparse=True,
                    colalign=["left", *["right"] * len(table.columns)])
    return "\n\n".join([table.caption, text, *table.notes])


def latex_table(table: Table) -> str:
    """The table as a booktabs LaTeX table (same rows, marks and footnotes as the markdown)."""
    width = len(table.columns) + 1
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{_latex(table.title)}. {_latex(table.caption)}}}",
             rf"\begin{{tabular}}{{l{'r' * (width - 1)}}}", r"\toprule",
             " & ".join(_latex(c) for c in ["method", *table.columns]) + r" \\"]
    for heading, rows in _sections(table):
        lines.append(r"\midrule")
        if heading:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\emph{{{_latex(heading)}}}}} \\")
        lines += [" & ".join([_latex(label), *(format_cell(c, LATEX) for c in cells)]) + r" \\" for label, cells in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(_latex(note) for note in table.notes) + "}")
    return "\n".join([*lines, r"\end{table}"])


def _latex(text: str) -> str:
    """``text`` with LaTeX's special characters (and the report's symbols) escaped."""
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


def _percent(rate: float) -> str:
    """A noise rate as a percentage, e.g. 0.2 -> "20%"."""
    return f"{rate * 100:g}%"


_AXES = {  # column name -> (what the axis is, label of one value)
    "rate": ("noise rate", _percent),
    "bits": ("code length", lambda bits: f"{bits} bit"),
}


def _slug(*parts: str) -> str:
    """A file-name-safe name: the parts joined by "-", anything but letters, digits, ".", "_", "-" as "_"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


# ---------------------------------------------------------------- the report


@dataclass
class Output:
    """What rendering collects besides the markdown: the mean tables for the LaTeX export and the plots to draw."""

    latex: list[Table] = field(default_factory=list)
    plots: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # path relative to out_dir -> draw(path)

    def plot(self, name: str, alt: str, draw: Callable[[Path], None]) -> str:
        """Register the plot ``plots/<name>.png`` and return its markdown image link (a relative path)."""
        relative = f"plots/{name}.png"
        self.plots[relative] = draw
        return f"![{alt}]({relative})"


def render_report(results_dir: Path, out_dir: Path, reported: pd.DataFrame | None = None, rank_by: str = "val") -> list[Path]:
    """Render the leaderboard of the records under ``results_dir`` into ``out_dir``; return the files written.

    Writes ``plots/*.png`` (and removes PNGs of earlier renders that no longer have data),
    ``leaderboard.csv``, ``leaderboard.tex`` and ``README.md``, each atomically. ``reported``: the
    published numbers (columns ``REPORTED_COLUMNS``); None takes them from :mod:`cmh_bench.reported`.
    ``rank_by``: ``val`` (the default; ``final`` for records without it) or ``final``.
    """
    frame = load_records(results_dir, rank_by)
    published = reported_numbers() if reported is None else reported
    out = Output()
    markdown = render_markdown(frame, published, out)
    out_dir = Path(out_dir)
    written = []
    for relative, draw in out.plots.items():
        draw(out_dir / relative)
        written.append(out_dir / relative)
    for stale in sorted(set((out_dir / "plots").glob("*.png")) - set(written)):
        stale.unlink()
    texts = {"leaderboard.csv": summary_frame(frame).to_csv(index=False, float_format="%.6f", lineterminator="\n"),
             "leaderboard.tex": latex_document(out.latex), "README.md": markdown}
    for name, text in texts.items():
        write_text_atomic(out_dir / name, text)
        written.append(out_dir / name)
    return written


def render_markdown(frame: pd.DataFrame, published: pd.DataFrame, out: Output) -> str:
    """The README: header, protocol, then one section per profile and precision (its tables never mix either)."""
    parts = [_header(frame), _protocol(frame)]
    parts += [_profile_section(profile, precision, records, published, out)
              for (profile, precision), records in frame.groupby(["profile", "precision"], sort=True)]
    return "\n\n".join(parts) + "\n"


def _header(frame: pd.DataFrame) -> str:
    """Title and what the page was rendered from."""
    failed = int((frame.status == "failed").sum())
    return ("# cmh-bench leaderboard\n\n"
            f"Rendered by `cmh-bench report` from the result records alone: {len(frame)} records "
            f"({len(frame) - failed} ok, {failed} failed). Do not edit by hand: each profile section lists "
            "the commands that regenerate it.")


def _protocol(frame: pd.DataFrame) -> str:
    """The protocol block: metric, tie policy, selection, statistics, row order, profiles."""
    profiles = "; ".join(f"`{p}`: {PROFILES.get(p, 'a profile named by its records')}" for p in sorted(frame.profile.unique()))
    items = [
        f"**Profiles**: {profiles}. Each profile has its own section; no table mixes profiles.",
        "**Metric**: tie-aware MAP@all, the expected average precision over a uniformly random order inside each "
        "group of equal Hamming distance (McSherry & Najork, ECIR 2008), computed from per-query distance "
        "histograms. A database item is relevant when it shares a clean label with the query; queries without "
        "any relevant item are excluded from the mean. Main tables: the mean of the I2T and T2I MAP; per-direction "
        "tables are in the collapsed blocks.",
        "**Noise**: the training labels are corrupted by a named, versioned, seeded noise model (versions in each "
        "profile's setup); query and database labels are clean. Columns: noise rate · code length.",
        _selection_protocol(frame),
        "**Cells**: mean ± sample standard deviation (ddof 1) over seeds (training seed; the noise seed equals it "
        "unless a command sets `--noise-seed`). (n=k): a cell with another number of seeds than the table's usual "
        "one. failed: every run of the cell failed (see Failed cells). —: the row's method was not run in that cell.",
        f"**Best and ties**: among ranked rows, the highest mean per column is **bold**; ≈ marks a ranked row whose "
        f"per-seed values are not significantly below the bold row's (one-sided Welch t-test, p ≥ {ALPHA:g}), tested "
        f"only when both rows have at least {MIN_SEEDS_FOR_TEST} seeds in that column.",
        f"**Rows**: ranked methods first (role method, trained on noisy labels, rule `{ranking_rule(frame)}`), ordered by mean rank "
        "over the table's columns (ties by name); then, under their own headings and never ranked: rows selected on "
        "the test queries (†), numbers reported by the authors (their own protocol: best epoch on the test set, "
        "their split and noise draw), reference rows (floor, chance) and upper bounds (label oracle, methods "
        "trained on clean labels).",
    ]
    if (frame.group == "label-free").any():
        items.append(LABEL_FREE_NOTE)
    return "## Protocol\n\n" + "\n".join(f"- {item}" for item in items)


def _selection_protocol(frame: pd.DataFrame) -> str:
    """The protocol's model-selection item: the ranking rule, and what the records lack when it is not ``val``."""
    rules = ("`final` (the last epoch), and the flagged, optimistic `val-clean` (best epoch on clean validation "
             "labels, RSHNL's protocol) and `best-on-test` (best epoch on the test queries, the authors' protocol); "
             "the selection tables show every rule side by side with its inflation over `val`, and the training "
             "curves mark the epoch each rule picked. Cells marked † were selected on the test queries: "
             "optimistic, shown for comparison, never ranked.")
    if ranking_rule(frame) == "val":
        return ("**Model selection**: every record holds four rules from its one training run. The tables rank by "
                "`val`: the epoch with the best MAP on the validation part, a seeded share of the training items "
                "(10 % unless a card or `--val-fraction` says otherwise) held out of training, one half ranked "
                "against the other, with the cell's noisy labels on both sides; it reads no test query and no clean "
                "label. Also recorded: " + rules)
    ok = frame[frame.status == "ok"]
    lacking = ok[ok["map@val"].isna()]
    if lacking.empty:  # ranked by final on request
        return ("**Model selection**: the final training epoch, as asked (`cmh-bench report --rank-by final`). Every "
                "record also holds `val` (best epoch on the noisy validation part, the default ranking) and " + rules)
    old, without = int((lacking.schema_version == 1).sum()), int((lacking.schema_version != 1).sum())
    reasons = ([f"{old} predate the validation part (result schema 1: one rule per record, no `val`, no `val-clean`)"] if old else []) + (
        [f"{without} were run without one (`--val-fraction 0`: `val` is unavailable)"] if without else [])
    return (f"**Model selection**: the final training epoch. Of {len(ok)} successful records, {' and '.join(reasons)}, "
            "so the tables rank by `final`; run them with a validation part to rank by `val`. Cells marked † were "
            "selected at the best epoch on the test queries (the authors' protocol): optimistic, shown for comparison, "
            "never ranked.")


def _profile_section(profile: str, precision: str, records: pd.DataFrame, published: pd.DataFrame, out: Output) -> str:
    """The section of one profile at one precision: setup, one table section per (dataset, split, noise), failed cells."""
    parts = [f"## Profile `{profile}`" + ("" if precision == "fp32" else f" · {precision} autocast"), _setup(profile, records)]
    parts += [_table_section(part, published, out) for _, part in records.groupby(["dataset", "split", "noise"], sort=True)]
    failed = records[records.status == "failed"]
    if len(failed):
        parts.append(_failed_section(failed))
    return "\n\n".join(parts)


def _setup(profile: str, records: pd.DataFrame) -> str:
    """What the profile's records were run on: datasets, noise, selection, methods, hardware, software, commands."""
    ok = records[records.status == "ok"]
    failed = len(records) - len(ok)
    datasets = [
        f"{_dataset_name(dataset, split)} (split preset {_distinct(part.split_preset)}: {_sizes(part.sizes.iloc[0])}; "
        f"sha256 {_distinct(part.dataset_sha256.str[:12])})"
        for (dataset, split), part in ok.groupby(["dataset", "split"], sort=True)
    ]
    overrides = [f"{entry}: " + ", ".join(f"{k}={v}" for k, v in sorted(hparams.items()))
                 for entry, hparams in records.groupby("entry").hparams.first().items() if hparams]
    hardware = f"device {_distinct(ok.device)}; CPU {_distinct(ok.cpu)}; torch threads {_distinct(ok.torch_threads)}"
    if ok.device_name.notna().any():
        hardware += f"; GPU {_distinct(ok.device_name)}"
    lines = [
        f"Profile `{profile}`: {PROFILES.get(profile, 'a profile named by its records')}. "
        f"{len(records)} records: {len(ok)} ok, {failed} failed.",
        "",
        "- **Datasets**: " + "; ".join(datasets or ["none with a successful record"]),
        "- **Noise models**: " + ", ".join(f"{n} v{_distinct(p.noise_version)}" for n, p in ok.groupby("noise", sort=True)),
        "- **Model selection**: ranked by " + ", ".join(sorted(records[records.group == "ranked"].selection.unique())) + "; rules recorded: "
        + ", ".join(f"{rule}{'' if rule in RANKABLE_SELECTIONS else ' (†)'}" for rule in SELECTIONS if ok[f"map@{rule}"].notna().any()),
        "- **Methods**: " + ", ".join(f"{m} v{_distinct(p.method_version)}" for m, p in ok.groupby("method", sort=True)),
        *(["- **Hyper-parameter overrides**: " + "; ".join(overrides)] if overrides else []),
        f"- **Hardware**: {hardware}; precision {_distinct(records.precision)}; {_distinct(ok.platform)}",
        f"- **Software**: cmh-bench {_distinct(ok.cmh_bench)}, Python {_distinct(ok.python)}, torch {_distinct(ok.torch)}, "
        f"numpy {_distinct(ok.numpy)}",
        f"- **Git revisions**: {_distinct(ok.git_revision)}",
        "",
        "Regenerate (a run skips complete cells):",
        "",
        "```sh",
        *_commands(profile, records),
        "```",
    ]
    return "\n".join(lines)


def _commands(profile: str, records: pd.DataFrame) -> list[str]:
    """The ``cmh-bench run`` commands whose grids cover the records (one per split, validation options, overrides,
    fixed noise seed, noise file and precision), then ``cmh-bench report``."""
    keyed = records.assign(
        overrides=[" ".join(f"--hp {k}={v}" for k, v in sorted(h.items())) for h in records.hparams],
        fixed_noise_seed=["" if pd.isna(ns) or ns == s else f"--noise-seed {int(ns)}" for s, ns in zip(records.seed, records.noise_seed)],
        validation=[" ".join(([f"--val-fraction {f:g}"] if pd.notna(f) else []) + ([f"--val-every {int(e)}"] if pd.notna(e) and e != DEFAULT_VAL_EVERY else []))
                    for f, e in zip(records.val_fraction, records.val_every)],
    )
    commands = []
    for (split, validation, overrides, noise_seed, noise_file, precision), part in keyed.groupby(
            ["split", "validation", "overrides", "fixed_noise_seed", "noise_file", "precision"], sort=True):
        options = [f"--profile {profile}", f"--methods {_joined(part.method)}", f"--datasets {_joined(part.dataset)}",
                   f"--noise {_joined(part.noise)}", f"--rates {_joined(part.rate, '{:g}')}", f"--bits {_joined(part.bits)}",
                   f"--seeds {_joined(part.seed)}", f"--split {split}" if split else "",
                   validation, overrides, noise_seed, f"--noise-file {noise_file}" if noise_file else "",
                   "--mixed-precision" if precision != "fp32" else ""]
        commands.append(" ".join(["cmh-bench run", *(o for o in options if o)]))
    return [*commands, "cmh-bench report"]


def _table_section(records: pd.DataFrame, published: pd.DataFrame, out: Output) -> str:
    """One (dataset, split, noise) of a profile: the mean table, its plot, per-direction tables, noise detection, curves."""
    profile, dataset, split, noise = records.iloc[0][TABLE_KEYS]
    precision = records.iloc[0].precision
    name = f"{_dataset_name(dataset, split)} · {noise}"
    label = profile if precision == "fp32" else f"{profile}, {precision}"
    in_profile = f"{name} ({label})"  # the plots' titles name the profile (and a precision other than fp32)
    slug = _slug(profile if precision == "fp32" else f"{profile}-{precision}", _dataset_name(dataset, split), noise)
    meta = records.groupby("entry")[["group", "selection"]].first()
    matching = published[(published.dataset == dataset) & (published.noise == noise)]
    tables = {metric: build_table(f"Profile {profile}, {name}", what, aggregate(records, metric).droplevel(TABLE_KEYS), meta,
                                  reported=matching if metric == "map" else None)
              for metric, what in METRICS.items()}
    out.latex.append(tables["map"])
    order = [label for group, label, _ in tables["map"].rows if group != "reported"]
    points = _points(aggregate(records, "map").droplevel(TABLE_KEYS), meta, order)
    parts = [f"### {name}", markdown_table(tables["map"])]
    if len(points):
        parts.append(out.plot(_slug(slug, "map"), f"MAP against noise rate, {name}",
                              partial(plots.map_vs_rate, points, title=f"{in_profile}: MAP against noise rate")))
    parts.append("<details><summary>Per direction: I2T and T2I MAP</summary>\n\n"
                 + "\n\n".join(markdown_table(tables[m]) for m in ("map_i2t", "map_t2i")) + "\n\n</details>")
    parts += _selection_section(records, order)
    parts += _detection_section(records, meta, in_profile, slug, out)
    parts += _curves_section(records, meta, order, in_profile, slug, out)
    return "\n\n".join(parts)


def _selection_section(records: pd.DataFrame, order: list[str]) -> list[str]:
    """The selection table: per entry and noise rate, the test MAP at the epoch each rule picked, its
    inflation over ``val`` and the mean selected epochs. Empty when no record has a validation part."""
    ok = records[(records.status == "ok") & records["map@val"].notna()]
    if ok.empty:
        return []
    flagged = {rule: "" if rule in RANKABLE_SELECTIONS else "†" for rule in SELECTIONS}
    header = ["method", "noise rate", "runs", *(f"{rule}{flagged[rule]}" + ("" if rule == "val" else " (Δ)") for rule in SELECTIONS),
              "epochs " + " / ".join(SELECTIONS)]
    rows = []
    position = {entry: i for i, entry in enumerate(order)}
    for (entry, rate), part in sorted(ok.groupby(["entry", "rate"]), key=lambda item: (position.get(item[0][0], len(order)), item[0])):
        cells = []
        for rule in SELECTIONS:
            values = part[f"map@{rule}"]
            if values.isna().all():
                cells.append(MARKDOWN["missing"])
                continue
            text = format_number(values.mean())
            if rule != "val":
                text += f" ({_signed(float((values - part['map@val']).mean()))})"
            cells.append(text)
        epochs = " / ".join(MARKDOWN["missing"] if part[f"epoch@{r}"].isna().all() else f"{part[f'epoch@{r}'].mean():.0f}"
                            for r in SELECTIONS)
        rows.append([entry, _percent(rate), str(len(part)), *cells, epochs])
    table = tabulate(rows, header, tablefmt="pipe", disable_numparse=True, colalign=["left", *["right"] * (len(header) - 1)])
    caption = ("Test MAP (mean of I2T and T2I, tie-aware MAP@all) at the epoch each selection rule picked, from the same "
               "training runs, mean over runs (seeds × code lengths); (Δ): minus `val`, the inflation of the rule over "
               "the practitioner's protocol. † optimistic: the rule reads clean labels (val-clean) or the test queries "
               "(best-on-test). Epochs: mean selected epoch (counted from 0).")
    return ["#### Model selection", caption, table]


def _signed(x: float) -> str:
    """A difference with its sign and three decimals, e.g. +.012, −.004.

    >>> _signed(0.0123), _signed(-0.004), _signed(0.0)
    ('+.012', '−.004', '+.000')
    """
    return ("−" if x < -0.0005 else "+") + format_number(abs(x))


def _points(stats: pd.DataFrame, meta: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The plotted points of a table: entry, group, bits, rate, mean, std of cells with values, rows in table order."""
    points = stats[stats["n"] > 0].reset_index()
    points["group"] = points.entry.map(meta.group)
    points["position"] = points.entry.map({entry: i for i, entry in enumerate(order)})
    return points.sort_values(["position", "bits", "rate"])[["entry", "group", "bits", "rate", "mean", "std"]]


DETECTION_SCORES = (  # (record column, key the noise_detection of such a method holds, heading, table caption)
    ("weight_auc", "edges", "sample weights",
     "Weight AUC (final sample weights; clean samples positive), pooled over seeds and code lengths,"),
    ("entry_auc", "entry_shape", "label-entry scores",
     "Entry AUC (final per-entry scores over the noisy positive label entries; true labels positive, added ones "
     "negative), pooled over seeds and code lengths,"),
)


def _detection_section(records: pd.DataFrame, meta: pd.DataFrame, name: str, slug: str, out: Output) -> list[str]:
    """Noise detection by the methods' reliability scores: mean weight AUC (sample weights) and entry AUC
    (per-entry scores) per entry × rate, and the weight histograms of clean vs corrupted samples at each
    entry's highest rate. Empty without such records."""
    detected = records[(records.status == "ok") & records.noise_detection.notna()]
    if detected.empty:
        return []
    headings, tables, by_score = [], [], {}
    for column, key, heading, caption in DETECTION_SCORES:
        by_score[key] = scored = detected[[key in detection for detection in detected.noise_detection]]
        if scored.empty:
            continue
        headings.append(heading)
        stats = aggregate(records[records.entry.isin(scored.entry)], column, columns=("rate",)).droplevel(TABLE_KEYS)
        if stats["n"].any():  # no AUC when a run had no clean or no corrupted item
            tables.append(markdown_table(build_table(name, caption, stats, meta, rank=False, unit="run")))
    parts = [f"#### Noise detection by {' and '.join(headings)}", *tables]
    for entry, part in by_score["edges"].groupby("entry", sort=True):
        top = part[part.rate == part.rate.max()].sort_values(["bits", "seed"]).drop_duplicates("bits")
        title = f"{entry}: sample weights at {_percent(top.rate.iloc[0])} noise, {name}"
        parts.append(out.plot(_slug(slug, entry, "weights"), title,
                              partial(plots.weight_histograms, top[["bits", "seed", "noise_detection"]], title=title)))
    return parts


def _curves_section(records: pd.DataFrame, meta: pd.DataFrame, order: list[str], name: str, slug: str, out: Output) -> list[str]:
    """The per-epoch MAP and weight-AUC curves at the table's highest noise rate with curves. Empty without curves."""
    curves = _epoch_curves(records[records.status == "ok"])
    if curves.empty:
        return []
    top = curves.rate.max()
    curves = curves[curves.rate == top].assign(group=lambda c: c.entry.map(meta.group),
                                               position=lambda c: c.entry.map({e: i for i, e in enumerate(order)}))
    marks = _selected_epochs(records[(records.status == "ok") & (records.rate == top) & records.entry.isin(curves.entry)])
    title = f"{name}: training curves at {_percent(top)} noise"
    link = out.plot(_slug(slug, "epochs"), title, partial(plots.training_curves, curves.sort_values(["position", "epoch"]),
                                                          marks=marks, title=title))
    return [f"#### Training curves at {_percent(top)} noise",
            ("Test-query MAP, noisy-validation MAP" if curves.val_map.notna().any() else "Test-query MAP")
            + " and weight AUC over the epochs (mean over seeds, ± std band); on the test-MAP curves a marker shows "
            "the epoch each selection rule picked (mean over seeds). A falling MAP is the networks memorising the "
            "noisy labels: why the epoch is chosen on the validation part.",
            link]


def _selected_epochs(records: pd.DataFrame) -> pd.DataFrame:
    """Per entry, code length and rule: the mean selected epoch over seeds (columns entry, bits, rule, epoch)."""
    rows = [{"entry": entry, "bits": bits, "rule": rule, "epoch": float(part[f"epoch@{rule}"].mean())}
            for (entry, bits), part in records.groupby(["entry", "bits"], sort=True) for rule in SELECTIONS
            if part[f"epoch@{rule}"].notna().any()]
    return pd.DataFrame(rows, columns=["entry", "bits", "rule", "epoch"])


def _epoch_curves(records: pd.DataFrame) -> pd.DataFrame:
    """Long frame of the records' per-epoch rows that carry MAP (both directions), validation MAP or weight AUC:
    entry, rate, bits, seed, epoch, map (test queries, mean of I2T and T2I), val_map (noisy validation), weight_auc."""
    rows = [
        {"entry": r.entry, "rate": r.rate, "bits": r.bits, "seed": r.seed, "epoch": e.get("epoch"),
         "map": (e["map_i2t"] + e["map_t2i"]) / 2 if e.get("map_i2t") is not None and e.get("map_t2i") is not None else None,
         "val_map": e.get("val_map"), "weight_auc": e.get("weight_auc")}
        for r in records.itertuples() for e in r.epochs
    ]
    curves = pd.DataFrame(rows, columns=["entry", "rate", "bits", "seed", "epoch", "map", "val_map", "weight_auc"])
    return curves[curves["map"].notna() | curves.val_map.notna() | curves.weight_auc.notna()]


def _failed_section(failed: pd.DataFrame) -> str:
    """The failed cells of a profile with their error (first line)."""
    rows = [[_dataset_name(r.dataset, r.split), r.noise, f"{r.rate:g}", str(r.bits), r.entry, str(r.seed), _error_text(r.error)]
            for r in failed.itertuples()]
    table = tabulate(rows, ["dataset", "noise", "rate", "bits", "method", "seed", "error"], tablefmt="pipe", disable_numparse=True)
    return "### Failed cells\n\n" + table


def _error_text(error) -> str:
    """The first line of an error, at most 200 characters, safe inside a markdown table cell."""
    if pd.isna(error):
        return "(no error recorded)"
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = line if len(line) <= 200 else line[:199] + "…"
    return line.replace("|", "\\|").replace("<", "&lt;")


def _dataset_name(dataset: str, split: str) -> str:
    """The dataset as shown: ``name`` or ``name@split`` when the records name a split preset."""
    return f"{dataset}@{split}" if split else dataset


def _sizes(sizes) -> str:
    """"Q query / T train [/ V validation] / D database" from a record's dataset sizes (train: the items fitted on)."""
    if not isinstance(sizes, dict):
        return "sizes unknown"
    parts = ("query", "train", *(("validation",) if "validation" in sizes else ()), "database")
    return " / ".join(f"{sizes.get(part, '?')} {part}" for part in parts)


def _distinct(values: pd.Series) -> str:
    """The distinct non-missing values, sorted, comma-separated (integral floats without ".0"); "unknown" if none."""
    texts = {str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values.dropna()}
    return ", ".join(sorted(texts)) or "unknown"


def _joined(values: pd.Series, fmt: str = "{}") -> str:
    """The distinct values, sorted, formatted and comma-separated (a CLI list)."""
    return ",".join(fmt.format(v) for v in sorted(set(values)))


# ---------------------------------------------------------------- exports


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSV export: one row per (profile, dataset, split, noise, rate, bits, entry) with the row's method,
    group, role, labels_used and selection, n_seeds, n_failed, mean and std of map / map_i2t / map_t2i, and the
    mean weight AUC and training seconds."""
    keys = [*TABLE_KEYS, *CELL_COLUMNS, "entry"]
    meta = frame.groupby(keys)[["method", "group", "role", "labels_used", "selection"]].first()
    counts = aggregate(frame, "map")[["n", "n_failed"]].rename(columns={"n": "n_seeds"})
    values = [aggregate(frame, metric)[["mean", "std"]].add_prefix(f"{metric}_") for metric in METRICS]
    extra = frame[frame.status == "ok"].groupby(keys)[["weight_auc", "train_seconds"]].mean().add_suffix("_mean")
    parts = [part.reorder_levels(keys) for part in (counts, *values, extra)]
    summary = meta.join(parts).fillna({"n_seeds": 0, "n_failed": 0}).astype({"n_seeds": int, "n_failed": int})
    return summary.sort_index().reset_index()


def latex_document(tables: list[Table]) -> str:
    """The LaTeX export: the mean tables as booktabs tables, one after the other."""
    header = ("% cmh-bench leaderboard: the mean tables of README.md (tie-aware MAP@all, mean of I2T and T2I).\n"
              "% Generated by `cmh-bench report`; do not edit. Needs \\usepackage{booktabs}.")
    return "\n\n".join([header, *(latex_table(table) for table in tables)]) + "\n"
