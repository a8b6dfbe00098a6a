"""The service loop: `tick(now)` does one unit of work and says whether it did any;
`run` ticks, sleeps when idle (capped backoff, woken at once by the spool watcher or
an adapter's watch), writes a heartbeat, and stops gracefully. Signal handlers only
set flags (huey's consumer explains why); the first TERM or INT finishes the step in
hand, gives running downloads half of `service.stop_timeout`, cuts off the rest, hands
unstarted claims back and exits 0; a second one exits at once: every state is already
committed. `run --once` exits 0 only when nothing is left that time could move."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from moonshot import adapters, home, retry
from moonshot import machine as m
from moonshot.adapters import Ports
from moonshot.config import Config
from moonshot.errors import HomeError, HomeTrouble, MoonshotError, StaleState, TransientError
from moonshot.ops import alerts, cleanup, logs
from moonshot.pipeline import HOME_ERRORS, SOURCE_GRACE, Pipeline
from moonshot.spool_watch import SpoolWatcher
from moonshot.store import Store

# Exit codes, named (dramatiq's RET_*). launchd's KeepAlive {SuccessfulExit: false}
# restarts the service after anything but RET_OK.
RET_OK = 0  # stopped cleanly; with --once: nothing is left that time could move
LOOKAHEAD_CAP = 3  # coins held before the gate, retrying ones included, per lookahead
RET_ERROR = 1
RET_CONFIG = 2
RET_HARD_STOP = 3
# `run --once` gave up after `service.once_patience` without progress:
RET_SOURCE = 4  # the source could not be reached: coins not fetched or reports not delivered
RET_WAITING = 5  # coins wait for time: a retry after a transient error, a launch limit, iCloud

HEARTBEAT_EVERY = 1.0
# `run --stages`: one process for everything, or the two launchd agents of `launchd
# install --split` (sync: fetch, spool, import, confirm, report; launch: the launcher).
STAGES = ("all", "sync", "launch")
OUTBOX_BATCH = 20
PAUSE_MIN, PAUSE_MAX = 0.5, 30.0  # database trouble: seconds between tries (issue 15)


class Service:
    def __init__(
        self,
        cfg: Config,
        store: Store | None = None,
        ports: Ports | None = None,
        clock: Callable[[], float] = time.time,
        stages: str = "all",
    ):
        if stages not in STAGES:
            raise ValueError(f"stages must be one of {', '.join(STAGES)}, not {stages!r}")
        cfg.ensure_dirs()
        self.cfg = cfg
        self.stages = stages
        self.sync = stages in ("all", "sync")
        self.launches = stages in ("all", "launch")
        # Each split agent has its own heartbeat (`heartbeat_at:sync`, ...); health.py reads them.
        self.meta_suffix = "" if stages == "all" else f":{stages}"
        self.store = store or home.open_store(cfg)  # invariant 7: never afresh over evidence
        self.ports = ports or adapters.build(cfg)
        self.clock = clock
        self._wake = threading.Event()
        self.pipeline = Pipeline(cfg, self.store, self.ports, clock=clock, wake=self._wake.set)
        self.log = logs.get()
        self.stopping = False
        self._stop_at: float | None = None  # time.monotonic() of the first signal
        self._signals = 0
        self.watcher = SpoolWatcher(cfg.spool_dir, cfg.spool.settle_seconds, self._wake.set)
        self._started = False
        self._stops: list[Callable[[], None]] = []
        self._next_poll = 0.0
        self._more_waiting = False  # the last claim was full: the source may hold more
        self._source_failures = 0
        self.source_error: str | None = None  # the last poll's transient error, if it failed
        self._events = 0  # coins fetched and reports delivered (progress, with pipeline.moved)
        self.exit_line: str | None = None  # `run --once`: what was left, when not RET_OK
        self._next_keepalive = 0.0
        self._last_heartbeat = 0.0
        self._cleanup = cleanup.Schedule(cfg, self.store)
        # Issue 16: alert receivers (ConfigError if apprise cannot use a URL), source hooks.
        self.alerts = alerts.Alerts(cfg, self.store, stages, clock)
        self._last_progress: float | None = None
        self._locks: list[int] = []
        self._paused: tuple[float, str] | None = None  # since when, and why
        self._db_lost = False  # moonshot.db was deleted or replaced under this process

    # -- lifecycle -----------------------------------------------------------------------
    def lock(self) -> None:
        """Take the home's stage locks now (start takes them otherwise)."""
        if not self._locks:
            self._lock_stages()

    def _lock_stages(self) -> None:
        """One process per stage and home: a second `run` (or `run --once` beside the
        launchd agent) would send the coin the first one is launching to needs_review
        at its start-up, and the first one's outcome would be lost."""
        stages = [s for s in home.STAGES if (self.sync if s == "sync" else self.launches)]
        self._locks += home.lock_stages(self.cfg, stages, "")

    def start(self, now: float | None = None, watch: bool = True) -> None:
        if self._started:
            return
        now = self.clock() if now is None else now
        if not self._locks:
            self._lock_stages()
        self.alerts.on_start(now)  # before recovery and the first heartbeat (a crash alert)
        # A sync-only agent must not touch `launching`: the launcher agent may be mid-launch.
        recovered = self.pipeline.recover(now) if self.launches else 0
        found = self.watcher.rescan() if self.sync else 0
        self._started = True
        self.log.info(
            "started: %d coin(s) to review from a crash, %d file(s) in spool/", recovered, found
        )
        if watch and self.sync:
            self.watcher.start()
            self._stops.append(self.watcher.stop)
            for port, wake in (
                (self.ports.source, self.wake_source),
                (self.ports.library, self.wake),
            ):
                watch_fn = getattr(port, "watch", None)
                if watch_fn is not None:
                    self._stops.append(watch_fn(wake))

    def close(self) -> None:
        # The sender's last round, bounded: what it cannot send waits in the alerts table.
        self.alerts.stop(min(self.cfg.service.stop_timeout / 2, 2 * self.cfg.alerts.timeout + 5))
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # noqa: BLE001 - closing must go on
                self.log.exception("while stopping a watcher")
        self._stops.clear()
        for port in (self.ports.source, self.ports.library, self.ports.launcher):
            close = getattr(port, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    self.log.exception("while closing %s", type(port).__name__)
        while self._locks:
            os.close(self._locks.pop())  # releases the stage lock

    def wake(self) -> None:
        self._wake.set()

    def wake_source(self) -> None:
        """The source says new coins are waiting (NOTIFY): poll now, not at the next interval."""
        self._next_poll = 0.0
        self._wake.set()

    # -- signals: flags only ----------------------------------------------------------------
    def install_signals(self) -> None:
        def handler(signum, frame):
            self._signals += 1
            if self._signals >= 2:
                # Every transition is committed before its side effect: nothing to save.
                os._exit(RET_HARD_STOP)
            self.stopping = True
            self._stop_at = time.monotonic()
            self._wake.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- one iteration -------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> bool:
        """Do at most one step of work; True if something was done."""
        now = self.clock() if now is None else now
        if not self._started:
            self.start(now, watch=False)
        self._heartbeat(now)
        if self.stopping:
            return False
        # The source call in flight, if it ended (a launch stage's `holds` too).
        did = self._collect_source()
        if self.sync:
            did = self._drops(now) or did
            did = self._poll_source(now) or did
            did = self._drain_outbox(now) or did
            self._keepalive(now)
            self._cleanup.maybe_run(now)
        if self._step(now):
            self._last_progress = now
            return True
        return did

    def _step(self, now: float) -> bool:
        p = self.pipeline
        s = self.store
        if self.sync and self._collect_downloads():
            return True
        # Sync-only (no launcher): no confirmed coin can move, so don't read them all on
        # every tick (in a long sync-only run that is quadratic; issue 7).
        can_launch = self.launches and self.ports.launcher is not None
        for coin in s.coins_in([m.CONFIRMED], ready_by=now) if can_launch else ():
            if p.launch_blocker(coin, now) is None:
                return self._guard(coin, p.launch, now)
        if not self.sync:
            return False
        for coin in s.coins_in([m.IMPORTED], ready_by=now, limit=1):
            return self._guard(coin, p.confirm, now)
        # a coin whose import is in doubt goes first (the import gate waits for it)
        order = "import_started IS NULL, id"
        for coin in s.coins_in([m.SPOOLED], ready_by=now, limit=1, order=order):
            if p.import_gate_open(coin):
                return self._guard(coin, p.import_, now)
            break
        room = p.downloads.room
        if room <= 0:
            return False
        busy = p.downloads.running()
        for coin in s.coins_in(
            [m.FETCHED],
            ready_by=now,
            limit=room + len(busy),
            order="not_before, id",
            released=False,
        ):
            if coin.id not in busy:  # a slow download holds only its own coin
                return self._guard(coin, p.start_spool, now)
        return False

    def _collect_downloads(self) -> bool:
        """Commit finished downloads, on this thread (the store's only writer)."""
        results = self.pipeline.downloads.results()
        for coin_id, attempt, outcome, ended in results:
            coin = self.store.get(coin_id)
            if coin is None:
                continue

            def finish_spool(c, _now, attempt=attempt, outcome=outcome, ended=ended):
                self.pipeline.finish_spool(c.id, attempt, outcome, ended)

            self._run(coin, finish_spool, ended)
        return bool(results)

    def _guard(self, coin, step, now: float) -> bool:
        """Run one step, unless the coin's attempts show it cannot finish: attempts that
        started and never ended (each killed the process, say) fail it after the fast
        tries, or once the retry window has passed, so a coin never loops forever."""
        fast = retry.for_stage(self.cfg, coin.state).fast if coin.state in m.RETRYABLE else 0
        unfinished = coin.attempts > 0 and coin.not_before == 0.0
        if unfinished and (
            (coin.retry_since is None and coin.attempts >= fast)
            or retry.window_passed(self.cfg, coin.retry_since, now)
        ):
            reason = f"{coin.attempts} attempt(s) started and none finished (last error: {coin.last_error or 'none'})"
            self.pipeline.fail(coin, reason, now)
            return True
        return self._run(coin, step, now)

    def _run(self, coin, step, now: float) -> bool:
        """An unexpected error counts as a failed attempt of that step."""
        try:
            step(coin, now)
        except HomeTrouble:
            # The home's trouble, not the coin's: the service pauses (run), and the
            # attempt the step had counted does not count against the coin.
            with contextlib.suppress(HomeTrouble):
                fresh = self.store.get(coin.id)
                if fresh and fresh.state == coin.state and fresh.attempts > coin.attempts:
                    self.store.set_fields(
                        coin.id, attempts=coin.attempts, not_before=coin.not_before
                    )
            raise
        except HomeError:
            raise
        except Exception as exc:  # noqa: BLE001
            fresh = self.store.get(coin.id)
            if fresh is not None and fresh.state == m.LAUNCHING:
                self._review_stuck(fresh, exc)
                return True
            self._step_failed(coin, fresh, step, exc)
        return True

    def _step_failed(self, coin, fresh, step, exc: Exception) -> None:
        name = getattr(step, "__name__", "step")
        if isinstance(exc, StaleState):  # moved by the CLI meanwhile: nothing to settle
            self.log.info("%s: %s", name, exc, extra={"coin": coin.id})
            return
        if isinstance(exc, MoonshotError):
            self.log.warning("%s: %s", name, exc, extra={"coin": coin.id})
            err: Exception = exc
        else:
            self.log.error("%s failed unexpectedly", name, exc_info=exc, extra={"coin": coin.id})
            err = TransientError(f"unexpected {type(exc).__name__}: {exc}")
        if fresh is not None and fresh.state in m.RETRYABLE and fresh.state == coin.state:
            self.pipeline.settle(fresh, err, self.clock())

    def _review_stuck(self, coin, exc: Exception) -> None:
        """A step failed after `launching` was committed: the launch may have happened,
        so the coin must not wait for a restart in `launching`, holding the import gate."""
        reason = f"launch outcome not recorded: {type(exc).__name__}: {exc}"
        self.log.error("%s", reason, extra={"coin": coin.id})
        self.pipeline.record_outcome(
            coin, "review", self.clock(), {"reason": reason}, last_error=reason
        )

    def _drops(self, now: float) -> bool:
        did = False
        for path, first_seen in self.watcher.ready(now):
            try:
                outcome = self.pipeline.adopt_drop(path, now, first_seen)
            except HOME_ERRORS:
                raise  # the watcher still tracks the file: it is tried again after the pause
            except Exception:  # noqa: BLE001 - a bad file must not stop the service
                self.log.exception("dropped file %s could not be handled", path.name)
                outcome = "error"
            if outcome != "wait":
                # Forgotten until it changes again: a refused file (still being copied?)
                # is looked at once more on its next write event (issue 15).
                self.watcher.done(path)
            if outcome in ("dropped", "created", "retired"):
                self.log.info("spool/%s: %s", path.name, outcome)
                did = True
        return did

    def claim_room(self) -> int:
        """How many coins to ask the source for (issue 16): enough to keep
        `source.lookahead` coins of this source waiting before the import gate, which
        lets one coin at a time through Photos and the app. The rest stay in the source
        for the other Macs."""
        ready, retrying = self.store.db.execute(
            "SELECT count(*) - count(retry_since), count(retry_since) FROM coins"
            " WHERE source = ? AND state IN (?, ?) AND released = 0",
            (self.ports.source.kind, m.FETCHED, m.SPOOLED),
        ).fetchone()
        # A coin waiting out a transient error (a hanging image host) does not hold a place
        # of the lookahead, or three bad images would stop this Mac for the retry window;
        # all held stay under LOOKAHEAD_CAP x lookahead (outside attack).
        lookahead = self.cfg.source.lookahead
        room = min(lookahead - ready, LOOKAHEAD_CAP * lookahead - ready - retrying)
        return max(0, min(room, self.cfg.source.batch))

    # -- the source: its calls run on their own thread (pipeline.SourceCalls) -------------
    def _collect_source(self, wait: float = 0.0) -> bool:
        """Commit the outcome of the source call in flight, if it has ended (waiting up to
        `wait` seconds for it). True when coins came or reports were delivered."""
        done = self.pipeline.source_calls.result(wait)
        if done is None:
            return False
        what, tag, outcome, ended = done
        if what == "poll":
            assert isinstance(tag, tuple)
            return self._polled(tag[0], tag[1], outcome, ended)
        if what == "report":
            return self._reported(outcome)
        if isinstance(outcome, MoonshotError):
            self.log.warning("%s failed: %s", what, outcome)
        elif isinstance(outcome, Exception):
            raise outcome
        return False  # keepalive, release, holds: their answers live in the source

    def _call_source(self, what: str, tag: object, fn: Callable[[], Any]) -> bool:
        """Start one source call, unless one is in flight; give a quick source SOURCE_GRACE
        to answer within this tick. True when its outcome did something."""
        if not self.pipeline.source_calls.submit(what, tag, fn):
            return False
        return self._collect_source(wait=SOURCE_GRACE)

    def _poll_source(self, now: float, force: bool = False) -> bool:
        """Claim when room opens (at once while the source may hold more, else every
        poll_interval); after a transient error, back off from the failure."""
        source = self.ports.source
        if source.kind == "local" or self.pipeline.source_calls.busy():
            return False
        failing = self.source_error is not None
        if now < self._next_poll and (failing or not (force or self._more_waiting)):
            return False
        want = self.claim_room()
        if want <= 0:
            return False
        self._next_poll = now + self.cfg.source.poll_interval
        return self._call_source("poll", (now, want), lambda: source.poll(now, want))

    def _polled(self, now: float, want: int, outcome: object, failed_at: float) -> bool:
        """A claim's outcome, on the pipeline's thread: its coins are committed here."""
        if isinstance(outcome, MoonshotError):
            exc = outcome
            self._source_failures += 1
            self.source_error = str(exc)
            wait = min(
                retry.SOURCE.delay(self._source_failures, self.pipeline.rng),
                self.cfg.source.poll_interval,
            )
            self._next_poll = failed_at + wait
            self.log.warning("source poll failed: %s (next try in %.0f s)", exc, wait)
            self.alerts.source_failed(exc, now)
            return False
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, list)
        incoming = outcome
        self.alerts.source_ok(now)
        self._source_failures = 0
        self.source_error = None
        self._more_waiting = len(incoming) >= want
        conflicts: list[tuple[str, str]] = []  # (the row's ref, what is wrong with it)
        for coin in incoming:
            user = coin.twitter_user or self.cfg.source.default_twitter_user
            coin_id, created = self.store.add_coin(
                coin,
                twitter_user=user,
                now=now,
                trigger="fetch",
                detail={"source": coin.source, "ref": coin.source_ref},
            )
            if created:
                self._events += 1
                self.log.info(
                    "fetched %s from %s", coin.ticker, coin.source, extra={"coin": coin_id}
                )
                continue
            known = self.store.get(coin_id)
            if known is not None and (known.ticker, known.name, known.image_url) != (
                coin.ticker,
                coin.name,
                coin.image_url,
            ):
                conflicts.append(
                    (
                        coin.source_ref,
                        f"{coin.source} row {coin.source_ref} ({coin.ticker}) is not coin"
                        f" {known.id} ({known.ticker}, {known.state}) this home took under"
                        " that id",
                    )
                )
                continue
            if known is not None and known.released and known.state == m.FETCHED:
                # Its retry window starts again: the time it spent handed back is not a
                # failure of this home's (outside attack: it failed on its first blip).
                self.pipeline._fire(
                    known, "reclaim", now, {"ref": coin.source_ref}, released=0, retry_since=None
                )
                self._events += 1
        if conflicts:
            self._source_conflict(conflicts, now)
        return bool(incoming)

    def _source_conflict(self, conflicts: list[tuple[str, str]], now: float) -> None:
        """Rows handed again under ids this home knows as other coins (the source's ids
        started again: a table re-created, another project): never taken as the known
        coin, never silent. The claims are handed back, `run --once` does not exit 0,
        status and an alert say it."""
        refs = [ref for ref, _ in conflicts]
        release = getattr(self.ports.source, "release", None)
        if release is not None:
            self._call_source("release", refs, lambda: release(refs))
        why = (
            f"{conflicts[0][1]}{f' (and {len(conflicts) - 1} more)' if len(conflicts) > 1 else ''}:"
            " the source's ids start again (a table re-created, or this home points at another"
            " project); not taken, claims handed back. Point the home at its own source, or"
            " start a new home for this one"
        )
        self.source_error = why
        self.log.error("source: %s", why)
        self.alerts.source_conflict(why, refs, now)

    def _drain_outbox(self, now: float) -> bool:
        """Send each coin's oldest due report, in one call on the source's thread; it
        stops at the first failure (the rest stay due). An entry is marked delivered
        only after the source took it, so the next one of its coin waits for it."""
        source = self.ports.source
        if source.kind == "local" or self.pipeline.source_calls.busy():
            return False
        entries = self.store.outbox_due(now, OUTBOX_BATCH)
        if not entries:
            return False
        clock = self.clock

        def deliver() -> list[tuple[dict, Exception | None, float]]:
            out: list[tuple[dict, Exception | None, float]] = []
            for entry in entries:
                try:
                    source.report(entry["source_ref"], entry["event"], entry["fields"])
                except Exception as exc:  # noqa: BLE001 - settled on the pipeline's thread
                    out.append((entry, exc, clock()))
                    break
                out.append((entry, None, clock()))
            return out

        return self._call_source("report", len(entries), deliver)

    def _reported(self, outcome: object) -> bool:
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, list)
        backoff = retry.for_outbox(self.cfg)
        did = False
        for entry, exc, ended in outcome:
            if exc is None:
                self.store.outbox_done(entry["id"], ended)
                self._events += 1
                did = True
            elif isinstance(exc, MoonshotError):  # transient: a report is never dropped
                delay = backoff.delay(entry["attempts"] + 1, self.pipeline.rng)
                self.store.outbox_retry(entry["id"], str(exc), ended + delay)
                self.log.warning(
                    "report %s failed: %s", entry["event"], exc, extra={"coin": entry["coin_id"]}
                )
            else:
                raise exc
        return did

    def _keepalive(self, now: float) -> None:
        source = self.ports.source
        if source.kind == "local" or now < self._next_keepalive:
            return
        if self.pipeline.source_calls.busy():
            return  # renewed as soon as the call in flight has ended
        self._next_keepalive = now + max(self.cfg.source.poll_interval / 2, 1.0)
        refs = [
            c.source_ref
            for c in self.store.coins_in(
                [m.FETCHED, m.SPOOLED, m.IMPORTED, m.CONFIRMED, m.LAUNCHING], released=False
            )
            if c.source == source.kind and c.source_ref
        ]
        if refs:
            self._call_source("keepalive", refs, lambda: source.keepalive(refs, now))

    def _heartbeat(self, now: float) -> None:
        if now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        self._check_db_file()
        self._last_heartbeat = now
        beat = {
            "heartbeat_at" + self.meta_suffix: repr(now),
            "heartbeat_pid" + self.meta_suffix: str(os.getpid()),
        }
        if self._last_progress is not None:
            beat["last_progress_at"] = repr(self._last_progress)
        self.store.meta_set_many(beat)

    def _check_db_file(self) -> None:
        """Invariant 7: moonshot.db deleted or replaced under the running service. Its
        state lives on only in this process: save it beside, and stop (every command
        refuses the home until a person puts a database back or recovers)."""
        gone = self.store.file_gone()
        if gone is None:
            # Restored in place (same file, an older count): stop, and say so.
            self.store.check_not_behind()
            home.check_current(self.cfg, self.store.identity()[0], self.store.identity)
            return
        copy = self.cfg.home / f"{home.SAVED}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        try:
            self.store.save_copy(copy)
            kept = f"its last state is saved as {copy.name}: with the service stopped, mv {copy.name} moonshot.db"
        except Exception as exc:  # noqa: BLE001 - say so; the refusal below still holds
            kept = f"its last state could not be saved ({exc})"
        saved = copy.name if copy.exists() else None
        home.note_replaced(self.cfg, saved)  # the file there now is refused until settled
        self._db_lost = True
        raise HomeError(f"{gone} while moonshot run used it; {kept}")

    # -- pausing on database trouble (issue 15) --------------------------------------------------
    def _pause(self, exc: HomeTrouble) -> float:
        """The home cannot be written for now: wait (capped backoff) and try again; the
        steps are idempotent and nothing of a coin is counted against it."""
        now = self.clock()
        if self._paused is None:
            self._paused = (now, str(exc))
            self.log.error("paused: %s", exc)
            # For `moonshot status`, when the database itself can still be written.
            with contextlib.suppress(HomeTrouble):
                self.store.meta_set_many({"paused" + self.meta_suffix: str(exc)})
        elapsed = now - self._paused[0]
        return min(max(PAUSE_MIN, elapsed), PAUSE_MAX)

    def _resumed(self) -> None:
        if self._paused is None:
            return
        since, why = self._paused
        self._paused = None
        self.log.warning("resumed after %.0f s of: %s", self.clock() - since, why)
        self.store.meta_delete_many(["paused" + self.meta_suffix])
        if self.launches:
            # A launch step cut off by the trouble left its coin in `launching`; this
            # process holds the launch lock, so none is in hand: invariant 1 applies.
            self.pipeline.recover(self.clock())

    # -- waiting ------------------------------------------------------------------------------
    def next_due(self, now: float) -> float | None:
        """When timed work is due next, or None when nothing will move without a person
        or a new coin (coins waiting for approval, limits or a blocked import don't count)."""
        dues: list[float] = []
        rows = self.store.db.execute(
            "SELECT min(not_before) FROM coins WHERE state IN (?, ?, ?) AND not_before > ?"
            " AND released = 0",
            (m.FETCHED, m.SPOOLED, m.IMPORTED, now),
        ).fetchone()
        if rows[0] is not None and self.sync:
            dues.append(rows[0])
        if self.sync and (self.pipeline.downloads.running() or self.pipeline.source_calls.busy()):
            dues.append(now + self.cfg.service.idle_sleep_max)  # a result wakes us sooner
        if self.ports.launcher is not None and self.launches:
            for coin in self.store.coins_in([m.CONFIRMED]):
                if (
                    coin.not_before > now
                    and self.pipeline.launch_blocker(coin, coin.not_before) is None
                ):
                    dues.append(coin.not_before)
        watch_next = self.watcher.next_check(now)
        if watch_next is not None:
            dues.append(watch_next)
        if self.ports.source.kind != "local" and self.sync:
            # Only each coin's oldest entry can be sent (in order per coin): counting the
            # ones queued behind it made a stuck entry look due now, a busy loop in an outage.
            row = self.store.db.execute(
                "SELECT min(o.next_try) FROM outbox o JOIN (SELECT min(id) AS id FROM outbox"
                " WHERE delivered_at IS NULL GROUP BY coin_id) h ON o.id = h.id"
            ).fetchone()
            if row[0] is not None:
                dues.append(max(row[0], now))
            if self.source_error is not None:
                dues.append(max(self._next_poll, now))
        return min(dues) if dues else None

    def leftover(self, now: float) -> dict[str, Any]:
        """What is left that time could move (`run --once`): an unreachable source (coins
        not fetched), reports not delivered, downloads running, coins waiting to retry
        or to poll the library again, coins held by a launch limit. Coins waiting for a
        person (approval, `failed`, `needs_review`) are not in it."""
        left: dict[str, Any] = {}
        moves: list[float] = []  # when each could move next
        if self.sync and self.ports.source.kind != "local":
            busy = self.pipeline.source_calls.busy()
            if self.source_error is not None:
                left["source"] = self.source_error
                moves.append(self._next_poll)
            elif busy is not None and busy[0] != "report":
                what, since = busy
                left["source"] = f"{what}: no answer yet after {max(0.0, now - since):.0f} s"
            if busy is not None:
                moves.append(now)  # its answer, or its timeout, moves it
            pending = self.store.outbox_pending()
            if pending:
                left["reports"] = pending
                moves.append(self.next_due(now) or now)
        if self.sync and self.pipeline.downloads.running():
            left["downloading"] = len(self.pipeline.downloads.running())
            moves.append(now)
        states = [m.FETCHED, m.SPOOLED, m.IMPORTED] if self.sync else []
        can_launch = self.launches and self.ports.launcher is not None
        if can_launch:
            states.append(m.CONFIRMED)
        if states:
            marks = ", ".join("?" * len(states))
            n, first = self.store.db.execute(
                f"SELECT count(*), min(not_before) FROM coins WHERE state IN ({marks})"
                " AND not_before > ? AND released = 0",
                (*states, now),
            ).fetchone()
            if n:
                left["retrying"] = n
                left["next_try_in_s"] = round(first - now, 1)
                moves.append(first)
        if can_launch:
            limited = [
                c
                for c in self.store.coins_in([m.CONFIRMED], ready_by=now)
                if (why := self.pipeline.launch_blocker(c, now)) and why.startswith("launch limits")
            ]
            if limited:
                left["launch_limits"] = len(limited)
                moves.append(now + self.pipeline.gate.rate_wait(now))
        if moves:
            left["next_move_at"] = min(moves)
        return left

    def _progress(self) -> int:
        return self.pipeline.moved + self._events

    @staticmethod
    def describe(left: dict[str, Any], waited: float, patience: float) -> tuple[int, str]:
        """The exit code and the one line `run --once` ends with when something is left."""
        parts = []
        if "source" in left:
            parts.append(f"the source failed, coins not fetched ({left['source']})")
        if "reports" in left:
            parts.append(f"{left['reports']} report(s) not delivered to the source")
        if "downloading" in left:
            parts.append(f"{left['downloading']} download(s) cut off")
        if "retrying" in left:
            parts.append(
                f"{left['retrying']} coin(s) waiting to retry (next in {left['next_try_in_s']:g} s)"
            )
        if "launch_limits" in left:
            parts.append(f"{left['launch_limits']} coin(s) held by the launch limits")
        code = RET_SOURCE if ("source" in left or "reports" in left) else RET_WAITING
        why = (
            f"nothing moved for {patience:g} s (service.once_patience)"
            if waited >= patience
            else f"nothing can move within service.once_patience ({patience:g} s)"
        )
        line = f"run --once: {why}; left: " + "; ".join(parts)
        return code, line

    def run(self, once: bool = False) -> int:
        """The service until stopped (or, with `once`, until nothing is left that time
        could move, or nothing moved for `service.once_patience`). Database trouble
        (locked, full) pauses it: every step retries until the trouble ends."""
        idle = 0
        code = RET_OK
        clean = False
        progress, progress_at = self._progress(), self.clock()
        patience = self.cfg.service.once_patience
        try:
            while not self.stopping:
                now = self.clock()
                try:
                    self.start()
                    did = self.tick(now)
                    due = None if did else self.next_due(now)
                    left = self.leftover(now) if once and not did else {}
                    if once and not did and not left and due is None:
                        # One more look at the source before leaving: coins may have arrived.
                        did = self._poll_source(now, force=True)
                        busy = self.pipeline.source_calls.busy()
                        if not did and self.source_error is None and busy is None:
                            break
                    self._resumed()
                except HomeTrouble as exc:
                    self._wake.wait(self._pause(exc))
                    self._wake.clear()
                    continue
                if did:
                    idle = 0
                    if self._progress() != progress:
                        progress, progress_at = self._progress(), now
                    continue
                if (
                    once
                    and left
                    and (
                        now - progress_at >= patience
                        or left.get("next_move_at", now) > progress_at + patience
                    )
                ):  # patience ran out, or nothing can move before it would
                    code, self.exit_line = self.describe(left, now - progress_at, patience)
                    self.log.warning("%s", self.exit_line)
                    break
                idle += 1
                cap = self.cfg.service.idle_sleep_max
                sleep = min(self.cfg.service.idle_sleep_min * 2 ** min(idle, 16), cap)
                if due is not None:
                    sleep = min(sleep, max(due - now, 0.0))
                self._wake.wait(sleep)
                self._wake.clear()
            clean = True
        finally:
            self._wind_down()
            if clean:
                self._release_claims()
            self.close()
            if self._db_lost:
                self.store.close()
                home.forget_deleted(self.cfg)
            elif self._last_progress is not None:
                self._record_stop({"last_progress_at": repr(self._last_progress)})
        # 0 = stopped cleanly; after an exception the stale heartbeat says "dead" (issue 6).
        self._record_stop({"heartbeat_at" + self.meta_suffix: "0"})
        self.log.info("stopped%s", " (signal)" if self.stopping else "")
        return code

    # -- stopping -------------------------------------------------------------------------------
    def _wind_down(self) -> None:
        """Downloads still running get half of `service.stop_timeout` (from the signal) to
        finish and be committed; the rest are cut off. A cut-off download wrote nothing:
        its coin stays `fetched`, the attempt uncounted (the stop was ours, not the
        coin's failure), and starts again next time."""
        end = (self._stop_at or time.monotonic()) + self.cfg.service.stop_timeout / 2
        if self.sync:
            self._wind_down_source(end)
        downloads = self.pipeline.downloads
        if not downloads.running():
            return
        while downloads.running() and time.monotonic() < end:
            for coin_id, attempt, outcome, ended in downloads.results(timeout=0.05):
                try:
                    self.pipeline.finish_spool(coin_id, attempt, outcome, ended)
                except Exception:  # noqa: BLE001 - stopping must go on
                    self.log.exception("while committing a download", extra={"coin": coin_id})
        for coin_id, attempt in downloads.cancel_all("the service is stopping").items():
            coin = self.store.get(coin_id)
            if coin is None or coin.state != m.FETCHED or coin.attempts != attempt:
                continue
            try:
                self.pipeline._fire(
                    coin,
                    "defer",
                    self.clock(),
                    {"cancelled": "the service stopped during the download"},
                    attempts=attempt - 1,
                    not_before=0.0 if coin.retry_since is None else self.clock(),
                )
            except Exception:  # noqa: BLE001 - the attempt simply stays counted
                self.log.exception("while recording a cut-off download", extra={"coin": coin_id})

    def _wind_down_source(self, end: float) -> None:
        """The source call in flight gets until `end` to answer and be committed (a
        claim's coins are recorded, to be handed back); a source that hangs longer is
        left to its thread (a claim it made is re-read by the next start)."""
        calls = self.pipeline.source_calls
        while calls.busy() is not None and time.monotonic() < end:
            try:
                self._collect_source(wait=min(0.1, max(0.0, end - time.monotonic())))
            except Exception:  # noqa: BLE001 - stopping must go on
                self.log.exception("while committing the source's answer")

    def _release_claims(self) -> None:
        """A clean stop hands the claims of coins not started yet (`fetched`, every
        report delivered) back to a shared source, so another Mac can take them now
        rather than when the lease ends. The source may hand them to us again later."""
        source = self.ports.source
        release = getattr(source, "release", None)
        if not self.sync or release is None or source.kind == "local":
            return
        pending = self.store.outbox_pending_coins()
        coins = {
            c.source_ref: c
            for c in self.store.coins_in([m.FETCHED], released=False)
            if c.source == source.kind and c.source_ref and c.id not in pending
        }
        if not coins:
            return
        calls = self.pipeline.source_calls
        refs = sorted(coins)
        done = None
        if calls.submit("release", refs, lambda: release(refs)):
            done = calls.result(wait=max(self.cfg.service.stop_timeout / 2, SOURCE_GRACE))
        outcome = done[2] if done else None
        if not isinstance(outcome, list):
            why = outcome if outcome is not None else "the source did not answer"
            if outcome is not None and not isinstance(outcome, MoonshotError):
                self.log.error("while handing claims back", exc_info=outcome)
            self.log.warning("could not hand %d claim(s) back: %s", len(coins), why)
            return
        released = outcome
        now = self.clock()
        for ref in released:
            coin = coins.get(str(ref))
            if coin is not None:
                # moved by the CLI meanwhile, or the database is locked: the flag is only
                # a hint then (the source may hand the coin back: `reclaim`)
                with contextlib.suppress(StaleState, HomeTrouble):
                    self.pipeline._fire(
                        coin,
                        "release",
                        now,
                        {"ref": coin.source_ref, "why": "clean stop"},
                        released=1,
                    )
        self.log.info("handed %d unstarted claim(s) back to the source", len(released))

    def _record_stop(self, values: dict[str, str]) -> None:
        try:
            self.store.meta_set_many(values)
        except HomeTrouble as exc:  # stopping anyway: status will say "dead", not lie
            self.log.warning("could not record the stop: %s", exc)
