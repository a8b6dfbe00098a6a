"""The one retry rule (moonshot.retry): fast tries, then doubling to the cap, jitter that
only shortens, and a window counted from the first transient failure."""

from __future__ import annotations

import random

import pytest

from moonshot import machine as m
from moonshot import retry
from moonshot.retry import JITTER, Backoff, next_try


class Fixed(random.Random):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_fast_tries_then_doubling_to_the_cap():
    b = Backoff(base=2.0, cap=30.0, fast=3)
    waits = [b.delay(n, Fixed(0.0)) for n in range(1, 9)]
    # 3 fast tries 2 s apart (the plan's "max 3 attempts"), then 4, 8, 16, 30, 30 ...
    assert waits == [2.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_one_fast_try_doubles_at_once_and_huge_counts_stay_at_the_cap():
    b = Backoff(base=1.0, cap=300.0, fast=1)
    assert [b.delay(n, Fixed(0.0)) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert b.delay(10_000, Fixed(0.0)) == 300.0


def test_jitter_only_shortens_and_spreads():
    b = Backoff(base=10.0, cap=100.0, fast=2)
    rng = random.Random(5)
    waits = [b.delay(1, rng) for _ in range(200)]
    assert all(10.0 * (1 - JITTER) <= w <= 10.0 for w in waits)
    assert max(waits) - min(waits) > 10.0 * JITTER / 2  # really spread
    assert b.delay(1, Fixed(1.0)) == pytest.approx(10.0 * (1 - JITTER))


def test_the_wait_is_counted_from_the_failure_not_the_attempt():
    b = Backoff(base=2.0, cap=300.0, fast=3)
    # an attempt started at 1000 and timed out 30 s later
    at, since = next_try(b, 3600.0, 1, None, 1030.0, Fixed(0.0))
    assert (at, since) == (1032.0, 1030.0)


def test_the_window_counts_from_the_first_transient_failure():
    b = Backoff(base=2.0, cap=300.0, fast=3)
    assert next_try(b, 60.0, 5, 1000.0, 1059.0, Fixed(0.0)) == (1060.0, 1000.0)  # last try: the end
    assert next_try(b, 60.0, 6, 1000.0, 1060.0, Fixed(0.0)) == (None, 1000.0)
    assert next_try(b, 0.0, 1, None, 5.0) == (None, 5.0)  # window 0: fail on the first error


def test_each_stage_has_its_fast_tries(cfg_factory):
    cfg = cfg_factory(
        {
            "MOONSHOT_SPOOL_DOWNLOAD_ATTEMPTS": "4",
            "MOONSHOT_PHOTOS_IMPORT_ATTEMPTS": "5",
            "MOONSHOT_LAUNCH_PREPARE_ATTEMPTS": "6",
            "MOONSHOT_LAUNCH_RETRY_BACKOFF": "7",
        }
    )
    assert retry.for_stage(cfg, m.FETCHED).fast == 4
    assert retry.for_stage(cfg, m.SPOOLED).fast == 5
    assert retry.for_stage(cfg, m.CONFIRMED) == Backoff(7.0, cfg.spool.backoff_max, 6)
