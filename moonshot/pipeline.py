"""One step per coin: count the attempt (commit), do the side effect, commit the
outcome. The machine says which transitions exist; the store commits them; the ports
do the side effects. Every point between a commit and a side effect is a named crash
point (moonshot.crash.CRASH_POINTS) that the crash tests stop at."""

from __future__ import annotations

import hashlib
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from moonshot import crash, images, retry
from moonshot import machine as m
from moonshot.adapters import Ports
from moonshot.config import Config
from moonshot.errors import (
    HomeError,
    HomeTrouble,
    Mismatch,
    MoonshotError,
    NeedsReview,
    Rejected,
    StaleState,
    TransientError,
)
from moonshot.fsutil import move_into, write_atomic
from moonshot.gate import LaunchGate
from moonshot.naming import format_name, parse_name, valid_tweet_id
from moonshot.ops import logs
from moonshot.ports import Coin, IncomingCoin
from moonshot.store import CLAIMED_ELSEWHERE, LOCAL_SOURCES, Store

CONFIRM_POLL = 1.0
# A coin moving on to the next stage starts that stage's attempts and retry window afresh.
NEW_STAGE = {"attempts": 0, "not_before": 0.0, "last_error": None, "retry_since": None}
DROP_GRACE = 3.0  # a dropped file that does not decode is given this long before it is refused
OUTCOME_RETRY_MAX = 30.0  # seconds between tries to record a launch's outcome (locked, full)
HOME_ERRORS = (HomeTrouble, HomeError)  # the home's trouble, never a coin's
SOURCE_GRACE = 0.25  # seconds the loop waits for a source call before it goes on without it
SOURCE_BUSY_WAIT = 2.0  # a coin waiting for the source's answer looks again after this long


