"""The method registry: built-ins (lazy), entry points, plugin files, duplicates, suggestions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cmh_bench import registry
from cmh_bench.errors import UserError
from cmh_bench.methods import BUILTIN_METHODS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "linear_hashing.py"


def test_listing_methods_imports_no_torch():
    code = "import sys; from cmh_bench.cli import main; main(['list', 'methods']); print('TORCH', 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "scbch-no-cscc" in out and "TORCH False" in out


@pytest.mark.parametrize("row", BUILTIN_METHODS, ids=[r[0] for r in BUILTIN_METHODS])
def test_builtin_index_matches_the_classes(row):
    name, target, version, paper, role, variant, _ = row
    entry = registry.get_method(name)
    cls = entry.load()
    assert (cls.version, cls.paper) == (version, paper)
    if variant:  # a variant's overrides must name real hyper-parameters
        fields = set(cls.Hparams.__dataclass_fields__)
        assert set(variant) <= fields


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean scbch"):
        registry.get_method("scbhc")


def test_plugin_file_registers_its_methods_and_variants():
    registry.load_plugin_file(EXAMPLE)
    entry = registry.get_method("linear-hashing-short")
    assert entry.variant == {"epochs": 2}
    assert entry.source.startswith("plugin file") and entry.load().__name__ == "LinearHashing"


def test_duplicate_name_names_both_sources(tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text(textwrap.dedent("""
        from cmh_bench.method import HashingMethod
        from cmh_bench.registry import register_method

        @register_method("dcmh")
        class NotDCMH(HashingMethod):
            paper = "test"
    """))
    registry.load_plugin_file(clash)
    try:
        with pytest.raises(UserError, match=r"'dcmh' is registered twice: by built-in .* and by plugin file"):
            registry.all_methods()
    finally:
        registry._decorated.pop("dcmh")


def test_missing_plugin_file():
    with pytest.raises(UserError, match="does not exist"):
        registry.load_plugin_file("no/such/file.py")


def _fake_installed_package(root: Path) -> None:
    """An out-of-tree plugin package, installed the way pip leaves it (a .dist-info with entry points)."""
    (root / "toyhash").mkdir(parents=True)
    (root / "toyhash" / "__init__.py").write_text(EXAMPLE.read_text().replace('@register_method("linear-hashing", variants={"linear-hashing-short": {"epochs": 2}})\n', ""))
    dist = root / "toyhash-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyhash\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cmh_bench.methods]\ntoy-linear = toyhash:LinearHashing\n")


def test_an_installed_plugin_package_runs_through_the_cli(tmp_path):
    _fake_installed_package(tmp_path / "site")
    env = {"PYTHONPATH": str(tmp_path / "site"), "CMH_BENCH_DATA": str(tmp_path / "data"), "COLUMNS": "250"}
    import os

    env = {**os.environ, **env}
    listing = subprocess.run([sys.executable, "-m", "cmh_bench", "list", "methods"], capture_output=True, text=True, env=env)
    assert "toy-linear" in listing.stdout and "entry point toyhash" in listing.stdout
    run = subprocess.run(
        [sys.executable, "-m", "cmh_bench", "run", "--methods", "toy-linear", "--datasets", "toy", "--rates", "0.5",
         "--bits", "16", "--results", str(tmp_path / "results"), "--profile", "quick"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    records = list((tmp_path / "results").rglob("*.json"))
    assert len(records) == 1 and "toy-linear" in str(records[0])
