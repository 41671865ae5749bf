"""The leaderboard: result records -> long frame -> pivot tables -> markdown (tabulate), CSV, LaTeX and PNG plots.

``render_report(results_dir, out_dir)`` reads the records under ``results_dir`` and nothing else,
except the published numbers of :mod:`cmh_bench.reported` (unranked "reported" rows). It writes
``README.md``, ``leaderboard.csv``, ``leaderboard.tex`` and ``plots/*.png`` into ``out_dir``, each
atomically and deterministically: no timestamps, no absolute paths, everything sorted, so a committed
leaderboard can be checked by rendering it again. The long frame and its aggregates come from
:mod:`cmh_bench.results`.

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
  (role "label-free") and the rows that used a clean meta set (``+meta-N``, cmh_bench.metaset), each
  ranked the same way among themselves, then the unranked groups
  (best-on-test selection, reported numbers, reference rows, upper bounds) under their own headings;
- per profile a robustness table (:mod:`cmh_bench.robustness`) ranks each table's ranked rows by the
  area under their MAP–noise-rate curve, with the drop from the clean-label cells and the rank's
  stability over seeds;
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

from cmh_bench import plots, robustness
from cmh_bench.atomic import write_text_atomic
from cmh_bench.cell import RANKABLE_SELECTIONS, SELECTIONS
from cmh_bench.reported import reported_numbers
from cmh_bench.results import CELL_COLUMNS, RANKED_GROUPS, TABLE_KEYS, aggregate, load, ranking_rule, run_commands

METRICS = {  # frame column -> what its table shows
    "map": "Mean of I2T and T2I MAP (tie-aware MAP@all)",
    "map_i2t": "I2T MAP (image queries against text codes)",
    "map_t2i": "T2I MAP (text queries against image codes)",
}
GROUPS = {  # row group -> heading row inside a table (None: no heading); the order is the display order
    "ranked": None,
    "label-free": "label-free (no labels read), ranked among themselves",
    "clean-meta": "used a clean meta set (+meta-N: N training items with clean labels), ranked among themselves",
    "optimistic": "selected on the test queries (†), not ranked",
    "reported": "reported by the authors under their protocol, not ranked",
    "reference": "reference rows, not ranked",
    "upper-bound": "upper bounds (clean labels), never ranked",
}
GROUP_ORDER = {group: i for i, group in enumerate(GROUPS)}
LABEL_FREE_NOTE = ("**Label-free rows** (role label-free: UCCH, DJSRH, DGCPN): the harness hands these methods no "
                   "labels, so their MAP does not depend on the noise model or rate; they follow the ranked rows under "
                   "their own heading and are ranked the same way among themselves (their own bold and ≈), never "
                   "with the noisy-label methods.")
CLEAN_META_NOTE = ("**Clean meta set rows** (`+meta-N`, e.g. MGSH): besides the noisy labels, the harness handed these "
                   "methods N of their training items with those items' clean labels (seeded; size, seed and a hash of "
                   "the items in each record). That is clean data the noisy-only methods do not get, so these rows "
                   "follow them under their own heading, ranked only among themselves.")
GROUP_LABELS = {"ranked": "noisy labels", "label-free": "label-free", "clean-meta": "clean meta set"}
NO_CLEAN_REFERENCE = "no clean-label reference"
ROBUSTNESS_NOTE = (
    "Per dataset and noise model, the ranked rows (rule as in the tables) ranked by the **area under the MAP–noise-rate "
    "curve**: the trapezoid area over the table's noise rates (> 0) divided by the rate range, i.e. the mean MAP over the "
    "range, per code length and then averaged over the code lengths where every row of the group has every rate; "
    "**drop**: MAP at rate 0 (clean labels) minus MAP at the highest rate, over the same code lengths "
    f"(\"{NO_CLEAN_REFERENCE}\" without rate-0 cells). Both: mean ± std over seeds. **Rank kept**: of the compared "
    "seeds (the largest seed set that at least two rows of the group share; a row with fewer seeds: —), how many rank the "
    "row where the mean over them does; **Kendall τ**: mean τ-b between the seeds' "
    "rankings of the group (1: every seed orders the rows alike). Label-free rows are ranked among themselves.")
ALPHA = 0.05
MIN_SEEDS_FOR_TEST = 2
CONSTANT_SPREAD = 1e-12  # per-seed values closer than this are one constant (float noise of a mean)
PROFILES = {
    "paper": "the published hyper-parameters (network widths, epochs, batch sizes), meant for a GPU",
    "quick": "reduced widths and epochs, for CPU runs and CI",
}
REPORTED_COLUMNS = ["method", "dataset", "noise", "rate", "bits", "map", "source", "protocol"]
DAGGER_NOTE = "† optimistic: model selected on the test queries (best epoch, the authors' protocol)."
MARKDOWN = {"pm": " ± ", "bold": "**{}**", "tied": " ≈", "dagger": "†", "missing": "—"}
LATEX = {"pm": r" $\pm$ ", "bold": r"\textbf{{{}}}", "tied": r" $\approx$", "dagger": r"$^\dagger$", "missing": "--"}
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "·": r"$\cdot$", "†": r"$^\dagger$",
    "≈": r"$\approx$", "—": "---", "×": r"$\times$",
}


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


def percent(rate: float) -> str:
    """A noise rate as a percentage, e.g. 0.2 -> "20%"."""
    return f"{rate * 100:g}%"


_AXES = {  # column name -> (what the axis is, label of one value)
    "rate": ("noise rate", percent),
    "bits": ("code length", lambda bits: f"{bits} bit"),
}


def table_slug(profile: str, precision: str, dataset: str, split: str, noise: str) -> str:
    """The file-name stem of one table (profile, precision other than fp32, dataset[@split], noise): its plots'
    prefix and its site page."""
    return _slug(profile if precision == "fp32" else f"{profile}-{precision}", dataset_name(dataset, split), noise)


def _slug(*parts: str) -> str:
    """A file-name-safe name: the parts joined by "-", anything but letters, digits, ".", "_", "-" as "_"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


