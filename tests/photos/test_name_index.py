"""The Photos name index (moonshot.photos.name_index) against the real fixture libraries, on
temporary copies. Rows inserted, deleted or renamed in a copy SIMULATE what Photos
writes; the index must answer exactly as a scan of Photos.sqlite does."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat

import pytest

from moonshot.photos.name_index import NameIndex, index_path
from moonshot.photos.photos_sqlite import PhotosDB
from tests.photos.helpers import (
    ALL,
    COMPARE,
    PHOTOS11,
    SimulatedPhotos,
    copy_library,
    make_read_only,
)

NOW = 1_790_000_000.0


def names_in(db: PhotosDB) -> set[str]:
    conn = db.connect()
    return {
        n for (n,) in conn.execute("SELECT ZORIGINALFILENAME FROM ZADDITIONALASSETATTRIBUTES") if n
    }


def indexed(library, cache_dir, **kw) -> PhotosDB:
    return PhotosDB(library, name_index=NameIndex(index_path(library, cache_dir), **kw))


def ids(assets) -> list[str]:
    return [a.id for a in assets]


@pytest.mark.parametrize("name", ALL)
def test_index_answers_every_name_as_the_scan_does(tmp_path, cache_dir, name):
    lib = copy_library(name, tmp_path)
    with PhotosDB(lib) as scan, indexed(lib, cache_dir) as fast:
        every = sorted(names_in(scan))
        assert every, "the fixture has named assets"
        for n in [*every, "absent.jpg", ""]:
            assert ids(fast.find(n)) == ids(scan.find(n)), n
        assert fast.name_index is not None, "the index was used, not given up"
        assert fast.name_index.last.rebuilt is False  # built by the first find only
    (f,) = cache_dir.iterdir()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_duplicates_come_newest_first_through_the_index(tmp_path, cache_dir):
    with indexed(copy_library(COMPARE, tmp_path), cache_dir) as db:
        assert ids(db.find("IMG_1994.JPG")) == [
            "C0054772-8788-499F-B94F-8AC6064B8A58",
            "F269CA02-F39B-4306-882A-B05B31926C80",
        ]


def test_a_new_import_is_found_by_range_not_rebuild(tmp_path, cache_dir):
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    with indexed(lib, cache_dir) as db:
        assert db.find("alice_PEPE_1.jpg") == []
        assert db.name_index.last.rebuilt
        uid = sim.add("alice_PEPE_1.jpg", NOW)
        assert ids(db.find("alice_PEPE_1.jpg")) == [uid]
        last = db.name_index.last
        assert (last.rebuilt, last.added, last.reconciled) == (False, 1, False)
    sim.close()


def test_refresh_after_build_never_scans_the_attributes_table(tmp_path, cache_dir):
    """The point of the index: after the first build, a find reads Photos' b-trees by key
    or by page count, never the wide attributes table row by row."""
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    with indexed(lib, cache_dir) as db:
        db.find("x.jpg")
        sim.add("alice_PEPE_1.jpg", NOW)
        conn = db.connect()
        issued: list[str] = []
        conn.set_trace_callback(issued.append)
        db.find("alice_PEPE_1.jpg")
        conn.set_trace_callback(None)
        selects = [s for s in issued if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) >= 4
        for sql in selects:
            plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            for step in plan.split(" | "):
                scan = step.startswith("SCAN") and "json_each" not in step
                if scan and "Z_METADATA" not in step:  # one row: the store's id
                    assert "COVERING INDEX" in step, (sql, plan)
    sim.close()


def test_row_committed_below_the_highest_seen_is_found(tmp_path, cache_dir):
    """Two writers may commit Core Data's reserved keys out of order: the count differs,
    so the Z_PKs are compared in full and the late row is indexed."""
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    early = sim.add("bob_EARLY_1.jpg", NOW)
    sim.add("bob_LATE_2.jpg", NOW + 1)
    held = sim.remove(early)  # not yet committed, as far as readers can tell
    with indexed(lib, cache_dir) as db:
        assert db.find("bob_EARLY_1.jpg") == []
        sim.put_back(held)
        assert ids(db.find("bob_EARLY_1.jpg")) == [early]
        last = db.name_index.last
        assert (last.rebuilt, last.reconciled, last.added) == (False, True, 1)
    sim.close()


def test_deleted_asset_is_never_returned_and_is_pruned(tmp_path, cache_dir):
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    uid = sim.add("carol_GONE_1.jpg", NOW)
    sim.add("carol_STAYS_2.jpg", NOW + 1)
    with indexed(lib, cache_dir) as db:
        assert ids(db.find("carol_GONE_1.jpg")) == [uid]
        sim.remove(uid)
        assert db.find("carol_GONE_1.jpg") == []
        last = db.name_index.last
        assert (last.reconciled, last.removed) == (True, 1)
        rows = db.name_index._connect().execute(
            "SELECT count(*) FROM rows WHERE name = ?", ("carol_GONE_1.jpg",)
        )
        assert rows.fetchone() == (0,)
    sim.close()


def test_trashed_asset_is_not_returned(tmp_path, cache_dir):
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    sim.add("dan_TRASH_1.jpg", NOW, trashed=1)
    with indexed(lib, cache_dir) as db, PhotosDB(lib) as scan:
        assert db.find("dan_TRASH_1.jpg") == scan.find("dan_TRASH_1.jpg") == []
    sim.close()


def test_name_written_after_the_row_is_picked_up(tmp_path, cache_dir):
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    uid = sim.add("placeholder.jpg", NOW)
    sim.conn.execute(
        "UPDATE ZADDITIONALASSETATTRIBUTES SET ZORIGINALFILENAME = NULL WHERE ZORIGINALFILENAME = ?",
        ("placeholder.jpg",),
    )
    with indexed(lib, cache_dir) as db:
        assert db.find("erin_LATE_1.jpg") == []
        sim.conn.execute(
            "UPDATE ZADDITIONALASSETATTRIBUTES SET ZORIGINALFILENAME = ? WHERE ZORIGINALFILENAME IS NULL",
            ("erin_LATE_1.jpg",),
        )
        assert ids(db.find("erin_LATE_1.jpg")) == [uid]
        assert db.name_index.last.named == 1
    sim.close()


def test_renamed_row_is_never_returned_under_its_old_name(tmp_path, cache_dir):
    lib = copy_library(COMPARE, tmp_path)
    sim = SimulatedPhotos(lib)
    with indexed(lib, cache_dir) as db:
        assert len(db.find("IMG_1994.JPG")) == 2
        sim.conn.execute(
            "UPDATE ZADDITIONALASSETATTRIBUTES SET ZORIGINALFILENAME = 'other.jpg' "
            "WHERE Z_PK = (SELECT min(Z_PK) FROM ZADDITIONALASSETATTRIBUTES WHERE ZORIGINALFILENAME = 'IMG_1994.JPG')"
        )
        assert len(db.find("IMG_1994.JPG")) == 1
    sim.close()


@pytest.mark.parametrize("how", ["another library", "same store, new file"])
def test_replaced_database_rebuilds_the_index(tmp_path, cache_dir, how):
    lib = copy_library(COMPARE, tmp_path)
    with indexed(lib, cache_dir) as db:
        assert len(db.find("IMG_3984.jpeg")) == 1
    db_file = lib / "database" / "Photos.sqlite"
    if how == "another library":
        other = copy_library(PHOTOS11, tmp_path / "other")
        shutil.rmtree(lib / "database")
        shutil.copytree(other / "database", lib / "database")
        expect = {"IMG_3984.jpeg": 0, "IMG_3092.heic": 1}
    else:  # a restore from a backup: same Z_UUID, another file
        shutil.copyfile(db_file, tmp_path / "restored.sqlite")
        os.replace(tmp_path / "restored.sqlite", db_file)
        expect = {"IMG_3984.jpeg": 1}
    with indexed(lib, cache_dir) as db:
        rebuilt = []
        for n, count in expect.items():
            assert len(db.find(n)) == count, n
            rebuilt.append(db.name_index.last.rebuilt)
        assert rebuilt[0] and not any(rebuilt[1:])
    assert len(list(cache_dir.iterdir())) == 1  # the same file, rebuilt in place


def test_deleting_the_newest_asset_is_no_rebuild(tmp_path, cache_dir):
    """The highest Z_PK drops when the newest asset is purged: a reconcile, not a rebuild;
    the next import (a higher Z_PK: Core Data never reuses one) is found by range."""
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    uid = sim.add("frank_TOP_1.jpg", NOW)
    with indexed(lib, cache_dir) as db:
        assert ids(db.find("frank_TOP_1.jpg")) == [uid]
        sim.remove(uid)
        assert db.find("frank_TOP_1.jpg") == []
        last = db.name_index.last
        assert (last.rebuilt, last.reconciled, last.removed) == (False, True, 1)
        again = sim.add("frank_TOP_2.jpg", NOW + 1)
        assert ids(db.find("frank_TOP_2.jpg")) == [again]
        assert (db.name_index.last.added, db.name_index.last.reconciled) == (1, False)
    sim.close()


def test_reconciles_when_due(tmp_path, cache_dir):
    lib = copy_library(PHOTOS11, tmp_path)
    now = [NOW]
    with indexed(lib, cache_dir, reconcile_seconds=3600, clock=lambda: now[0]) as db:
        db.find("x.jpg")
        now[0] += 3599
        db.find("x.jpg")
        assert db.name_index.last.reconciled is False
        now[0] += 2
        db.find("x.jpg")
        assert db.name_index.last.reconciled is True
        db.find("x.jpg")
        assert db.name_index.last.reconciled is False


def test_two_readers_share_one_index(tmp_path, cache_dir):
    lib = copy_library(PHOTOS11, tmp_path)
    sim = SimulatedPhotos(lib)
    with indexed(lib, cache_dir) as a, indexed(lib, cache_dir) as b:
        a.find("x.jpg")
        uid = sim.add("gina_SHARE_1.jpg", NOW)
        assert ids(b.find("gina_SHARE_1.jpg")) == [uid]
        assert (b.name_index.last.rebuilt, b.name_index.last.added) == (False, 1)
        assert ids(a.find("gina_SHARE_1.jpg")) == [uid]
        assert a.name_index.last.added == 0
    sim.close()


def test_damaged_index_file_is_rebuilt(tmp_path, cache_dir):
    lib = copy_library(COMPARE, tmp_path)
    index_path(lib, cache_dir).write_bytes(b"this is not a database" * 100)
    with indexed(lib, cache_dir) as db:
        assert len(db.find("IMG_1994.JPG")) == 2
        assert db.name_index.last.rebuilt


def test_unusable_cache_folder_falls_back_to_the_scan(tmp_path, caplog):
    lib = copy_library(COMPARE, tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING), indexed(lib, blocker) as db:
        assert len(db.find("IMG_1994.JPG")) == 2
        assert db.name_index is None
    assert "scanning instead" in caplog.text


def test_the_library_is_never_written(tmp_path, cache_dir):
    lib = copy_library(COMPARE, tmp_path)
    make_read_only(lib)

    def digest() -> dict:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((lib / "database").iterdir())
        }

    before = digest()
    with indexed(lib, cache_dir) as db:
        assert db.mode is None or db.mode == "copy"
        assert len(db.find("IMG_1994.JPG")) == 2
        assert db.mode == "copy"
    assert digest() == before
    assert [p.name for p in cache_dir.iterdir()] == [index_path(lib, cache_dir).name]
