"""Test helpers for the real Photos library fixtures: find them, copy them into a
temporary folder (never open the shipped files for writing), and SIMULATE what Photos
writes when it imports a file, by inserting rows into that temporary copy."""

from __future__ import annotations

import re
import shutil
import sqlite3
import stat
import uuid as uuidlib
from pathlib import Path

from moonshot.photos.photos_sqlite import unix_to_core_data

COMPARE = "Test-13.5.1-compare-2.photoslibrary"  # Photos 8, macOS 13.5.1
PHOTOS11 = "Test-26.1.photoslibrary"  # Photos 11, macOS 26.1
CLOUD = "Test-Cloud-10.15.6.photoslibrary"  # Photos 5, macOS 10.15.6, iCloud Photos
ALL = (COMPARE, PHOTOS11, CLOUD)


def fixtures_dir() -> Path:
    """tests/fixtures/photos-libraries, vendored from osxphotos (its README says so)."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "photos-libraries"


def copy_library(name: str, dest: Path) -> Path:
    """A writable copy of fixture library `name` under `dest`."""
    src = fixtures_dir() / name
    if not (src / "database" / "Photos.sqlite").is_file():
        raise FileNotFoundError(f"Photos fixture {src} is missing from the repository")
    target = Path(dest) / name
    shutil.copytree(src, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return target


def make_read_only(library: Path) -> None:
    """Take every write bit off the library's database files, like the shipped fixtures."""
    db = library / "database"
    for path in db.iterdir():
        path.chmod(path.stat().st_mode & ~0o222)
    db.chmod(db.stat().st_mode & ~0o222)


def make_writable(library: Path) -> None:
    db = library / "database"
    db.chmod(db.stat().st_mode | stat.S_IWUSR)
    for path in db.iterdir():
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


