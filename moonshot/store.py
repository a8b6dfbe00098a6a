"""The state database `moonshot.db`: the only writer of it. sqlite-utils on one
connection in WAL mode with a busy timeout and synchronous=FULL, so that every
committed transition (above all `launching`) survives a power cut, and the CLI and
the service can write at the same time in short transactions. Every SQLite error
leaves here as one named MoonshotError (`explain`): a lock or a full disk is
HomeTrouble (wait and retry), anything else HomeError (issue 15).

Never call a port from here; never leave a transaction open across a side effect."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from moonshot import machine
from moonshot.errors import HomeError, HomeTrouble, MoonshotError, StaleState
from moonshot.ops import alert_events
from moonshot.ports import Coin, IncomingCoin

BUSY_TIMEOUT_MS = 15_000
LOCAL_SOURCES = frozenset({"local", "manual", "recovered"})  # nothing to report back to
# A `fail` detail key: another home holds the coin's claim (its alert says withdraw, not retry).
CLAIMED_ELSEWHERE = "claimed_elsewhere"
REFUSED_DROP = "drop_refused:"  # meta key prefix

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
# Added by migration 5 (issue 16).
RETRY_COLUMNS: dict[str, Any] = {"retry_since": float, "released": int}
CHANGEABLE = frozenset({*COIN_COLUMNS, *RETRY_COLUMNS, "image_sha256"}) - {
    "id",
    "state",
    "source",
    "source_ref",
    "created_at",
    "updated_at",
}


# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL = 5, 6, 10, 13
SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB = 8, 11, 14, 26
# Errors of the file or the disk, named by `explain`; others (a constraint, a bad
# statement) are the program's and pass through as they are.
HOME_CODES = frozenset(
    {
        SQLITE_BUSY,
        SQLITE_LOCKED,
        SQLITE_IOERR,
        SQLITE_FULL,
        SQLITE_READONLY,
        SQLITE_CORRUPT,
        SQLITE_CANTOPEN,
        SQLITE_NOTADB,
    }
)
HOME_TROUBLESHOOTING = "README, Troubleshooting: 'moonshot.db is missing / was replaced'"


def explain(exc: sqlite3.Error, path: Path) -> MoonshotError:
    """One line for an SQLite error: HomeTrouble when waiting may cure it (a lock held
    by another program, a full disk), HomeError otherwise (damaged, not a database)."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    if code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in text:
        return HomeTrouble(
            f"{path} is locked by another program (waited {BUSY_TIMEOUT_MS // 1000} s); moonshot"
            " goes on when it lets go: end that program's write transaction"
        )
    if code in (SQLITE_FULL, SQLITE_IOERR) or "disk is full" in text:
        free = _free_bytes(path)
        why = "the disk is full" if code == SQLITE_FULL or free < LOW_SPACE else "disk I/O error"
        return HomeTrouble(
            f"{path} cannot be written: {why} ({free} bytes free); free some space, moonshot"
            " goes on by itself"
        )
    if code == SQLITE_READONLY:
        return HomeError(f"{path} is read-only: check its permissions and its folder's")
    if code == SQLITE_CANTOPEN:
        return HomeError(f"cannot open {path}: check that its folder exists and is writable")
    return HomeError(
        f"{path} is not a usable SQLite database ({text}); put this home's own moonshot.db"
        f" back from a backup ({HOME_TROUBLESHOOTING})"
    )


LOW_SPACE = 1 << 20  # below this, a write error is called a full disk
# A reason (last_error, a transition's detail.reason) is a line for a person: a server's
# whole error page in an exception is cut here, so status, alerts and the dashboard (whose
# bound on a value is 10,000 bytes) always show it.
MAX_REASON = 1000


def bounded(text):
    """`text` cut to MAX_REASON characters, marked with an ellipsis; anything else as is."""
    if isinstance(text, str) and len(text) > MAX_REASON:
        return text[: MAX_REASON - 1] + "\u2026"
    return text


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return 0


def is_home_error(exc: sqlite3.Error) -> bool:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    return code in HOME_CODES or (
        not code and type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)
    )


