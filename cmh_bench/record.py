"""Result records: one JSON file per cell (schema "cmh-bench/result" version 2), written atomically.

A record holds the cell (all key fields), status ("ok", or "failed" with the error), the validation
part (fraction, seed, size, evaluation period), the selections (per rule of
``cmh_bench.cell.SELECTIONS``: the selected epoch, the rule's score there and the test metrics per
direction), the realised noise, the per-epoch log (loss terms, weight AUC, MAP curve), the
noise-detection summary, wall time (``seconds.train``: from the start of the cell to the end of
``fit``, so it includes loading the dataset and injecting the noise; ``seconds.total``: the whole
cell), peak memory, device, hyper-parameters, package versions, git revision and the dataset's
checksum. An optional sidecar ``.h5`` (same stem) holds the codes and
distance histograms of the ranked selection (``val``, else ``final``), so every metric can be
recomputed without retraining.

Records are read in one place, :func:`read_record`, which also reads version 1 records (one
selection each, ``final`` or ``best-on-test``, no validation part) and lists what they lack.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
import platform
import resource
import subprocess
import traceback
from pathlib import Path

from cmh_bench import __version__
from cmh_bench.atomic import write_json_atomic
from cmh_bench.cell import SELECTIONS, Cell
from cmh_bench.errors import UserError
from cmh_bench.metrics import Retrieval

SCHEMA = "cmh-bench/result"
SCHEMA_VERSION = 2


@dataclass
class CellOutcome:
    """What a worker hands the driver for one cell: its record and, with ``--save-codes``, the codes
    sidecar's contents (the ranked selection's codes and labels, and its distance histograms), which
    ``write_record`` writes beside the record (never inside it)."""

    record: dict
    codes: Retrieval | None = None
    histograms: dict | None = None


def build_record(*, cell: Cell, entry, method_version: str, hparams: dict, labels_used: str, dataset, validation: dict,
                 noise: dict, selections: dict, epochs: list, detection, seconds: dict, memory: dict, device,
                 clean_meta: dict | None = None) -> dict:
    """Assemble the record of a finished cell (``selections``: rule -> {"epoch", "score", "metrics"};
    ``clean_meta``: cmh_bench.metaset.meta_summary of the cell's clean meta set, if it has one)."""
    record = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "cell": {**cell.key(), "method_version": method_version},
        "execution": {k: v for k, v in cell.to_dict().items() if k not in cell.key()},
        "method": {"role": entry.role, "paper": entry.paper, "source": entry.source, "variant": entry.variant,
                   "labels_used": labels_used, "hparams": hparams},
        "dataset": {"name": dataset.info.name, "split": dataset.split, "sha256": dataset.info.content_sha256,
                    "sizes": {"query": len(dataset.query), "train": validation["fit_size"],
                              "validation": validation["size"], "database": len(dataset.database)}},
        "validation": validation,
        "noise": noise,
        "selections": selections,
        "epochs": epochs,
        "noise_detection": detection,
        "seconds": seconds,
        "memory": memory,
        "environment": environment(device),
    }
    if clean_meta is not None:
        record["clean_meta"] = clean_meta
    return record


def failed_record(cell: Cell, error: BaseException) -> dict:
    """The record of a cell whose run raised ``error`` (retried on the next run)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "status": "failed",
        "cell": cell.key(),
        "error": {"type": type(error).__name__, "message": str(error),
                  "traceback": "".join(traceback.format_exception(error))},
        "environment": environment(None),
    }


def write_record(results_dir: Path, cell: Cell, outcome: CellOutcome) -> Path:
    """Write the outcome's record (and its optional codes sidecar, same stem, ``.h5``) at the cell's path, atomically."""
    path = Path(results_dir) / cell.relative_path()
    if outcome.codes is not None:
        from cmh_bench.codes_file import write_codes_file

        write_codes_file(path.with_suffix(".h5"), outcome.codes, histograms=outcome.histograms)
    write_json_atomic(path, outcome.record)
    return path


def read_record(path: Path) -> dict:
    """The record at ``path`` in the current layout, with ``lacks``: the selection rules it has no metrics for.

    A version 1 record (one rule per record, top-level ``metrics``) is read as one whose
    ``selections`` hold that rule alone; its ``schema_version`` stays 1, so the runner redoes it.
    An unreadable file or another schema raises UserError naming the file.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable result record ({error}); delete it or run its cell again") from None
    schema = record.get("schema") if isinstance(record, dict) else None
    if schema != SCHEMA:
        raise UserError(f"{path} is not a cmh-bench result record (schema {schema!r}, expected {SCHEMA!r}); "
                        "move it out of the results directory")
    if record.get("schema_version") == 1 and record.get("status") == "ok":
        rule = record["cell"].get("selection", "final")
        epochs = record.get("epochs") or [{}]
        epoch = record.get("selection", {}).get("best_epoch") if rule == "best-on-test" else epochs[-1].get("epoch")
        record["selections"] = {rule: {"epoch": epoch, "score": None, "metrics": record.pop("metrics")}}
    record["lacks"] = [rule for rule in SELECTIONS if rule not in record.get("selections", {})]
    return record


def existing_record(path: Path) -> dict | None:
    """The record at ``path`` (see :func:`read_record`), or None if there is no readable one (the cell is pending)."""
    try:
        return read_record(path)
    except UserError:
        return None


def is_complete(record: dict | None, cell: Cell, method_version: str, hparams: dict) -> bool:
    """True if ``record`` is a successful run of exactly this cell with this method version and these
    resolved hyper-parameters (so a re-tuned profile file or a changed card re-runs the cells it changes)."""
    return (
        record is not None
        and record.get("status") == "ok"
        and record.get("schema_version") == SCHEMA_VERSION
        and record.get("cell") == {**cell.key(), "method_version": method_version}
        and (record.get("method") or {}).get("hparams") == json.loads(json.dumps(hparams))
    )


def peak_memory(device) -> dict:
    """Peak resident memory of this process (MiB; includes earlier cells in the same process) and of the device:
    on CUDA the peaks of memory allocated to tensors and reserved by the caching allocator (what runs out),
    since the cell's start; on MPS the memory held by the driver at the end (MPS keeps no peak)."""
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    memory = {"process_peak_rss_mib": round(rss_kib / 1024, 1)}
    if device is not None and device.type in ("cuda", "mps"):
        import torch

        if device.type == "cuda":
            memory["device_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            memory["device_peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
        else:
            memory["device_driver_allocated_mib"] = round(torch.mps.driver_allocated_memory() / 2**20, 1)
    return memory


def environment(device) -> dict:
    """Versions, git revision and hardware of the run."""
    import numpy
    import torch

    env = {
        "cmh_bench": __version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(terse=True),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        env["device"] = str(device)
        if device.type == "cuda":
            env["device_name"] = torch.cuda.get_device_name(device)
    return env


RESULT_SOURCES = (":/cmh_bench", ":/methods", ":/datasets", ":/pyproject.toml")  # pathspecs from the repository root


@functools.cache
def git_revision() -> str | None:
    """The git commit of the cmh_bench source tree, or None; "-dirty" if the code that produces results
    (the package, the built-in methods, the dataset cards, pyproject.toml) has uncommitted changes;
    edits elsewhere (README, results, leaderboard) do not change a result and do not count."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", *RESULT_SOURCES],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("-dirty" if dirty else "")