class SimulatedPhotos:
    """Stands in for Photos.app writing its database, on a temporary copy only.

    Core Data's triggers call SQL functions that exist only inside Photos
    (NSCoreData...); they are registered here as no-ops so the triggers still run."""

    def __init__(self, library: Path):
        self.path = Path(library) / "database" / "Photos.sqlite"
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        triggers = " ".join(
            r[0] or ""
            for r in self.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'")
        )
        for name in set(re.findall(r"NSCoreData\w+", triggers)):
            self.conn.create_function(name, -1, lambda *args: None)
        tables = {
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        self.asset_table = "ZASSET" if "ZASSET" in tables else "ZGENERICASSET"
        self.ent = {r[0]: r[1] for r in self.conn.execute("SELECT Z_NAME, Z_ENT FROM Z_PRIMARYKEY")}
        self.aa_cols = {
            r[1] for r in self.conn.execute("PRAGMA table_info(ZADDITIONALASSETATTRIBUTES)")
        }

    def _next_pk(self, table: str, entity: str) -> int:
        """As Core Data does: past Z_PRIMARYKEY.Z_MAX, so a deleted row's key is never reused."""
        (pk,) = self.conn.execute(
            f"SELECT max(coalesce((SELECT Z_MAX FROM Z_PRIMARYKEY WHERE Z_NAME = ?), 0),"
            f" (SELECT coalesce(max(Z_PK), 0) FROM {table})) + 1",
            (entity,),
        ).fetchone()
        self.conn.execute(
            "UPDATE Z_PRIMARYKEY SET Z_MAX = max(Z_MAX, ?) WHERE Z_NAME = ?", (pk, entity)
        )
        return pk

    def add(
        self,
        name: str,
        added: float,
        *,
        cloud_state: int | None = None,
        hidden: int = 0,
        trashed: int = 0,
        uuid: str | None = None,
    ) -> str:
        """Insert one imported asset (added at unix time `added`); returns its ZUUID."""
        uid = uuid or str(uuidlib.uuid4()).upper()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        master = None
        if cloud_state is not None:
            master = self._next_pk("ZCLOUDMASTER", "CloudMaster")
            c.execute(
                "INSERT INTO ZCLOUDMASTER (Z_PK, Z_ENT, Z_OPT, ZCLOUDLOCALSTATE, ZORIGINALFILENAME) VALUES (?, ?, 1, ?, ?)",
                (master, self.ent["CloudMaster"], cloud_state, name),
            )
        pk = self._next_pk(self.asset_table, "Asset")
        c.execute(
            f"INSERT INTO {self.asset_table} (Z_PK, Z_ENT, Z_OPT, ZUUID, ZADDEDDATE, ZDATECREATED, ZTRASHEDSTATE,"
            " ZHIDDEN, ZVISIBILITYSTATE, ZKIND, ZMASTER, ZFILENAME) VALUES (?, ?, 1, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
            (
                pk,
                self.ent["Asset"],
                uid,
                unix_to_core_data(added),
                unix_to_core_data(added),
                trashed,
                hidden,
                master,
                f"{uid}.jpeg",
            ),
        )
        aa = self._next_pk("ZADDITIONALASSETATTRIBUTES", "AdditionalAssetAttributes")
        cols = ["Z_PK", "Z_ENT", "Z_OPT", "ZASSET", "ZORIGINALFILENAME"]
        vals: list = [aa, self.ent["AdditionalAssetAttributes"], 1, pk, name]
        entity_col = [col for col in self.aa_cols if re.fullmatch(r"Z\d+_ASSET", col)]
        if entity_col:  # Photos 5 records the asset's entity beside the foreign key
            cols.append(entity_col[0])
            vals.append(self.ent["Asset"])
        c.execute(
            f"INSERT INTO ZADDITIONALASSETATTRIBUTES ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            vals,
        )
        c.execute(
            f"UPDATE {self.asset_table} SET ZADDITIONALATTRIBUTES = ? WHERE Z_PK = ?", (aa, pk)
        )
        c.execute("COMMIT")
        return uid

    def set_cloud_state(self, uid: str, state: int) -> None:
        self.conn.execute(
            f"UPDATE ZCLOUDMASTER SET ZCLOUDLOCALSTATE = ? WHERE Z_PK = (SELECT ZMASTER FROM {self.asset_table} WHERE ZUUID = ?)",
            (state, uid),
        )

    def remove(self, uid: str) -> dict:
        """Delete an asset and its attributes row, as Photos does when Recently Deleted is
        emptied; returns both rows, so a test can put them back (`put_back`)."""
        c = self.conn
        (pk, aa) = c.execute(
            f"SELECT Z_PK, ZADDITIONALATTRIBUTES FROM {self.asset_table} WHERE ZUUID = ?", (uid,)
        ).fetchone()
        c.row_factory = sqlite3.Row
        try:
            rows = {
                "ZADDITIONALASSETATTRIBUTES": dict(
                    c.execute(
                        "SELECT * FROM ZADDITIONALASSETATTRIBUTES WHERE Z_PK = ?", (aa,)
                    ).fetchone()
                ),
                self.asset_table: dict(
                    c.execute(f"SELECT * FROM {self.asset_table} WHERE Z_PK = ?", (pk,)).fetchone()
                ),
            }
        finally:
            c.row_factory = None
        c.execute("DELETE FROM ZADDITIONALASSETATTRIBUTES WHERE Z_PK = ?", (aa,))
        c.execute(f"DELETE FROM {self.asset_table} WHERE Z_PK = ?", (pk,))
        return rows

    def put_back(self, rows: dict) -> None:
        """Insert rows `remove` returned, keys and all (a writer committing late)."""
        for table in (self.asset_table, "ZADDITIONALASSETATTRIBUTES"):
            row = rows[table]
            self.conn.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )

    def count_named(self, name: str) -> int:
        (n,) = self.conn.execute(
            "SELECT count(*) FROM ZADDITIONALASSETATTRIBUTES WHERE ZORIGINALFILENAME = ?", (name,)
        ).fetchone()
        return n

    def close(self) -> None:
        self.conn.close()
