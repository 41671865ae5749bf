"""The results API: result records -> one long pandas frame, and the pivots the leaderboard is made of.

``load(results_dir)`` reads every record under ``results_dir`` into a frame with one row per record:
the cell's fields, status, the test MAP and selected epoch of every selection rule (``map@<rule>``,
``epoch@<rule>``), the MAP of the rule the tables show (``map``, ``map_i2t``, ``map_t2i``), seconds,
noise and dataset provenance and the environment (versions, git revision, device). ``aggregate``
gives mean ± std over seeds per table cell, ``pivot`` the wide table (entries × noise rate · bits)
and ``run_commands`` the ``cmh-bench run`` commands that regenerate a set of records. The markdown
report, the robustness summary and the site are built on these; users make their own tables and
plots the same way::

    from cmh_bench import results
    frame = results.load("results")
    results.pivot(frame[frame.dataset == "synth-flickr"], rule="final")
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cmh_bench.cell import DEFAULT_VAL_EVERY, RANKABLE_SELECTIONS, SELECTIONS
from cmh_bench.errors import UserError
from cmh_bench.metaset import LABELS_USED as META_LABELS_USED
from cmh_bench.record import read_record

TABLE_KEYS = ["profile", "dataset", "split", "noise"]
CELL_COLUMNS = ("rate", "bits")
ENVIRONMENT_KEYS = ("device", "device_name", "cpu", "torch_threads", "platform", "git_revision", "cmh_bench",
                    "python", "torch", "numpy")
RANKED_GROUPS = ("ranked", "label-free", "clean-meta")  # groups whose rows are ranked, each among its own rows


def load(results_dir: Path, rank_by: str = "val") -> pd.DataFrame:
    """One row per result record under ``results_dir`` (the files ``**/seed*.json``), sorted by path.

    Columns: ``path`` (relative to ``results_dir``); the cell: profile, dataset, split ("" = the file's
    default preset), noise, rate, bits, method, entry (the method folder of the path: the method plus
    "+hp-…" / "+val-…"), hparams (dict), seed, noise_seed, method_version, val_fraction, val_every, clean_meta
    (the size of the clean meta set, None without one); status;
    role, labels_used (for failed records, which lack them: from the method's other records, else
    the registry), paper and method_hparams (the hyper-parameters in force); schema_version; per rule of ``SELECTIONS``, ``map@<rule>`` and ``epoch@<rule>`` (mean tie-aware MAP@all
    and the selected epoch; None where the record lacks the rule); lacks (rules without metrics);
    selection (the rule shown in the tables: ``ranking_rule`` of the frame, else the record's only rule),
    group (the table row group: ranked, label-free, optimistic, reference or upper-bound); map, map_i2t, map_t2i (tie-aware MAP@all of the shown
    rule: mean of the directions, I2T, T2I); weight_auc, entry_auc; train_seconds, total_seconds;
    noise_version, noise_file (the given noise file, "" for none); split_preset, sizes, dataset_sha256;
    the environment (``ENVIRONMENT_KEYS``);
    error ("Type: message" of failed records); and the raw epochs (list of dicts) and
    noise_detection (dict or None). ``rank_by``: the rule asked for (``val`` or ``final``; ``ranking_rule``
    gives the one in force). A file that is not a readable result record, or another rule, raises UserError.

    >>> import json, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> record = {"schema": "cmh-bench/result", "schema_version": 2, "status": "ok",
    ...           "cell": {"profile": "quick", "dataset": "toy", "noise": "pair-swap", "rate": 0.5, "bits": 16,
    ...                    "method": "scbch", "seed": 0},
    ...           "method": {"role": "method", "labels_used": "noisy", "paper": "a paper"},
    ...           "selections": {"val": {"epoch": 4, "metrics": {"mean": {"map": 0.70}}},
    ...                          "final": {"epoch": 9, "metrics": {"mean": {"map": 0.68}}}},
    ...           "seconds": {"train": 1.5, "total": 2.0}, "environment": {"git_revision": "0123abc"}}
    >>> path = root / "quick/toy/pair-swap-0.5/16bit/scbch/seed0.json"
    >>> path.parent.mkdir(parents=True)
    >>> _ = path.write_text(json.dumps(record))
    >>> frame = load(root)
    >>> frame[["method", "rate", "bits", "seed", "map@val", "map@final", "epoch@final", "map", "group"]]
      method  rate  bits  seed  map@val  map@final  epoch@final  map   group
    0  scbch   0.5    16     0      0.7       0.68            9  0.7  ranked
    >>> frame.loc[0, "lacks"], float(frame.loc[0, "total_seconds"]), frame.loc[0, "git_revision"]
    (('val-clean', 'best-on-test'), 2.0, '0123abc')
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
    frame["group"] = [row_group(*row) for row in zip(frame.role, frame.labels_used, frame.selection)]
    return frame


def ranking_rule(frame: pd.DataFrame) -> str:
    """The rule the tables of a ``load`` frame rank by: ``val`` when asked and every successful record
    has it, else ``final``."""
    return frame.attrs["ranking_rule"]


def _selected_map(record: dict, rule: str, direction: str) -> float | None:
    """The record's tie-aware MAP@all of one direction (or "mean") at the epoch of ``rule``; None if it lacks it."""
    selected = record.get("selections", {}).get(rule)
    return None if selected is None else selected["metrics"].get(direction, {}).get("map")


def _record_row(path: Path, record: dict) -> dict:
    """The frame row of one record (see ``load``); missing optional parts become None."""
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
        "precision": cell.get("precision", "fp32"), "clean_meta": cell.get("clean_meta"),
        "status": record["status"], "schema_version": record.get("schema_version"),
        "role": method.get("role"), "labels_used": method.get("labels_used"), "paper": method.get("paper"),
        "method_hparams": method.get("hparams"),
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


def row_group(role: str, labels_used: str | None, selection: str) -> str:
    """The row group of a record: upper bounds and reference rows by role, then optimistic selections, then
    clean-meta-set rows, label-free rows and ranked ones."""
    if role == "upper-bound" or labels_used == "clean":
        return "upper-bound"
    if role == "reference":
        return "reference"
    if selection not in RANKABLE_SELECTIONS:
        return "optimistic"
    if labels_used == META_LABELS_USED:
        return "clean-meta"
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


def pivot(frame: pd.DataFrame, value: str = "map", rule: str | None = None) -> pd.DataFrame:
    """The wide table of ``frame``: rows (profile, dataset, split, noise, entry), columns (rate, bits), each
    cell the mean over seeds of ``value`` (``rule`` given: of ``map@<rule>``, that rule's MAP); NaN where a row
    has no successful record in a column.

    >>> frame = pd.DataFrame({"profile": "quick", "dataset": "toy", "split": "", "noise": "pair-swap",
    ...                       "entry": ["a", "a", "a", "b"], "rate": [0.2, 0.2, 0.8, 0.2], "bits": 16,
    ...                       "status": "ok", "map@val": [0.6, 0.8, 0.5, 0.4]})
    >>> pivot(frame, rule="val").droplevel(TABLE_KEYS)  # doctest: +NORMALIZE_WHITESPACE
    rate   0.2  0.8
    bits    16   16
    entry
    a      0.7  0.5
    b      0.4  NaN
    """
    column = value if rule is None else f"map@{rule}"
    means = aggregate(frame, column)["mean"]
    return means.unstack(list(CELL_COLUMNS)).sort_index(axis=1)


def run_commands(profile: str, records: pd.DataFrame) -> list[str]:
    """The ``cmh-bench run`` commands whose grids cover the records (one per split, validation options, overrides,
    fixed noise seed, noise file, precision and clean meta set size), then ``cmh-bench report``."""
    keyed = records.assign(
        overrides=[" ".join(f"--hp {k}={v}" for k, v in sorted(h.items())) for h in records.hparams],
        fixed_noise_seed=["" if pd.isna(ns) or ns == s else f"--noise-seed {int(ns)}" for s, ns in zip(records.seed, records.noise_seed)],
        meta=["" if pd.isna(m) else f"--clean-meta {int(m)}" for m in records.clean_meta],
        validation=[" ".join(([f"--val-fraction {f:g}"] if pd.notna(f) else []) + ([f"--val-every {int(e)}"] if pd.notna(e) and e != DEFAULT_VAL_EVERY else []))
                    for f, e in zip(records.val_fraction, records.val_every)],
    )
    commands = []
    for (split, validation, overrides, noise_seed, noise_file, precision, meta), part in keyed.groupby(
            ["split", "validation", "overrides", "fixed_noise_seed", "noise_file", "precision", "meta"], sort=True):
        options = [f"--profile {profile}", f"--methods {_joined(part.method)}", f"--datasets {_joined(part.dataset)}",
                   f"--noise {_joined(part.noise)}", f"--rates {_joined(part.rate, '{:g}')}", f"--bits {_joined(part.bits)}",
                   f"--seeds {_joined(part.seed)}", f"--split {split}" if split else "",
                   validation, overrides, noise_seed, f"--noise-file {noise_file}" if noise_file else "",
                   "--mixed-precision" if precision != "fp32" else "", meta]
        commands.append(" ".join(["cmh-bench run", *(o for o in options if o)]))
    return [*commands, "cmh-bench report"]


def _joined(values: pd.Series, fmt: str = "{}") -> str:
    """The distinct values, sorted, formatted and comma-separated (a CLI list)."""
    return ",".join(fmt.format(v) for v in sorted(set(values)))
