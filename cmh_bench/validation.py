"""Up-front checks of a run's inputs: one function per concept, called by the runner before any cell
runs or any byte is written, and by the harness for the cell it runs (so a worker and the driver
apply the same rule).

Each check raises :class:`cmh_bench.errors.UserError` with one line naming the problem and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from cmh_bench.errors import UserError
from cmh_bench.grid import Grid


def check_bits(bits: int) -> None:
    """A code length is a positive number of bits."""
    if bits < 1:
        raise UserError(f"code length {bits} must be a positive number of bits")


def check_hparams(method: str, profile: str, hparams: dict) -> None:
    """The method exists, its profile (and tuned profile file) reads, and the overrides name its
    hyper-parameters with values of the right type."""
    from cmh_bench.profiles import hparams_for
    from cmh_bench.registry import get_method

    hparams_for(get_method(method), profile, {}, hparams)


def check_validation_options(fraction: float | None, every: int) -> None:
    """A validation fraction in [0, 1) (None: the card's or the default) and a period of at least 0 epochs."""
    from cmh_bench.splits import check_validation_fraction

    if fraction is not None:
        check_validation_fraction(fraction)
    if every < 0:
        raise UserError(f"--val-every {every}: give a number of epochs >= 0 (0: the final epoch only)")


def check_dataset(dataset_file: Path, split: str | None, cells: list) -> None:
    """The dataset file is valid (read once), has the split preset (None: the file's default), and each of
    its ``cells``' validation parts holds out at least two training items and leaves some to fit on, and
    leaves at least as many as the cell's clean meta set."""
    from cmh_bench.cards import find_card
    from cmh_bench.dataset import read_info, resolve_split
    from cmh_bench.metaset import check_meta_fits
    from cmh_bench.splits import validation_fraction, validation_split

    info = read_info(dataset_file)
    n_train = info.split_sizes[resolve_split(info, split)]["train"]
    for fraction, meta in dict.fromkeys((validation_fraction(c, find_card(c.dataset)), c.clean_meta) for c in cells):
        check_meta_fits(meta, len(validation_split(n_train, fraction)[0]))


def check_device(device: str, mixed_precision: bool, *, runs_here: bool, pins_gpus: bool) -> None:
    """The device can be used by the cells: a known name; available here (and bf16 autocast on CUDA only)
    when the cells run on this machine; and, under an executor that gives each cell its own GPU(s)
    (which the cell sees as cuda:0, …), not ``cuda:N``, which would name another cell's GPU or none."""
    from cmh_bench.device import check_device_name, check_precision, resolve_device

    check_device_name(device)
    if pins_gpus and device.startswith("cuda:"):
        raise UserError(f"--device {device}: this executor gives each cell its own GPU, which the cell sees as cuda:0; "
                        f"use --device cuda (or auto)")
    if runs_here:
        check_precision(resolve_device(device), mixed_precision)


def check_writable(path: str | os.PathLike, option: str, *, folder: bool) -> None:
    """``path`` (a folder when ``folder``, else a file) can be created or replaced by this user.

    The nearest existing ancestor must be a writable folder; an existing ``path`` must be of the
    right kind.
    """
    path = Path(path).expanduser()
    kind = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{option} {path}: is a {'file' if folder else 'folder'}, not a {kind}; give another path")
    nearest = path if path.is_dir() else path.parent
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():
        raise UserError(f"{option} {path}: cannot create it, {nearest} is a file; give another path")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {nearest} is not writable; give another path")


def validate_grid(grid: Grid, results_dir: Path) -> None:
    """Every check a run needs, before any training or writing: plugins, methods and hyper-parameters,
    the clean meta set option, noise models and rates, datasets, bits, the validation options and the
    results folder (the device is checked by :func:`check_device`, which needs the executor).

    Split presets, validation parts and the clean meta sets' sizes are checked by :func:`check_dataset`
    once the dataset files exist (see the runner).
    """
    from cmh_bench.catalog import available_datasets, ensure_dataset, synthetic_names
    from cmh_bench.metaset import check_meta_option
    from cmh_bench.noise import check_noise_options, check_rate
    from cmh_bench.registry import load_plugin_file

    options = grid.cell_options
    for plugin in options.get("plugins", ()):
        load_plugin_file(plugin)
    for method in grid.methods:
        check_hparams(method, options.get("profile", "quick"), dict(options.get("hparams", ())))
        check_meta_option(method, options.get("clean_meta"))
    for noise in grid.noise:
        for rate in grid.rates:
            check_rate(rate, noise)  # also rejects an unknown noise model
    check_noise_options(options.get("noise_file"), grid.noise, grid.rates)
    known = set(available_datasets(include_toy=True)) | set(synthetic_names())
    for dataset in grid.datasets:
        if dataset not in known:
            ensure_dataset(dataset)  # raises a UserError saying how to get it
    for bits in grid.bits:
        check_bits(bits)
    check_validation_options(options.get("val_fraction"), options.get("val_every", 0))
    check_writable(results_dir, "--results", folder=True)
