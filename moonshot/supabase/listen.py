"""LISTEN/NOTIFY wake-up for the Supabase source: a daemon thread on a direct Postgres
connection (SUPABASE_DB_URL) that calls wake() on each notification and after each
(re)connect. It decides nothing: polling stays the source of truth."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from moonshot.ports import Check

log = logging.getLogger("moonshot.source.supabase")

CHANNEL = "moonshot_coins"  # the migration's trigger NOTIFYs here
TRIGGER = "coins_moonshot_notify"


def notify_check(db_url: str | None, scrub: Callable[[str], str], fix: str) -> Check:
    """`moonshot doctor`: can this service LISTEN, and is the trigger there?"""
    if not db_url:
        return Check(
            "supabase notify",
            "warn",
            "SUPABASE_DB_URL not set: polling only",
            "set SUPABASE_DB_URL (direct or session-mode connection, port 5432) for instant wake-up",
        )
    if ":6543" in db_url:
        return Check(
            "supabase notify",
            "fail",
            "SUPABASE_DB_URL uses the transaction pooler (6543): LISTEN needs a session",
            "use the direct or session-mode connection string (port 5432)",
        )
    try:
        import psycopg

        with psycopg.connect(db_url, connect_timeout=5) as conn:
            found = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = %s AND NOT tgisinternal",
                (TRIGGER,),
            ).fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        return Check(
            "supabase notify",
            "fail",
            f"SUPABASE_DB_URL: {scrub(str(exc)).splitlines()[0]}",
            "check the connection string and the database password",
        )
    if not found:
        return Check("supabase notify", "fail", f"trigger {TRIGGER} missing", fix)
    return Check("supabase notify", "ok", f"LISTEN {CHANNEL} available")


class Listener:
    """LISTEN in a daemon thread; reconnects with backoff. TCP keepalives find a dead
    connection, since a half-open socket would otherwise wait silently forever."""

    def __init__(self, db_url: str, wake: Callable[[], None], scrub: Callable[[str], str]):
        self.db_url = db_url
        self.wake = wake
        self.scrub = scrub
        self.listening = False
        self.notified = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supabase-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.db_url,
                    autocommit=True,
                    connect_timeout=10,
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    delay = 1.0
                    self.wake()  # notifications sent while we were away are lost: poll now
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.notified += 1
                            self.wake()
            except Exception as exc:  # noqa: BLE001 - keep listening whatever broke
                if self._stop.is_set():
                    break
                log.warning(
                    "source supabase: LISTEN connection lost (%s); reconnecting in %.0fs",
                    self.scrub(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__,
                    delay,
                )
            self.listening = False
            self._stop.wait(delay)
            delay = min(delay * 2, 60.0)
