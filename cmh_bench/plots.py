"""The leaderboard's PNG plots (matplotlib, no pyplot state): drawn from frames prepared by cmh_bench.report.

Every figure is drawn under matplotlib's default style (a user's matplotlibrc cannot change it) and
saved atomically without the "Software" metadata, so the same data give the same bytes as far as
matplotlib allows. Line style tells the row group: ranked methods solid, label-free methods densely
dashed, clean-meta-set rows dash-dotted finely, best-on-test selection dash-dot, reference rows dashed, upper bounds dotted.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cmh_bench.atomic import atomic_path

DPI = 100
PANEL = (4.0, 3.0)  # inches per subplot
LINESTYLES = {"ranked": "-", "label-free": (0, (5, 1)), "clean-meta": (0, (1, 1, 5, 1)), "optimistic": "-.", "reference": "--", "upper-bound": ":"}
RULE_MARKERS = {"val": "v", "final": "o", "val-clean": "D", "best-on-test": "*"}  # selection rule -> marker


@matplotlib.style.context("default")
def map_vs_rate(points: pd.DataFrame, path: Path, title: str) -> None:
    """MAP against noise rate, one panel per code length, one line per row with error bars (std over seeds).

    ``points``: columns entry, group, bits, rate, mean, std (NaN std: no bar), rows in legend order.
    """
    bits = sorted(points.bits.unique())
    fig, axes = _figure(1, len(bits), title)
    colours = _colours(points.entry)
    for ax, b in zip(axes[0], bits):
        for entry, line in points[points.bits == b].groupby("entry", sort=False):
            line = line.sort_values("rate")
            ax.errorbar(line.rate * 100, line["mean"], yerr=line["std"].fillna(0), label=entry, color=colours[entry],
                        linestyle=LINESTYLES[line.group.iloc[0]], marker="o", markersize=4, capsize=3)
        ax.set_title(f"{b} bit")
        ax.set_xlabel("noise rate (%)")
        ax.set_xticks(sorted(points.rate.unique() * 100))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MAP (mean of I2T, T2I)")
    _legend(fig, axes)
    _save(fig, path)


@matplotlib.style.context("default")
def weight_histograms(panels: pd.DataFrame, path: Path, title: str) -> None:
    """Sample-weight histograms of clean vs corrupted training samples (the SCBCH paper's Figure 6), one panel per row.

    ``panels``: columns bits, seed, noise_detection (the record's ``{"weight_auc", "edges", "clean", "corrupted"}``).
    """
    fig, axes = _figure(1, len(panels), title)
    for ax, panel in zip(axes[0], panels.itertuples()):
        detection = panel.noise_detection
        edges = np.asarray(detection["edges"])
        for part, colour in (("clean", "tab:blue"), ("corrupted", "tab:red")):
            counts = np.asarray(detection[part], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1.0), edges, fill=True, alpha=0.45, color=colour, label=part)
        auc = detection.get("weight_auc")
        ax.set_title(f"{panel.bits} bit, seed {panel.seed}" + (f", AUC {auc:.3f}" if auc is not None else ""))
        ax.set_xlabel("sample weight")
    axes[0][0].set_ylabel("fraction of samples")
    _legend(fig, axes)
    _save(fig, path)


@matplotlib.style.context("default")
def training_curves(curves: pd.DataFrame, path: Path, title: str, marks: pd.DataFrame | None = None) -> None:
    """Per-epoch curves, mean over seeds with a ±std band: one row of panels per quantity, one column per code length.

    ``curves``: columns entry, group, bits, epoch, and one column per quantity (``map``, ``val_map``,
    ``weight_auc``), at least one of them with values; rows in legend order. ``marks``: columns entry,
    bits, rule, epoch: a marker (``RULE_MARKERS``) on the entry's test-MAP curve at each rule's epoch.
    """
    quantities = [q for q in ("map", "val_map", "weight_auc") if q in curves and curves[q].notna().any()]
    bits = sorted(curves.bits.unique())
    fig, axes = _figure(len(quantities), len(bits), title)
    colours = _colours(curves.entry)
    labels = {"map": "test MAP (mean of I2T, T2I)", "val_map": "validation MAP (noisy labels)",
              "weight_auc": "weight AUC (clean vs corrupted)"}
    for row, quantity in zip(axes, quantities):
        for ax, b in zip(row, bits):
            for entry, part in curves[(curves.bits == b) & curves[quantity].notna()].groupby("entry", sort=False):
                stats = part.groupby("epoch")[quantity].agg(["mean", "std"]).fillna(0)
                style = LINESTYLES[part.group.iloc[0]]
                ax.plot(stats.index, stats["mean"], label=entry, color=colours[entry], linestyle=style)
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                color=colours[entry], alpha=0.15, linewidth=0)
                if quantity == "map" and marks is not None:
                    _mark_rules(ax, marks[(marks.entry == entry) & (marks.bits == b)], stats["mean"], colours[entry])
            ax.set_title(f"{b} bit")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        row[0].set_ylabel(labels[quantity])
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for rule in RULE_MARKERS if marks is not None else ():
        if (marks.rule == rule).any():  # legend proxies: the marker shape names the rule
            axes[0][0].plot([], [], marker=RULE_MARKERS[rule], color="white", markeredgecolor="black",
                            linestyle="none", label=f"selected by {rule}")
    _legend(fig, axes)
    _save(fig, path)


def _mark_rules(ax, marks: pd.DataFrame, curve: pd.Series, colour) -> None:
    """One marker per rule at its epoch on ``curve`` (mean per epoch; interpolated between evaluated epochs)."""
    for mark in marks.itertuples():
        y = float(np.interp(mark.epoch, curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float)))
        ax.plot([mark.epoch], [y], marker=RULE_MARKERS[mark.rule], color=colour, markeredgecolor="black",
                markersize=7, linestyle="none")


def _figure(rows: int, columns: int, title: str) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a rows × columns grid of axes (always 2-D) and a title."""
    fig = Figure(figsize=(PANEL[0] * columns + 2.2, PANEL[1] * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharex="col", sharey="row")
    fig.suptitle(title)
    return fig, axes


def _colours(entries: pd.Series) -> dict[str, tuple]:
    """A fixed colour per entry, in order of first appearance: tab20's ten dark hues, then its ten light ones."""
    palette = matplotlib.colormaps["tab20"]
    return {entry: palette((2 * i) % 20 + (i // 10) % 2) for i, entry in enumerate(pd.unique(entries))}


def _legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend for the figure, right of the panels, with each label once."""
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside right center", fontsize="small")


def _save(fig: Figure, path: Path) -> None:
    """Write the figure as PNG atomically, without the metadata that names the matplotlib version."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