class SourceCalls:
    """Source I/O (claim, report back, renew, release) on one daemon thread of its own,
    at most one call in flight: a source that accepts the connection and never answers
    holds only that thread, for its HTTP timeout, while the loop, the heartbeat and the
    local work go on. The outcome comes back to the pipeline's thread, which commits it
    (the store stays the only writer) before the next call can start, so the source
    sees the reports in order and a claim's coins are recorded before the next claim."""

    def __init__(self, wake: Callable[[], None], clock: Callable[[], float] = time.time):
        self.wake = wake
        self.clock = clock
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight: tuple[str, float] | None = None  # (what, since), until collected
        self._thread: threading.Thread | None = None

    def busy(self) -> tuple[str, float] | None:
        """(what, since when) of the call not collected yet, or None."""
        with self._lock:
            return self._in_flight

    def submit(self, what: str, tag: object, fn: Callable[[], object]) -> bool:
        """Start fn() on the source's thread, unless a call is in flight (False)."""
        with self._lock:
            if self._in_flight is not None:
                return False
            self._in_flight = (what, self.clock())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="moonshot-source", daemon=True
                )
                self._thread.start()
        self._jobs.put((what, tag, fn))
        return True

    def result(self, wait: float = 0.0) -> tuple[str, object, object, float] | None:
        """(what, tag, outcome: a value or the exception, when it ended) of the call in
        flight once it has ended, waiting up to `wait` seconds for it; else None."""
        with self._lock:
            if self._in_flight is None:
                return None
        try:
            done = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
        except queue.Empty:
            return None
        with self._lock:
            self._in_flight = None
        return done

    def _work(self) -> None:
        while True:
            what, tag, fn = self._jobs.get()
            try:
                outcome = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the pipeline's thread
                outcome = exc
            self._done.put((what, tag, outcome, self.clock()))
            self.wake()


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        ports: Ports,
        clock: Callable[[], float] = time.time,
        wake: Callable[[], None] = lambda: None,
    ):
        self.cfg = cfg
        self.store = store
        self.ports = ports
        self.clock = clock  # when a side effect ended: a retry waits from the failure
        self.rng = random.Random()  # the retry jitter
        self.moved = 0  # state changes committed by this pipeline
        self.log = logs.get()
        self.downloads = images.Downloads(cfg.spool.download_workers, wake, clock)
        self.source_calls = SourceCalls(wake, clock)
        self.gate = LaunchGate(cfg, store)

    # -- helpers -----------------------------------------------------------------------

    @property
    def launching_enabled(self) -> bool:
        return self.ports.launcher is not None

    def _fire(
        self, coin: Coin, trigger: str, now: float, detail: dict | None = None, **changes
    ) -> Coin:
        self.store.fire(coin, trigger, detail=detail, **changes)  # audit stamps: the real clock
        fresh = self.store.get(coin.id)
        assert fresh is not None
        if fresh.state != coin.state:
            self.moved += 1  # progress, for `run --once`'s patience
        if trigger not in ("attempt",):
            self.log.info(
                "%s: %s -> %s %s",
                trigger,
                coin.state,
                fresh.state,
                detail or "",
                extra={"coin": coin.id},
            )
        return fresh

    def _attempt(self, coin: Coin, now: float, **changes) -> Coin:
        """Count the attempt in the commit that starts it (a killed attempt still counts).
        `not_before` 0 marks it unfinished until its outcome is committed."""
        coin = self._fire(
            coin,
            "attempt",
            now,
            {"attempt": coin.attempts + 1},
            attempts=coin.attempts + 1,
            not_before=0.0,
            **changes,
        )
        crash.point("after_attempt_commit")
        return coin

    def _transient(self, coin: Coin, err: Exception, failed_at: float) -> None:
        """The one retry rule (moonshot.retry): try again after a wait measured from
        `failed_at`, the moment the side effect failed; `failed` once the retry window
        has passed since the stage's first transient failure."""
        reason = str(err) or type(err).__name__
        tries = self.cfg.launch.prepare_attempts
        if isinstance(err, Mismatch) and coin.attempts >= tries:
            self.fail(
                coin,
                f"{reason}; a read-back refused this coin in {coin.attempts} attempt(s)"
                f" (launch.prepare_attempts = {tries})",
                failed_at,
            )
            return
        backoff = retry.for_stage(self.cfg, coin.state)
        window = self.cfg.service.retry_window
        at, since = retry.next_try(
            backoff, window, coin.attempts, coin.retry_since, failed_at, self.rng
        )
        if at is None:
            self.fail(
                coin,
                f"{reason} (still failing {failed_at - since:.0f} s after the first error,"
                f" {coin.attempts} attempt(s); service.retry_window = {window:g})",
                failed_at,
            )
            return
        self._fire(
            coin,
            "defer",
            failed_at,
            {"error": reason, "retry_in_s": round(at - failed_at, 3), "attempt": coin.attempts},
            last_error=reason,
            not_before=at,
            retry_since=since,
        )

    def fail(
        self,
        coin: Coin,
        reason: str,
        now: float,
        failed_from: str | None = None,
        detail: dict | None = None,
    ) -> None:
        """To `failed` with its reason; `moonshot retry` sends it back to `failed_from`
        (default: the state it is in)."""
        self._fire(
            coin,
            "fail",
            now,
            {"reason": reason, "attempts": coin.attempts, **(detail or {})},
            last_error=reason,
            failed_from=failed_from or coin.state,
            not_before=0.0,
        )

    def settle(self, coin: Coin, exc: Exception, failed_at: float) -> None:
        """A step's error: the coin's own bad input rejects it (where the machine allows),
        a transient one is retried, any other moonshot error (a permission, a setting)
        fails it at once with its reason; time would not fix those. The home's own
        trouble (a locked database) is never the coin's: it goes up to the service."""
        if isinstance(exc, HOME_ERRORS):
            raise exc
        if isinstance(exc, Rejected) and m.allowed(coin.state, "reject"):
            self._fire(coin, "reject", failed_at, {"reason": exc.reason}, last_error=exc.reason)
        elif isinstance(exc, TransientError | OSError) or not isinstance(exc, MoonshotError):
            self._transient(coin, exc, failed_at)
        else:
            self.fail(coin, str(exc) or type(exc).__name__, failed_at)

    def spool_path(self, coin: Coin) -> Path:
        assert coin.image_filename
        return self.cfg.spool_dir / coin.image_filename

    def _new_name(self, coin: Coin, now: float) -> str:
        ts = max(int(now), 1)
        while True:
            name = format_name(coin.twitter_user, coin.ticker, ts)
            if (
                self.store.find_by_filename(name) is None
                and not (self.cfg.spool_dir / name).exists()
            ):
                return name
            ts += 1

    def image_hosts(self) -> list[str]:
        return self.cfg.spool.allowed_hosts or list(
            getattr(self.ports.source, "image_hosts", []) or []
        )

    def _image_bytes(
        self, coin: Coin, http: requests.Session | None = None, cancel: images.Cancel | None = None
    ) -> bytes:
        url = coin.image_url or ""
        if coin.source == "manual" and coin.image_filename:  # the dropped file itself
            return images.read_local(self.spool_path(coin), max_bytes=self.cfg.spool.max_bytes)
        if coin.source in LOCAL_SOURCES and url.startswith("/"):
            return images.read_local(Path(url), max_bytes=self.cfg.spool.max_bytes)
        return images.download(
            url,
            timeout=self.cfg.spool.download_timeout,
            max_bytes=self.cfg.spool.max_bytes,
            allowed_hosts=self.image_hosts(),
            session=http,
            cancel=cancel,
        )

    def _reencode(self, data: bytes) -> bytes:
        s = self.cfg.spool
        return images.reencode(
            data, max_pixels=s.max_pixels, max_side=s.max_side, quality=s.jpeg_quality
        )

    # -- fetched -> spooled --------------------------------------------------------------
    def _check_tweet(self, coin: Coin) -> None:
        """A tweet makes one coin, whichever way it came (issue 15): its id in the one
        canonical form, and no other coin of this home with the same id."""
        if coin.tweet_id is None:
            return
        tweet_id = valid_tweet_id(coin.tweet_id)
        other = self.store.coin_with_tweet(tweet_id, exclude_id=coin.id)
        if other is not None:
            raise Rejected(f"tweet {tweet_id} is already coin {other}")

    # The download and re-encode run in a worker (images.Downloads); the attempt is
    # committed before it starts and its outcome is written and committed here, on the
    # pipeline's thread. A download cut off by a stop leaves nothing behind: the worker
    # never writes a file, and the coin, still `fetched`, starts again next time.
    def start_spool(self, coin: Coin, now: float) -> None:
        try:
            self._check_tweet(coin)
            name = coin.image_filename or self._new_name(coin, now)
        except Rejected as exc:
            self._fire(coin, "reject", now, {"reason": exc.reason}, last_error=exc.reason)
            return
        coin = self._attempt(coin, now, image_filename=name)

        def job(cancel: images.Cancel, http: requests.Session) -> bytes:
            return self._reencode(self._image_bytes(coin, http, cancel))

        self.downloads.submit(coin.id, coin.attempts, job)

    def finish_spool(self, coin_id: int, attempt: int, outcome: object, ended_at: float) -> None:
        """Commit one download's outcome, if the coin still waits for that attempt."""
        coin = self.store.get(coin_id)
        if coin is None or coin.state != m.FETCHED or coin.attempts != attempt or coin.released:
            self.log.info("download result dropped: the coin moved on", extra={"coin": coin_id})
            return
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, MoonshotError | OSError):
                self.log.error(
                    "download failed unexpectedly", exc_info=outcome, extra={"coin": coin_id}
                )
            self.settle(coin, outcome, ended_at)
            return
        assert isinstance(outcome, bytes)
        try:
            write_atomic(self.spool_path(coin), outcome)
        except OSError as exc:  # a full disk: worth another try
            self.settle(coin, exc, self.clock())
            return
        crash.point("after_spool_rename")
        self._fire(
            coin,
            "spool",
            ended_at,
            {"file": coin.image_filename, "bytes": len(outcome)},
            image_sha256=sha256(outcome),
            **NEW_STAGE,
        )
        crash.point("after_spool_commit")

    def spool(self, coin: Coin, now: float) -> None:
        """fetched -> spooled in one call: start the download and wait for it."""
        self.start_spool(coin, now)
        while self.downloads.busy(coin.id):
            for key, tag, outcome, ended in self.downloads.results(timeout=0.05):
                self.finish_spool(key, tag, outcome, ended)

    def has_file(self, coin: Coin) -> bool:
        return bool(coin.image_filename) and self.spool_path(coin).exists()

    def _missing_file(self, coin: Coin, now: float) -> None:
        """The coin's file left spool/ (removed or renamed by hand), or it never had one
        in this database (an older copy, settled by a person): spool it afresh, unless
        its file is in spool/done/, where only a coin that moved on puts it."""
        if not coin.image_filename:
            reason = (
                "no spooled file: this database never saw the coin's download (restored"
                f" from an older copy?); `moonshot retry {coin.id}` downloads it again"
            )
        elif (self.cfg.done_dir / coin.image_filename).exists():
            reason = (
                f"spooled file {coin.image_filename} is in spool/done/, where a coin that was"
                " launched or withdrawn leaves it: this coin may have moved on (an older copy"
                " of moonshot.db?). Check the app: launched, or must not launch:"
                f" `moonshot withdraw {coin.id}`; not launched: `moonshot retry {coin.id}`"
                " downloads it again"
            )
        else:
            reason = (
                f"spooled file {coin.image_filename} is missing; `moonshot retry {coin.id}`"
                " downloads it again"
            )
        self.fail(coin, reason, now, m.FETCHED)

    # -- spooled -> imported ---------------------------------------------------------------
    def import_gate_open(self, coin: Coin) -> bool:
        """Invariant 2: while launching is enabled, import only when no other coin is
        imported, confirmed or launching, so the newest photo is the coin's own. Nor while
        another spooled coin has an import in doubt (started, then an error that may have
        come after the photo was added): importing now would put a newer photo above it,
        and it would be superseded and imported a second time."""
        if not self.launching_enabled:
            return True
        if self.store.count_in(m.ACTIVE_PHOTO, exclude_id=coin.id):
            return False
        return not self.store.db.execute(
            "SELECT 1 FROM coins WHERE state = ? AND import_started IS NOT NULL AND id != ?"
            " LIMIT 1",
            (m.SPOOLED, coin.id),
        ).fetchone()

    def import_(self, coin: Coin, now: float) -> None:
        started = coin.import_started or now
        coin = self._attempt(coin, now, import_started=started)
        if not self.has_file(coin):
            self._missing_file(coin, now)
            return
        path = self.spool_path(coin)
        if coin.image_sha256 and file_sha256(path) != coin.image_sha256:
            # Only decoded and re-encoded images are imported (invariant 5).
            reason = (
                f"spool/{path.name} was changed after the coin spooled it (dropped again?);"
                f" `moonshot retry {coin.id}` spools it again"
            )
            self.fail(coin, reason, now, m.FETCHED)
            return
        try:
            # A crash after the import and before its commit left the asset in the
            # library: find it instead of importing a second copy (invariant 4). The
            # asset a `superseded` coin had before is not taken again.
            found = [
                a
                for a in self.ports.library.find(path.name, added_after=started)
                if a.id != coin.photos_asset_id
            ]
            reused = bool(found)
            asset = found[0] if found else self.ports.library.import_file(path)
            crash.point("after_import")
        except (TransientError, OSError) as exc:  # locked, busy, timed out: later
            self._transient(coin, exc, self.clock())
            return
        self._fire(
            coin,
            "import_photo",
            now,
            {"asset": asset.id, "reused": reused},
            photos_asset_id=asset.id,
            **NEW_STAGE,
        )
        crash.point("after_import_commit")

    # -- imported -> confirmed ---------------------------------------------------------------
    def confirm(self, coin: Coin, now: float) -> None:
        since = coin.import_started or 0.0
        try:
            found = self.ports.library.confirm(
                coin.photos_asset_id, coin.image_filename or "", since
            )
        except TransientError as exc:
            found = None
            detail = str(exc)
        if found is not None and found.present and found.ready:
            asset = found.asset
            self._fire(
                coin,
                "confirm",
                now,
                {"asset": asset.id if asset else coin.photos_asset_id},
                photos_asset_id=asset.id if asset else coin.photos_asset_id,
                **NEW_STAGE,
            )
            crash.point("after_confirm_commit")
            return
        if found is not None:
            detail = found.detail
        p = self.cfg.photos
        limit = p.icloud_timeout if (found is not None and found.present) else p.confirm_timeout
        if now - since > limit:
            reason = f"{detail} after {limit:.0f} s"
            self.fail(coin, reason, now, m.IMPORTED)
            return
        self.store.set_fields(coin.id, not_before=now + CONFIRM_POLL, last_error=detail)

    # -- confirmed -> launching -> launched --------------------------------------------------
    def launch_blocker(self, coin: Coin, now: float) -> str | None:
        """Why this confirmed coin must wait for something other than time, or None."""
        return self.gate.blocker(coin, now, self.launching_enabled)

    def _newest_is_coin(self, coin: Coin) -> tuple[bool, str]:
        newest = self.ports.library.newest()
        if newest is None or newest.id != coin.photos_asset_id:
            seen = f"{newest.original_filename} ({newest.id})" if newest else "nothing"
            return False, f"the newest photo in the library is {seen}, not {coin.image_filename}"
        # A library that keeps the file as imported (the folder library) can show what the
        # picker would take: the asset's file, which must still be the coin's image (found
        # from outside: an original overwritten with another picture, or deleted, while the
        # coin waited for approval, was launched).
        path_of = getattr(self.ports.library, "path_of", None)
        path = path_of(newest.id) if path_of is not None else None
        if path is not None and coin.image_sha256:
            got = file_sha256(path)
            if got != coin.image_sha256:
                what = "is missing" if got is None else "is another picture than the coin's"
                return False, f"the coin's photo in the library ({newest.id}) {what}"
        return True, ""

    def _supersede(self, coin: Coin, why: str, now: float) -> None:
        if coin.supersede_count >= self.cfg.launch.superseded_max:
            reason = f"superseded {coin.supersede_count} times; {why}"
            self.fail(coin, reason, now, m.CONFIRMED)
            return
        self._fire(
            coin,
            "supersede",
            now,
            {"reason": "superseded", "why": why, "previous_asset": coin.photos_asset_id},
            supersede_count=coin.supersede_count + 1,
            import_started=None,
            attempts=0,
            not_before=0.0,
            retry_since=None,
            last_error=why,
        )

    def _source_holds(self, coin: Coin, now: float) -> bool:
        """A source shared by several services (Supabase) must still give this one the
        coin's claim: if another service took it, it must not be launched here too. The
        source answers from its last renewal when it can (`holds_cached`); else it is
        asked on its own thread, and a source that does not answer within SOURCE_GRACE
        makes the coin wait, without spending an attempt, never the loop."""
        source = self.ports.source
        holds = getattr(source, "holds", None)
        if holds is None or coin.source != source.kind or not coin.source_ref:
            return True
        ref = coin.source_ref
        cached = getattr(source, "holds_cached", None)
        answer = cached(ref, now) if cached is not None else None
        wait = self.cfg.launch.retry_backoff
        if answer is None:
            busy = self.source_calls.busy()
            done = None
            if self.source_calls.submit(f"holds {ref}", ref, lambda: holds(ref, now)):
                done = self.source_calls.result(wait=SOURCE_GRACE)
            if done is None:  # it answers later (and the answer is cached if it holds it)
                what = busy[0] if busy else "its claim"
                answer = TransientError(
                    f"waiting for the source to confirm this home's claim (asking: {what})"
                )
                wait = SOURCE_BUSY_WAIT
            else:
                answer = done[2]
        if isinstance(answer, MoonshotError):  # cannot tell: wait, without spending an attempt
            self.store.set_fields(coin.id, not_before=now + wait, last_error=str(answer))
            return False
        if isinstance(answer, BaseException):
            raise answer
        if answer:
            return True
        reason = (
            "another moonshot service holds this coin's claim in the source: it is launched"
            " there, never here"
        )
        self.fail(coin, reason, now, m.CONFIRMED, detail={CLAIMED_ELSEWHERE: True})
        return False

    def launch(self, coin: Coin, now: float) -> None:
        launcher = self.ports.launcher
        assert launcher is not None
        refused = self.gate.user_refused(coin)
        if refused:
            self.fail(coin, refused, now, m.CONFIRMED)
            return
        ok, why = self._newest_is_coin(coin)
        if not ok:
            self._supersede(coin, why, now)
            return
        if not self._source_holds(coin, now):
            return
        if not self.has_file(coin):  # renamed or removed by hand (issue 15)
            self._missing_file(coin, now)
            return
        coin = self._attempt(coin, now)
        try:
            launcher.prepare(coin, self.spool_path(coin))
        except NeedsReview as exc:
            # The app shows an outcome before the irreversible step: something before it
            # may have spent. Recorded as a launch that needs a person, never retried
            # (invariant 1): `launching`, then `needs_review` with the reason.
            coin = self._fire(
                coin, "start_launch", now, {"launcher": launcher.kind, "before_the_mark": True}
            )
            reason = str(exc)
            self.record_outcome(coin, "review", now, {"reason": reason}, last_error=reason)
            return
        except (OSError, MoonshotError) as exc:  # reversible: nothing was spent
            self.settle(coin, exc, self.clock())
            return
        ok, why = self._newest_is_coin(coin)  # again: a photo may have arrived meanwhile
        if not ok:
            self._supersede(coin, why, now)
            return
        if not self._source_holds(coin, time.time()):  # prepare may have taken long
            return
        coin = self._fire(
            coin, "start_launch", now, {"launcher": launcher.kind, "asset": coin.photos_asset_id}
        )
        crash.point("after_launching_commit")
        try:
            result = launcher.launch(coin)
        except Exception as exc:  # noqa: BLE001 - any doubt after the irreversible step is for a person
            reason = (
                str(exc)
                if isinstance(exc, NeedsReview)
                else f"launch outcome unknown: {type(exc).__name__}: {exc}"
            )
            self.record_outcome(coin, "review", now, {"reason": reason}, last_error=reason)
            return
        crash.point("after_irreversible")
        owner = (
            self.store.coin_by_address(result.token_address, coin.id)
            if result.token_address
            else None
        )
        if owner is not None:
            # A token is one coin's: an app that hands out the last launch's address (an
            # error screen taken for success, a stale copy button) proves nothing here.
            reason = (
                f"the app gave token address {result.token_address}, which is coin"
                f" {owner.id}'s ({owner.ticker}): this launch's outcome is unknown; check the"
                f" app, then `moonshot resolve {coin.id} --launched --token-address ...` or"
                " --not-launched"
            )
            self.record_outcome(coin, "review", now, {"reason": reason}, last_error=reason)
            return
        # In the log before the commit: if the commit fails, the address is not lost.
        self.log.info("launch done: token %s", result.token_address, extra={"coin": coin.id})
        self.record_outcome(
            coin,
            "finish_launch",
            now,
            {"token_address": result.token_address, **result.detail},
            token_address=result.token_address,
            attempts=0,
            last_error=None,
        )
        crash.point("after_launched_commit")

    def record_outcome(self, coin: Coin, trigger: str, now: float, detail: dict, **changes) -> Coin:
        """After the irreversible step the outcome is committed whatever it takes: a
        locked or full database is waited out with capped backoff, never given up on (a
        second TERM still ends the process; the coin is then reviewed at start-up)."""
        delay = 0.5
        while True:
            try:
                return self._fire(coin, trigger, now, detail, **changes)
            except HomeTrouble as exc:
                self.log.error(
                    "the launch's outcome (%s) waits for the database: %s; again in %.1f s",
                    trigger,
                    exc,
                    delay,
                    extra={"coin": coin.id},
                )
                time.sleep(delay)
                delay = min(delay * 2, OUTCOME_RETRY_MAX)

    # -- recovery and manual drops ---------------------------------------------------------
    def recover(self, now: float) -> int:
        """Invariant 1: a coin found in `launching` at start-up may have been launched;
        it goes to needs_review, never back to confirmed on its own."""
        n = 0
        for coin in self.store.coins_in([m.LAUNCHING]):
            reason = "found in launching at start-up: the launch may or may not have happened"
            self._fire(coin, "review", now, {"reason": reason}, last_error=reason)
            n += 1
        return n

    def adopt_drop(self, path: Path, now: float, first_seen: float) -> str:
        """A file with a canonical name appeared or changed in spool/ (design.md, "Manual
        drop"). Every file there has one owner (issue 15): the coin that has or had this
        name, else a waiting or failed coin of the same user and ticker, else a new manual
        coin. A file that does not decode makes no coin: it is refused for now and looked
        at again when it changes (a slow copy). Returns ignored | wait | refused | retired
        | changed | dropped | created."""
        parsed = parse_name(path.name)
        if parsed is None or not path.is_file():
            return "ignored"
        owner = self.store.find_by_filename(path.name)
        if owner is not None and (owner.image_filename != path.name or owner.state == m.REJECTED):
            # A file of a coin that has moved on (to a later drop, or withdrawn): no new coin.
            retire(self.cfg, path.name, owner.id)
            return "retired"
        if owner is not None and (
            owner.state not in (m.FETCHED, m.FAILED)
            or (owner.state == m.FAILED and not _written_after(path, owner.updated_at))
        ):
            # The coin's own file; a failed coin's, still here, is no new drop either.
            return self._own_file_changed(owner, path)
        waiting = [] if owner else self._waiting_coins(parsed)
        if len(waiting) > 1:
            # Found from outside: it went to the oldest without a word, which launched it.
            ids = ", ".join(str(c.id) for c in waiting)
            why = (
                f"matches {len(waiting)} waiting coins of {parsed.twitter_user}/{parsed.ticker}"
                f" (coins {ids}): not taken for any; withdraw the ones it is not for"
                " (`moonshot withdraw ID`), then drop the file again"
            )
            self.log.warning("spool/%s refused: %s", path.name, why)
            self.store.refuse_drop(path.name, why)
            return "refused"
        coin = owner or (waiting[0] if waiting else None)
        try:
            jpeg = self._reencode(images.read_local(path, max_bytes=self.cfg.spool.max_bytes))
        except Rejected as exc:
            if now - first_seen < DROP_GRACE:
                return "wait"  # maybe still being copied in
            for_coin = f" (for coin {coin.id})" if coin else ""
            self.log.warning(
                "spool/%s refused%s: %s; taken as soon as it changes",
                path.name,
                for_coin,
                exc.reason,
                extra={"coin": coin.id if coin else "-"},
            )
            self.store.refuse_drop(path.name, f"{exc.reason}{for_coin}")
            return "refused"
        except TransientError:
            return "wait"
        created = coin is None
        if coin is None:
            coin = self._manual_coin(parsed, path.name, now)
        previous = coin.image_filename
        # The import takes only decoded and re-encoded images (invariant 5).
        write_atomic(path, jpeg)
        try:
            self._fire(
                coin,
                "drop",
                now,
                {"file": path.name, "manual": True},
                image_filename=path.name,
                image_sha256=sha256(jpeg),
                **NEW_STAGE,
                import_started=None,
            )
        except StaleState:
            return "ignored"
        self.store.clear_refused_drop(path.name)
        if previous and previous != path.name:
            retire(self.cfg, previous, coin.id)  # one owner, one file (issue 15)
        return "created" if created else "dropped"

    def _waiting_coins(self, parsed) -> list[Coin]:
        return [
            c
            for c in self.store.coins_in([m.FETCHED, m.FAILED], order="id")
            if c.twitter_user == parsed.twitter_user and c.ticker == parsed.ticker
        ]

    def _own_file_changed(self, owner: Coin, path: Path) -> str:
        """A coin's own file, seen again: say a word when it is not what the coin spooled
        (the same name dropped twice with other content, issue 15); it is not taken."""
        if not owner.image_sha256 or file_sha256(path) == owner.image_sha256:
            self.store.clear_refused_drop(path.name)  # the coin spooled it since (a retry)
            return "ignored"
        if owner.image_filename == path.name and owner.state in (m.FETCHED, m.SPOOLED, m.FAILED):
            # Its only copy: the import compares it with what the coin spooled.
            then = (
                "takes THIS content for it"
                if owner.image_url == f"spool/{path.name}"  # a manual coin: the file is its source
                else "downloads its own image again"
            )
            why = (
                f"changed after coin {owner.id} ({owner.state}) spooled it, before its import:"
                f" the coin is not imported with it and fails; `moonshot retry {owner.id}`"
                f" {then} (drop another name for another coin)"
            )
        else:
            why = (
                f"changed after coin {owner.id} ({owner.state}) took this name; left alone:"
                " the coin keeps the image it spooled (drop another name for another coin)"
            )
        self.log.warning("spool/%s %s", path.name, why, extra={"coin": owner.id})
        self.store.refuse_drop(path.name, why)
        return "changed"

    def _manual_coin(self, parsed, filename: str, now: float) -> Coin:
        incoming = IncomingCoin(
            source="manual",
            source_ref=filename,
            ticker=parsed.ticker,
            name=parsed.ticker,
            image_url=f"spool/{filename}",
            twitter_user=parsed.twitter_user,
        )
        coin_id, _ = self.store.add_coin(
            incoming,
            twitter_user=parsed.twitter_user,
            now=now,
            trigger="manual_drop",
            detail={"file": filename},
            # Known from the start: if the process dies before the `drop` commit, the
            # rescan finds this coin by its file and adopts the file again.
            image_filename=filename,
        )
        coin = self.store.get(coin_id)
        assert coin is not None
        return coin


def now() -> float:
    return time.time()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def retire(cfg: Config, name: str, coin_id: int) -> bool:
    """Move a file of a coin that has moved on (a later drop took its place, it was
    withdrawn) out of spool/ into spool/done/, so it can never become another coin."""
    moved = move_into(cfg.spool_dir / name, cfg.done_dir)
    if moved:
        logs.get().info(
            "spool/%s moved to spool/done/: the coin moved on", name, extra={"coin": coin_id}
        )
    return moved


def withdraw(
    cfg: Config, store: Store, coin: Coin, reason: str, trigger: str = "withdraw", by: str = "cli"
) -> str:
    """A person's decision that a coin is never launched (`moonshot withdraw`, `resolve
    --withdraw`): rejected with the reason, its file out of spool/. Returns the new state."""
    why = f"withdrawn: {reason}"
    new = store.fire(coin, trigger, detail={"by": by, "reason": reason}, last_error=why)
    if coin.image_filename:
        retire(cfg, coin.image_filename, coin.id)
    return new


def _written_after(path: Path, stamp: str) -> bool:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    try:
        return path.stat().st_mtime > when
    except FileNotFoundError:
        return False
