"""``cmh-bench tune``: the same grid for every method, scored on the noisy validation part only, written
with its provenance to the tuned profile file that ``--profile quick`` then reads."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from cmh_bench.cli import main
from cmh_bench.errors import UserError
from cmh_bench.profiles import hparams_for, profile_path, tuned_values
from cmh_bench.registry import get_method, load_plugin_file
from cmh_bench.tune import LR_FACTORS, extension_factor, grid_points, learning_rate_fields

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "linear_hashing.py"


NAMES = itertools.count()


@pytest.fixture
def plugin(tmp_path) -> tuple[Path, str]:
    """A copy of the example plugin under a new name, in its own folder (its tuned file goes beside it):
    (file, method name); each test gets its own name, since a process registers a name once."""
    name = f"tuned-linear-{next(NAMES)}"
    path = tmp_path / "plugin" / "tuned_linear.py"
    path.parent.mkdir()
    path.write_text(EXAMPLE.read_text().replace('"linear-hashing"', f'"{name}"').replace('"linear-hashing-short"', f'"{name}-short"'))
    return path, name


def test_the_grid_scales_every_learning_rate_of_every_method_alike():
    from cmh_bench.methods.dcmh import DCMHHparams
    from cmh_bench.methods.rshnl import RSHNLHparams

    assert learning_rate_fields(RSHNLHparams) == ["lr", "center_lr"]
    assert learning_rate_fields(DCMHHparams) == ["lr_start", "lr_end"]
    points = grid_points(get_method("rshnl"), (30, 50))
    expected = [(f, f, e) for f in LR_FACTORS for e in (30, 50)]
    assert [(round(p["lr"] / 1e-4, 9), round(p["center_lr"] / 1e-4, 9), p["epochs"]) for p in points] == expected
    with pytest.raises(UserError, match="no epochs hyper-parameter"):
        grid_points(get_method("floor-constant"))


def test_tune_writes_the_profile_that_quick_reads(plugin, tmp_path, capsys):
    plugin, name = plugin
    argv = ["tune", name, "--plugin", str(plugin), "--datasets", "toy", "--bits", "16", "--epochs", "2",
            "--val-every", "1", "--results", str(tmp_path / "tuning")]
    assert main(argv) == 0, capsys.readouterr().err
    load_plugin_file(plugin)
    entry = get_method(name)
    path = profile_path(entry, "quick")
    assert path == plugin.parent / "profiles" / "quick" / f"{name}.yaml" and path.is_file()
    document = yaml.safe_load(path.read_text())
    scores = document["provenance"]["scores"]
    lrs = [s["values"]["lr"] for s in scores]
    assert lrs[:3] == pytest.approx([1e-3 * f for f in LR_FACTORS]) and len(lrs) <= 5  # plus edge extensions
    assert document["provenance"]["grid"]["lr_factors"] == pytest.approx(sorted(lr / 1e-3 for lr in lrs))
    assert all(s["cells"] == 1 and s["failed"] == 0 for s in scores)
    best = max(scores, key=lambda s: s["score"])
    assert document["values"] == best["values"] and document["provenance"]["cells"]["datasets"] == ["toy"]
    # the chosen score is the val rule's score of the tuning records, nothing else
    records = sorted((tmp_path / "tuning").rglob("seed0.json"))
    assert len(records) == len(lrs)  # one record per grid point (one cell each)
    import json

    val_scores = sorted(json.loads(r.read_text())["selections"]["val"]["score"] for r in records)
    assert sorted(s["score"] for s in scores) == pytest.approx(val_scores)
    # --profile quick reads it; paper does not; user overrides still win
    assert tuned_values(entry, "quick") == document["values"]
    hp = hparams_for(entry, "quick", {}, {})
    assert (hp.lr, hp.epochs) == (pytest.approx(document["values"]["lr"]), 2)
    assert hparams_for(entry, "paper", {}, {}).lr == 1e-3 and hparams_for(entry, "quick", {}, {"lr": "0.5"}).lr == 0.5
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("values: [unclosed", "does not parse"),
    ("method: x\n", "has no mapping 'values'"),
    ("values: {no_such_key: 1}\n", "has no hyper-parameter 'no_such_key'"),
])
def test_a_bad_profile_file_is_one_line_and_exit_2_before_any_cell(plugin, tmp_path, capsys, content, message):
    plugin, name = plugin
    (plugin.parent / "profiles" / "quick").mkdir(parents=True)
    (plugin.parent / "profiles" / "quick" / f"{name}.yaml").write_text(content)
    results = tmp_path / "results"
    argv = ["run", "--plugin", str(plugin), "--methods", name, "--datasets", "toy", "--profile", "quick",
            "--results", str(results)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not results.exists() or not list(results.rglob("*.json"))


def test_tune_refuses_what_it_cannot_tune(plugin, capsys):
    plugin, name = plugin
    assert main(["tune", name, "--plugin", str(plugin), "--datasets", "toy", "--val-fraction", "0"]) == 2
    assert "--val-fraction above 0" in capsys.readouterr().err


def test_the_grid_extends_beyond_an_edge_winner_at_most_twice():
    entry = get_method("rshnl")
    points = grid_points(entry)  # factors 1, 1/4, 4

    def scored(best_factor_index: int, n: int) -> list[dict]:
        return [{"score": 0.9 if i == best_factor_index else 0.5, "cells": 2, "failed": 0} for i in range(n)]

    assert extension_factor(entry, points, scored(0, 3)) is None  # the published lr wins: inside the grid
    assert extension_factor(entry, points, scored(2, 3)) == pytest.approx(16.0)  # 4x wins: try 16x
    assert extension_factor(entry, points, scored(1, 3)) == pytest.approx(1 / 16)
    wider = points + grid_points(entry, factors=(16.0,))
    assert extension_factor(entry, wider, scored(3, 4)) == pytest.approx(64.0)
    widest = wider + grid_points(entry, factors=(64.0,))
    assert extension_factor(entry, widest, scored(4, 5)) is None  # two extensions at most
    failed = [{"score": None, "cells": 0, "failed": 2}] * 3
    assert extension_factor(entry, points, failed) is None
