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

@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run every test on one torch thread: the tiny test networks are slower with several, and CI is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Plugin files for the tests are loaded by path (as users' --plugin files are), never imported as modules.
collect_ignore = ["plugins"]
