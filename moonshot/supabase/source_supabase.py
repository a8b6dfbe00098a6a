"""The Supabase source: claims pending coins from the bot's `coins` table through the
migration's SQL functions, reports progress back, and (with SUPABASE_DB_URL) wakes the
service on NOTIFY. Owns every request to Supabase; never logs or raises the key."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from moonshot import config as config_mod
from moonshot.errors import ConfigError, Rejected, TransientError
from moonshot.ports import Check, IncomingCoin
from moonshot.supabase.listen import Listener, notify_check

log = logging.getLogger("moonshot.source.supabase")

SCHEMA_VERSION = 1  # moonshot_schema_version() of the migration this code expects
TABLE = "coins"
MIGRATION_COLUMNS = (
    "image_url",
    "image_filename",
    "image_synced",
    "image_sync_timestamp",
    "twitter_user",
    "tweet_id",
    "claimed_by",
    "claim_expires_at",
    "sync_state",
    "launch_state",
    "launched_at",
    "token_address",
    "last_error",
)
COIN_SELECT = "id,ticker,name,image_url,twitter_user,tweet_id,created_at"
OUTCOMES = frozenset({"launched", "rejected", "failed", "needs_review"})
TRANSIENT_CODES = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003"})
AUTH_CODES = frozenset({"PGRST301", "PGRST302", "PGRST303", "42501"})
# Table, column or function unknown to PostgREST: the migration is missing or old.
SETUP_CODES = frozenset({"42P01", "42703", "42883", "PGRST202", "PGRST204", "PGRST205"})
MIGRATION_FIX = (
    "apply the migration: `moonshot supabase sql`, paste it into the Supabase SQL editor and run it"
)
KEY_FIX = "set SUPABASE_SERVICE_ROLE_KEY to the project's service_role key (Project Settings > API)"
AUTH_PAUSE = 300.0  # after a rejected key, stop asking for this long
HOLD_MARGIN = 60.0  # clock skew and request time allowed for when trusting a renewal


def well_formed(data: Any, what: str) -> list[dict[str, Any]]:
    """The rows of a reply, each an object with an integer id (the table's bigint key);
    anything else is the source's fault, not a coin's: a TransientError naming it, so
    the service waits and `run --once` exits with the source's code, never a traceback
    and never a coin made of a malformed row."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise TransientError(
            f"Supabase {what}: a malformed reply ({type(data).__name__}, not a list of rows);"
            " will retry"
        )
    for row in data:
        ident = row.get("id") if isinstance(row, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, int):
            raise TransientError(
                f"Supabase {what}: a malformed reply (a row without an integer id:"
                f" {str(ident)[:40]!r}); will retry"
            )
    return list(data)


class SupabaseAuthError(TransientError):
    """Supabase refused the key (401/403/PGRST301): fetching stops until it is fixed."""


class SupabaseSetupError(TransientError):
    """The table, a column or a function is missing: the migration is not applied."""


def classify(status: int | None, code: str | None) -> str:
    """transient | auth | setup | coin, from the HTTP status and the PostgREST code."""
    code = code or ""
    if code in TRANSIENT_CODES:
        return "transient"
    if code in AUTH_CODES or status in (401, 403):
        return "auth"
    if code in SETUP_CODES:
        return "setup"
    if status is None and code.isdigit():
        status = int(code)  # postgrest-py puts the status there when the body was not JSON
    if status is not None and (status >= 500 or status in (408, 429)):
        return "transient"
    return "coin"


def storage_status(response: httpx.Response) -> int:
    """The real status of a Supabase Storage reply: errors arrive as HTTP 400 with the
    status in the body's `statusCode` (e.g. "404", "429", "503")."""
    if response.status_code != 400:
        return response.status_code
    try:
        body = response.json()
        return int(body.get("statusCode"))
    except (ValueError, TypeError, AttributeError):
        return 400


def storage_is_transient(response: httpx.Response) -> bool:
    status = storage_status(response)
    return status >= 500 or status in (408, 429)


