"""The ``cmh-bench`` command line (typer + rich).

User errors (:class:`cmh_bench.errors.UserError`) are printed as one line and exit with code 2;
bugs keep their traceback. Heavy modules (torch, the methods) are imported inside the commands
that need them, so ``--help`` and ``list`` stay fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cmh_bench.cell import DEFAULT_VAL_EVERY
from cmh_bench.errors import UserError

app = typer.Typer(
    name="cmh-bench",
    help="Benchmark cross-modal hashing methods under label noise.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
list_app = typer.Typer(help="List datasets, noise models and methods.", no_args_is_help=True)
data_app = typer.Typer(help="Create, import and inspect dataset files.", no_args_is_help=True)
app.add_typer(list_app, name="list")
app.add_typer(data_app, name="data")

console = Console()


class ConsoleRunObserver:
    """Shows a run: a live progress bar (cells, current cell's epochs, ETA) on a terminal, and one line per
    finished cell when the output is not a terminal (a log file, CI). Failed cells always get a line."""

    def __init__(self, out: Console):
        self.out = out
        self.progress = None
        self.finished = 0
        self.todo = 0

    def __enter__(self) -> "ConsoleRunObserver":
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def planned(self, total: int, skipped: int, todo: list, results_dir: Path) -> None:
        """Print the plan; start the progress bar on a terminal."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.todo = len(todo)
        self.out.print(f"{total} cells, {skipped} already complete, {len(todo)} to run -> {results_dir}")
        if todo and self.out.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), console=self.out)
            self.progress.start()
            self.overall = self.progress.add_task("cells", total=len(todo))
            self.current = self.progress.add_task("", total=None)

    def epoch(self, cell, done: int, total: int) -> None:
        """Advance the current cell's bar."""
        if self.progress is not None:
            self.progress.update(self.current, description=cell.describe(), completed=done, total=total or None)

    def cell_done(self, cell, record: dict) -> None:
        """One line for a failed cell, and for every cell when not on a terminal."""
        self.finished += 1
        if record["status"] != "ok":
            error = record["error"]
            self.out.print(f"[red]failed[/red] {escape(cell.describe())}: {escape(error['type'])}: {escape(error['message'])}",
                           soft_wrap=True)
        elif self.progress is None:
            selections = record["selections"]
            rule = "val" if "val" in selections else "final"
            chosen = selections[rule]
            self.out.print(f"[{self.finished}/{self.todo}] {escape(cell.describe())}: MAP {chosen['metrics']['mean']['map']:.4f} "
                           f"({rule}, epoch {chosen['epoch']}), {record['seconds']['total']:.0f} s", highlight=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.advance(self.overall)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


@list_app.command("datasets")
def list_datasets() -> None:
    """Datasets with a card (and whether their file is present), then every card-less file of the data directory."""
    from cmh_bench.cards import all_cards
    from cmh_bench.catalog import cardless_files, data_dir, dataset_path
    from cmh_bench.dataset import read_info

    rows = []
    for card in all_cards().values():
        present = dataset_path(card.name).is_file()
        status = "present" if present else ("generated on first use" if card.kind == "synthetic" else "not imported")
        rows.append([card.name, card.kind, card.title, str(card.classes), status])
    for path in cardless_files():
        try:
            info = read_info(path)
            rows.append([path.stem, "no card", info.name, str(info.n_classes), "present"])
        except UserError as error:
            rows.append([path.stem, "no card", "", "", f"invalid: {error}"])
    console.print(_table(f"datasets (data directory: {data_dir()})", ["name", "kind", "title", "classes", "file"], rows))


@list_app.command("noise")
def list_noise() -> None:
    """The label-noise models, with their versions."""
    from cmh_bench.noise import NOISE_MODELS

    rows = [[m.name, m.version, m.summary] for m in NOISE_MODELS.values()]
    console.print(_table("noise models", ["name", "version", "what it does"], rows))


@data_app.command("info")
def data_info(dataset: str = typer.Argument(..., help="A dataset name (see `cmh-bench list datasets`) or a dataset file (.h5).")) -> None:
    """Validate a dataset file and print its summary."""
    from cmh_bench.catalog import ensure_dataset
    from cmh_bench.dataset import read_info

    info = read_info(ensure_dataset(dataset))
    console.print(f"[bold]{info.name}[/bold]  ({info.path})")
    console.print(f"source: {info.source}")
    if info.description:
        console.print(f"description: {info.description.strip()}")
    console.print(f"items: {info.n_items}   classes: {info.n_classes}")
    console.print(f"image: {info.image_dim}-d {info.image_dtype}   text: {info.text_dim}-d {info.text_dtype}")
    rows = [
        [preset + (" (default)" if preset == info.default_split else ""), *(str(sizes[p]) for p in ("query", "train", "database"))]
        for preset, sizes in info.split_sizes.items()
    ]
    console.print(_table("split presets", ["preset", "query", "train", "database"], rows))
    console.print(f"created by: {info.created_by}   content sha256: {info.content_sha256[:16]}…")


@data_app.command("synth")
def data_synth(
    name: str = typer.Argument(..., help="A synthetic stand-in: toy, synth-flickr, synth-nus, synth-coco, synth-iapr."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: <data dir>/NAME.h5)."),
    seed: int = typer.Option(0, help="Generator seed."),
    scale: Optional[float] = typer.Option(None, help="Shrink sizes and feature dims (0 < scale <= 1; default: the card's)."),
) -> None:
    """Generate a synthetic dataset file."""
    from cmh_bench.cards import get_card
    from cmh_bench.catalog import dataset_path, write_synthetic

    from cmh_bench.validation import check_writable

    card = get_card(name)
    if card.kind != "synthetic":
        raise UserError(f"{name!r} is a real dataset; import it with `cmh-bench data import`, or pick a synthetic one")
    check_writable(out or dataset_path(name), "--out", folder=False)
    path = write_synthetic(name, out or dataset_path(name), seed=seed, scale=scale)
    console.print(f"wrote {path}")


@data_app.command("import")
def data_import(
    name: str = typer.Argument(..., help="A real dataset: mirflickr, nus-wide, coco, iapr."),
    source: Path = typer.Option(..., "--from", help="The folder holding the dataset's public feature files."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: <data dir>/NAME.h5, NAME of the variant)."),
    variant: Optional[str] = typer.Option(None, help="A variant of the card (nus-wide: tc21 (default) or tc10, written as nus-wide-tc10)."),
    seed: int = typer.Option(0, help="Seed of the 'random' split preset."),
    allow_width: bool = typer.Option(False, "--allow-width", help="Accept image / text features of another width than the card's (recorded in the file)."),
) -> None:
    """Import a real dataset from its public files (see docs/real-data.md)."""
    from cmh_bench.catalog import data_dir
    from cmh_bench.importers import import_dataset
    from cmh_bench.validation import check_writable

    if out is None:
        check_writable(data_dir(), "data directory", folder=True)
    else:
        check_writable(out, "--out", folder=False)
    console.print(f"wrote {import_dataset(name, source, out, variant=variant, seed=seed, allow_width=allow_width)}")


@data_app.command("pack")
def data_pack(
    name: str = typer.Option(..., help="The dataset name."),
    image: str = typer.Option(..., help="Image features: FILE (.npy, or a file with one matrix) or FILE:KEY (.npy, .mat v5/v7.3, HDF5); FILE:A+B stacks parts, the last is the test part."),
    text: str = typer.Option(..., help="Text features, as --image."),
    labels: str = typer.Option(..., help="0/1 labels (items x classes), as --image."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: <data dir>/NAME.h5)."),
    split: Optional[str] = typer.Option(None, help="Split presets, comma-separated: nrch, ucch, random (need --query, --train) or file (the parts of A+B); default: file for parts, else nrch."),
    query: Optional[int] = typer.Option(None, help="Query size Q of the presets."),
    train: Optional[int] = typer.Option(None, help="Training size T of the presets."),
    query_index: Optional[str] = typer.Option(None, help="Query rows: an index file FILE[:KEY] (with --train-index and --database-index; preset 'given')."),
    train_index: Optional[str] = typer.Option(None, help="Training rows: an index file FILE[:KEY]."),
    database_index: Optional[str] = typer.Option(None, help="Database rows: an index file FILE[:KEY]."),
    index_base: int = typer.Option(0, help="0 if the index files count rows from 0 (numpy), 1 if from 1 (MATLAB)."),
    class_names: Optional[str] = typer.Option(None, help="A text file with one class name per line, or NAME,NAME,... (default: class00, class01, ...)."),
    seed: int = typer.Option(0, help="Seed of the 'random' split preset."),
) -> None:
    """Build a dataset file from image / text / label arrays you already have (.npy, .mat, HDF5)."""
    from cmh_bench.catalog import dataset_path
    from cmh_bench.pack import pack_dataset
    from cmh_bench.validation import check_writable

    check_writable(out or dataset_path(name), "--out", folder=False)
    given = {"query": query_index, "train": train_index, "database": database_index}
    path = pack_dataset(
        name, image, text, labels, out, presets=_split_list(split, "split"), query=query, train=train,
        index={part: ref for part, ref in given.items() if ref is not None}, index_base=index_base,
        class_names=class_names, seed=seed,
    )
    console.print(f"wrote {path}")


@data_app.command("extract")
def data_extract(
    images: Path = typer.Option(..., help="A folder of images (sorted by file name) or a file listing image paths."),
    texts: Path = typer.Option(..., help="A text file, one caption or tag list per line."),
    labels: Path = typer.Option(..., help="A .npy 0/1 matrix, or a text file: per line 0/1 entries or class names."),
    name: str = typer.Option(..., help="The dataset name."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: <data dir>/NAME.h5)."),
    text_kind: str = typer.Option("bow", help="bow (binary bag of words) or doc2vec."),
    vocab: int = typer.Option(1386, help="Bag-of-words vocabulary: the most frequent tokens."),
    doc2vec_dim: int = typer.Option(300, help="Doc2Vec vector size."),
    doc2vec_epochs: int = typer.Option(20, help="Doc2Vec training epochs."),
    weights: Optional[Path] = typer.Option(None, help="A torchvision VGG-19 state dict (default: torchvision's cached one)."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Random VGG-19 weights: meaningless features, for tests only."),
    device: str = typer.Option("auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    split: str = typer.Option("nrch", help="Split presets, comma-separated (nrch, ucch, random); the first is the default."),
    query: Optional[int] = typer.Option(None, help="Query size Q (default: the card's, if NAME has one)."),
    train: Optional[int] = typer.Option(None, help="Training size T (default: the card's, if NAME has one)."),
    seed: int = typer.Option(0, help="Seed of Doc2Vec and of the 'random' split preset."),
) -> None:
    """Build a dataset file from raw images, texts and labels (VGG-19 fc7 + bag of words or Doc2Vec)."""
    from rich.progress import Progress

    from cmh_bench.catalog import dataset_path
    from cmh_bench.extract import extract_dataset
    from cmh_bench.validation import check_writable

    check_writable(out or dataset_path(name), "--out", folder=False)
    with Progress(transient=True, console=console) as bar:
        task = bar.add_task("VGG-19 fc7", total=None)
        path = extract_dataset(
            images, texts, labels, name, out, text_kind=text_kind, vocab=vocab, doc2vec_dim=doc2vec_dim,
            doc2vec_epochs=doc2vec_epochs, weights=weights, random_weights=random_weights, device=device,
            batch_size=batch_size, presets=tuple(p for p in split.split(",") if p), query=query, train=train, seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"wrote {path}")


@app.command("eval")
def eval_codes(
    codes: Path = typer.Argument(..., help="A codes file (HDF5, schema cmh-bench/codes)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
) -> None:
    """Score stored hash codes under this benchmark's protocol (tie-aware MAP@all, both directions)."""
    import json

    from cmh_bench.codes_file import evaluate_codes_file

    result = evaluate_codes_file(codes)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    rows = [
        [direction, f"{result[direction]['map']:.4f}", f"{result[direction]['map_optimistic']:.4f}",
         f"{result[direction]['map_pessimistic']:.4f}", f"{result[direction]['map_stable']:.4f}"]
        for direction in ("i2t", "t2i")
    ]
    console.print(_table(f"{codes}", ["direction", "MAP (tie-aware)", "optimistic", "pessimistic", "stable"], rows))


def _split_list(value: str | None, option: str, kind=str) -> tuple:
    """The comma-separated values of ``--option``; () when the option is not given, an error when it is given empty."""
    if value is None:
        return ()
    try:
        values = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--{option} {value!r}: cannot read it as a comma-separated list of {kind.__name__}") from None
    if not values:
        raise UserError(f"--{option} is empty; give at least one value, or leave the option out for the suite's default")
    return values


def _parse_hparams(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    parsed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--hp {pair!r}: write hyper-parameter overrides as KEY=VALUE, e.g. --hp epochs=10")
        parsed.append((key.strip(), value.strip()))
    return tuple(sorted(parsed))


@list_app.command("methods")
def list_methods(
    plugin: list[Path] = typer.Option([], "--plugin", help="Also load methods from this Python file."),
) -> None:
    """Registered methods: name, version, paper, role and where they come from."""
    from cmh_bench.registry import all_methods, load_plugin_file

    for path in plugin:
        load_plugin_file(path)
    rows = [[e.name, e.version, e.role, e.paper, e.source] for e in all_methods().values()]
    console.print(_table("methods", ["name", "version", "role", "paper", "source"], rows))


@app.command("run")
def run(
    methods: str = typer.Option(..., help="Comma-separated method names (see `cmh-bench list methods`)."),
    datasets: Optional[str] = typer.Option(None, help="Comma-separated dataset names, or 'all' (every dataset available here; the quick suite's default)."),
    noise: Optional[str] = typer.Option(None, help="Noise model(s), comma-separated (default: the suite's, pair-swap)."),
    rates: Optional[str] = typer.Option(None, help="Noise rates, e.g. 0.2,0.5,0.8 (default: the suite's)."),
    bits: Optional[str] = typer.Option(None, help="Code lengths, e.g. 16,32,64,128 (default: the suite's)."),
    seeds: Optional[str] = typer.Option(None, help="Seeds, e.g. 0,1,2 (default: the suite's)."),
    profile: Optional[str] = typer.Option(None, help="paper (published hyper-parameters, GPU) or quick (CPU); default: paper on a GPU, quick otherwise."),
    suite: Optional[str] = typer.Option(None, help="Named grid whose axes are the defaults (default: the profile's)."),
    results: Path = typer.Option(Path("results"), help="Results directory."),
    jobs: int = typer.Option(1, help="Cells run at once in local worker processes."),
    executor: str = typer.Option("local", help="Where cells run: local, ray, slurm or slurm-local (docs/cluster.md)."),
    address: Optional[str] = typer.Option(None, help="Ray: the cluster to join, auto or HOST:PORT (default: start Ray on this machine)."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Ray: start the local instance's dashboard (localhost:8265; needs Ray's dashboard packages)."),
    cpus_per_cell: Optional[int] = typer.Option(None, help="Ray/SLURM: CPUs (and torch threads) per cell (default: cores / --jobs here, 1 on a cluster)."),
    gpus_per_cell: float = typer.Option(0.0, help="Ray/SLURM: GPUs per cell (Ray accepts fractions)."),
    partition: Optional[str] = typer.Option(None, help="SLURM: the partition (default: the cluster's default)."),
    time_limit: Optional[int] = typer.Option(None, "--time", help="SLURM: time limit per cell in minutes (default: 240)."),
    device: str = typer.Option("auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="bf16 autocast on CUDA (refused elsewhere); part of the result's key and path (+bf16)."),
    split: Optional[str] = typer.Option(None, help="Split preset of the dataset files (default: each file's default)."),
    noise_seed: Optional[int] = typer.Option(None, help="Fix the noise seed for every training seed (default: noise seed = seed)."),
    val_fraction: Optional[float] = typer.Option(None, help="Share of the training items held out for validation (default: the dataset card's, else 0.1; 0: no validation)."),
    val_every: int = typer.Option(DEFAULT_VAL_EVERY, help="Evaluate the validation part and the test queries every N epochs, for model selection and the MAP curves (0: the final epoch only)."),
    noise_file: Optional[str] = typer.Option(None, help="With --noise file: the noisy training labels PATH[:KEY] (e.g. the authors' noise_label/*.h5); its sha256 keys the result."),
    hp: list[str] = typer.Option([], "--hp", help="Hyper-parameter override KEY=VALUE (repeatable); recorded and part of the result path."),
    plugin: list[Path] = typer.Option([], "--plugin", help="Load methods from this Python file (repeatable)."),
    save_codes: bool = typer.Option(False, "--save-codes", help="Also write each cell's codes and distance histograms (.h5 beside the record)."),
    force: bool = typer.Option(False, "--force", help="Redo cells that already have a complete record."),
) -> None:
    """Run a grid of cells (datasets x noise x rates x bits x methods x seeds); resumable."""
    from cmh_bench.backends import make_executor
    from cmh_bench.catalog import cardless_warnings
    from cmh_bench.device import resolve_device
    from cmh_bench.matrices import absolute_ref
    from cmh_bench.method import PROFILES
    from cmh_bench.runner import run_grid
    from cmh_bench.suites import grid_from_options

    if profile is not None and profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if profile is None:
        profile = "paper" if resolve_device(device).type != "cpu" else "quick"
        console.print(f"profile: {profile} (no --profile given; {'a GPU is' if profile == 'paper' else 'no GPU is'} available)")
    grid = grid_from_options(
        suite=suite or profile, methods=_split_list(methods, "methods"), datasets=_split_list(datasets, "datasets"),
        noise=_split_list(noise, "noise"), rates=_split_list(rates, "rates", float), bits=_split_list(bits, "bits", int),
        seeds=_split_list(seeds, "seeds", int),
        cell_options=dict(
            profile=profile, device=device, mixed_precision=mixed_precision, split=split, noise_seed=noise_seed,
            val_fraction=val_fraction, val_every=val_every, hparams=_parse_hparams(hp),
            noise_file=absolute_ref(noise_file) if noise_file else None,
            plugins=tuple(str(p.resolve()) for p in plugin), save_codes=save_codes,
            threads=max(1, (os.cpu_count() or 1) // max(1, jobs)),
        ),
    )
    options = grid.cell_options
    for line in cardless_warnings(grid.datasets, grid.methods, profile, dict(options["hparams"]), options["plugins"]):
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)
    backend = make_executor(
        executor, jobs, results=results, address=address, dashboard=dashboard, cpus_per_cell=cpus_per_cell,
        gpus_per_cell=gpus_per_cell, partition=partition, time=time_limit,
    )
    with ConsoleRunObserver(console) as observer:
        summary = run_grid(grid, results, backend, force=force, observer=observer)
    console.print(f"done: {summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped in {summary.seconds:.0f} s")
    if summary.failed:
        raise typer.Exit(1)


@app.command("tune")
def tune(
    method: str = typer.Argument(..., help="The method to tune (see `cmh-bench list methods`)."),
    datasets: Optional[str] = typer.Option(None, help="Comma-separated datasets (default: the tune suite's, synth-flickr,synth-coco)."),
    noise: Optional[str] = typer.Option(None, help="Noise model(s) (default: pair-swap)."),
    rates: Optional[str] = typer.Option(None, help="Noise rates (default: 0.5)."),
    bits: Optional[str] = typer.Option(None, help="Code lengths (default: 32)."),
    seeds: Optional[str] = typer.Option(None, help="Seeds (default: 0)."),
    epochs: str = typer.Option("50", help="Epoch budget(s) of the grid, comma-separated (the same for every method)."),
    profile: str = typer.Option("quick", help="The profile whose tuned file is written (its other values are the base)."),
    results: Path = typer.Option(Path("tuning"), help="Where the tuning runs' records go (resumable)."),
    jobs: int = typer.Option(1, help="Cells run at once in local worker processes."),
    device: str = typer.Option("auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
    val_fraction: Optional[float] = typer.Option(None, help="Share of training items held out for validation (default: the card's, else 0.1)."),
    val_every: int = typer.Option(DEFAULT_VAL_EVERY, help="Evaluate the validation part every N epochs."),
    plugin: list[Path] = typer.Option([], "--plugin", help="Load methods from this Python file (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Redo tuning cells that already have a complete record."),
) -> None:
    """Tune a method's learning rate(s) x epoch budget on the noisy validation part; write its tuned profile file."""
    from cmh_bench.backends import make_executor
    from cmh_bench.registry import get_method, load_plugin_file
    from cmh_bench.runner import run_grid
    from cmh_bench.suites import grid_from_options
    from cmh_bench.validation import validate_grid
    from cmh_bench.tune import check_tuning_grid, extension_factor, grid_points, point_grid, score_point, write_tuned_profile

    executor = make_executor("local", jobs)
    plugins = tuple(str(p.resolve()) for p in plugin)
    for path in plugins:
        load_plugin_file(path)
    base = grid_from_options(
        suite="tune", methods=(method,), datasets=_split_list(datasets, "datasets"), noise=_split_list(noise, "noise"),
        rates=_split_list(rates, "rates", float), bits=_split_list(bits, "bits", int), seeds=_split_list(seeds, "seeds", int),
        cell_options=dict(profile=profile, device=device, val_fraction=val_fraction, val_every=val_every, plugins=plugins,
                          threads=max(1, (os.cpu_count() or 1) // jobs)),
    )
    check_tuning_grid(base)
    entry = get_method(method)
    budgets = _split_list(epochs, "epochs", int)
    points = grid_points(entry, budgets)
    for point in points:  # every grid point's input is checked before any cell runs
        validate_grid(point_grid(point, base), results)
    scored: list[dict] = []
    while len(scored) < len(points):
        for point in points[len(scored):]:
            console.print("grid point: " + ", ".join(f"{k}={v:g}" for k, v in point.items()))
            grid = point_grid(point, base)
            with ConsoleRunObserver(console) as observer:
                run_grid(grid, results, executor, force=force, observer=observer)
            scored.append(score_point(grid, results))
        factor = extension_factor(entry, points, scored)
        if factor is not None:
            console.print(f"the best point is at an edge of the grid: adding lr factor {factor:g}")
            points += grid_points(entry, budgets, (factor,))
    command = " ".join(["cmh-bench tune", method, f"--datasets {','.join(base.datasets)}", f"--noise {','.join(base.noise)}",
                        f"--rates {','.join(f'{r:g}' for r in base.rates)}", f"--bits {','.join(map(str, base.bits))}",
                        f"--seeds {','.join(map(str, base.seeds))}", f"--epochs {epochs}", f"--profile {profile}",
                        *([f"--val-fraction {val_fraction:g}"] if val_fraction is not None else []), f"--val-every {val_every}"])
    path = write_tuned_profile(entry, base, points, scored, command)
    rows = [[", ".join(f"{k}={v:g}" for k, v in point.items()), "—" if s["score"] is None else f"{s['score']:.4f}",
             str(s["cells"]), str(s["failed"])] for point, s in zip(points, scored)]
    console.print(_table(f"tuning {method} (noisy-validation MAP at the val-selected epoch)", ["values", "score", "cells", "failed"], rows))
    console.print(f"wrote {path}")


@app.command("check")
def check(
    name: str = typer.Argument(..., help="A method name."),
    plugin: list[Path] = typer.Option([], "--plugin", help="Load methods from this Python file first."),
) -> None:
    """Run a method on the toy dataset and check its contract (codes, determinism, finite losses, labels)."""
    from cmh_bench.contract import check_method

    results = check_method(name, plugins=tuple(str(p.resolve()) for p in plugin))
    rows = [[label, "[green]pass[/green]" if ok else "[red]FAIL[/red]", detail] for label, ok, detail in results]
    console.print(_table(f"contract checks of {name} on toy", ["check", "result", "detail"], rows))
    if not all(ok for _, ok, _ in results):
        raise typer.Exit(1)


@app.command("report")
def report(
    results: Path = typer.Option(Path("results"), help="Results directory to render."),
    out: Path = typer.Option(Path("leaderboard"), help="Output directory (markdown, plots, CSV, LaTeX)."),
    rank_by: str = typer.Option("val", help="Selection rule the tables rank by: val (default; final for records without it) or final."),
) -> None:
    """Render the leaderboard from the result records (and nothing else)."""
    from cmh_bench.report import render_report
    from cmh_bench.validation import check_writable

    if not results.is_dir():
        raise UserError(f"results directory {results} does not exist; run `cmh-bench run` first or pass --results DIR")
    check_writable(out, "--out", folder=True)
    written = render_report(results, out, rank_by=rank_by)
    console.print(f"wrote {len(written)} files to {out}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; a UserError becomes one line on stderr and code 2."""
    try:
        app(args=argv)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except UserError as error:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    return 0


def entry_point() -> None:
    """The console script: exit with main()'s code."""
    sys.exit(main())
