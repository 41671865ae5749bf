"""The compute device: one name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) resolved and checked in one place.

A bottom-layer module (it imports only torch and the error type), so that the harness, the feature
extraction and the up-front option checks share one device rule.
"""

from __future__ import annotations

import torch

from cmh_bench.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA if available, then Apple MPS, then CPU; otherwise the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not _mps_available():
        raise UserError("device 'mps' asked for, but Apple MPS is not available here; use --device cpu or auto")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(numbered from 0); use cuda:0 ... or auto")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
