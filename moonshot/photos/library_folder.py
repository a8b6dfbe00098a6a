"""The folder library: a directory that behaves like a Photos library. Each import
copies the file to `originals/<ASSET-ID>.jpg` (atomic rename) and records the asset
id, original file name and date added in `library.db`; `find` and `newest` answer
like the macOS adapter. Real code, the default off macOS, never a mock."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from moonshot.errors import TransientError
from moonshot.fsutil import copy_atomic
from moonshot.ports import Asset, Confirmation


class FolderLibrary:
    kind = "folder"

    def __init__(self, root: Path, *, clock=time.time):
        self.root = Path(root)
        self.originals = self.root / "originals"
        self.originals.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._conn = sqlite3.connect(
            str(self.root / "library.db"), timeout=15, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS assets (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL,"
            " original_filename TEXT NOT NULL, date_added REAL NOT NULL, path TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS assets_name ON assets (original_filename, date_added)"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS assets_added ON assets (date_added, seq)")

    def import_file(self, path: Path) -> Asset:
        path = Path(path)
        if not path.is_file():
            raise TransientError(f"cannot import {path.name}: file not found")
        asset_id = str(uuid.uuid4()).upper()
        target = self.originals / f"{asset_id}{path.suffix.lower() or '.jpg'}"
        copy_atomic(path, target)  # a failed copy leaves no .part behind (issue 15)
        added = self._clock()
        self._conn.execute(
            "INSERT INTO assets (id, original_filename, date_added, path) VALUES (?, ?, ?, ?)",
            (asset_id, path.name, added, str(target.relative_to(self.root))),
        )
        return Asset(asset_id, path.name, added)

    def find(self, original_filename: str, added_after: float | None = None) -> list[Asset]:
        sql = "SELECT id, original_filename, date_added FROM assets WHERE original_filename = ?"
        params: list = [original_filename]
        if added_after is not None:
            sql += " AND date_added >= ?"
            params.append(added_after)
        sql += " ORDER BY date_added DESC, seq DESC"
        return [Asset(*row) for row in self._conn.execute(sql, params)]

    def newest(self) -> Asset | None:
        row = self._conn.execute(
            "SELECT id, original_filename, date_added FROM assets ORDER BY date_added DESC, seq DESC LIMIT 1"
        ).fetchone()
        return Asset(*row) if row else None

    def get(self, asset_id: str) -> Asset | None:
        row = self._conn.execute(
            "SELECT id, original_filename, date_added FROM assets WHERE id = ?", (asset_id,)
        ).fetchone()
        return Asset(*row) if row else None

    def path_of(self, asset_id: str) -> Path | None:
        row = self._conn.execute("SELECT path FROM assets WHERE id = ?", (asset_id,)).fetchone()
        return self.root / row[0] if row else None

    def confirm(self, asset_id: str | None, original_filename: str, since: float) -> Confirmation:
        asset = self.get(asset_id) if asset_id else None
        if asset is None:
            found = self.find(original_filename, added_after=since)
            asset = found[0] if found else None
        if asset is None:
            return Confirmation(False, False, None, f"{original_filename} is not in the library")
        path = self.path_of(asset.id)
        if path is None or not path.exists():
            return Confirmation(False, False, asset, f"asset {asset.id} has no original file")
        return Confirmation(True, True, asset, "")

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM assets").fetchone()[0]

    def close(self) -> None:
        self._conn.close()
