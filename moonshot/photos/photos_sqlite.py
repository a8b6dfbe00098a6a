"""Read-only reader of a macOS Photos library's `database/Photos.sqlite` (Photos 5 to 11,
macOS 10.15 to 26): one narrow query per question (newest asset, find by original file
name, get by id, iCloud state). It never writes to the library and never loads it whole."""

from __future__ import annotations

import errno
import json
import logging
import os
import plistlib
import shutil
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moonshot.errors import PortUnavailable, TransientError
from moonshot.photos.name_index import NameIndex
from moonshot.ports import Asset

log = logging.getLogger(__name__)

# Core Data stores dates as seconds since 2001-01-01 00:00:00 UTC.
CORE_DATA_EPOCH = 978307200.0
# ZCLOUDMASTER.ZCLOUDLOCALSTATE: 0 not synced, 1 pending upload, 3 synced (osxphotos: incloud).
CLOUD_SYNCED = 3
FDA_FIX = (
    "grant Full Disk Access to the program running moonshot (System Settings > "
    "Privacy & Security > Full Disk Access)"
)
# PLModelVersion in Z_METADATA.Z_PLIST, by thousands, to the Photos app version
# (osxphotos _constants.py: 13xxx Photos 5 ... 17xxx Photos 9; 19320 is Photos 11 on macOS 26).
MODEL_TO_PHOTOS = {13: 5, 14: 6, 15: 7, 16: 8, 17: 9, 18: 10, 19: 11}
SIDECARS = ("-shm", "", "-wal")  # copy order; see _copy_snapshot


@dataclass(frozen=True)
class Schema:
    """What differs between Photos versions, found by looking, not by guessing."""

    model_version: int | None
    photos_version: int | None  # 5..11; None when the model version is unknown
    asset_table: str  # ZGENERICASSET (Photos 5) or ZASSET (Photos 6 and later)
    has_cloud: bool  # ZASSET.ZMASTER -> ZCLOUDMASTER.ZCLOUDLOCALSTATE available


def library_root(path: str | os.PathLike) -> Path:
    """The `.photoslibrary` folder for a library path, or for its Photos.sqlite."""
    p = Path(path).expanduser()
    if p.name == "Photos.sqlite" and p.parent.name == "database":
        return p.parent.parent
    return p


def core_data_to_unix(value: float | None) -> float | None:
    return None if value is None else float(value) + CORE_DATA_EPOCH


def unix_to_core_data(value: float) -> float:
    return float(value) - CORE_DATA_EPOCH