# ---------------------------------------------------------------- the report


@dataclass
class Output:
    """What rendering collects besides the markdown: the mean tables for the LaTeX export and the plots to draw."""

    latex: list[Table] = field(default_factory=list)
    plots: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # path relative to out_dir -> draw(path)
    alts: dict[str, str] = field(default_factory=dict)  # path relative to out_dir -> the plot's alt text
    table_plots: dict[str, list[str]] = field(default_factory=dict)  # table_slug -> its plots (paths relative to out_dir)

    def plot(self, name: str, alt: str, draw: Callable[[Path], None]) -> str:
        """Register the plot ``plots/<name>.png`` and return its markdown image link (a relative path)."""
        relative = f"plots/{name}.png"
        self.plots[relative] = draw
        self.alts[relative] = alt
        return f"![{alt}]({relative})"


def render_report(results_dir: Path, out_dir: Path, reported: pd.DataFrame | None = None, rank_by: str = "val") -> list[Path]:
    """Render the leaderboard of the records under ``results_dir`` into ``out_dir``; return the files written.

    Writes ``plots/*.png`` (and removes PNGs of earlier renders that no longer have data),
    ``leaderboard.csv``, ``leaderboard.tex`` and ``README.md``, each atomically. ``reported``: the
    published numbers (columns ``REPORTED_COLUMNS``); None takes them from :mod:`cmh_bench.reported`.
    ``rank_by``: ``val`` (the default; ``final`` for records without it) or ``final``. The static site
    is :func:`cmh_bench.site.render_with_site`.
    """
    return write_leaderboard(load(results_dir, rank_by), out_dir, reported)[0]


def write_leaderboard(frame: pd.DataFrame, out_dir: Path, reported: pd.DataFrame | None = None) -> tuple[list[Path], Output]:
    """``render_report`` of a loaded frame: the files written and the render's ``Output`` (its plots per table)."""
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
    return written, out


def render_markdown(frame: pd.DataFrame, published: pd.DataFrame, out: Output) -> str:
    """The README: header, protocol, then one section per profile and precision (its tables never mix either)."""
    parts = [_header(frame), _protocol(frame)]
    parts += [_profile_section(profile, precision, records, published, out)
              for (profile, precision), records in frame.groupby(["profile", "precision"], sort=True)]
    parts += _published_section(published, set(frame.dataset))
    return "\n\n".join(parts) + "\n"


