"""Test-wide setup: a private data directory, so tests never read or write the user's datasets."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_data_dir(tmp_path_factory):
    """Point $CMH_BENCH_DATA at a temporary folder shared by the whole session (toy is generated once)."""
    folder = tmp_path_factory.mktemp("cmh-bench-data")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("CMH_BENCH_DATA", str(folder))
    yield folder
    patcher.undo()

# Plugin files for the tests are loaded by path (as users' --plugin files are), never imported as modules.
collect_ignore = ["plugins"]
