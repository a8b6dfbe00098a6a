"""The one retry rule of moonshot (issue 16), used by every stage, the source's poll and
the outbox: a transient error is tried again after a wait measured from the failure,
with jitter; the first `fast` tries come `base` apart, then each wait doubles up to
`cap`; a coin's stage gives up once `service.retry_window` has passed since its first
transient failure there. Pure arithmetic: no I/O, no clock of its own."""

from __future__ import annotations

import random
from dataclasses import dataclass

from moonshot import machine as m
from moonshot.config import Config

JITTER = 0.25  # each wait is 75-100 % of the schedule: coins that failed together spread out


@dataclass(frozen=True)
class Backoff:
    base: float  # seconds between the fast tries
    cap: float  # the longest wait
    fast: int = 3  # tries `base` apart before the waits start doubling (the plan's "3 attempts")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after the `failures`-th failure in a row (1 = the first)."""
        doublings = min(max(0, failures - self.fast + 1), 60)
        wait = min(self.cap, self.base * 2.0**doublings)
        return wait * (1.0 - JITTER * (rng or random).random())


def next_try(
    backoff: Backoff,
    window: float,
    failures: int,
    since: float | None,
    failed_at: float,
    rng: random.Random | None = None,
) -> tuple[float | None, float]:
    """(when to try again, or None to give up; the first failure's time). `since` is the
    first transient failure of this stage (None: this is it); the last try falls at the
    end of the window rather than after it."""
    since = failed_at if since is None else since
    if failed_at - since >= window:
        return None, since
    return min(failed_at + backoff.delay(failures, rng), since + window), since


def window_passed(cfg: Config, since: float | None, now: float) -> bool:
    return since is not None and now - since >= cfg.service.retry_window


def for_stage(cfg: Config, state: str) -> Backoff:
    """The schedule of the step that moves a coin out of `state`."""
    s = cfg.spool
    if state == m.CONFIRMED:  # the launcher's reversible preparation (GUI)
        return Backoff(cfg.launch.retry_backoff, s.backoff_max, cfg.launch.prepare_attempts)
    if state in (m.SPOOLED, m.IMPORTED):  # a locked or busy Photos library
        return Backoff(s.backoff_base, s.backoff_max, cfg.photos.import_attempts)
    return Backoff(s.backoff_base, s.backoff_max, s.download_attempts)


def for_outbox(cfg: Config) -> Backoff:
    """Reports to the source are retried for as long as it takes (never dropped)."""
    return Backoff(cfg.spool.backoff_base, cfg.spool.backoff_max, 3)


# The source's poll after a transient error: 1 s, then doubling to 5 min.
SOURCE = Backoff(1.0, 300.0, 2)