def _published_section(published: pd.DataFrame, measured: set[str]) -> list[str]:
    """The published numbers of the datasets without a record here (e.g. the real benchmarks while only the
    stand-ins were run): one table per (dataset, noise), never ranked; empty when every reported dataset was measured."""
    unmeasured = published[~published.dataset.isin(measured)]
    if unmeasured.empty:
        return []
    parts = ["## Published numbers (no measured counterpart here)",
             "What the papers report on datasets this run has no records of, as published (their protocol: the "
             "authors' split, noise draw and model selection, usually the best epoch on the test queries); for "
             "comparison of orders only, never ranked, and not comparable number for number with the stand-ins."]
    for (dataset, noise), part in unmeasured.groupby(["dataset", "noise"], sort=True):
        keys = sorted({(round(rate, 6), int(bits)) for rate, bits in zip(part.rate, part.bits)})
        rows, notes = _reported_rows(part, keys)
        columns = [f"{percent(rate)} · {bits} bit" for rate, bits in keys]
        table = Table(f"{dataset} · {noise} (published)", "Mean of I2T and T2I MAP as published at noise rate · code length.",
                      columns, rows, notes)
        parts += [f"### {dataset} · {noise} (published)", markdown_table(table)]
    return parts


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
    if (frame.group == "clean-meta").any():
        items.append(CLEAN_META_NOTE)
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
    parts = [f"## Profile `{profile}`" + ("" if precision == "fp32" else f" · {precision} autocast"), _setup(profile, records),
             *_robustness_section(robustness.summary(records))]
    parts += [_table_section(part, published, out) for _, part in records.groupby(["dataset", "split", "noise"], sort=True)]
    failed = records[records.status == "failed"]
    if len(failed):
        parts.append(_failed_section(failed))
    return "\n\n".join(parts)


def _robustness_section(summary: pd.DataFrame) -> list[str]:
    """The robustness table of a profile (``robustness.summary``): per dataset and noise model, each ranked row's
    area under the MAP–rate curve, drop from the clean-label cell, rank and its stability over seeds."""
    if summary.empty:
        return []
    rows = [[f"{dataset_name(r.dataset, r.split)} · {r.noise}", GROUP_LABELS[r.group], str(r.rank), r.entry,
             mean_std(r.area, r.area_std), drop_text(r), str(r.n_seeds), rank_kept_text(r), tau_text(r.kendall_tau),
             " / ".join(percent(rate) for rate in r.rates), " / ".join(map(str, r.bits))]
            for r in summary.itertuples()]
    header = ["dataset · noise", "group", "rank", "method", "area under MAP–rate", "drop: clean → highest rate", "seeds",
              "rank kept", "Kendall τ", "noise rates", "bits"]
    table = tabulate(rows, header, tablefmt="pipe", disable_numparse=True,
                     colalign=["left", "left", "right", "left", *["right"] * 7])
    return ["### Robustness", ROBUSTNESS_NOTE, table]


def mean_std(mean: float, std: float) -> str:
    """mean ± std (std only when finite), three decimals."""
    return format_number(mean) + (MARKDOWN["pm"] + format_number(std) if np.isfinite(std) else "")


def drop_text(row) -> str:
    """The drop cell of a robustness row: mean ± std, or that the row has no rate-0 cell."""
    return mean_std(row.drop, row.drop_std) if row.clean_reference else NO_CLEAN_REFERENCE


def rank_kept_text(row) -> str:
    """"k/n" seeds keeping the row's rank, or "—" when fewer than two seeds are common to the group's rows."""
    if row.seeds_compared < 2 or not np.isfinite(row.rank_kept):
        return MARKDOWN["missing"]
    return f"{round(row.rank_kept * row.seeds_compared)}/{row.seeds_compared}"


def tau_text(tau: float) -> str:
    """Kendall τ with two decimals, "—" when undefined."""
    return f"{tau:.2f}" if np.isfinite(tau) else MARKDOWN["missing"]


