"""Durable file writes: temp file + fsync + rename + fsync of the folder, so a file
appears under its final name whole or not at all (invariant 3). A write that fails
leaves nothing behind (no `.part`, no half line), and a full disk is HomeTrouble (the
service pauses), not the coin's fault (issue 15)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from moonshot.errors import HomeTrouble

PART = ".part"
STALE_PART = 60.0  # seconds: a part file this old is no write in progress, a crash's leftover
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_full(exc: OSError, path: Path) -> HomeTrouble:
    return HomeTrouble(
        f"cannot write {path}: the disk is full ({os.strerror(exc.errno or errno.ENOSPC)});"
        " free some space, moonshot goes on by itself"
    )


@contextlib.contextmanager
def _part(target: Path) -> Iterator[Path]:
    """`<target>.<pid>-<random>.part`, removed again if anything fails before the rename.
    The name is the writer's own: two processes writing one file at once (the sync and the
    launch agent of `--split` both keep the home's markers) would otherwise share one part
    file, and the second rename would find it gone (ENOENT: the launch agent paused with a
    coin in `launching`, which went to needs_review)."""
    part = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}{PART}")
    try:
        yield part
    except BaseException as exc:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in FULL:
            raise disk_full(exc, target) from None
        raise


def write_atomic(target: Path, data: bytes, durable: bool = True) -> Path:
    """Write `data` to `target` by `<target>.part`, fsync (unless not `durable`) and rename."""
    with _part(target) as part:
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(part, target)
    if durable:
        fsync_dir(target.parent)
    return target


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy `source` to `target` by `<target>.part`, fsync and rename."""
    with _part(target) as part:
        shutil.copyfile(source, part)
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, target)
    fsync_dir(target.parent)
    return target


def append_durable(path: Path, line: str) -> None:
    """Append one line and fsync it before returning (the launch ledger). A failed
    append is cut back off, so the file never ends in half a line."""
    data = (line if line.endswith("\n") else line + "\n").encode("utf-8")
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            if exc.errno in FULL:
                raise disk_full(exc, path) from None
            raise
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def move_into(path: Path, folder: Path) -> bool:
    """Move a file into `folder` (same file system: an atomic rename), replacing a file
    of the same name there; False when there was nothing to move."""
    try:
        folder.mkdir(exist_ok=True)
        os.replace(path, folder / path.name)
    except FileNotFoundError:
        return False
    fsync_dir(folder)
    fsync_dir(path.parent)
    return True


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, each line that parses (a torn last line
    after a power cut, or a line that is not an object, is skipped); [] for no file."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out