def worker_id(home: Path | str) -> str:
    """Stable per home folder and machine, so a restarted service renews its own claims
    and two homes on one Mac are two workers."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:10]
    return f"{socket.gethostname()}:{digest}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class SupabaseSource:
    kind = "supabase"

    def __init__(
        self,
        url: str,
        key: str,
        *,
        worker: str,
        lease_seconds: int = 600,
        db_url: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not url.startswith(("https://", "http://")):
            raise ConfigError(
                "SUPABASE_URL must start with https:// (e.g. https://<project>.supabase.co)"
            )
        self.url = url.rstrip("/")
        self._key = key
        self._db_url = db_url
        self.worker = worker
        self.lease_seconds = int(lease_seconds)
        self.clock = clock
        self.image_hosts = [urlsplit(self.url).hostname or ""]
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._handed: set[str] = set()  # refs handed to the service by this process
        self._lost: dict[str, str] = {}  # ref -> why; claims another service now holds
        self._held_until: dict[str, float] = {}  # ref -> lease end, by our clock, at the latest
        self._report_errors: dict[str, str] = {}  # ref -> a report Supabase refused for good
        self._resync = True  # re-read our own claims first (restart, or a claim reply lost)
        self._failures = 0  # in a row, for health; when to ask again is the service's call
        self._auth_problem: str | None = None
        self._auth_until = 0.0
        self._next_renew = 0.0
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._listener: Listener | None = None
        # One long-lived HTTP/1.1 client with explicit timeouts, shared by PostgREST and
        # Storage. supabase-py's own GET retry is off: retry and backoff live here and in
        # the service's outbox, so a request is never retried twice over.
        self.http = httpx.Client(
            http1=True,
            http2=False,
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            event_hooks={"response": [self._note_status]},
        )
        from supabase import ClientOptions, create_client

        options = ClientOptions(
            httpx_client=self.http,
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )
        self.client = create_client(self.url, key, options=options)

    @classmethod
    def from_config(cls, cfg: config_mod.Config) -> SupabaseSource:
        url = cfg.secret("SUPABASE_URL")
        key = cfg.secret("SUPABASE_SERVICE_ROLE_KEY")
        missing = [
            n for n, v in (("SUPABASE_URL", url), ("SUPABASE_SERVICE_ROLE_KEY", key)) if not v
        ]
        if missing:
            raise ConfigError(
                f"the Supabase source needs {' and '.join(missing)}: set it in the environment,"
                f" the login Keychain (service 'moonshot') or {cfg.home / 'moonshot.env'}"
            )
        if cfg.source.lease_seconds < 60:
            raise ConfigError(f"source.lease_seconds = {cfg.source.lease_seconds}: at least 60")
        return cls(
            url,
            key,
            worker=worker_id(cfg.home),
            db_url=cfg.secret("SUPABASE_DB_URL"),
            lease_seconds=cfg.source.lease_seconds,
        )

    def __repr__(self) -> str:
        return f"SupabaseSource(url={self.url!r}, worker={self.worker!r})"

    # -- requests and their errors -----------------------------------------------------
    def _note_status(self, response: httpx.Response) -> None:
        self._tls.status = response.status_code

    def scrub(self, text: str) -> str:
        password = urlsplit(self._db_url).password if self._db_url else None
        for secret in (self._key, self._db_url, password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one supabase-py request; every failure becomes a one-line MoonshotError."""
        from postgrest import APIError

        self._tls.status = None
        try:
            return fn()
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"Supabase {what}: timed out ({type(exc).__name__}); will retry"
            ) from None
        except httpx.TransportError as exc:
            detail = self.scrub(str(exc) or type(exc).__name__)
            raise TransientError(
                f"Supabase {what}: {self.image_hosts[0]} unreachable ({detail}); will retry"
            ) from None
        except APIError as exc:
            status = self._tls.status
            code = exc.code or ""
            message = self.scrub(" ".join(str(exc.message or "").split()))[:200]
            where = f"Supabase {what}: HTTP {status or '?'} {code} {message}".replace(
                "  ", " "
            ).strip()
            kind = classify(status, code)
            if kind == "transient":
                raise TransientError(f"{where}; will retry") from None
            if kind == "auth":
                raise SupabaseAuthError(f"{where}; {KEY_FIX}") from None
            if kind == "setup":
                raise SupabaseSetupError(f"{where}; {MIGRATION_FIX}") from None
            raise Rejected(where) from None

    def _failed(self, exc: TransientError, now: float) -> None:
        self._last_error = str(exc)
        if isinstance(exc, SupabaseAuthError):
            self._auth_problem = str(exc)
            self._auth_until = now + AUTH_PAUSE
            log.error("source supabase: %s", exc)
            return
        self._failures += 1
        log.warning("source supabase: %s", exc)

    def _ok(self, now: float) -> None:
        self._failures = 0
        self._auth_problem = None
        self._auth_until = 0.0
        self._last_ok = now
        self._last_error = None

    # -- Source port ---------------------------------------------------------------------
    def poll(self, now: float, limit: int) -> list[IncomingCoin]:
        """Claim up to `limit` pending coins (after re-reading our own claims when a reply
        may have been lost) and hand them over oldest first."""
        if self._auth_problem and now < self._auth_until:
            raise SupabaseAuthError(self._auth_problem)
        rows: list[dict[str, Any]] = []
        try:
            if self._resync:
                rows.extend(self._held_rows())
                self._resync = False
            want = max(0, min(int(limit), 1000) - len(rows))
            if want:
                rows.extend(self._claim(want))
        except TransientError as exc:
            self._failed(exc, now)
            raise
        except Rejected as exc:  # a 4xx on the claim itself is a setup problem, not a coin's
            err = SupabaseSetupError(f"{exc}; {MIGRATION_FIX}")
            self._failed(err, now)
            raise err from None
        self._ok(now)
        out, seen = [], set()
        for row in sorted(rows, key=lambda r: (str(r.get("created_at") or ""), r["id"])):
            ref = str(row["id"])
            if ref in seen or ref in self._handed:
                continue
            seen.add(ref)
            out.append(self._incoming(row))
        with self._lock:
            self._handed.update(c.source_ref for c in out)
        for c in out:
            log.info("coin %s: claimed from Supabase by %s", c.source_ref, self.worker)
        return out

    def _claim(self, n: int) -> list[dict[str, Any]]:
        params = {"p_worker": self.worker, "p_limit": n, "p_lease_seconds": self.lease_seconds}
        sent = self.clock()
        try:
            reply = self._call("claim", lambda: self.client.rpc("moonshot_claim", params).execute())
        except TransientError:
            # The claim may have committed with its reply lost: settle it by re-reading
            # the rows we hold. If that fails too, the next poll re-reads first.
            self._resync = True
            rows = self._held_rows()
            self._resync = False
            if any(str(r["id"]) not in self._handed for r in rows):
                return rows
            raise
        rows = well_formed(reply.data, "claim")
        with self._lock:
            for row in rows:
                self._held_until[str(row["id"])] = sent + self.lease_seconds
                self._lost.pop(str(row["id"]), None)  # ours again
        return rows

    def _held_rows(self) -> list[dict[str, Any]]:
        def query():
            return (
                self.client.table(TABLE)
                .select(COIN_SELECT)
                .eq("claimed_by", self.worker)
                .eq("image_synced", "false")
                .is_("launch_state", "null")
                .order("created_at")
                .order("id")
                .limit(1000)
                .execute()
            )

        return well_formed(self._call("re-read claims", query).data, "re-read claims")

    def _incoming(self, row: dict[str, Any]) -> IncomingCoin:  # a well_formed row
        def text(key: str) -> str | None:
            value = row.get(key)
            return None if value is None else str(value)

        return IncomingCoin(
            source="supabase",
            source_ref=str(row["id"]),
            ticker=text("ticker") or "",
            name=text("name") or "",
            image_url=text("image_url") or "",
            twitter_user=text("twitter_user"),
            tweet_id=text("tweet_id"),
        )

    def report(self, coin_ref: str, event: str, fields: dict[str, Any]) -> None:
        """Deliver one outbox entry; TransientError to have it retried later. Written only
        while this service holds the coin's claim (or nobody does), with plain eq/is
        filters (PostgREST #3707), so a service that lost a coin never overwrites the
        progress of the one that took it."""
        now = self.clock()
        body: dict[str, Any] = {"sync_state": event, "claimed_by": self.worker}
        if fields.get("image_filename"):
            body["image_filename"] = fields["image_filename"]
        if event in OUTCOMES:
            body["launch_state"] = event
            error = fields.get("last_error") if event != "launched" else None
            body["last_error"] = str(error)[:1000] if error else None
            if event == "launched":
                body["launched_at"] = _iso(now)
                body["token_address"] = fields.get("token_address")
        else:
            # Progress, possibly after `moonshot retry` undid an outcome: clear it and
            # extend the lease while the coin is in hand.
            body.update(launch_state=None, last_error=None)
            body["claim_expires_at"] = _iso(now + self.lease_seconds)
            if event == "imported":
                body.update(image_synced=True, image_sync_timestamp=_iso(now))
        try:
            rows = self._patch(coin_ref, body, event, claimed_by=self.worker)
            if not rows:
                rows = self._patch(coin_ref, body, event, claimed_by=None)
            if not rows and self._exists(coin_ref):
                self._mark_lost(coin_ref, f"claimed by another service (seen at {event})")
                log.error(
                    "coin %s: another service holds it in Supabase; %s not written there",
                    coin_ref,
                    event,
                )
                return
        except Rejected as exc:
            # The coin's own problem (a value the table refuses): retrying cannot help and
            # would hold back the coin's later reports, which the outbox sends in order.
            self._report_errors[coin_ref] = str(exc)
            log.error("coin %s: %s not written to Supabase: %s", coin_ref, event, exc)
            return
        if not rows:
            log.warning("coin %s: no longer in Supabase; %s not written there", coin_ref, event)
            return
        self._last_ok = now
        log.info("coin %s: reported %s to Supabase", coin_ref, event)

    def _patch(
        self, ref: str, body: dict[str, Any], event: str, **claim: str | None
    ) -> list[dict[str, Any]]:
        def query():
            q = self.client.table(TABLE).update(body).eq("id", ref)
            if "claimed_by" in claim:
                value = claim["claimed_by"]
                q = q.is_("claimed_by", "null") if value is None else q.eq("claimed_by", value)
            return q.execute()

        return list(self._call(f"report {event} for coin {ref}", query).data or [])

    def _exists(self, ref: str) -> bool:
        def query():
            return self.client.table(TABLE).select("id").eq("id", ref).execute()

        return bool(self._call(f"read coin {ref}", query).data)

    def keepalive(self, coin_refs: list[str], now: float) -> list[str]:
        """Renew the lease of the coins in hand (at most every third of the lease).
        Returns the refs another service holds now; never raises on a network problem."""
        refs = sorted({str(r) for r in coin_refs})
        if not refs or now < self._next_renew:
            return []
        try:
            held = self._renew(refs)
        except (TransientError, Rejected) as exc:
            log.warning("source supabase: could not renew %d claim(s): %s", len(refs), exc)
            return []
        self._next_renew = now + self.lease_seconds / 3
        lost = [r for r in refs if r not in held]
        for ref in lost:
            if ref not in self._lost:
                log.error("coin %s: claim lost (another service holds it, or the row is gone)", ref)
            self._mark_lost(ref, "claim lost at renewal")
        return lost

    def _mark_lost(self, ref: str, why: str) -> None:
        """Another service holds the coin now: `holds` must never answer from the
        renewal cache for it again (it is the last check before a launch)."""
        with self._lock:
            self._lost[str(ref)] = why
            self._held_until.pop(str(ref), None)

    def _renew(self, refs: list[str]) -> set[str]:
        sent = self.clock()
        params = {"p_worker": self.worker, "p_ids": refs, "p_lease_seconds": self.lease_seconds}
        held = self._call(
            "renew claims", lambda: self.client.rpc("moonshot_renew", params).execute()
        )
        held = {str(r) for r in held.data or []}
        with self._lock:
            for ref in held:
                self._held_until[ref] = sent + self.lease_seconds
        return held

    def holds(self, coin_ref: str, now: float) -> bool:
        """Does this service hold the coin's claim? The last check before an irreversible
        step: answered from the last renewal while its lease surely runs, otherwise by
        renewing it now. TransientError when Supabase cannot say."""
        cached = self.holds_cached(coin_ref, now)
        if cached is not None:
            return cached
        return str(coin_ref) in self._renew([str(coin_ref)])

    def holds_cached(self, coin_ref: str, now: float) -> bool | None:
        """`holds` without a request: False for a claim found lost, True while the last
        renewal's lease surely runs, None when only Supabase can say."""
        with self._lock:
            if str(coin_ref) in self._lost:
                return False
            until = self._held_until.get(str(coin_ref), 0.0)
        return True if now < until - HOLD_MARGIN else None

    def claims(self) -> list[dict[str, Any]]:
        """The coins this service holds and that have no outcome yet, oldest first."""

        def query():
            return (
                self.client.table(TABLE)
                .select("id,ticker,sync_state,image_synced,claim_expires_at")
                .eq("claimed_by", self.worker)
                .is_("launch_state", "null")
                .order("id")
                .limit(1000)
                .execute()
            )

        return list(self._call("list claims", query).data or [])

    def release(self, coin_refs: list[str]) -> list[str]:
        """Give back the claims of coins not started (not synced, no outcome)."""
        refs = sorted({str(r) for r in coin_refs})
        if not refs:
            return []
        params = {"p_worker": self.worker, "p_ids": refs}
        released = self._call(
            "release claims", lambda: self.client.rpc("moonshot_release", params).execute()
        ).data
        with self._lock:
            self._handed.difference_update(released or [])
            for ref in released or []:
                self._held_until.pop(str(ref), None)
        return list(released or [])

    def close(self) -> None:
        """Stop the listener and the HTTP client. Claims of coins handed to the service
        are kept: the service resumes them from moonshot.db after a restart, so releasing
        them would let another Mac take a coin this one is about to finish."""
        if self._listener:
            self._listener.stop()
            self._listener = None
        self.http.close()

    # -- optional: watch, checks, health ---------------------------------------------------
    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """LISTEN on the migration's channel when SUPABASE_DB_URL is set; wake() on each
        notification and after each (re)connect. Polling stays the source of truth."""
        if not self._db_url:
            return lambda: None
        try:
            import psycopg  # noqa: F401 - only needed for LISTEN
        except ImportError:
            log.error(
                "source supabase: SUPABASE_DB_URL is set but psycopg is not installed:"
                " pip install 'psycopg[binary]' (polling only until then)"
            )
            return lambda: None
        if self._listener is None:
            self._listener = Listener(self._db_url, wake, self.scrub)
            self._listener.start()
        listener = self._listener
        return listener.stop

    def checks(self) -> list[Check]:
        out: list[Check] = []
        try:
            version = self._call(
                "schema version", lambda: self.client.rpc("moonshot_schema_version", {}).execute()
            ).data
        except SupabaseAuthError as exc:
            return [
                Check("supabase reachable", "ok", f"{self.image_hosts[0]} answered"),
                Check("supabase key", "fail", str(exc), KEY_FIX),
            ]
        except SupabaseSetupError as exc:
            return [
                Check("supabase reachable", "ok", f"{self.image_hosts[0]} answered"),
                Check("supabase key", "ok", "service key accepted"),
                Check("supabase migration", "fail", str(exc), MIGRATION_FIX),
            ]
        except (TransientError, Rejected) as exc:
            return [
                Check(
                    "supabase reachable",
                    "fail",
                    str(exc),
                    "check SUPABASE_URL and the network; the project may be paused",
                )
            ]
        out.append(Check("supabase reachable", "ok", f"{self.image_hosts[0]} answered"))
        out.append(Check("supabase key", "ok", "service key accepted"))
        try:
            self._call(
                "migration columns",
                lambda: (
                    self.client.table(TABLE)
                    .select("id," + ",".join(MIGRATION_COLUMNS))
                    .limit(1)
                    .execute()
                ),
            )
        except (TransientError, Rejected) as exc:
            out.append(Check("supabase migration", "fail", str(exc), MIGRATION_FIX))
            return out
        if version != SCHEMA_VERSION:
            out.append(
                Check(
                    "supabase migration",
                    "fail",
                    f"schema version {version}, this moonshot needs {SCHEMA_VERSION}",
                    MIGRATION_FIX,
                )
            )
        else:
            out.append(Check("supabase migration", "ok", f"schema version {version}"))
        out.append(notify_check(self._db_url, self.scrub, MIGRATION_FIX))
        return out

    def health(self) -> dict[str, Any]:
        with self._lock:
            handed = len(self._handed)
        return {
            "kind": self.kind,
            "host": self.image_hosts[0],
            "worker": self.worker,
            "auth": "failed" if self._auth_problem else "ok",
            "auth_problem": self._auth_problem,
            "last_ok": _iso(self._last_ok) if self._last_ok else None,
            "consecutive_failures": self._failures,
            "last_error": self._last_error,
            "claims_taken": handed,
            "claims_lost": sorted(self._lost),
            "report_errors": dict(self._report_errors),
            "listening": bool(self._listener and self._listener.listening),
        }
