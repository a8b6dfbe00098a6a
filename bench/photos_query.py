"""Benchmark: moonshot's narrow Photos.sqlite queries against osxphotos' full load.

Builds a library of N assets (default 50,000) from a real fixture library: the fixture's
database is copied to a temporary folder and its asset rows (ZASSET or ZGENERICASSET,
ZADDITIONALASSETATTRIBUTES, ZCLOUDMASTER) are multiplied with SQL. It then times, in one
run, `find` and `newest` (moonshot.photos.photos_sqlite), `find` without a date bound by scan (the
baseline) and through the name index (moonshot.photos.name_index: its build, a call as
`moonshot photos find` makes it, a call after an import), and osxphotos'
`PhotosDB(dbfile=...)` load of the same file. With --cold (root on Linux) the scan and the
index are also timed right after the OS page cache is dropped. Prints the figures, or JSON
with --json. Never touches the fixture.

    python bench/photos_query.py [--assets 50000] [--library Test-26.1.photoslibrary] [--cold] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moonshot.photos.name_index import NameIndex  # noqa: E402
from moonshot.photos.photos_sqlite import PhotosDB, unix_to_core_data  # noqa: E402
from tests.photos.helpers import fixtures_dir  # noqa: E402

NEW_UUID = (
    "upper(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' "
    "|| hex(randomblob(2)) || '-' || hex(randomblob(6)))"
)


def asset_table(c: sqlite3.Connection) -> str:
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return "ZASSET" if "ZASSET" in tables else "ZGENERICASSET"


def copy_rows(
    c: sqlite3.Connection, table: str, subs: dict, source: str, params: tuple = ()
) -> None:
    """INSERT the rows `source` (a FROM ... WHERE clause) selects from `table` back into it,
    each column as is, or as the SQL expression `subs` gives for it."""
    names = [r[1] for r in c.execute(f"PRAGMA table_info({table})")]
    exprs = [subs.get(n, n) for n in names]
    c.execute(
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(exprs)} {source}", params
    )


def build_library(fixture: Path, target: Path, assets: int) -> tuple[str, int]:
    """A copy of `fixture` with about `assets` assets (whole copies of the fixture's
    rows); returns (the original file name of an old copy, asset count)."""
    db_dir = target / "database"
    db_dir.mkdir(parents=True)
    # Read the fixture through a temporary copy so its files (and -shm) stay untouched.
    tmp = Path(tempfile.mkdtemp(prefix="moonshot-bench-src-"))
    for suffix in ("", "-wal", "-shm"):
        f = fixture / "database" / f"Photos.sqlite{suffix}"
        if f.exists():
            shutil.copyfile(f, tmp / f.name)
    src = sqlite3.connect(tmp / "Photos.sqlite")
    dst = sqlite3.connect(db_dir / "Photos.sqlite", isolation_level=None)
    src.backup(dst)
    src.close()
    shutil.rmtree(tmp, ignore_errors=True)

    c = dst
    c.execute("PRAGMA journal_mode = WAL")
    asset = asset_table(c)
    # Core Data triggers call functions that exist only inside Photos; this copy is ours.
    for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        c.execute(f'DROP TRIGGER "{name}"')
    (base,) = c.execute(f"SELECT count(*) FROM {asset}").fetchone()
    copies = max(0, -(-(assets - base) // base))  # ceil
    off = 1 + max(
        c.execute(f"SELECT max(Z_PK) FROM {t}").fetchone()[0] or 0
        for t in (asset, "ZADDITIONALASSETATTRIBUTES", "ZCLOUDMASTER")
    )

    c.execute("BEGIN")
    c.execute("CREATE TEMP TABLE k (k INTEGER PRIMARY KEY)")
    c.executemany("INSERT INTO k VALUES (?)", [(i,) for i in range(1, copies + 1)])
    override = {
        asset: {
            "Z_PK": "Z_PK + k * {off}",
            "ZUUID": NEW_UUID,
            # Older copies: the fixture's own assets stay the newest.
            "ZADDEDDATE": "ZADDEDDATE - k * 3600",
            "ZADDITIONALATTRIBUTES": "ZADDITIONALATTRIBUTES + k * {off}",
            "ZMASTER": "ZMASTER + k * {off}",
        },
        "ZADDITIONALASSETATTRIBUTES": {
            "Z_PK": "Z_PK + k * {off}",
            "ZASSET": "ZASSET + k * {off}",
            "ZORIGINALFILENAME": "'bench' || k || '_' || ZORIGINALFILENAME",
        },
        "ZCLOUDMASTER": {"Z_PK": "Z_PK + k * {off}", "ZCLOUDMASTERGUID": NEW_UUID},
    }
    for table, subs in override.items():
        subs = {col: expr.format(off=off) for col, expr in subs.items()}
        copy_rows(c, table, subs, f"FROM {table}, k WHERE {table}.Z_PK < {off}")
    c.execute("COMMIT")
    (count,) = c.execute(f"SELECT count(*) FROM {asset}").fetchone()
    (name,) = c.execute(
        "SELECT ZORIGINALFILENAME FROM ZADDITIONALASSETATTRIBUTES WHERE ZORIGINALFILENAME LIKE 'bench%'"
        " ORDER BY Z_PK DESC LIMIT 1"
    ).fetchone()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return name, count


def import_one(lib: Path, name: str) -> None:
    """What Photos writes for one import, roughly: a copy of the newest asset's rows with
    new keys (past Z_MAX, as Core Data hands them out), a new UUID, the name, now."""
    c = sqlite3.connect(lib / "database" / "Photos.sqlite", isolation_level=None)
    asset = asset_table(c)
    c.execute("BEGIN IMMEDIATE")
    (src, aa_src) = c.execute(
        f"SELECT Z_PK, ZADDITIONALATTRIBUTES FROM {asset} ORDER BY ZADDEDDATE DESC LIMIT 1"
    ).fetchone()
    pk = 1 + c.execute(f"SELECT max(Z_PK) FROM {asset}").fetchone()[0]
    aa = 1 + c.execute("SELECT max(Z_PK) FROM ZADDITIONALASSETATTRIBUTES").fetchone()[0]
    added = unix_to_core_data(time.time())
    copy_rows(
        c,
        asset,
        {
            "Z_PK": str(pk),
            "ZUUID": NEW_UUID,
            "ZADDEDDATE": repr(added),
            "ZADDITIONALATTRIBUTES": str(aa),
        },
        f"FROM {asset} WHERE Z_PK = {src}",
    )
    copy_rows(
        c,
        "ZADDITIONALASSETATTRIBUTES",
        {"Z_PK": str(aa), "ZASSET": str(pk), "ZORIGINALFILENAME": "?"},
        f"FROM ZADDITIONALASSETATTRIBUTES WHERE Z_PK = {aa_src}",
        (name,),
    )
    c.execute("COMMIT")
    c.close()


def drop_page_cache() -> bool:
    """Empty the OS page cache (Linux, root), so the next read comes from the disk."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(fn, repeat: int) -> dict:
    runs = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - t) * 1000)
    return {
        "first_ms": round(runs[0], 2),
        "median_ms": round(statistics.median(runs), 2),
        "max_ms": round(max(runs), 2),
        "result": result,
    }


def maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=50_000)
    ap.add_argument("--library", default="Test-26.1.photoslibrary", help="fixture library to grow")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-osxphotos", action="store_true", help="skip the osxphotos full load")
    ap.add_argument("--cold", action="store_true", help="also time from a dropped page cache")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="moonshot-bench-"))
    try:
        lib = work / "Bench.photoslibrary"
        t = time.perf_counter()
        name, count = build_library(fixtures_dir() / args.library, lib, args.assets)
        build_s = time.perf_counter() - t
        size_mb = (lib / "database" / "Photos.sqlite").stat().st_size / 1e6
        out: dict = {
            "fixture": args.library,
            "assets": count,
            "db_mb": round(size_mb, 1),
            "build_s": round(build_s, 1),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
        }

        db = PhotosDB(lib)
        t = time.perf_counter()
        db.connect()
        out["moonshot_open_ms"] = round((time.perf_counter() - t) * 1000, 2)
        newest = timed(lambda: db.newest().original_filename, args.repeat)
        latest = db.newest()
        # How the service asks: the coin's file name, added after its import started.
        find_after = timed(
            lambda: [
                a.id for a in db.find(latest.original_filename, added_after=latest.date_added - 60)
            ],
            args.repeat,
        )
        # `moonshot photos find NAME` without the name index (--no-index): a scan of the
        # attributes table. The baseline of the index figures below.
        find = timed(lambda: [a.id for a in db.find(name)], args.repeat)
        db.close()
        out["moonshot_find"] = {k: v for k, v in find.items() if k != "result"}
        out["moonshot_find_added_after"] = {k: v for k, v in find_after.items() if k != "result"}
        out["moonshot_newest"] = {k: v for k, v in newest.items() if k != "result"}
        out["newest"] = newest["result"]
        out["found"] = {"no_bound": len(find["result"]), "added_after": len(find_after["result"])}

        # Through the name index: the first call builds it; each `moonshot photos find`
        # then opens both files and refreshes the index before its lookup.
        index_file = work / "names.sqlite"

        def indexed() -> PhotosDB:
            return PhotosDB(lib, name_index=NameIndex(index_file))

        db = indexed()
        db.connect()
        t = time.perf_counter()
        built = [a.id for a in db.find(name)]
        out["index_build_ms"] = round((time.perf_counter() - t) * 1000, 2)
        out["index_kb"] = round(index_file.stat().st_size / 1024)
        again = timed(lambda: [a.id for a in db.find(name)], args.repeat)
        db.close()

        def command() -> list[str]:
            with indexed() as fresh:
                return [a.id for a in fresh.find(name)]

        per_command = timed(command, args.repeat)
        out["index_find"] = {k: v for k, v in again.items() if k != "result"}
        out["index_find_per_command"] = {k: v for k, v in per_command.items() if k != "result"}
        out["found"]["index"] = len(again["result"])
        if built != find["result"] or again["result"] != find["result"]:
            raise SystemExit("the name index answered differently from the scan")

        if args.cold:

            def scan() -> list[str]:
                with PhotosDB(lib) as fresh:
                    return [a.id for a in fresh.find(name)]

            for key, fn in (("cold_scan_find_ms", scan), ("cold_index_find_ms", command)):
                runs = []
                for _ in range(3):
                    if not drop_page_cache():
                        raise SystemExit("--cold needs root on Linux (/proc/sys/vm/drop_caches)")
                    t = time.perf_counter()
                    fn()
                    runs.append((time.perf_counter() - t) * 1000)
                out[key] = round(statistics.median(runs), 1)

        # The copy path (read-only files, or Photos holding the library): one-time cost.
        ro = PhotosDB(lib)
        ro._read_only_media = lambda: True  # take the copy path on purpose
        t = time.perf_counter()
        ro.newest()
        out["moonshot_copy_open_and_newest_ms"] = round((time.perf_counter() - t) * 1000, 2)
        ro.close()
        out["moonshot_maxrss_mb"] = round(maxrss_mb(), 1)

        if not args.no_osxphotos:
            import osxphotos

            rss0 = maxrss_mb()
            t = time.perf_counter()
            full = osxphotos.PhotosDB(dbfile=str(lib / "database" / "Photos.sqlite"))
            out["osxphotos_load_s"] = round(time.perf_counter() - t, 2)
            out["osxphotos_version"] = osxphotos.__version__
            t = time.perf_counter()
            photos = full.photos()
            out["osxphotos_photos"] = len(photos)
            out["osxphotos_newest"] = max(photos, key=lambda p: p.date_added).original_filename
            out["osxphotos_find_after_load_ms"] = round(
                timed(lambda: [p.uuid for p in full.photos() if p.original_filename == name], 1)[
                    "first_ms"
                ],
                1,
            )
            out["osxphotos_query_s"] = round(time.perf_counter() - t, 2)
            out["osxphotos_maxrss_growth_mb"] = round(maxrss_mb() - rss0, 1)

        # Last, as it changes the library: one import, then a find through the index.
        import_one(lib, "bench_new_import.jpg")
        with indexed() as fresh:
            t = time.perf_counter()
            out["found"]["after_import"] = len(fresh.find("bench_new_import.jpg"))
            out["index_find_after_import_ms"] = round((time.perf_counter() - t) * 1000, 2)
            out["index_after_import"] = vars(fresh.name_index.last)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"library: {out['assets']} assets ({out['db_mb']} MB) grown from {out['fixture']} in {out['build_s']} s"
    )
    print(f"moonshot open (schema detection):      {out['moonshot_open_ms']:8.2f} ms")
    for key, label in (
        ("moonshot_newest", "newest()"),
        ("moonshot_find_added_after", "find(name, added_after)"),
        ("moonshot_find", "find(name), scan (baseline)"),
        ("index_find", "find(name), name index"),
        ("index_find_per_command", "  same, opened per command"),
    ):
        f = out[key]
        print(
            f"moonshot {label:<28} median {f['median_ms']:7.2f} ms  max {f['max_ms']:7.2f} ms  first {f['first_ms']:7.2f} ms"
        )
    print(
        f"name index: built in {out['index_build_ms']:.1f} ms ({out['index_kb']} KB), "
        f"first find after an import {out['index_find_after_import_ms']:.2f} ms"
    )
    if "cold_scan_find_ms" in out:
        print(
            f"from a dropped page cache: scan {out['cold_scan_find_ms']:.1f} ms, "
            f"name index {out['cold_index_find_ms']:.1f} ms (median of 3)"
        )
    print(
        f"moonshot copy path (copy + newest):    {out['moonshot_copy_open_and_newest_ms']:8.2f} ms (once per change)"
    )
    print(f"moonshot peak RSS:                     {out['moonshot_maxrss_mb']:8.1f} MB")
    if "osxphotos_load_s" in out:
        print(
            f"osxphotos {out['osxphotos_version']} PhotosDB load:      {out['osxphotos_load_s']:8.2f} s "
            f"(+{out['osxphotos_maxrss_growth_mb']} MB peak RSS), {out['osxphotos_photos']} photos"
        )
        print(f"newest: moonshot {out['newest']!r}, osxphotos {out['osxphotos_newest']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
