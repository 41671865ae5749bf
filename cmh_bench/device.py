"""The compute device: one name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) resolved and checked in one place.

A bottom-layer module (it imports only torch and the error type), so that the harness, the feature
extraction and the up-front option checks share one device rule.
"""

from __future__ import annotations

import torch

from cmh_bench.errors import UserError


def check_device_name(name: str) -> None:
    """``name`` is one of the device forms cmh-bench takes (whether this machine has it is resolve_device's question)."""
    if name not in ("auto", "cpu", "cuda", "mps") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def check_precision(device: torch.device, mixed_precision: bool) -> None:
    """bf16 autocast (``--mixed-precision``) runs on CUDA only; elsewhere it would be silently fp32 under a bf16 key."""
    if mixed_precision and device.type != "cuda":
        raise UserError(f"--mixed-precision is bf16 autocast on CUDA, but the device is {device.type}; "
                        f"drop --mixed-precision or run on a GPU")


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA if available, then Apple MPS, then CPU; otherwise the named device, checked."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not _mps_available():
        raise UserError("device 'mps' asked for, but Apple MPS is not available here; use --device cpu or auto")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(numbered from 0); use cuda:0 ... or auto")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def visible_gpu_ids(environ_value: str | None, count: int) -> list[str]:
    """The GPUs this process may hand to workers, as ``CUDA_VISIBLE_DEVICES`` entries: the inherited list
    when the variable is set (``"2,3"`` -> ["2", "3"]: workers must keep the driver's choice), else 0 … count-1."""
    if environ_value is not None:
        return [entry.strip() for entry in environ_value.split(",") if entry.strip()][:count] if count else []
    return [str(i) for i in range(count)]


def pool_gpu_assignment(gpu_ids: list[str], workers: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``workers`` pool workers: worker i sees only gpu_ids[i mod G]
    (round robin; more workers than GPUs share them). None (leave it alone) with one GPU or none."""
    if len(gpu_ids) <= 1:
        return [None] * workers
    return [gpu_ids[i % len(gpu_ids)] for i in range(workers)]


def gpu_slots(gpu_ids: list[str], per_cell: int, cells_at_once: int) -> list[list[str]]:
    """Disjoint groups of ``per_cell`` GPUs, one per cell running at once, taken in order from ``gpu_ids``."""
    if per_cell * cells_at_once > len(gpu_ids):
        raise UserError(f"{cells_at_once} cells at once with {per_cell} GPU(s) each need {per_cell * cells_at_once} GPUs, "
                        f"but {len(gpu_ids)} are visible ({','.join(gpu_ids) or 'none'}); lower --jobs or --gpus-per-cell")
    return [gpu_ids[i * per_cell:(i + 1) * per_cell] for i in range(cells_at_once)]
