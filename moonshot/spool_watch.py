"""The spool watcher: watchdog reports files that appear in spool/ (our own renames
and people's drops); a dropped file is handed on only once its size and time have
stayed unchanged for `settle` seconds, so a file still being copied is never read
half-written. The watchdog thread only records paths and wakes the service."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from moonshot.fsutil import PART, STALE_PART
from moonshot.naming import parse_name

WRITE_EVENTS = frozenset({"created", "modified", "moved", "closed"})  # "closed": after a write


def is_candidate(path: Path) -> bool:
    return not path.name.endswith(PART) and parse_name(path.name) is not None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: SpoolWatcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Writes only: opening or reading a file (the importer copying it) is no drop.
        if event.is_directory or event.event_type not in WRITE_EVENTS:
            return
        for p in (getattr(event, "dest_path", None), event.src_path):
            if p:
                self.watcher.notice(Path(os.fsdecode(p)))


class SpoolWatcher:
    def __init__(self, spool_dir: Path, settle: float, wake: Callable[[], None]):
        self.spool_dir = spool_dir
        self.settle = settle
        self.wake = wake
        self._lock = threading.Lock()
        self._new: set[Path] = set()
        # path -> (size, mtime_ns, stable since, first seen)
        self._tracked: dict[Path, tuple[int, int, float, float]] = {}
        self._observer: Observer | None = None

    def notice(self, path: Path) -> None:
        if path.parent == self.spool_dir and is_candidate(path):
            with self._lock:
                self._new.add(path)
            self.wake()

    def start(self) -> None:
        self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.spool_dir), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def rescan(self) -> int:
        """Whatever arrived while the service was down; stray .part files of a crash
        are removed, once they are STALE_PART old: a younger one may be another process's
        write in flight (the launch agent of `--split` writes the home's marker here)."""
        n = 0
        now = time.time()
        for entry in os.scandir(self.spool_dir):
            if not entry.is_file():
                continue
            path = Path(entry.path)
            if path.name.endswith(PART):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime >= STALE_PART:
                        path.unlink(missing_ok=True)
            elif is_candidate(path):
                with self._lock:
                    self._new.add(path)
                n += 1
        return n

    def ready(self, now: float) -> list[tuple[Path, float]]:
        """Tracked files that have been complete for `settle` seconds: (path, first seen)."""
        with self._lock:
            new, self._new = self._new, set()
        for path in new:
            if path not in self._tracked:
                self._tracked[path] = (-1, -1, now, now)
        out = []
        for path, (size, mtime, since, first) in list(self._tracked.items()):
            try:
                st = path.stat()
            except FileNotFoundError:
                del self._tracked[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                self._tracked[path] = (st.st_size, st.st_mtime_ns, now, first)
            elif now - since >= self.settle:
                out.append((path, first))
        return out

    def done(self, path: Path) -> None:
        self._tracked.pop(path, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._tracked) + len(self._new)

    def next_check(self, now: float) -> float | None:
        if not self._tracked and not self._new:
            return None
        return now + self.settle / 2
