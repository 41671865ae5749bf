"""SHA-256 of a file's bytes (the identity of a noise file in a cell's key and result path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cmh_bench.errors import UserError

_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the bytes of the file at ``path``; a missing file raises UserError."""
    path = Path(path).expanduser()
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                digest.update(block)
    except OSError:
        raise UserError(f"{path}: no such file; check the path") from None
    return digest.hexdigest()
