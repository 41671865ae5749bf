"""Robustness summary: how each ranked method's MAP holds up as the noise rate grows, per table.

A table is one (profile, dataset, split, noise model) of the leaderboard; its rows are ranked among
their own group (noisy-label methods; label-free methods). From a ``cmh_bench.results.load`` frame
(the MAP of the ranking rule, ``map``) and per table, group, entry and training seed s:

- **area** A_s: the normalised area under the MAP–noise-rate curve over the table's noise rates
  r_1 < … < r_m (rates > 0: the same rates for every row, with or without a clean-label cell),
  A = Σ_i (r_{i+1} − r_i) (MAP(r_i) + MAP(r_{i+1})) / 2 / (r_m − r_1), the mean MAP over the rate range
  (one rate: its MAP); per code length, then the mean over the code lengths where every row of the
  group has the full curve (so the rows of a group are compared on the same code lengths);
- **drop** D_s: MAP at rate 0 (the clean-label cell) minus MAP at the table's highest rate r_m, mean
  over the same code lengths; NaN ("no clean-label reference") without a rate-0 cell;
- the row's value is the mean over seeds ± the sample std over seeds (ddof 1), with n seeds;
- **rank** (1 = best): by the mean area, within the table and group;
- **rank kept**: over the seeds every row of the group has, the fraction of seeds whose own ranking
  (by A_s) puts the row at its rank; **Kendall τ** of the table and group: the mean over seed pairs of
  Kendall's τ-b between the two seeds' rankings (1: every seed orders the rows alike), NaN with fewer
  than two common seeds or rows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from cmh_bench.results import RANKED_GROUPS, TABLE_KEYS

SUMMARY_COLUMNS = ["group", "entry", "rank", "area", "area_std", "drop", "drop_std", "n_seeds", "rank_kept",
                   "seeds_compared", "kendall_tau", "rates", "bits", "clean_reference"]


def normalised_area(rates: np.ndarray, maps: np.ndarray) -> float:
    """Trapezoid area under MAP(rate) divided by the rate range (the curve's mean height); one rate: its MAP.

    >>> normalised_area(np.array([0.2, 0.5, 0.8]), np.array([0.8, 0.7, 0.4]))
    0.65
    >>> normalised_area(np.array([0.5]), np.array([0.7]))
    0.7
    """
    if len(rates) == 1:
        return float(maps[0])
    area = np.sum(np.diff(rates) * (maps[1:] + maps[:-1]) / 2)
    return round(float(area / (rates[-1] - rates[0])), 12)


def per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Per table, group, entry and seed: ``area`` A_s and ``drop`` D_s (see the module docstring).

    Only successful records of the ranked groups with a MAP count. A code length counts for a group when
    every entry of the group has the full curve (every noise rate of the table) there for some seed, so the
    rows of a group are compared on the same code lengths. Columns: the table keys, group, entry, seed, area,
    drop (NaN without a clean-label cell), rates and bits (tuples: the table's noise rates, the code lengths used).
    """
    ok = frame[(frame.status == "ok") & frame.group.isin(RANKED_GROUPS) & frame["map"].notna()]
    curves = []
    for table, part in ok.groupby(TABLE_KEYS, sort=True):
        rates = tuple(sorted(part.rate[part.rate > 0].unique()))
        means = part.groupby(["group", "entry", "seed", "bits", "rate"])["map"].mean()
        for (group, entry, seed, bits), curve in means.groupby(level=["group", "entry", "seed", "bits"]) if rates else ():
            curve = curve.droplevel(["group", "entry", "seed", "bits"])
            if all(rate in curve.index for rate in rates):
                drop = curve.loc[0.0] - curve.loc[rates[-1]] if 0.0 in curve.index else np.nan
                curves.append({**dict(zip(TABLE_KEYS, table)), "group": group, "entry": entry, "seed": seed, "bits": bits,
                               "area": normalised_area(np.array(rates), curve.loc[list(rates)].to_numpy()), "drop": drop,
                               "rates": rates})
    curves = pd.DataFrame(curves, columns=[*TABLE_KEYS, "group", "entry", "seed", "bits", "area", "drop", "rates"])
    rows = []
    for key, part in curves.groupby([*TABLE_KEYS, "group"], sort=True):
        entries = part.groupby("bits").entry.nunique()
        common = tuple(int(b) for b in entries.index[entries == part.entry.nunique()])
        used = part[part.bits.isin(common)]
        for (entry, seed), values in used.groupby(["entry", "seed"], sort=True):
            rows.append({**dict(zip([*TABLE_KEYS, "group"], key)), "entry": entry, "seed": seed,
                         "area": float(values.area.mean()), "drop": float(values["drop"].mean(skipna=False)),
                         "rates": values.rates.iloc[0], "bits": common})
    return pd.DataFrame(rows, columns=[*TABLE_KEYS, "group", "entry", "seed", "area", "drop", "rates", "bits"])


def rank_stability(seeds: pd.DataFrame) -> tuple[dict[str, float], int, float]:
    """For one table and group (``per_seed`` rows): each compared entry's fraction of the compared seeds that keep
    its rank (its rank by the mean area over those seeds, among the compared entries), the number of compared
    seeds, and the mean Kendall τ-b over pairs of them (NaN: fewer than two seeds or entries).

    The compared seeds are the largest seed set of an entry that at least one other entry also has (the most
    entries on ties); the compared entries are those with every one of those seeds. An entry with fewer seeds
    (``d`` below) is left out of the comparison (NaN).

    >>> seeds = pd.DataFrame({"entry": ["a", "b", "c"] * 3 + ["d"], "seed": [0] * 3 + [1] * 3 + [2] * 3 + [0],
    ...                       "area": [.9, .8, .7, .9, .8, .7, .8, .9, .7, .5]})
    >>> rank_stability(seeds)
    ({'a': 0.667, 'b': 0.667, 'c': 1.0, 'd': nan}, 3, 0.556)
    """
    sets = seeds.groupby("entry").seed.agg(frozenset)
    holders = {candidate: [entry for entry, have in sets.items() if candidate <= have] for candidate in set(sets)}
    shared = [candidate for candidate, entries in holders.items() if len(entries) >= 2]
    if not shared:
        return {entry: np.nan for entry in sets.index}, 0, np.nan
    compared = max(shared, key=lambda c: (len(c), len(holders[c]), sorted(c)))
    wide = seeds[seeds.seed.isin(compared)].pivot_table(index="seed", columns="entry", values="area")[holders[compared]]
    ranks = wide.rank(axis=1, ascending=False)
    overall = wide.mean().rank(ascending=False)
    kept = {entry: round(float((ranks[entry] == overall[entry]).mean()), 3) if entry in wide else np.nan for entry in sets.index}
    taus = [scipy_stats.kendalltau(ranks.loc[a], ranks.loc[b]).statistic for a, b in itertools.combinations(ranks.index, 2)]
    return kept, len(compared), round(float(np.mean(taus)), 3) if taus else np.nan


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """The robustness summary of a ``cmh_bench.results.load`` frame: one row per table, group and entry, in
    table order, then group, then rank. Columns: the table keys and ``SUMMARY_COLUMNS`` (area and drop: mean
    and std over seeds; rates and bits: the noise rates and code lengths used; clean_reference: whether the
    entry has rate-0 cells at those code lengths)."""
    seeds = per_seed(frame)
    rows = []
    for (*table, group), part in seeds.groupby([*TABLE_KEYS, "group"], sort=True):
        kept, compared, tau = rank_stability(part)
        values = part.groupby("entry").agg(area=("area", "mean"), area_std=("area", "std"), drop=("drop", "mean"),
                                           drop_std=("drop", "std"), n_seeds=("seed", "nunique"))
        values["rank"] = values.area.rank(ascending=False, method="min").astype(int)
        for entry, row in values.iterrows():
            rows.append({**dict(zip(TABLE_KEYS, table)), "group": group, "entry": entry, **row.to_dict(),
                         "rank": int(row["rank"]), "n_seeds": int(row["n_seeds"]), "rank_kept": kept.get(entry, np.nan),
                         "seeds_compared": compared, "kendall_tau": tau, "rates": part.rates.iloc[0],
                         "bits": part.bits.iloc[0], "clean_reference": bool(np.isfinite(row["drop"]))})
    ordered = pd.DataFrame(rows, columns=[*TABLE_KEYS, *SUMMARY_COLUMNS])
    order = {group: i for i, group in enumerate(RANKED_GROUPS)}
    return ordered.sort_values([*TABLE_KEYS, "group", "rank", "entry"], key=lambda c: c.map(order) if c.name == "group" else c,
                               kind="stable").reset_index(drop=True)
