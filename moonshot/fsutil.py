"""Durable file writes: temp file + fsync + rename + fsync of the folder, so a file
appears under its final name whole or not at all (invariant 3)."""

from __future__ import annotations

import os
from pathlib import Path

PART = ".part"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(target: Path, data: bytes) -> Path:
    """Write `data` to `target` by `<target>.part`, fsync and rename."""
    part = target.with_name(target.name + PART)
    with open(part, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, target)
    fsync_dir(target.parent)
    return target


def append_durable(path: Path, line: str) -> None:
    """Append one line and fsync it before returning (the launch ledger)."""
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        f.write(line if line.endswith("\n") else line + "\n")
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)
