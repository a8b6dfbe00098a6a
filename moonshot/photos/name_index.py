"""Original file name -> attributes row (Z_PK) of a Photos library, kept in a small SQLite
file in the user's cache folder, never in the library. It makes `find NAME` without a date
bound a lookup instead of a read of the whole attributes table (no index on the name).

Photos.sqlite has no index on ZADDITIONALASSETATTRIBUTES.ZORIGINALFILENAME and the table is
wide (about 1.3 KB a row, 64 MB for 50,000 assets): a scan costs 20 ms from memory and
50-70 ms from disk here. The index is built by one such scan, then brought up to date on
each use with questions Photos answers from its b-trees alone:

- rows above the highest Z_PK seen are read by primary-key range (Core Data hands out
  Z_PKs in increasing order and never reuses them);
- rows seen without a name yet are read again by primary key;
- when `count(*)` (read from an index's page headers) differs from the rows the index
  knows, a row was deleted or committed below the highest Z_PK seen: the Z_PKs are then
  compared in full (a covering-index scan), as they are every `reconcile_seconds` anyway;
- another store (Z_METADATA.Z_UUID) or another database file (a restore from a backup, a
  rebuilt library: a new inode) means a different library: the index is rebuilt.

Every hit is checked again in Photos by primary key (name, not trashed) by the caller, so a
stale index can miss an asset but never return a wrong one; `--no-index` scans instead.
The file holds names and numbers only, is created 0600, and may be deleted at any time."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ATTRS = "ZADDITIONALASSETATTRIBUTES"
FORMAT = "1"  # bump when the index's own tables change: old files are rebuilt
RECONCILE_SECONDS = 3600.0
CHUNK = 500  # primary keys per `IN (...)`: well under SQLite's variable limit


def cache_dir() -> Path:
    """MOONSHOT_CACHE_DIR, else the platform's cache folder (~/Library/Caches/moonshot on
    macOS, $XDG_CACHE_HOME/moonshot or ~/.cache/moonshot on Linux)."""
    env = os.environ.get("MOONSHOT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("moonshot", appauthor=False))


def index_path(library: str | os.PathLike, folder: Path | None = None) -> Path:
    """One index file per library folder (by its resolved path)."""
    key = hashlib.sha256(str(Path(library).resolve()).encode()).hexdigest()[:16]
    return (folder if folder is not None else cache_dir()) / f"photos-names-{key}.sqlite"


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class Refresh:
    """What one refresh did (for tests, the benchmark and debugging)."""

    rebuilt: bool = False
    added: int = 0  # rows new to the index
    named: int = 0  # rows that had no name before and have one now
    removed: int = 0  # rows gone from Photos
    reconciled: bool = False  # Z_PKs compared in full


class NameIndex:
    """The name index of one library, in the SQLite file at `path`."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        reconcile_seconds: float = RECONCILE_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        self.reconcile_seconds = reconcile_seconds
        self.clock = clock
        self.last: Refresh | None = None
        self._conn: sqlite3.Connection | None = None

    # -- the cache file ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError:
            # Not a database (a torn or foreign file): it is only a cache, start again.
            self.path.unlink(missing_ok=True)
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # Created 0600 before SQLite opens it: file names of someone's photos are private.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("CREATE TABLE IF NOT EXISTS rows (pk INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("CREATE INDEX IF NOT EXISTS rows_by_name ON rows (name)")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- use -----------------------------------------------------------------------------
    def lookup(self, photos: sqlite3.Connection, name: str, source: str = "") -> list[int]:
        """Z_PKs of attribute rows named `name` when last seen, after a refresh. `photos`
        is a read-only connection to Photos.sqlite; `source` names the database file
        (say its inode), so a replaced file is never mistaken for the indexed one."""
        self.refresh(photos, source)
        return [
            pk for (pk,) in self._connect().execute("SELECT pk FROM rows WHERE name = ?", (name,))
        ]

    def refresh(self, photos: sqlite3.Connection, source: str = "") -> Refresh:
        """Bring the index up to date with one consistent snapshot of Photos."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # one refresher at a time; others wait, then see it done
        try:
            photos.execute("BEGIN")  # a read transaction: every question sees one snapshot
            try:
                stats = self._refresh(conn, photos, source)
            finally:
                if photos.in_transaction:
                    photos.execute("COMMIT")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.last = stats
        return stats

    def _refresh(
        self, conn: sqlite3.Connection, photos: sqlite3.Connection, source: str
    ) -> Refresh:
        stats = Refresh()
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        row = photos.execute("SELECT Z_UUID FROM Z_METADATA LIMIT 1").fetchone()
        store = f"{row[0] if row else ''}:{source}"
        (top,) = photos.execute(f"SELECT max(Z_PK) FROM {ATTRS}").fetchone()
        top = top or 0
        seen = int(meta.get("high_water", 0))
        if meta.get("format") != FORMAT or meta.get("store") != store:
            conn.execute("DELETE FROM rows")
            seen, stats.rebuilt = 0, True

        new = photos.execute(
            f"SELECT Z_PK, ZORIGINALFILENAME FROM {ATTRS} WHERE Z_PK > ?", (seen,)
        ).fetchall()
        conn.executemany("INSERT OR REPLACE INTO rows (pk, name) VALUES (?, ?)", new)
        stats.added = len(new)

        unnamed = [
            pk
            for (pk,) in conn.execute(
                "SELECT pk FROM rows WHERE name IS NULL AND pk <= ?", (seen,)
            ).fetchall()
        ]
        named = self._names(photos, unnamed)
        conn.executemany(
            "UPDATE rows SET name = ? WHERE pk = ?",
            [(n, pk) for pk, n in named.items() if n is not None],
        )
        stats.named = sum(1 for n in named.values() if n is not None)
        gone = [pk for pk in unnamed if pk not in named]
        self._delete(conn, gone)
        stats.removed = len(gone)

        (count,) = photos.execute(f"SELECT count(*) FROM {ATTRS}").fetchone()
        (known,) = conn.execute("SELECT count(*) FROM rows").fetchone()
        now = self.clock()
        due = now - float(meta.get("reconciled_at", 0)) >= self.reconcile_seconds
        if count != known or (due and not stats.rebuilt):
            self._reconcile(conn, photos, stats)
        values = {"format": FORMAT, "store": store, "high_water": str(max(seen, top))}
        if stats.rebuilt or stats.reconciled:
            values["reconciled_at"] = repr(now)
        changed = [(k, v) for k, v in values.items() if meta.get(k) != v]
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", changed)
        return stats

    def _reconcile(
        self, conn: sqlite3.Connection, photos: sqlite3.Connection, stats: Refresh
    ) -> None:
        """Compare the Z_PKs in full: catches rows deleted from Photos and rows committed
        below the highest Z_PK seen (only Z_PK is read: a covering-index scan)."""
        have = {pk for (pk,) in photos.execute(f"SELECT Z_PK FROM {ATTRS}")}
        mine = {pk for (pk,) in conn.execute("SELECT pk FROM rows")}
        missing = sorted(have - mine)
        named = self._names(photos, missing)
        conn.executemany("INSERT OR REPLACE INTO rows (pk, name) VALUES (?, ?)", named.items())
        stats.added += len(named)
        gone = sorted(mine - have)
        self._delete(conn, gone)
        stats.removed += len(gone)
        stats.reconciled = True

    @staticmethod
    def _names(photos: sqlite3.Connection, pks: list[int]) -> dict[int, str | None]:
        """The current names of these rows, by primary key; rows gone are left out."""
        out: dict[int, str | None] = {}
        for part in chunks(pks):
            marks = ",".join("?" * len(part))
            out.update(
                photos.execute(
                    f"SELECT Z_PK, ZORIGINALFILENAME FROM {ATTRS} WHERE Z_PK IN ({marks})", part
                ).fetchall()
            )
        return out

    @staticmethod
    def _delete(conn: sqlite3.Connection, pks: Iterable[int]) -> None:
        for part in chunks(list(pks)):
            conn.execute(f"DELETE FROM rows WHERE pk IN ({','.join('?' * len(part))})", part)
