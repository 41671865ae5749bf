"""The committed leaderboard/ (markdown and site) is exactly what `cmh-bench report --html` renders from the committed results/."""

from pathlib import Path

import pytest

from cmh_bench.site import render_with_site

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / "results").is_dir() or not any((REPO / "results").rglob("*.json")),
                    reason="no committed reference run")
def test_committed_leaderboard_is_rendered_from_committed_results(tmp_path):
    render_with_site(REPO / "results", tmp_path)
    for name in ("README.md", "leaderboard.csv", "leaderboard.tex"):
        assert (tmp_path / name).read_text(encoding="utf-8") == (REPO / "leaderboard" / name).read_text(encoding="utf-8"), (
            f"leaderboard/{name} differs from a fresh render of results/; regenerate it with `cmh-bench report`")
    committed_plots = sorted(p.name for p in (REPO / "leaderboard" / "plots").glob("*.png"))
    assert committed_plots == sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    committed_site = REPO / "leaderboard" / "site"
    site_files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert site_files(committed_site) == site_files(tmp_path / "site"), (
        "leaderboard/site/ has other files than a fresh render; regenerate it with `cmh-bench report --html`")
    for name in site_files(committed_site):
        assert (committed_site / name).read_bytes() == (tmp_path / "site" / name).read_bytes(), (
            f"leaderboard/site/{name} differs from a fresh render of results/; regenerate it with `cmh-bench report --html`")
