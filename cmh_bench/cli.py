"""The ``cmh-bench`` command line (typer + rich).

User errors (:class:`cmh_bench.errors.UserError`) are printed as one line and exit with code 2;
bugs keep their traceback. Heavy modules (torch, the methods) are imported inside the commands
that need them, so ``--help`` and ``list`` stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

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


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


@list_app.command("datasets")
def list_datasets() -> None:
    """Datasets with a card, and whether their file is present in the data directory."""
    from cmh_bench.cards import all_cards
    from cmh_bench.catalog import data_dir, dataset_path

    rows = []
    for card in all_cards().values():
        present = dataset_path(card.name).is_file()
        status = "present" if present else ("generated on first use" if card.kind == "synthetic" else "not imported")
        rows.append([card.name, card.kind, card.title, str(card.classes), status])
    console.print(_table(f"datasets (data directory: {data_dir()})", ["name", "kind", "title", "classes", "file"], rows))


@list_app.command("noise")
def list_noise() -> None:
    """The label-noise models, with their versions."""
    from cmh_bench.noise import NOISE_MODELS

    rows = [[m.name, m.version, m.summary] for m in NOISE_MODELS.values()]
    console.print(_table("noise models", ["name", "version", "what it does"], rows))


@data_app.command("info")
def data_info(file: Path = typer.Argument(..., help="A cmh-bench dataset file (.h5).")) -> None:
    """Validate a dataset file and print its summary."""
    from cmh_bench.dataset import read_info

    info = read_info(file)
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

    card = get_card(name)
    if card.kind != "synthetic":
        raise UserError(f"{name!r} is a real dataset; import it with `cmh-bench data import`, or pick a synthetic one")
    path = write_synthetic(name, out or dataset_path(name), seed=seed, scale=scale)
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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; a UserError becomes one line on stderr and code 2."""
    try:
        app(args=argv)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except UserError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        return 2
    return 0


def entry_point() -> None:
    """The console script: exit with main()'s code."""
    sys.exit(main())