def _setup(profile: str, records: pd.DataFrame) -> str:
    """What the profile's records were run on: datasets, noise, selection, methods, hardware, software, commands."""
    ok = records[records.status == "ok"]
    failed = len(records) - len(ok)
    datasets = [
        f"{dataset_name(dataset, split)} (split preset {distinct_values(part.split_preset)}: {_sizes(part.sizes.iloc[0])}; "
        f"sha256 {distinct_values(part.dataset_sha256.str[:12])})"
        for (dataset, split), part in ok.groupby(["dataset", "split"], sort=True)
    ]
    overrides = [f"{entry}: " + ", ".join(f"{k}={v}" for k, v in sorted(hparams.items()))
                 for entry, hparams in records.groupby("entry").hparams.first().items() if hparams]
    hardware = f"device {distinct_values(ok.device)}; CPU {distinct_values(ok.cpu)}; torch threads {distinct_values(ok.torch_threads)}"
    if ok.device_name.notna().any():
        hardware += f"; GPU {distinct_values(ok.device_name)}"
    lines = [
        f"Profile `{profile}`: {PROFILES.get(profile, 'a profile named by its records')}. "
        f"{len(records)} records: {len(ok)} ok, {failed} failed.",
        "",
        "- **Datasets**: " + "; ".join(datasets or ["none with a successful record"]),
        "- **Noise models**: " + ", ".join(f"{n} v{distinct_values(p.noise_version)}" for n, p in ok.groupby("noise", sort=True)),
        "- **Model selection**: ranked by " + ", ".join(sorted(records[records.group == "ranked"].selection.unique())) + "; rules recorded: "
        + ", ".join(f"{rule}{'' if rule in RANKABLE_SELECTIONS else ' (†)'}" for rule in SELECTIONS if ok[f"map@{rule}"].notna().any()),
        "- **Methods**: " + ", ".join(f"{m} v{distinct_values(p.method_version)}" for m, p in ok.groupby("method", sort=True)),
        *(["- **Hyper-parameter overrides**: " + "; ".join(overrides)] if overrides else []),
        f"- **Hardware**: {hardware}; precision {distinct_values(records.precision)}; {distinct_values(ok.platform)}",
        f"- **Software**: cmh-bench {distinct_values(ok.cmh_bench)}, Python {distinct_values(ok.python)}, torch {distinct_values(ok.torch)}, "
        f"numpy {distinct_values(ok.numpy)}",
        f"- **Git revisions**: {distinct_values(ok.git_revision)}",
        "",
        "Regenerate (a run skips complete cells):",
        "",
        "```sh",
        *run_commands(profile, records),
        "```",
    ]
    return "\n".join(lines)


def _table_section(records: pd.DataFrame, published: pd.DataFrame, out: Output) -> str:
    """One (dataset, split, noise) of a profile: the mean table, its plot, per-direction tables, noise detection, curves."""
    profile, dataset, split, noise = records.iloc[0][TABLE_KEYS]
    precision = records.iloc[0].precision
    name = f"{dataset_name(dataset, split)} · {noise}"
    label = profile if precision == "fp32" else f"{profile}, {precision}"
    in_profile = f"{name} ({label})"  # the plots' titles name the profile (and a precision other than fp32)
    slug = table_slug(profile, precision, dataset, split, noise)
    first_plot = len(out.plots)
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
    out.table_plots[slug] = list(out.plots)[first_plot:]
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
        rows.append([entry, percent(rate), str(len(part)), *cells, epochs])
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
        title = f"{entry}: sample weights at {percent(top.rate.iloc[0])} noise, {name}"
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
    title = f"{name}: training curves at {percent(top)} noise"
    link = out.plot(_slug(slug, "epochs"), title, partial(plots.training_curves, curves.sort_values(["position", "epoch"]),
                                                          marks=marks, title=title))
    return [f"#### Training curves at {percent(top)} noise",
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
    rows = [[dataset_name(r.dataset, r.split), r.noise, f"{r.rate:g}", str(r.bits), r.entry, str(r.seed), _error_text(r.error)]
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


def dataset_name(dataset: str, split: str) -> str:
    """The dataset as shown: ``name`` or ``name@split`` when the records name a split preset."""
    return f"{dataset}@{split}" if split else dataset


def _sizes(sizes) -> str:
    """"Q query / T train [/ V validation] / D database" from a record's dataset sizes (train: the items fitted on)."""
    if not isinstance(sizes, dict):
        return "sizes unknown"
    parts = ("query", "train", *(("validation",) if "validation" in sizes else ()), "database")
    return " / ".join(f"{sizes.get(part, '?')} {part}" for part in parts)


def distinct_values(values: pd.Series) -> str:
    """The distinct non-missing values, sorted, comma-separated (integral floats without ".0"); "unknown" if none."""
    texts = {str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values.dropna()}
    return ", ".join(sorted(texts)) or "unknown"


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