class _Connection(sqlite3.Connection):
    """Every statement's file or disk error becomes `explain`'s MoonshotError, so no
    caller mistakes a lock or a damaged file for the coin's own problem."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.path = Path(database)

    def _run(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            if not is_home_error(exc):
                raise
            raise explain(exc, self.path) from None

    def execute(self, *args, **kwargs):
        return self._run(super().execute, *args, **kwargs)

    def executemany(self, *args, **kwargs):
        return self._run(super().executemany, *args, **kwargs)

    def executescript(self, *args, **kwargs):
        return self._run(super().executescript, *args, **kwargs)


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


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


def _migration_4(db: sqlite_utils.Database) -> None:
    # Issue 15: every name a coin's file ever had in spool/, so a file of a coin that has
    # moved on is never taken for a new coin; and the hash of the JPEG the coin spooled,
    # so a file changed afterwards is never imported unchecked (invariant 5).
    db["spool_files"].create(
        {"name": str, "coin_id": int, "at": str},
        pk="name",
        foreign_keys=[("coin_id", "coins", "id")],
        not_null={"coin_id", "at"},
    )
    db["spool_files"].create_index(["coin_id"])
    db.execute(
        "INSERT OR IGNORE INTO spool_files (name, coin_id, at)"
        " SELECT image_filename, id, updated_at FROM coins WHERE image_filename IS NOT NULL"
    )
    db["coins"].add_column("image_sha256", str)
    db["coins"].create_index(["tweet_id"])


def _migration_5(db: sqlite_utils.Database) -> None:
    # Issue 16: `retry_since`, the coin's first transient failure at its current stage
    # (the retry window counts from it; cleared when the coin moves on), and `released`,
    # a fetched coin whose source claim was handed back at a clean stop.
    db["coins"].add_column("retry_since", RETRY_COLUMNS["retry_since"])
    db["coins"].add_column("released", RETRY_COLUMNS["released"], not_null_default=0)


# Schema version = PRAGMA user_version; MIGRATIONS[n-1] moves version n-1 to n.
MIGRATIONS = [_migration_1, _migration_2, _migration_3, _migration_4, _migration_5]
SCHEMA_VERSION = len(MIGRATIONS)


def check_version(path: Path | str, version: int) -> int:
    """A database written by a newer moonshot is refused, never migrated down or read as
    if it were ours: one line naming the fix. Store.migrate and home.check_readonly
    (`moonshot dashboard`, which opens moonshot.db read-only) both ask here."""
    if version > SCHEMA_VERSION:
        raise MoonshotError(
            f"{path}: schema version {version} is newer than this moonshot ({SCHEMA_VERSION}); upgrade moonshot"
        )
    return version


class Store:
    def __init__(self, path: Path | str, *, readonly: bool = False):
        self.path = Path(path)
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise explain(exc, self.path) from None
        try:
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
        except BaseException:
            conn.close()
            raise
        # Invariant 7: which file this connection holds, to notice one deleted or replaced
        # under a running service; and who is told of commits that leave evidence outside.
        self.file_id = file_id(self.path)
        self.on_evidence: Callable[[int, bool], None] | None = None
        # Asked inside the transaction that commits `launching`, with the database's home
        # id and evidence count: raises when the home's markers count further (the file
        # was restored in place under this process, `sqlite3 .restore`): no launch then.
        self.before_launch: Callable[[str | None, int], None] | None = None
        self.seen_seq = 0  # the highest evidence count this store has seen (attach, commits)

    def close(self) -> None:
        self.db.close()

    # -- the file itself (invariant 7) ------------------------------------------------------
    def file_gone(self) -> str | None:
        """None while `path` is still the file this store opened; else what happened."""
        now = file_id(self.path)
        if now is None:
            return f"{self.path} was deleted or moved away"
        if now != self.file_id:
            return f"{self.path} was replaced by another file"
        return None

    def save_copy(self, target: Path) -> Path:
        """A consistent copy of the open database (sqlite's backup API), e.g. of one that
        was deleted under the service: the person can put it back."""
        dest = sqlite3.connect(str(target))
        try:
            self.db.conn.backup(dest)
        finally:
            dest.close()
        return target

    def write_blocked(self, wait_ms: int = 1000) -> MoonshotError | None:
        """Why a write would fail now (another program's lock, a full disk), or None.
        Takes the write lock for an instant and changes nothing (`moonshot status`)."""
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except MoonshotError as exc:
            return exc
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        free = _free_bytes(self.path)
        if free < LOW_SPACE:
            return HomeTrouble(
                f"the disk of {self.path.parent} is full ({free} bytes free): free some space"
            )
        return None

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
            conn.execute("COMMIT")  # SQLITE_FULL may come only here
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(MoonshotError):
                    conn.execute("ROLLBACK")
            raise

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; a newer one is refused."""
        version = check_version(self.path, self.db.execute("PRAGMA user_version").fetchone()[0])
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
            if image_filename:
                self._own_file(conn, coin_id, image_filename, stamp)
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
        if "last_error" in changes:
            changes = {**changes, "last_error": bounded(changes["last_error"])}
        if "reason" in detail:
            detail = {**detail, "reason": bounded(detail["reason"])}
        sets = ["state = ?", "updated_at = ?", *[f"{k} = ?" for k in changes]]
        with self.write() as conn:
            if to_state == machine.LAUNCHING and self.before_launch is not None:
                meta = dict(
                    conn.execute(
                        "SELECT key, value FROM meta WHERE key IN ('home_id', 'evidence_seq')"
                    ).fetchall()
                )
                db_seq = int(meta.get("evidence_seq") or 0)
                self.check_not_behind(db_seq)
                self.before_launch(meta.get("home_id"), db_seq)
            cur = conn.execute(
                f"UPDATE coins SET {', '.join(sets)} WHERE id = ? AND state = ?",
                (to_state, stamp, *changes.values(), coin_id, from_state),
            )
            if cur.rowcount != 1:
                raise StaleState(f"coin {coin_id} is no longer {from_state}")
            if changes.get("image_filename"):
                self._own_file(conn, coin_id, changes["image_filename"], stamp)
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
                    coin_id,
                    ticker,
                    to_state,
                    reason,
                    audit.lastrowid,
                    elsewhere=bool(detail.get(CLAIMED_ELSEWHERE)),
                    trigger=trigger,
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
            seq = self._bump_evidence(conn) if trigger in machine.LEAVES_EVIDENCE else None
        if seq is not None and self.on_evidence is not None:
            # After the commit, before the side effect that leaves evidence outside the
            # database, the home's marker learns how far this database has come (home.py).
            # After, not before: a reader that sees the marker's count then finds the
            # database at least there. Durable before a launch; if it cannot be written
            # then, this raises with the coin in `launching` and nothing clicked, and the
            # coin goes to needs_review (invariant 1), never on without its marker.
            self.on_evidence(seq, to_state == machine.LAUNCHING)

    # -- spool file owners and the home's identity (issue 15, invariant 7) --------------------
    def _own_file(self, conn: sqlite3.Connection, coin_id: int, name: str, stamp: str) -> None:
        conn.execute(
            "INSERT INTO spool_files (name, coin_id, at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
            (name, coin_id, stamp),
        )
        owner = conn.execute("SELECT coin_id FROM spool_files WHERE name = ?", (name,)).fetchone()
        if owner[0] != coin_id:
            raise StaleState(f"spool/{name} belongs to coin {owner[0]}, not to coin {coin_id}")

    def _bump_evidence(self, conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('evidence_seq', '1') ON CONFLICT(key)"
            " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
        )
        seq = int(self.meta_get("evidence_seq") or 0)
        self.check_not_behind(seq - 1)  # inside the transaction: refused, rolled back
        self.seen_seq = seq
        return seq

    def check_not_behind(self, seq: int | None = None) -> None:
        """HomeError when the database's count is behind one this store has seen: the
        file went back to an older state under this process (a backup restored into it,
        `sqlite3 .restore`, `cp`), where the markers alone may be caught up again by the
        commits made since."""
        seq = self.identity()[1] if seq is None else seq
        if seq < self.seen_seq:
            raise HomeError(
                f"{self.path} went back to an older state while moonshot run used it (its"
                f" count is {seq}, this service saw {self.seen_seq}: a backup restored into"
                f" the file?). Coins may have moved on since, even launched: stop, then run"
                f" `moonshot recover` ({HOME_TROUBLESHOOTING})"
            )

    def identity(self) -> tuple[str | None, int]:
        """(home id, evidence sequence): which home this database made, and how many
        commits it made that left evidence outside it (files in spool/, launches)."""
        return self.meta_get("home_id"), int(self.meta_get("evidence_seq") or 0)

    def claim_home_id(self, home_id: str) -> str:
        """Give the database this home id unless it has one; returns the one it has."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('home_id', ?) ON CONFLICT(key) DO NOTHING",
                (home_id,),
            )
        return self.meta_get("home_id") or home_id

    def set_identity(self, home_id: str, evidence_seq: int) -> None:
        self.meta_set_many({"home_id": home_id, "evidence_seq": str(evidence_seq)})

    def twin(self, coin: Coin, states: tuple[str, ...]) -> Coin | None:
        """Another coin of the same twitter user and ticker in one of `states`."""
        marks = ", ".join("?" * len(states))
        row = self._one(
            f"SELECT * FROM coins WHERE ticker = ? AND twitter_user = ? COLLATE NOCASE"
            f" AND id != ? AND state IN ({marks}) ORDER BY id LIMIT 1",
            (coin.ticker, coin.twitter_user, coin.id, *states),
        )
        return Coin.from_row(row) if row else None

    def coin_with_tweet(self, tweet_id: str, exclude_id: int) -> int | None:
        row = self.db.execute(
            "SELECT id FROM coins WHERE tweet_id = ? AND id != ? ORDER BY id LIMIT 1",
            (tweet_id, exclude_id),
        ).fetchone()
        return row[0] if row else None

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

    def coin_by_address(self, token_address: str, other_than: int) -> Coin | None:
        """Another coin recorded with this token address (a token is one coin's)."""
        row = self._one(
            "SELECT * FROM coins WHERE token_address = ? AND id != ? ORDER BY id LIMIT 1",
            (token_address, other_than),
        )
        return Coin.from_row(row) if row else None

    def coin_by_ref(self, source: str, source_ref: str) -> Coin | None:
        row = self._one(
            "SELECT * FROM coins WHERE source = ? AND source_ref = ?", (source, source_ref)
        )
        return Coin.from_row(row) if row else None

    def without_file(self, twitter_user: str, ticker: str) -> list[Coin]:
        """Coins of this user and ticker that have no spool file (`moonshot recover`
        looks for the coin a file it found belongs to)."""
        rows = self.db.execute(
            "SELECT id FROM coins WHERE ticker = ? AND twitter_user = ? COLLATE NOCASE"
            " AND image_filename IS NULL ORDER BY id",
            (ticker, twitter_user),
        ).fetchall()
        return [c for (cid,) in rows if (c := self.get(cid)) is not None]

    def give_file(self, coin_id: int, name: str) -> None:
        """A file found in spool/ becomes the coin's own, with its owner row, in one
        commit (`moonshot recover`: a database older than the coin's download)."""
        with self.write() as conn:
            cur = conn.execute(
                "UPDATE coins SET image_filename = ?, updated_at = ? WHERE id = ?"
                " AND image_filename IS NULL",
                (name, iso(), coin_id),
            )
            if cur.rowcount != 1:
                raise StaleState(f"coin {coin_id} has a spool file already")
            self._own_file(conn, coin_id, name, iso())

    def find_by_filename(self, filename: str) -> Coin | None:
        """The coin that owns, or once owned, this spool file name (its image_filename
        may since be another one: a hand-drop gave it a new file)."""
        row = self._one(
            "SELECT c.* FROM spool_files f JOIN coins c ON c.id = f.coin_id WHERE f.name = ?",
            (filename,),
        )
        return Coin.from_row(row) if row else None

    def coins_in(
        self,
        states: tuple[str, ...] | list[str],
        *,
        ready_by: float | None = None,
        limit: int | None = None,
        order: str = "not_before, id",
        released: bool | None = None,
    ) -> list[Coin]:
        marks = ", ".join("?" * len(states))
        sql = f"SELECT * FROM coins WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if released is not None:  # claims handed back to the source (a clean stop)
            sql += " AND released = ?"
            params.append(int(released))
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
        if "last_error" in fields:
            fields["last_error"] = bounded(fields["last_error"])
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
                (bounded(error), next_try, entry_id),
            )

    def outbox_pending_coins(self) -> set[int]:
        rows = self.db.execute("SELECT DISTINCT coin_id FROM outbox WHERE delivered_at IS NULL")
        return {r[0] for r in rows}

    def drop_reports(self, coin_id: int, now: float | None = None) -> int:
        """Never send this coin's undelivered reports (its claim was given away)."""
        with self.write() as conn:
            return conn.execute(
                "UPDATE outbox SET delivered_at = ?, last_error = 'not sent: claim released'"
                " WHERE coin_id = ? AND delivered_at IS NULL",
                (iso(now), coin_id),
            ).rowcount

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
                    (bounded(error), next_try, json.dumps(sorted(delivered)), alert_id),
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

    def meta_delete_many(self, keys: list[str]) -> None:
        with self.write() as conn:
            conn.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in keys])

    # Dropped files in spool/ that were not taken, and why (issue 15; `moonshot status`).
    def refuse_drop(self, name: str, why: str) -> None:
        self.meta_set(REFUSED_DROP + name, why)

    def clear_refused_drop(self, name: str) -> None:
        if self.meta_get(REFUSED_DROP + name) is not None:  # no write lock for the common case
            self.meta_delete_many([REFUSED_DROP + name])

    def refused_drops(self) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(REFUSED_DROP), REFUSED_DROP),
        )
        return {k[len(REFUSED_DROP) :]: v for k, v in rows}

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
