"""Clean-up of spool/: a launched coin's file moves to spool/done/ (atomic rename, same
folder tree), and files in spool/done/ are deleted after `cleanup.keep_days`. Touches only
canonical names of launched coins; spool/done/ is never watched nor re-imported."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from moonshot import machine, naming
from moonshot.config import Config
from moonshot.fsutil import fsync_dir
from moonshot.store import Store

DAY = 86_400.0

log = logging.getLogger(__name__)


@dataclass
class Result:
    moved: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"moved": self.moved, "deleted": self.deleted, "dry_run": self.dry_run}


def done_dir(cfg: Config) -> Path:
    return cfg.done_dir


def run(cfg: Config, store: Store, *, now: float | None = None, dry_run: bool = False) -> Result:
    """Move launched coins' files to spool/done/, then delete expired ones there."""
    now = time.time() if now is None else now
    result = Result(dry_run=dry_run)
    done = done_dir(cfg)
    if cfg.spool_dir.is_dir():
        for path in sorted(cfg.spool_dir.iterdir()):
            if not path.is_file() or naming.parse_name(path.name) is None:
                continue
            coin = store.find_by_filename(path.name)
            if coin is None or coin.state != machine.LAUNCHED:
                continue
            result.moved.append(path.name)
            if dry_run:
                continue
            done.mkdir(exist_ok=True)
            target = done / path.name
            os.replace(path, target)
            # The age in done/ counts from the move (about the launch), not from the spooling.
            os.utime(target, (now, now))
            log.info("moved %s to spool/done/", path.name, extra={"coin": coin.id})
        if result.moved and not dry_run:
            fsync_dir(done)
            fsync_dir(cfg.spool_dir)
    cutoff = now - cfg.cleanup.keep_days * DAY
    if done.is_dir():
        for path in sorted(done.iterdir()):
            if not path.is_file() or naming.parse_name(path.name) is None:
                continue
            if path.stat().st_mtime > cutoff:
                continue
            result.deleted.append(path.name)
            if not dry_run:
                path.unlink(missing_ok=True)
                log.info(
                    "deleted spool/done/%s (older than %g days)", path.name, cfg.cleanup.keep_days
                )
    return result


class Schedule:
    """Runs the clean-up at most every `cleanup.interval` seconds, from the service loop."""

    def __init__(self, cfg: Config, store: Store):
        self.cfg = cfg
        self.store = store
        self.last: float | None = None

    def maybe_run(self, now: float) -> Result | None:
        interval = self.cfg.cleanup.interval
        if interval <= 0 or (self.last is not None and now - self.last < interval):
            return None
        self.last = now
        try:
            return run(self.cfg, self.store, now=now)
        except OSError as exc:
            # Clean-up is housekeeping: a failure must not stop the pipeline.
            log.warning("clean-up failed: %s; check the permissions of %s", exc, done_dir(self.cfg))
            return None
