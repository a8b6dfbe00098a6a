"""One step per coin: count the attempt (commit), do the side effect, commit the
outcome. The machine says which transitions exist; the store commits them; the ports
do the side effects. Every point between a commit and a side effect is a named crash
point (moonshot.crash.CRASH_POINTS) that the crash tests stop at."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from moonshot import crash, images, retry
from moonshot import machine as m
from moonshot.adapters import Ports
from moonshot.config import Config
from moonshot.errors import MoonshotError, NeedsReview, Rejected, StaleState, TransientError
from moonshot.fsutil import write_atomic
from moonshot.gate import LaunchGate
from moonshot.naming import format_name, parse_name
from moonshot.ops import logs
from moonshot.ports import Coin, IncomingCoin
from moonshot.store import LOCAL_SOURCES, Store

CONFIRM_POLL = 1.0
# A coin moving on to the next stage starts that stage's attempts and retry window afresh.
NEW_STAGE = {"attempts": 0, "not_before": 0.0, "last_error": None, "retry_since": None}
DROP_GRACE = 3.0  # a dropped file that does not decode is given this long to finish copying


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

    def fail(self, coin: Coin, reason: str, now: float, failed_from: str | None = None) -> None:
        """To `failed` with its reason; `moonshot retry` sends it back to `failed_from`
        (default: the state it is in)."""
        self._fire(
            coin,
            "fail",
            now,
            {"reason": reason, "attempts": coin.attempts},
            last_error=reason,
            failed_from=failed_from or coin.state,
            not_before=0.0,
        )

    def settle(self, coin: Coin, exc: Exception, failed_at: float) -> None:
        """A step's error: the coin's own bad input rejects it (where the machine allows),
        a transient one is retried, any other moonshot error (a permission, a setting)
        fails it at once with its reason; time would not fix those."""
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
    # The download and re-encode run in a worker (images.Downloads); the attempt is
    # committed before it starts and its outcome is written and committed here, on the
    # pipeline's thread. A download cut off by a stop leaves nothing behind: the worker
    # never writes a file, and the coin, still `fetched`, starts again next time.
    def start_spool(self, coin: Coin, now: float) -> None:
        try:
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
            **NEW_STAGE,
        )
        crash.point("after_spool_commit")

    def spool(self, coin: Coin, now: float) -> None:
        """fetched -> spooled in one call: start the download and wait for it."""
        self.start_spool(coin, now)
        while self.downloads.busy(coin.id):
            for key, tag, outcome, ended in self.downloads.results(timeout=0.05):
                self.finish_spool(key, tag, outcome, ended)

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
        path = self.spool_path(coin)
        if not path.exists():
            reason = f"spooled file {path.name} is missing; `moonshot retry {coin.id}` downloads it again"
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
        if newest is not None and newest.id == coin.photos_asset_id:
            return True, ""
        seen = f"{newest.original_filename} ({newest.id})" if newest else "nothing"
        return False, f"the newest photo in the library is {seen}, not {coin.image_filename}"

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
        coin's claim: if another service took it, it must not be launched here too."""
        holds = getattr(self.ports.source, "holds", None)
        if holds is None or coin.source != self.ports.source.kind or not coin.source_ref:
            return True
        try:
            if holds(coin.source_ref, now):
                return True
        except MoonshotError as exc:  # cannot tell: wait, without spending an attempt
            self.store.set_fields(
                coin.id, not_before=now + self.cfg.launch.retry_backoff, last_error=str(exc)
            )
            return False
        reason = "another moonshot service holds this coin's claim in the source"
        self.fail(coin, reason, now, m.CONFIRMED)
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
        coin = self._attempt(coin, now)
        try:
            launcher.prepare(coin, self.spool_path(coin))
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
            self._fire(coin, "review", now, {"reason": reason}, last_error=reason)
            return
        crash.point("after_irreversible")
        # In the log before the commit: if the commit fails, the address is not lost.
        self.log.info("launch done: token %s", result.token_address, extra={"coin": coin.id})
        self._fire(
            coin,
            "finish_launch",
            now,
            {"token_address": result.token_address, **result.detail},
            token_address=result.token_address,
            attempts=0,
            last_error=None,
        )
        crash.point("after_launched_commit")

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
        """A file with a canonical name appeared in spool/ (design.md, "Manual drop").
        Returns ignored | wait | dropped | created | rejected."""
        parsed = parse_name(path.name)
        if parsed is None or not path.is_file():
            return "ignored"
        coin = self.store.find_by_filename(path.name)
        if coin is not None and coin.state not in (m.FETCHED, m.FAILED):
            return "ignored"  # our own file, or the coin is past this point
        if (
            coin is not None
            and coin.state == m.FAILED
            and not _written_after(path, coin.updated_at)
        ):
            # The failed coin's own file, still in spool/ (seen by the start-up rescan):
            # only a file written after the failure is a person's drop.
            return "ignored"
        if coin is None:
            matches = [
                c
                for c in self.store.coins_in([m.FETCHED, m.FAILED], order="id")
                if c.twitter_user == parsed.twitter_user and c.ticker == parsed.ticker
            ]
            coin = matches[0] if matches else None
        try:
            jpeg = self._reencode(images.read_local(path, max_bytes=self.cfg.spool.max_bytes))
        except Rejected as exc:
            if now - first_seen < DROP_GRACE:
                return "wait"  # maybe still being copied in
            if coin is None:
                coin = self._manual_coin(parsed, path.name, now)
                self._fire(
                    coin,
                    "reject",
                    now,
                    {"reason": exc.reason, "file": path.name},
                    last_error=exc.reason,
                    image_filename=path.name,
                )
                return "rejected"
            self.log.warning(
                "dropped file %s refused: %s", path.name, exc.reason, extra={"coin": coin.id}
            )
            return "rejected"
        except TransientError:
            return "wait"
        created = coin is None
        if coin is None:
            coin = self._manual_coin(parsed, path.name, now)
        # The import takes only decoded and re-encoded images (invariant 5).
        write_atomic(path, jpeg)
        try:
            self._fire(
                coin,
                "drop",
                now,
                {"file": path.name, "manual": True},
                image_filename=path.name,
                **NEW_STAGE,
                import_started=None,
            )
        except StaleState:
            return "ignored"
        return "created" if created else "dropped"

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


def _written_after(path: Path, stamp: str) -> bool:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    try:
        return path.stat().st_mtime > when
    except FileNotFoundError:
        return False