def _stamp(path: Path) -> tuple:
    """Size and change time of the database and its sidecars: equal stamps, same bytes."""
    out = []
    for suffix in SIDECARS:
        try:
            st = os.stat(f"{path}{suffix}")
            out.append((suffix, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((suffix, None, None))
    return tuple(out)


class PhotosDB:
    """A Photos library opened read-only. Opens `Photos.sqlite` with `mode=ro`; when that
    fails (library held or locked by Photos, no write access to the -shm) it reads a
    temporary copy of the database with its -wal and -shm, refreshed when they change.
    With a `name_index` (moonshot.photos.name_index), `find` without a date bound looks the
    name up there instead of scanning, and checks each hit in Photos."""

    def __init__(
        self,
        library: str | os.PathLike,
        *,
        copy_attempts: int = 3,
        name_index: NameIndex | None = None,
    ):
        self.library = library_root(library)
        self.name_index = name_index
        self.db_path = self.library / "database" / "Photos.sqlite"
        self.copy_attempts = copy_attempts
        self.mode: str | None = None  # "direct" or "copy" once opened
        self._conn: sqlite3.Connection | None = None
        self._schema: Schema | None = None
        self._copy_dir: Path | None = None
        self._copy_stamp: tuple | None = None

    # -- opening ---------------------------------------------------------------------------
    def _probe(self) -> None:
        """Name the real cause before SQLite turns it into 'unable to open' (osxphotos #1539)."""
        try:
            st = os.stat(self.library)
        except FileNotFoundError:
            raise PortUnavailable(
                f"Photos library not found at {self.library}; set photos.library to your "
                "`.photoslibrary` folder"
            ) from None
        except PermissionError:
            raise PortUnavailable(f"no permission to read {self.library}: {FDA_FIX}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise PortUnavailable(f"{self.library} is not a folder, so not a Photos library")
        try:
            with open(self.db_path, "rb") as f:
                header = f.read(16)
        except FileNotFoundError:
            raise PortUnavailable(
                f"{self.library} is not a Photos library (no database/Photos.sqlite); "
                "set photos.library to a `.photoslibrary` folder"
            ) from None
        except PermissionError:
            raise PortUnavailable(f"no permission to read {self.db_path}: {FDA_FIX}") from None
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise PortUnavailable(f"no permission to read {self.db_path}: {FDA_FIX}") from None
            raise
        if header != b"SQLite format 3\x00":
            raise PortUnavailable(f"{self.db_path} is not an SQLite database: not a Photos library")

    def _read_only_media(self) -> bool:
        """True when the library's files carry no write bit (a shipped fixture, a locked
        copy). SQLite writes its -shm even on a `mode=ro` open, and as root permissions do
        not stop it, so such a library is read from a copy and left byte for byte alone."""
        paths = [self.db_path.parent] + [Path(f"{self.db_path}{s}") for s in SIDECARS]
        for path in paths:
            try:
                if not os.stat(path).st_mode & 0o222:
                    return True
            except FileNotFoundError:
                continue
        return False

    def _open_direct(self) -> sqlite3.Connection:
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=1, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only = 1")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _copy_snapshot(self) -> Path:
        """Copy Photos.sqlite with its -shm and -wal into a temp folder. A copy is kept
        only when no file changed while it was made, so the three belong together."""
        if self._copy_dir is None:
            self._copy_dir = Path(tempfile.mkdtemp(prefix="moonshot-photos-"))
        target = self._copy_dir / "Photos.sqlite"
        for _ in range(self.copy_attempts):
            before = _stamp(self.db_path)
            for suffix in SIDECARS:
                dst = Path(f"{target}{suffix}")
                dst.unlink(missing_ok=True)
                src = Path(f"{self.db_path}{suffix}")
                try:
                    shutil.copyfile(src, dst)
                except FileNotFoundError:
                    continue
                except PermissionError:
                    raise PortUnavailable(f"no permission to read {src}: {FDA_FIX}") from None
            if _stamp(self.db_path) == before:
                self._copy_stamp = before
                return target
        raise TransientError(
            f"Photos is writing {self.db_path} faster than it can be copied; will retry"
        )

    def _open_copy(self) -> sqlite3.Connection:
        target = self._copy_snapshot()
        conn = sqlite3.connect(str(target), timeout=2, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only = 1")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise PortUnavailable(
                    f"{self.db_path} is damaged or not a Photos database: {exc}"
                ) from None
            raise TransientError(f"Photos library is locked or busy ({exc}); will retry") from None
        return conn

    def connect(self) -> sqlite3.Connection:
        """The open connection; a copy is refreshed when the library's files changed."""
        if self._conn is not None:
            if self.mode == "direct" or _stamp(self.db_path) == self._copy_stamp:
                return self._conn
            self._conn.close()
            self._conn = self._open_copy()
            return self._conn
        self._probe()
        try:
            if self._read_only_media():
                raise sqlite3.OperationalError("library files are read-only")
            self._conn, self.mode = self._open_direct(), "direct"
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise PortUnavailable(f"{self.db_path} is not a Photos database: {exc}") from None
            # Held or locked by Photos, no write access for the -shm, or read-only
            # files: read a copy.
            self._conn, self.mode = self._open_copy(), "copy"
        try:
            self._schema = self._detect_schema(self._conn)
        except BaseException:
            self.close()
            raise
        return self._conn

    def close(self) -> None:
        if self.name_index is not None:
            self.name_index.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._copy_dir is not None:
            shutil.rmtree(self._copy_dir, ignore_errors=True)
            self._copy_dir = None
            self._copy_stamp = None

    def __enter__(self) -> PhotosDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema ----------------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        self.connect()
        if self._schema is None:  # connect() sets it or raises
            raise RuntimeError("Photos schema not detected")
        return self._schema

    def _detect_schema(self, conn: sqlite3.Connection) -> Schema:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "ZASSET" in tables:
            asset = "ZASSET"
        elif "ZGENERICASSET" in tables:
            asset = "ZGENERICASSET"
        elif "RKMaster" in tables:
            raise PortUnavailable(
                f"{self.library} is a Photos 4 or older library (macOS 10.14 or earlier); "
                "open it once in Photos 5+ to upgrade it"
            )
        else:
            raise PortUnavailable(f"{self.db_path} has no asset table: not a Photos library")
        need = {
            asset: ("Z_PK", "ZUUID", "ZADDEDDATE", "ZTRASHEDSTATE", "ZHIDDEN", "ZVISIBILITYSTATE"),
            "ZADDITIONALASSETATTRIBUTES": ("ZASSET", "ZORIGINALFILENAME"),
        }
        for table, columns in need.items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in have]
            if missing:
                raise PortUnavailable(
                    f"unsupported Photos schema: {table} lacks {', '.join(missing)}; "
                    "moonshot reads Photos 5 to 11"
                )
        asset_cols = {r[1] for r in conn.execute(f"PRAGMA table_info({asset})")}
        cloud_cols = {r[1] for r in conn.execute("PRAGMA table_info(ZCLOUDMASTER)")}
        has_cloud = "ZMASTER" in asset_cols and {"Z_PK", "ZCLOUDLOCALSTATE"} <= cloud_cols
        model = self._model_version(conn)
        photos = MODEL_TO_PHOTOS.get(model // 1000) if model else None
        if photos is None and model and model >= 20000:
            photos = 12  # newer than tested; the columns above were all found
        return Schema(model, photos, asset, has_cloud)

    @staticmethod
    def _model_version(conn: sqlite3.Connection) -> int | None:
        try:
            row = conn.execute("SELECT Z_PLIST FROM Z_METADATA LIMIT 1").fetchone()
            value = plistlib.loads(row[0]).get("PLModelVersion") if row and row[0] else None
            return int(value) if value is not None else None
        except (sqlite3.Error, plistlib.InvalidFileException, ValueError, TypeError):
            return None

    # -- queries: one narrow question each ---------------------------------------------------
    # Photos' databases carry no ANALYZE statistics, so SQLite may pick the (unselective)
    # visibility index and sort every asset: 0.3 s on 50,000 assets. The plans are fixed
    # by hand instead: CROSS JOIN keeps the written join order, and a unary `+` keeps a
    # filter column from being chosen as the index.
    def _select(self, drive: str) -> str:
        """`drive`: "asset" (by date or id: indexed) or "name" (scan of the attributes
        table: ZORIGINALFILENAME has no index)."""
        s = self.schema
        cloud_state = "cm.ZCLOUDLOCALSTATE" if s.has_cloud else "NULL"
        cloud_join = "LEFT JOIN ZCLOUDMASTER cm ON cm.Z_PK = a.ZMASTER " if s.has_cloud else ""
        if drive == "name":
            tables = f"FROM ZADDITIONALASSETATTRIBUTES aa CROSS JOIN {s.asset_table} a ON a.Z_PK = aa.ZASSET "
        else:
            tables = f"FROM {s.asset_table} a LEFT JOIN ZADDITIONALASSETATTRIBUTES aa ON aa.ZASSET = a.Z_PK "
        return f"SELECT a.ZUUID, aa.ZORIGINALFILENAME, a.ZADDEDDATE, {cloud_state} {tables}{cloud_join}"

    def _run(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        conn = self.connect()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise TransientError(
                    f"Photos library is locked or busy ({text}); will retry"
                ) from None
            if "unable to open" in text or "disk I/O" in text:
                # Photos replaced or moved the files under an open connection: reopen next time.
                self.close()
                raise TransientError(
                    f"Photos library changed while reading ({text}); will retry"
                ) from None
            raise

    @staticmethod
    def _asset(row: tuple) -> Asset:
        uuid, name, added, cloud_state = row
        in_cloud = None if cloud_state is None else cloud_state == CLOUD_SYNCED
        return Asset(uuid, name or "", core_data_to_unix(added) or 0.0, in_cloud)

    # Assets the library's grid and a photo picker show: not in Recently Deleted, not
    # hidden, not a non-key burst frame or shared-stream copy (ZVISIBILITYSTATE != 0).
    VISIBLE = "+a.ZTRASHEDSTATE = 0 AND +a.ZHIDDEN = 0 AND +a.ZVISIBILITYSTATE = 0"
    # In the library at all (a hidden asset is still there; a trashed one is not).
    PRESENT = "+a.ZTRASHEDSTATE = 0 AND +a.ZVISIBILITYSTATE = 0"

    def newest(self) -> Asset | None:
        """The visible asset with the latest date added (what a picker shows first)."""
        rows = self._run(
            self._select("asset") + f"WHERE {self.VISIBLE} AND a.ZADDEDDATE IS NOT NULL "
            "ORDER BY a.ZADDEDDATE DESC, a.Z_PK DESC LIMIT 1"
        )
        return self._asset(rows[0]) if rows else None

    def find(self, original_filename: str, added_after: float | None = None) -> list[Asset]:
        """Assets with this original file name (added at or after the unix time), newest
        first. With `added_after` (how the service asks) the date index bounds the search;
        without it the name index is asked, or, with none, the attributes table is scanned."""
        if added_after is None and self.name_index is not None:
            found = self._find_indexed(original_filename)
            if found is not None:
                return found
        params: list = [original_filename]
        if added_after is None:
            sql = self._select("name") + f"WHERE aa.ZORIGINALFILENAME = ? AND {self.PRESENT} "
        else:
            sql = (
                self._select("asset")
                + f"WHERE a.ZADDEDDATE >= ? AND aa.ZORIGINALFILENAME = ? AND {self.PRESENT} "
            )
            params.insert(0, unix_to_core_data(added_after))
        sql += "ORDER BY a.ZADDEDDATE DESC, a.Z_PK DESC"
        return [self._asset(r) for r in self._run(sql, params)]

    def _find_indexed(self, name: str) -> list[Asset] | None:
        """`find` through the name index; None when the index cannot be used (a scan
        follows). Each hit is checked here by primary key: name, and still present."""
        conn = self.connect()
        try:
            st = os.stat(self.db_path)
            pks = self.name_index.lookup(conn, name, source=f"{st.st_dev}:{st.st_ino}")
        except (sqlite3.Error, OSError) as exc:
            log.warning(
                "Photos name index %s unusable (%s); scanning instead", self.name_index.path, exc
            )
            self.name_index.close()
            self.name_index = None
            return None
        if not pks:
            return []
        # One parameter for any number of keys (json_each: SQLite's JSON1, built in
        # since 3.38); a SQLite without it scans instead.
        sql = (
            self._select("name") + "WHERE aa.Z_PK IN (SELECT value FROM json_each(?)) "
            f"AND aa.ZORIGINALFILENAME = ? AND {self.PRESENT} "
            "ORDER BY a.ZADDEDDATE DESC, a.Z_PK DESC"
        )
        try:
            rows = self._run(sql, (json.dumps(pks), name))
        except sqlite3.OperationalError as exc:
            if "json_each" not in str(exc):
                raise
            return None
        return [self._asset(r) for r in rows]

    def get(self, asset_id: str) -> Asset | None:
        """The asset with this id (ZUUID; a PhotoKit local identifier `UUID/L0/001` works too)."""
        uuid = asset_id.split("/", 1)[0]
        rows = self._run(
            self._select("asset") + f"WHERE a.ZUUID = ? AND {self.PRESENT} LIMIT 1", (uuid,)
        )
        return self._asset(rows[0]) if rows else None

    def icloud_state(self, asset_id: str) -> bool | None:
        """True uploaded to iCloud Photos, False not yet, None not a cloud asset (or unknown id)."""
        if not self.schema.has_cloud:
            return None
        uuid = asset_id.split("/", 1)[0]
        rows = self._run(
            f"SELECT cm.ZCLOUDLOCALSTATE FROM {self.schema.asset_table} a "
            "JOIN ZCLOUDMASTER cm ON cm.Z_PK = a.ZMASTER WHERE a.ZUUID = ? LIMIT 1",
            (uuid,),
        )
        if not rows or rows[0][0] is None:
            return None
        return rows[0][0] == CLOUD_SYNCED

    def uses_icloud(self) -> bool:
        """Whether any asset has an iCloud Photos record (iCloud Photos is or was on)."""
        if not self.schema.has_cloud:
            return False
        return bool(self._run("SELECT 1 FROM ZCLOUDMASTER LIMIT 1"))
