"""Tests of the robustness summary (cmh_bench.robustness) on hand-made frames whose numbers are checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmh_bench import robustness


def frame(maps: dict[tuple[str, float, int, int], float], *, group: str = "ranked") -> pd.DataFrame:
    """A results frame: one ok record per (entry, rate, bits, seed) -> MAP of the ranking rule."""
    rows = [{"profile": "quick", "dataset": "toy", "split": "", "noise": "pair-swap", "entry": entry, "method": entry,
             "rate": rate, "bits": bits, "seed": seed, "status": "ok", "group": group, "map": value}
            for (entry, rate, bits, seed), value in maps.items()]
    return pd.DataFrame(rows)


def test_area_is_the_trapezoid_mean_height_over_the_noisy_rates():
    # a: rates .2 / .5 / .8 -> MAP .8 / .6 / .5: area (.3 * .7 + .3 * .55) / .6 = .625; the rate-0 cell is left out
    maps = {("a", 0.0, 16, 0): 0.9, ("a", 0.2, 16, 0): 0.8, ("a", 0.5, 16, 0): 0.6, ("a", 0.8, 16, 0): 0.5}
    seeds = robustness.per_seed(frame(maps))
    assert seeds.area.tolist() == [pytest.approx(0.625)]
    assert seeds["drop"].tolist() == [pytest.approx(0.4)]  # .9 at rate 0 minus .5 at 80 %
    assert seeds.rates.tolist() == [(0.2, 0.5, 0.8)]


def test_uneven_rates_weigh_by_their_spacing():
    # rates .2 / .4 / .8, MAP .9 / .5 / .5: trapezoid (.2 * .7 + .4 * .5) / .6 = .5667, not the plain mean .6333
    maps = {("a", 0.2, 16, 0): 0.9, ("a", 0.4, 16, 0): 0.5, ("a", 0.8, 16, 0): 0.5}
    assert robustness.per_seed(frame(maps)).area.iloc[0] == pytest.approx(0.34 / 0.6)


def test_no_clean_label_reference_without_rate_0_cells():
    maps = {(e, r, 16, 0): v for e, base in (("a", 0.8), ("b", 0.7)) for r, v in ((0.2, base), (0.8, base - 0.1))}
    summary = robustness.summary(frame(maps))
    assert summary.clean_reference.tolist() == [False, False]
    assert summary["drop"].isna().all()


def test_mean_and_std_over_seeds_and_code_lengths():
    # seed 0: bits 16 area .7, bits 32 area .8 -> .75; seed 1: .65 and .75 -> .70; mean .725, std .0354
    maps = {}
    for seed, (a16, a32) in enumerate(((0.7, 0.8), (0.65, 0.75))):
        for bits, area in ((16, a16), (32, a32)):
            maps[("a", 0.2, bits, seed)] = area + 0.1
            maps[("a", 0.8, bits, seed)] = area - 0.1
            maps[("a", 0.0, bits, seed)] = area + 0.2  # drop = .3 everywhere
    row = robustness.summary(frame(maps)).iloc[0]
    assert row.area == pytest.approx(0.725)
    assert row.area_std == pytest.approx(np.std([0.75, 0.70], ddof=1))
    assert row["drop"] == pytest.approx(0.3) and row.drop_std == pytest.approx(0.0, abs=1e-12)
    assert row.n_seeds == 2 and row.bits == (16, 32)


def test_rows_are_compared_on_the_code_lengths_every_row_has():
    # b lacks 32 bits at 80 %: both rows use 16 bits only, so a's high 32-bit numbers do not count
    maps = {("a", 0.2, 16, 0): 0.6, ("a", 0.8, 16, 0): 0.4, ("a", 0.2, 32, 0): 0.9, ("a", 0.8, 32, 0): 0.9,
            ("b", 0.2, 16, 0): 0.7, ("b", 0.8, 16, 0): 0.5, ("b", 0.2, 32, 0): 0.7}
    summary = robustness.summary(frame(maps)).set_index("entry")
    assert summary.area.to_dict() == {"a": pytest.approx(0.5), "b": pytest.approx(0.6)}
    assert summary["rank"].to_dict() == {"b": 1, "a": 2}
    assert summary.bits.tolist() == [(16,), (16,)]


def test_rank_stability_counts_seeds_keeping_the_rank_and_kendall_tau():
    # areas per seed (flat curves): a .9/.9/.7, b .8/.8/.8, c .1/.1/.1: mean order a, b, c; seed 2 swaps a and b
    areas = {"a": (0.9, 0.9, 0.7), "b": (0.8, 0.8, 0.8), "c": (0.1, 0.1, 0.1)}
    maps = {(e, r, 16, s): v[s] for e, v in areas.items() for s in range(3) for r in (0.2, 0.8)}
    summary = robustness.summary(frame(maps)).set_index("entry")
    assert summary["rank"].to_dict() == {"a": 1, "b": 2, "c": 3}
    assert summary.rank_kept.to_dict() == {"a": pytest.approx(2 / 3, abs=1e-3), "b": pytest.approx(2 / 3, abs=1e-3),
                                           "c": 1.0}
    # tau(seed0, seed1) = 1, tau(seed0, seed2) = tau(seed1, seed2) = 1/3 (one discordant pair of three)
    assert summary.kendall_tau.iloc[0] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3, abs=1e-3)
    assert (summary.seeds_compared == 3).all()


def test_label_free_rows_are_ranked_among_themselves_and_other_groups_are_left_out():
    noisy = frame({("a", r, 16, 0): 0.5 for r in (0.2, 0.8)})
    free = frame({("u", r, 16, 0): 0.9 for r in (0.2, 0.8)}, group="label-free")
    floor = frame({("floor", r, 16, 0): 0.3 for r in (0.2, 0.8)}, group="reference")
    summary = robustness.summary(pd.concat([free, noisy, floor], ignore_index=True))
    assert summary[["group", "entry", "rank"]].values.tolist() == [["ranked", "a", 1], ["label-free", "u", 1]]


def test_failed_records_and_single_seeds_give_no_stability():
    maps = {(e, r, 16, 0): v for e, v in (("a", 0.6), ("b", 0.5)) for r in (0.2, 0.8)}
    records = frame(maps)
    records.loc[len(records)] = {**records.iloc[0].to_dict(), "seed": 1, "status": "failed", "map": np.nan}
    summary = robustness.summary(records)
    assert summary.seeds_compared.tolist() == [1, 1] and summary.kendall_tau.isna().all()
    assert summary.n_seeds.tolist() == [1, 1]
