"""The state database `moonshot.db`: the only writer of it. sqlite-utils on one
connection in WAL mode with a busy timeout and synchronous=FULL, so that every
committed transition (above all `launching`) survives a power cut, and the CLI and
the service can write at the same time in short transactions.

Never call a port from here; never leave a transaction open across a side effect."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from moonshot import machine
from moonshot.errors import MoonshotError, StaleState
from moonshot.ops import alert_events
from moonshot.ports import Coin, IncomingCoin

BUSY_TIMEOUT_MS = 15_000
LOCAL_SOURCES = frozenset({"local", "manual"})  # nothing to report back to

COIN_COLUMNS: dict[str, Any] = {
    "id": int,
    "state": str,
    "source": str,
    "source_ref": str,
    "ticker": str,
    "name": str,
    "twitter_user": str,
    "tweet_id": str,
    "image_url": str,
    "image_filename": str,
    "attempts": int,
    "last_error": str,
    "photos_asset_id": str,
    "token_address": str,
    "created_at": str,
    "updated_at": str,
    "approved": int,
    "not_before": float,
    "import_started": float,
    "supersede_count": int,
    "failed_from": str,
}
CHANGEABLE = frozenset(COIN_COLUMNS) - {
    "id",
    "state",
    "source",
    "source_ref",
    "created_at",
    "updated_at",
}


def iso(ts: float | None = None) -> str:
    """UTC timestamp as sortable ISO 8601 text with microseconds."""
    ts = time.time() if ts is None else ts
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _migration_1(db: sqlite_utils.Database) -> None:
    db["coins"].create(
        COIN_COLUMNS,
        pk="id",
        not_null={"state", "ticker", "name", "source"},
        defaults={"attempts": 0, "approved": 0, "not_before": 0.0, "supersede_count": 0},
    )
    db["coins"].create_index(["source", "source_ref"], unique=True)
    db["coins"].create_index(["state", "not_before"])
    db["coins"].create_index(["image_filename"])
    db["transitions"].create(
        {
            "id": int,
            "coin_id": int,
            "from_state": str,
            "to_state": str,
            "trigger": str,
            "at": str,
            "detail": str,
        },
        pk="id",
        foreign_keys=[("coin_id", "coins", "id")],
        not_null={"coin_id", "to_state", "trigger", "at"},
    )
    db["transitions"].create_index(["coin_id", "id"])
    db["transitions"].create_index(["at"])
    # The audit trail is append-only, enforced by the database itself.
    db.executescript(
        """
        CREATE TRIGGER transitions_append_only_u BEFORE UPDATE ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions is append-only'); END;
        CREATE TRIGGER transitions_append_only_d BEFORE DELETE ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions is append-only'); END;
        """
    )
    db["outbox"].create(
        {
            "id": int,
            "coin_id": int,
            "source": str,
            "source_ref": str,
            "event": str,
            "fields": str,
            "created_at": str,
            "attempts": int,
            "next_try": float,
            "last_error": str,
            "delivered_at": str,
        },
        pk="id",
        defaults={"attempts": 0, "next_try": 0.0},
    )
    db["outbox"].create_index(["delivered_at", "coin_id", "id"])
    db["meta"].create({"key": str, "value": str}, pk="key")


def _migration_2(db: sqlite_utils.Database) -> None:
    # Issue 8: every policy decision on a tweet, with its reason; one row per tweet.
    # `completed_at` is set once an accepted tweet's coin exists (intent first, #8).
    db["decisions"].create(
        {
            "id": int,
            "tweet_id": str,
            "at": str,
            "ts": float,
            "origin": str,
            "twitter_user": str,
            "ticker": str,
            "name": str,
            "image_url": str,
            "decision": str,
            "reason": str,
            "coin_ref": str,
            "completed_at": str,
            "detail": str,
        },
        pk="id",
        not_null={"tweet_id", "at", "ts", "decision", "reason"},
    )
    db["decisions"].create_index(["tweet_id"], unique=True)
    db["decisions"].create_index(["decision", "ts"])
    db["decisions"].create_index(["twitter_user", "decision", "ts"])


def _migration_3(db: sqlite_utils.Database) -> None:
    # Issue 16: alerts, persisted like the outbox. A transition that raises one inserts it
    # in its own transaction (commit_transition); `key` is unique, so an event is recorded
    # once; a sender thread delivers it (moonshot/ops/alerts.py) and marks it sent.
    db["alerts"].create(
        {
            "id": int,
            "key": str,  # dedup key: <event>:<coin>:<transition id>, <event>:<since>, ...
            "event": str,
            "coin_id": int,
            "ticker": str,
            "state": str,
            "reason": str,
            "command": str,  # what settles it
            "attachment": str,  # a screenshot in logs/screens/, sent with it
            "created_at": str,
            "attempts": int,  # failed delivery rounds
            "next_try": float,
            "last_error": str,  # names the receiver by scheme and host only
            "delivered": str,  # JSON list: the receivers (URL fingerprints) that have it
            "sent_at": str,
            "status": str,  # pending | sent | expired
        },
        pk="id",
        not_null={"key", "event", "created_at", "status"},
        defaults={"attempts": 0, "next_try": 0.0, "delivered": "[]", "status": "pending"},
    )
    db["alerts"].create_index(["key"], unique=True)
    db["alerts"].create_index(["status", "next_try"])


# Schema version = PRAGMA user_version; MIGRATIONS[n-1] moves version n-1 to n.
MIGRATIONS = [_migration_1, _migration_2, _migration_3]
SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    def __init__(self, path: Path | str, *, readonly: bool = False):
        self.path = Path(path)
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db = sqlite_utils.Database(conn)
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        # FULL: a commit in WAL mode is fsynced before it returns (NORMAL may lose the
        # last commits on power loss, and the `launching` commit must not be lost).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            self.migrate()

    def close(self) -> None:
        self.db.close()

    # -- transactions --------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction. BEGIN IMMEDIATE takes the write lock up front
        (waiting up to the busy timeout): a deferred BEGIN that reads, then writes,
        fails at once with SQLITE_BUSY when another connection wrote in between, and
        sqlite-utils' `atomic()` begins deferred."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def migrate(self) -> int:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise MoonshotError(
                f"{self.path}: schema version {version} is newer than this moonshot ({SCHEMA_VERSION}); upgrade moonshot"
            )
        while version < SCHEMA_VERSION:
            with self.write():
                again = self.db.execute("PRAGMA user_version").fetchone()[0]
                if again != version:  # another process migrated meanwhile
                    version = again
                    continue
                MIGRATIONS[version](self.db)
                version += 1
                self.db.execute(f"PRAGMA user_version = {version}")
        return version

    # -- coins ---------------------------------------------------------------------
    def add_coin(
        self,
        incoming: IncomingCoin,
        *,
        twitter_user: str,
        now: float | None = None,
        approved: bool = False,
        trigger: str = "add",
        detail: dict | None = None,
        image_filename: str | None = None,
    ) -> tuple[int, bool]:
        """Insert a coin in `fetched` with its first transition, or return the existing
        one with the same (source, source_ref): (coin id, created). `image_filename`:
        the spool name is already known (a manual drop)."""
        now = time.time() if now is None else now
        with self.write() as conn:
            row = conn.execute(
                "SELECT id FROM coins WHERE source = ? AND source_ref = ?",
                (incoming.source, incoming.source_ref),
            ).fetchone()
            if row:
                return row[0], False
            stamp = iso(now)
            cur = conn.execute(
                "INSERT INTO coins (state, source, source_ref, ticker, name, twitter_user, tweet_id, image_url,"
                " image_filename, attempts, created_at, updated_at, approved, not_before, supersede_count)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 0, 0)",
                (
                    machine.FETCHED,
                    incoming.source,
                    incoming.source_ref,
                    incoming.ticker,
                    incoming.name,
                    twitter_user,
                    incoming.tweet_id,
                    incoming.image_url,
                    image_filename,
                    stamp,
                    stamp,
                    int(approved),
                ),
            )
            coin_id = cur.lastrowid
            conn.execute(
                "INSERT INTO transitions (coin_id, from_state, to_state, trigger, at, detail) VALUES (?, NULL, ?, ?, ?, ?)",
                (
                    coin_id,
                    machine.FETCHED,
                    trigger,
                    stamp,
                    json.dumps(detail or {}, sort_keys=True),
                ),
            )
            if incoming.source not in LOCAL_SOURCES:
                self._enqueue(
                    conn, coin_id, incoming.source, incoming.source_ref, machine.FETCHED, {}, stamp
                )
            return coin_id, True

    def commit_transition(
        self,
        coin_id: int,
        from_state: str,
        to_state: str,
        trigger: str,
        detail: dict,
        changes: dict,
        now: float | None = None,
    ) -> None:
        """The writer `machine.fire` calls inside the transition: the coin's new state,
        its changed columns, the audit row and (for remote sources) the outbox entry,
        in one transaction. StaleState when the coin is no longer in `from_state`."""
        bad = set(changes) - CHANGEABLE
        if bad:
            raise ValueError(f"not changeable by a transition: {sorted(bad)}")
        now = time.time() if now is None else now
        stamp = iso(now)
        sets = ["state = ?", "updated_at = ?", *[f"{k} = ?" for k in changes]]
        with self.write() as conn:
            cur = conn.execute(
                f"UPDATE coins SET {', '.join(sets)} WHERE id = ? AND state = ?",
                (to_state, stamp, *changes.values(), coin_id, from_state),
            )
            if cur.rowcount != 1:
                raise StaleState(f"coin {coin_id} is no longer {from_state}")
            audit = conn.execute(
                "INSERT INTO transitions (coin_id, from_state, to_state, trigger, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    coin_id,
                    from_state,
                    to_state,
                    trigger,
                    stamp,
                    json.dumps(detail, sort_keys=True, default=str),
                ),
            )
            if to_state != from_state:
                source, ref, ticker = conn.execute(
                    "SELECT source, source_ref, ticker FROM coins WHERE id = ?", (coin_id,)
                ).fetchone()
                reason = detail.get("reason") or changes.get("last_error")
                alert = alert_events.for_transition(
                    coin_id, ticker, to_state, reason, audit.lastrowid
                )
                if alert is not None:
                    self._record_alert(conn, alert, stamp)
                if source not in LOCAL_SOURCES:
                    row = conn.execute(
                        "SELECT image_filename, photos_asset_id, token_address, last_error FROM coins WHERE id = ?",
                        (coin_id,),
                    ).fetchone()
                    fields = dict(
                        zip(
                            ("image_filename", "photos_asset_id", "token_address", "last_error"),
                            row,
                            strict=True,
                        )
                    )
                    fields["trigger"] = trigger
                    self._enqueue(conn, coin_id, source, ref, to_state, fields, stamp)

    def fire(
        self,
        coin: Coin,
        trigger: str,
        *,
        detail: dict | None = None,
        now: float | None = None,
        **changes: Any,
    ) -> str:
        """Run `trigger` for the coin through the state machine; the commit happens
        before the state changes. Returns the new state."""

        def commit(coin_id, from_state, to_state, trig, det, chg):
            self.commit_transition(coin_id, from_state, to_state, trig, det, chg, now)

        return machine.fire(
            coin.id,
            coin.state,
            trigger,
            commit,
            failed_from=coin.failed_from,
            detail=detail,
            changes=changes,
        )

    def get(self, coin_id: int) -> Coin | None:
        row = self._one("SELECT * FROM coins WHERE id = ?", (coin_id,))
        return Coin.from_row(row) if row else None

    def find_by_filename(self, filename: str) -> Coin | None:
        row = self._one(
            "SELECT * FROM coins WHERE image_filename = ? ORDER BY id DESC LIMIT 1", (filename,)
        )
        return Coin.from_row(row) if row else None

    def coins_in(
        self,
        states: tuple[str, ...] | list[str],
        *,
        ready_by: float | None = None,
        limit: int | None = None,
        order: str = "not_before, id",
    ) -> list[Coin]:
        marks = ", ".join("?" * len(states))
        sql = f"SELECT * FROM coins WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if ready_by is not None:
            sql += " AND not_before <= ?"
            params.append(ready_by)
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [Coin.from_row(r) for r in self.db.query(sql, params)]

    def count_in(self, states: tuple[str, ...] | list[str], exclude_id: int | None = None) -> int:
        marks = ", ".join("?" * len(states))
        sql = f"SELECT count(*) FROM coins WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if exclude_id is not None:
            sql += " AND id != ?"
            params.append(exclude_id)
        return self.db.execute(sql, params).fetchone()[0]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(machine.STATES, 0)
        for state, n in self.db.execute("SELECT state, count(*) FROM coins GROUP BY state"):
            out[state] = n
        return out

    def history(self, coin_id: int) -> list[dict[str, Any]]:
        rows = list(
            self.db.query("SELECT * FROM transitions WHERE coin_id = ? ORDER BY id", (coin_id,))
        )
        for r in rows:
            r["detail"] = json.loads(r["detail"] or "{}")
        return rows

    def set_fields(self, coin_id: int, **fields: Any) -> None:
        """Bookkeeping that is not a transition (e.g. approval of a coin)."""
        bad = set(fields) - CHANGEABLE
        if bad:
            raise ValueError(f"not changeable: {sorted(bad)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as conn:
            conn.execute(
                f"UPDATE coins SET {sets}, updated_at = ? WHERE id = ?",
                (*fields.values(), iso(), coin_id),
            )

    def last_transition_at(self, to_state: str) -> str | None:
        row = self.db.execute(
            "SELECT max(at) FROM transitions WHERE to_state = ? AND from_state != to_state",
            (to_state,),
        ).fetchone()
        return row[0] if row else None

    def transitions_since(self, to_state: str, since_iso: str) -> int:
        return self.db.execute(
            "SELECT count(*) FROM transitions WHERE to_state = ? AND from_state != to_state AND at >= ?",
            (to_state, since_iso),
        ).fetchone()[0]

    # -- outbox --------------------------------------------------------------------
    def _enqueue(self, conn, coin_id, source, ref, event, fields, stamp) -> None:
        conn.execute(
            "INSERT INTO outbox (coin_id, source, source_ref, event, fields, created_at, attempts, next_try)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
            (coin_id, source, ref, event, json.dumps(fields, sort_keys=True, default=str), stamp),
        )

    def outbox_due(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        """The oldest undelivered entry of each coin whose turn has come (in order per coin)."""
        rows = self.db.query(
            "SELECT o.* FROM outbox o JOIN (SELECT coin_id, min(id) AS id FROM outbox"
            " WHERE delivered_at IS NULL GROUP BY coin_id) h ON o.id = h.id"
            " WHERE o.next_try <= ? ORDER BY o.id LIMIT ?",
            (now, limit),
        )
        out = []
        for r in rows:
            r["fields"] = json.loads(r["fields"] or "{}")
            out.append(r)
        return out

    def outbox_done(self, entry_id: int, now: float | None = None) -> None:
        with self.write() as conn:
            conn.execute("UPDATE outbox SET delivered_at = ? WHERE id = ?", (iso(now), entry_id))

    def outbox_retry(self, entry_id: int, error: str, next_try: float) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? WHERE id = ?",
                (error, next_try, entry_id),
            )

    def outbox_pending(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[
            0
        ]

    # -- alerts (issue 16; the logic is in moonshot/ops/alerts.py) ----------------------
    def _record_alert(self, conn: sqlite3.Connection, alert: dict[str, Any], stamp: str) -> bool:
        row = {**alert, "created_at": stamp}
        cur = conn.execute(
            f"INSERT OR IGNORE INTO alerts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        return cur.rowcount == 1

    def record_alert(
        self,
        alert: dict[str, Any],
        *,
        now: float | None = None,
        meta: dict[str, str] | None = None,
    ) -> bool:
        """An alert that no transition raises (the source down, a launch limit...), with
        the meta keys of its episode in the same transaction. False: the key was known."""
        with self.write() as conn:
            if meta:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(meta.items()),
                )
            return self._record_alert(conn, alert, iso(now))

    def alerts_due(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT * FROM alerts WHERE status = 'pending' AND next_try <= ? ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [self._alert_row(r) for r in rows]

    def alert_progress(
        self,
        alert_id: int,
        delivered: list[str],
        *,
        sent: bool,
        error: str | None = None,
        next_try: float = 0.0,
        now: float | None = None,
    ) -> None:
        """After a delivery round: sent to every receiver, or one more failed attempt."""
        with self.write() as conn:
            if sent:
                conn.execute(
                    "UPDATE alerts SET status = 'sent', sent_at = ?, delivered = ? WHERE id = ?",
                    (iso(now), json.dumps(sorted(delivered)), alert_id),
                )
            else:
                conn.execute(
                    "UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_try = ?,"
                    " delivered = ? WHERE id = ?",
                    (error, next_try, json.dumps(sorted(delivered)), alert_id),
                )

    def alerts_expire(self, before: float) -> int:
        with self.write() as conn:
            return conn.execute(
                "UPDATE alerts SET status = 'expired' WHERE status = 'pending' AND created_at < ?",
                (iso(before),),
            ).rowcount

    def alerts_pending(self) -> int:
        return self.db.execute("SELECT count(*) FROM alerts WHERE status = 'pending'").fetchone()[0]

    def alerts(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM alerts", []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        return [self._alert_row(r) for r in self.db.query(sql, params)]

    @staticmethod
    def _alert_row(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "delivered": json.loads(row["delivered"] or "[]")}

    # -- meta (heartbeat, cursors) ---------------------------------------------------
    def meta_get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        self.meta_set_many({key: value})

    def meta_set_many(self, values: dict[str, str]) -> None:
        with self.write() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def _one(self, sql: str, params: tuple) -> dict[str, Any] | None:
        for row in self.db.query(sql, params):
            return row
        return None

    # -- decisions (issue 8: tweets to coins) ------------------------------------------
    def decide(
        self,
        row: dict[str, Any],
        limit: Callable[[Callable[..., int]], str | None] | None = None,
        now: float | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Record the decision on one tweet unless it has one: (decision row, new).
        For an accepted tweet `limit(count)` runs inside the same write transaction, with
        count(since_ts, twitter_user=None) -> accepted decisions since then; a reason it
        returns turns the decision into a refusal, so two ingests cannot both pass a limit."""
        now = time.time() if now is None else now
        with self.write() as conn:
            old = self._decision(conn, row["tweet_id"])
            if old is not None:
                return old, False
            row = {**row, "at": iso(now), "ts": now}
            if row["decision"] == "accepted" and limit is not None:

                def count(since: float, twitter_user: str | None = None) -> int:
                    sql = "SELECT count(*) FROM decisions WHERE decision = 'accepted' AND ts >= ?"
                    params: list[Any] = [since]
                    if twitter_user is not None:
                        sql += " AND twitter_user = ? COLLATE NOCASE"
                        params.append(twitter_user)
                    return conn.execute(sql, params).fetchone()[0]

                reason = limit(count)
                if reason:
                    row.update(decision="refused", reason=reason)
            row["detail"] = json.dumps(row.get("detail") or {}, sort_keys=True, default=str)
            cols = ", ".join(row)
            conn.execute(
                f"INSERT INTO decisions ({cols}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            return self._decision(conn, row["tweet_id"]), True

    def forget_refusal(self, tweet_id: str) -> bool:
        """Drop a refusal so the tweet is decided afresh (`moonshot ingest --reconsider`)."""
        with self.write() as conn:
            cur = conn.execute(
                "DELETE FROM decisions WHERE tweet_id = ? AND decision = 'refused'", (tweet_id,)
            )
            return cur.rowcount == 1

    def complete_decision(self, tweet_id: str, coin_ref: str, now: float | None = None) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE decisions SET coin_ref = ?, completed_at = ? WHERE tweet_id = ?",
                (coin_ref, iso(now), tweet_id),
            )

    def overturn_decision(self, tweet_id: str, reason: str, now: float | None = None) -> None:
        """An accepted tweet whose coin the target refused (e.g. an undecodable image)."""
        with self.write() as conn:
            conn.execute(
                "UPDATE decisions SET decision = 'refused', reason = ?, completed_at = ? WHERE tweet_id = ?",
                (reason, iso(now), tweet_id),
            )

    def decision(self, tweet_id: str) -> dict[str, Any] | None:
        return self._decision(self.db.conn, tweet_id)

    def pending_decisions(self) -> list[dict[str, Any]]:
        """Accepted tweets whose coin was not confirmed created (a crash or an outage)."""
        rows = self.db.query(
            "SELECT * FROM decisions WHERE decision = 'accepted' AND completed_at IS NULL ORDER BY id"
        )
        return [self._decoded(r) for r in rows]

    def decisions(self, *, decision: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM decisions", []
        if decision:
            sql += " WHERE decision = ?"
            params.append(decision)
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        return [self._decoded(r) for r in self.db.query(sql, params)]

    def decision_counts(self, since: float = 0.0) -> dict[str, int]:
        out = {"accepted": 0, "refused": 0, "pending": 0}
        for decision, n in self.db.execute(
            "SELECT decision, count(*) FROM decisions WHERE ts >= ? GROUP BY decision", (since,)
        ):
            out[decision] = n
        out["pending"] = self.db.execute(
            "SELECT count(*) FROM decisions WHERE decision = 'accepted' AND completed_at IS NULL"
        ).fetchone()[0]
        return out

    def _decision(self, conn: sqlite3.Connection, tweet_id: str) -> dict[str, Any] | None:
        cur = conn.execute("SELECT * FROM decisions WHERE tweet_id = ?", (tweet_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return self._decoded(dict(zip([c[0] for c in cur.description], row, strict=True)))

    @staticmethod
    def _decoded(row: dict[str, Any]) -> dict[str, Any]:
        row["detail"] = json.loads(row.get("detail") or "{}")
        return row
