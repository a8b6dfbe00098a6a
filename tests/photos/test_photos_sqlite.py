"""photos_db against real Photos libraries (Photos 5, 8 and 11), always on temporary
copies of the shipped fixtures. Rows added to a copy SIMULATE an import by Photos."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from moonshot.errors import PortUnavailable
from moonshot.photos.photos_sqlite import CORE_DATA_EPOCH, PhotosDB, core_data_to_unix, library_root
from tests.photos.helpers import (
    ALL,
    CLOUD,
    COMPARE,
    PHOTOS11,
    SimulatedPhotos,
    copy_library,
    make_read_only,
    make_writable,
)

NEWEST = {
    COMPARE: ("IMG_1994.JPG", "C0054772-8788-499F-B94F-8AC6064B8A58", 8, "ZASSET", 16502),
    PHOTOS11: ("IMG_3092.heic", "7783E8E6-9CAC-40F3-BE22-81FB7051C266", 11, "ZASSET", 19320),
    CLOUD: (
        "AFTERNOON WALK IN TOKYO.jpeg",
        "33000A44-E4BA-43A3-9304-62A0195AB4D9",
        5,
        "ZGENERICASSET",
        13703,
    ),
}


@pytest.fixture
def lib(request, tmp_path):
    path = copy_library(request.param, tmp_path)
    db = PhotosDB(path)
    yield db
    db.close()


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("lib", [COMPARE], indirect=True)
def test_newest_of_compare_library_is_img_1994(lib):
    asset = lib.newest()
    assert asset.original_filename == "IMG_1994.JPG"
    assert asset.id == "C0054772-8788-499F-B94F-8AC6064B8A58"
    assert utc(asset.date_added) == "2024-03-03 15:49:48"
    assert asset.in_cloud is None


@pytest.mark.parametrize("name", ALL)
def test_each_schema_version(tmp_path, name):
    filename, uuid, photos, table, model = NEWEST[name]
    with PhotosDB(copy_library(name, tmp_path)) as db:
        assert db.schema.photos_version == photos
        assert db.schema.model_version == model
        assert db.schema.asset_table == table
        assert db.schema.has_cloud
        newest = db.newest()
        assert (newest.original_filename, newest.id) == (filename, uuid)
        assert [a.id for a in db.find(filename)][0] == uuid
        assert db.get(uuid) == newest


@pytest.mark.parametrize("name", ALL)
def test_answers_match_osxphotos_full_load(tmp_path, name):
    """Every visible photo osxphotos lists is found by name with the same id and date."""
    osxphotos = pytest.importorskip("osxphotos")
    path = copy_library(name, tmp_path)
    full = osxphotos.PhotosDB(dbfile=str(path / "database" / "Photos.sqlite"))
    photos = [p for p in full.photos(intrash=False) if p.visible]
    assert photos
    with PhotosDB(path) as db:
        for p in photos:
            found = {a.id: a for a in db.find(p.original_filename)}
            assert p.uuid in found, p.original_filename
            assert found[p.uuid].date_added == pytest.approx(p.date_added.timestamp(), abs=1e-3)
            assert found[p.uuid].in_cloud == p.incloud
        expected = max((p for p in photos if not p.hidden), key=lambda p: p.date_added)
        assert db.newest().id == expected.uuid


@pytest.mark.parametrize("lib", [COMPARE], indirect=True)
def test_duplicates_are_both_found_newest_first(lib):
    found = lib.find("IMG_1994.JPG")
    assert [a.id for a in found] == [
        "C0054772-8788-499F-B94F-8AC6064B8A58",
        "F269CA02-F39B-4306-882A-B05B31926C80",
    ]
    assert found[0].date_added > found[1].date_added
    between = (found[0].date_added + found[1].date_added) / 2
    assert [a.id for a in lib.find("IMG_1994.JPG", added_after=between)] == [found[0].id]
    assert lib.find("IMG_1994.JPG", added_after=found[0].date_added + 1) == []


@pytest.mark.parametrize("lib", [CLOUD], indirect=True)
def test_icloud_states_true_false_none(lib):
    uploaded = lib.find("F78B09C2-DA3E-4171-8CB9-DF16AE4EFE72.JPG")
    pending = lib.find("AFTERNOON WALK IN TOKYO.jpeg")
    assert [a.in_cloud for a in uploaded] == [True]
    assert [a.in_cloud for a in pending] == [False]
    assert lib.icloud_state(uploaded[0].id) is True
    assert lib.icloud_state(pending[0].id) is False
    # A shared-stream asset has no iCloud Photos master: not a cloud asset.
    assert lib.icloud_state("4AD7C8EF-2991-4519-9D3A-7F44A6F031BE") is None
    assert lib.icloud_state("00000000-0000-0000-0000-000000000000") is None
    assert lib.uses_icloud()


@pytest.mark.parametrize("lib", [COMPARE], indirect=True)
def test_icloud_none_when_library_not_in_icloud(lib):
    assert lib.icloud_state("C0054772-8788-499F-B94F-8AC6064B8A58") is None
    assert not lib.uses_icloud()


@pytest.mark.parametrize("lib", [PHOTOS11], indirect=True)
def test_trashed_assets_are_not_in_the_library(lib):
    raw = (
        lib.connect()
        .execute(
            "SELECT a.ZTRASHEDSTATE FROM ZASSET a JOIN ZADDITIONALASSETATTRIBUTES aa ON aa.ZASSET = a.Z_PK"
            " WHERE aa.ZORIGINALFILENAME = 'IMG_1064.jpeg'"
        )
        .fetchall()
    )
    assert raw == [(1,)]  # the row is there, in Recently Deleted
    assert lib.find("IMG_1064.jpeg") == []
    assert lib.get("71E3E212-00EB-430D-8A63-5E294B268554") is None


@pytest.mark.parametrize("lib", [PHOTOS11], indirect=True)
def test_hidden_asset_is_found_but_never_newest(lib):
    assert [a.id for a in lib.find("Pumpkins4.jpg")] == ["A1DD1F98-2ECD-431F-9AC9-5AFEFE2D3A5C"]
    sim = SimulatedPhotos(lib.library)
    hidden = sim.add("hidden.jpg", time.time(), hidden=1)
    assert lib.newest().original_filename == "IMG_3092.heic"
    assert lib.get(hidden) is not None
    shown = sim.add("shown.jpg", time.time())
    assert lib.newest().id == shown
    sim.close()


@pytest.mark.parametrize("lib", [COMPARE], indirect=True)
def test_get_by_uuid_or_local_identifier(lib):
    uuid = "0EBA5A05-6E6B-4EF6-B264-8F3AE6B88379"
    assert lib.get(uuid).original_filename == "IMG_3984.jpeg"
    assert lib.get(f"{uuid}/L0/001") == lib.get(uuid)
    assert lib.get("nope") is None


def test_core_data_dates():
    assert core_data_to_unix(0) == CORE_DATA_EPOCH
    assert datetime.fromtimestamp(core_data_to_unix(0), UTC) == datetime(2001, 1, 1, tzinfo=UTC)
    assert core_data_to_unix(None) is None


def test_library_root_accepts_the_database_file(tmp_path):
    lib = tmp_path / "X.photoslibrary"
    assert library_root(lib / "database" / "Photos.sqlite") == lib
    assert library_root(lib) == lib


def test_sees_rows_photos_writes_after_opening(tmp_path):
    path = copy_library(COMPARE, tmp_path)
    with PhotosDB(path) as db:
        assert db.newest().original_filename == "IMG_1994.JPG"
        assert db.mode == "direct"
        sim = SimulatedPhotos(path)  # simulated import by Photos, into the copy
        uid = sim.add("user_MOON_1764140000.jpg", time.time())
        assert db.newest().id == uid
        assert [
            a.id for a in db.find("user_MOON_1764140000.jpg", added_after=time.time() - 60)
        ] == [uid]
        sim.close()


def _digests(path: Path) -> dict:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted((path / "database").iterdir())
    }


def test_read_only_library_is_read_from_a_copy_and_left_alone(tmp_path):
    path = copy_library(COMPARE, tmp_path)
    make_read_only(path)
    before = _digests(path)
    with PhotosDB(path) as db:
        assert db.newest().original_filename == "IMG_1994.JPG"
        assert db.mode == "copy"
        assert len(db.find("IMG_1994.JPG")) == 2
        # Photos writes (simulated on the copy): the reader's copy is refreshed.
        make_writable(path)
        sim = SimulatedPhotos(path)
        uid = sim.add("late.jpg", time.time())
        sim.close()
        make_read_only(path)
        changed = _digests(path)
        assert db.newest().id == uid
        assert _digests(path) == changed  # reading it again changed nothing
    assert before != changed
    make_writable(path)


def test_library_held_locked_by_photos_is_read_from_a_copy(tmp_path):
    path = copy_library(COMPARE, tmp_path)
    holder = sqlite3.connect(path / "database" / "Photos.sqlite", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # Photos holding its library, e.g. during an upgrade
    try:
        with PhotosDB(path) as db:
            assert db.newest().original_filename == "IMG_1994.JPG"
            assert db.mode == "copy"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_missing_library_names_the_path(tmp_path):
    with pytest.raises(
        PortUnavailable, match="Photos library not found at .*nowhere.photoslibrary"
    ):
        PhotosDB(tmp_path / "nowhere.photoslibrary").newest()


def test_folder_without_database_is_not_a_library(tmp_path):
    (tmp_path / "Empty.photoslibrary").mkdir()
    with pytest.raises(
        PortUnavailable, match="not a Photos library \\(no database/Photos.sqlite\\)"
    ):
        PhotosDB(tmp_path / "Empty.photoslibrary").newest()


def test_garbage_file_is_not_sqlite(tmp_path):
    db = tmp_path / "Bad.photoslibrary" / "database"
    db.mkdir(parents=True)
    (db / "Photos.sqlite").write_bytes(b"not a database at all, just text")
    with pytest.raises(PortUnavailable, match="not an SQLite database"):
        PhotosDB(tmp_path / "Bad.photoslibrary").newest()


def test_sqlite_without_asset_table_is_not_a_library(tmp_path):
    db = tmp_path / "Other.photoslibrary" / "database"
    db.mkdir(parents=True)
    sqlite3.connect(db / "Photos.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(PortUnavailable, match="no asset table"):
        PhotosDB(tmp_path / "Other.photoslibrary").newest()


def test_photos4_library_says_upgrade(tmp_path):
    db = tmp_path / "Old.photoslibrary" / "database"
    db.mkdir(parents=True)
    sqlite3.connect(db / "Photos.sqlite").execute("CREATE TABLE RKMaster (x)").connection.close()
    with pytest.raises(PortUnavailable, match="Photos 4 or older"):
        PhotosDB(tmp_path / "Old.photoslibrary").newest()


def test_no_permission_names_full_disk_access(tmp_path):
    """Like Photos without Full Disk Access: the error names the cause and the fix, not
    'locked' (osxphotos #1539). Root ignores file modes, so as root the check runs in a
    child without the capabilities that bypass them."""
    path = copy_library(COMPARE, tmp_path)
    code = (
        "import sys; from moonshot.photos.photos_sqlite import PhotosDB\n"
        "try:\n    PhotosDB(sys.argv[1]).newest()\n"
        "except Exception as e:\n    print(type(e).__name__, e); sys.exit(0)\nsys.exit(3)\n"
    )
    cmd = [sys.executable, "-c", code, str(path)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    root = Path(__file__).resolve().parents[2]
    (path / "database").chmod(0o000)
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
    finally:
        (path / "database").chmod(0o755)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("PortUnavailable no permission to read"), out.stdout
    assert "Full Disk Access" in out.stdout


@pytest.mark.parametrize("name", ALL)
def test_service_questions_use_indexes_not_scans(tmp_path, name):
    """Photos' databases have no ANALYZE statistics: the plans are fixed by hand. The
    questions the service asks (newest, get, find with a time bound) must search the
    asset table's indexes, never scan or sort it (0.3 s on 50,000 assets otherwise)."""
    with PhotosDB(copy_library(name, tmp_path)) as db:
        conn = db.connect()
        issued = []
        run = db._run
        db._run = lambda sql, params=(): issued.append((sql, params)) or run(sql, params)
        db.newest()
        db.get("7783E8E6-9CAC-40F3-BE22-81FB7051C266")
        db.find("IMG_1994.JPG", added_after=0)
        assert len(issued) == 3
        for sql, params in issued:
            plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "SEARCH a USING INDEX" in plan, plan
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
