"""The home remembers (invariant 7): moonshot.db is the memory of a home, and no state
is started afresh over evidence of an earlier life. A home id is made with the database
and written beside the evidence it makes (a marker in spool/ and in the folder library,
which also counts the database's commits that left evidence outside it). `open_store` is
the one way the service and the commands open a home's database; `recover` is the
deliberate way back after a loss. Never decides a coin's fate on its own: what the
evidence cannot settle goes to a person (`needs_review`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from moonshot import machine as m
from moonshot.config import Config
from moonshot.errors import HomeError, HomeTrouble, MoonshotError
from moonshot.fsutil import read_jsonl, write_atomic
from moonshot.naming import parse_name
from moonshot.ports import IncomingCoin
from moonshot.store import HOME_TROUBLESHOOTING, Store, check_version, explain

MARKER = ".moonshot-home"
SAVED = "moonshot.db.saved-"  # a copy the service made of a database deleted under it
# Written by the service when moonshot.db was replaced under it: the replacing file (by
# device and inode) is refused until a person puts a database back or recovers.
REPLACED = ".moonshot-replaced"
RECOVERED = "recovered"  # the source of coins rebuilt from evidence by `moonshot recover`
STAGES = ("sync", "launch")


@dataclass(frozen=True)
class Marker:
    home_id: str | None  # None: the marker exists but cannot be read (a power cut)
    evidence_seq: int = 0


def read_marker(folder: Path) -> Marker | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return Marker(str(data["home_id"]), int(data.get("evidence_seq", 0)))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Marker(None)


def write_marker(folder: Path, marker: Marker, durable: bool) -> None:
    data = json.dumps({"home_id": marker.home_id, "evidence_seq": marker.evidence_seq}).encode()
    try:
        write_atomic(folder / MARKER, data, durable)
    except OSError as exc:
        raise HomeTrouble(f"cannot write {folder / MARKER}: {exc.strerror}") from None


def outside_marker(home_id: str) -> Path:
    """The home's count kept outside the home, in the user's state folder
    (~/Library/Application Support/moonshot/homes on macOS, $XDG_STATE_HOME/moonshot/homes
    or ~/.local/state/moonshot/homes elsewhere): restoring the home folder, or its
    moonshot.db with its spool/, from a backup brings back a spool marker that matches the
    old database; this file is not in that backup, so the older database is still noticed."""
    import platformdirs

    return Path(platformdirs.user_state_dir("moonshot", appauthor=False)) / "homes" / home_id


def read_outside(home_id: str | None) -> Marker | None:
    return read_marker(outside_marker(home_id)) if home_id else None


def write_outside(marker: Marker, durable: bool) -> None:
    """Raise the outside count to `marker`'s (never lower it: another copy of this home,
    or the other stage's agent, may have counted further)."""
    assert marker.home_id
    folder = outside_marker(marker.home_id)
    now = read_marker(folder)
    if (
        now is not None
        and now.home_id == marker.home_id
        and now.evidence_seq >= marker.evidence_seq
    ):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeTrouble(f"cannot write {folder / MARKER}: {exc.strerror}") from None
    write_marker(folder, marker, durable)


def marker_folders(cfg: Config) -> list[Path]:
    """Where the home writes its marker: spool/ always, the folder library when used."""
    return [cfg.spool_dir, *([cfg.library_path] if cfg.photos_kind == "folder" else [])]


# -- evidence of an earlier life -------------------------------------------------------------
def coin_files(cfg: Config) -> list[Path]:
    """Canonical coin files in spool/ and spool/done/."""
    out = []
    for folder in (cfg.spool_dir, cfg.done_dir):
        with contextlib.suppress(OSError):
            out += [
                Path(e.path)
                for e in os.scandir(folder)
                if parse_name(e.name) is not None and e.is_file()
            ]
    return sorted(out)


def ledger_lines(cfg: Config) -> list[dict[str, Any]]:
    """The ledger launcher's launches (launches.jsonl), each line that parses."""
    try:
        return read_jsonl(cfg.ledger_path)
    except OSError:
        return []


def _library_assets(cfg: Config) -> int:
    if cfg.photos_kind != "folder":
        return 0  # the macOS Photos library holds everyone's photos: no evidence of ours
    db = cfg.library_path / "library.db"
    if not db.is_file():
        return 0
    try:
        return _read_one(db, "SELECT count(*) FROM assets")
    except sqlite3.Error:
        return 1  # a library we cannot read is still a library that was used


def _read_all(db: Path, sql: str) -> list[tuple]:
    """The rows of a query on a SQLite file opened read-only (a missing file is not created)."""
    conn = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _read_one(db: Path, sql: str) -> Any:
    return _read_all(db, sql)[0][0]


def evidence(cfg: Config) -> list[str]:
    """What in this home shows that a database lived here: empty for a fresh home."""
    found = [f"{folder / MARKER}" for folder in marker_folders(cfg) if (folder / MARKER).exists()]
    files = coin_files(cfg)
    if files:
        found.append(f"{len(files)} coin file(s) in spool/ ({files[0].name}, ...)")
    wal = Path(str(cfg.db_path) + "-wal")
    if wal.is_file() and wal.stat().st_size:
        found.append(f"{wal.name} (the database's unsaved pages)")
    assets = _library_assets(cfg)
    if assets:
        found.append(f"{assets} photo(s) in the folder library {cfg.library_path}")
    launches = ledger_lines(cfg)
    if launches:
        found.append(f"{len(launches)} launch(es) in {cfg.ledger_path.name}")
    return found


def is_fresh(cfg: Config) -> bool:
    """No database and no evidence: a home that has not started yet."""
    return not cfg.db_path.exists() and not evidence(cfg)


def saved_copies(cfg: Config) -> list[Path]:
    with contextlib.suppress(OSError):
        return sorted(cfg.home.glob(SAVED + "*"))
    return []


def forget_deleted(cfg: Config) -> None:
    """After the service let go of a database deleted under it: its -wal and -shm are
    left at the path and belong to no file; a database put back there must not read them."""
    if cfg.db_path.exists():
        return
    for suffix in ("-wal", "-shm"):
        Path(str(cfg.db_path) + suffix).unlink(missing_ok=True)


def _peek_version(path: Path) -> int | None:
    """None: no database file; 0: an empty one (or a new one); else its schema version.
    Reads only: a missing file is not created."""
    if not path.exists():
        return None
    if path.is_dir():
        raise HomeError(f"{path} is a folder, not a database; move it away")
    try:
        return _read_one(path, "PRAGMA user_version")
    except sqlite3.Error as exc:
        raise explain(exc, path) from None


# -- run locks: one process per stage and home --------------------------------------------------
def lock_stages(cfg: Config, stages: tuple[str, ...] | list[str], what: str) -> list[int]:
    """flock `.run-<stage>.lock` for each stage (released by the kernel when the process
    ends, even by kill -9); MoonshotError naming the holder when another process has one."""
    fds: list[int] = []
    for stage in stages:
        path = cfg.home / f".run-{stage}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            for held in fds:
                os.close(held)
            raise MoonshotError(
                f"another moonshot run (pid {holder}) already runs the {stage} stage in"
                f" {cfg.home}; stop it first (moonshot launchd status) {what}"
            ) from None
        with contextlib.suppress(OSError):  # the pid is for people; a full disk may refuse it
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        fds.append(fd)
    return fds


def running_pid(cfg: Config) -> str | None:
    """The pid of a `moonshot run` holding a stage lock of this home, if one does."""
    for stage in STAGES:
        path = cfg.home / f".run-{stage}.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 32).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
    return None


# -- opening a home's database -------------------------------------------------------------------
def _lost(cfg: Config, how: str, found: list[str]) -> HomeError:
    saved = saved_copies(cfg)
    back = (
        f"move the copy the service saved back (mv {saved[-1].name} moonshot.db)"
        if saved
        else "put it back from a backup"
    )
    pid = running_pid(cfg)
    running = f"; moonshot run (pid {pid}) still runs here: stop it first" if pid else ""
    return HomeError(
        f"{cfg.db_path} is {how}, but this home has an earlier life ({'; '.join(found)}):"
        f" starting afresh could launch its coins again{running}. {back[0].upper()}{back[1:]}, or run"
        f" `moonshot recover` ({HOME_TROUBLESHOOTING})"
    )


def note_replaced(cfg: Config, saved: str | None) -> None:
    """The service saw moonshot.db replaced under it (its state saved as `saved`)."""
    from moonshot.store import file_id

    now = file_id(cfg.db_path)
    data = {"file_id": list(now) if now else None, "saved": saved, "at": time.time()}
    with contextlib.suppress(OSError):
        write_atomic(cfg.home / REPLACED, json.dumps(data).encode(), True)


def _check_replaced(cfg: Config, tidy: bool) -> None:
    """Refuse the file that replaced moonshot.db under the running service (a mix of a
    backup and the service's last writes, `mv` or `cp` over it): only another file put
    there by a person (the saved copy, a backup) or `moonshot recover` ends it."""
    from moonshot.store import file_id

    try:
        data = json.loads((cfg.home / REPLACED).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        data = {}
    recorded = data.get("file_id") if isinstance(data, dict) else None
    now = file_id(cfg.db_path)
    if now is None:
        return  # missing: refused by the home's evidence
    if not isinstance(recorded, list) or tuple(recorded) != now:
        if tidy:  # another file put there by a person: the usual checks judge it
            (cfg.home / REPLACED).unlink(missing_ok=True)
        return
    saved = data.get("saved") if isinstance(data, dict) else None
    back = f"mv {saved} moonshot.db" if saved else "put the home's own database back"
    raise HomeError(
        f"{cfg.db_path} is the file that replaced the home's database under the running"
        f" service: it may mix a backup with the service's last writes. With the service"
        f" stopped, {back}, or run `moonshot recover` ({HOME_TROUBLESHOOTING})"
    )


def _before_open(cfg: Config, create: bool) -> int | None:
    """The database's schema version, after the checks open_store makes before opening
    it; reads only (but for the replaced note of a file no longer there, with `create`)."""
    _check_replaced(cfg, tidy=create)
    version = _peek_version(cfg.db_path)
    if not version:
        found = evidence(cfg)
        if found:
            raise _lost(cfg, "missing" if version is None else "empty", found)
        if not create:
            where = "" if cfg.home.is_dir() else " (no such folder)"
            raise HomeError(
                f"no moonshot home at {cfg.home}{where}: nothing has run here yet;"
                " `moonshot run` or `moonshot add` starts one (or give --home)"
            )
    return version


def check_readonly(cfg: Config) -> int:
    """What open_store(cfg, create=False) checks, for a reader that must never write
    (`moonshot dashboard`): no home, a lost or empty database, a folder, not SQLite, a
    newer schema, another home's or an older database are each its one line. Returns
    the schema version; migrates nothing, writes no marker."""
    version = check_version(cfg.db_path, _before_open(cfg, create=False) or 0)
    try:
        meta = dict(_read_all(cfg.db_path, "SELECT key, value FROM meta"))
    except sqlite3.Error as exc:  # no meta table: not a moonshot database
        raise explain(exc, cfg.db_path) from None
    markers = {folder: read_marker(folder) for folder in marker_folders(cfg)}
    _check_markers(cfg, markers, meta.get("home_id"), int(meta.get("evidence_seq") or 0))
    return version


def open_store(cfg: Config, *, create: bool = True) -> Store:
    """The home's database, checked against the home's evidence (invariant 7). `create`:
    a fresh home (no database, no evidence) is started; without it, a home that has no
    database yet is an error (read-only commands never create a home)."""
    if not _before_open(cfg, create):
        cfg.ensure_dirs()
    store = Store(cfg.db_path)
    try:
        attach(cfg, store)
    except BaseException:
        store.close()
        raise
    return store


def _not_ours(cfg: Config, db_id: str | None, where: Path, marker_id: str) -> HomeError:
    mine = f"home {db_id[:8]}" if db_id else "no home (made before homes had an id)"
    return HomeError(
        f"{cfg.db_path} is not this home's database: it belongs to {mine}, {where / MARKER}"
        f" to home {marker_id[:8]}. Put this home's own moonshot.db back, or move this one"
        f" away and run `moonshot recover` ({HOME_TROUBLESHOOTING})"
    )


def _check_markers(
    cfg: Config, markers: dict[Path, Marker | None], home_id: str | None, seq: int
) -> None:
    """The database (its home id and evidence count) against the home's markers."""
    for folder, marker in markers.items():
        if marker and marker.home_id and marker.home_id != home_id:
            raise _not_ours(cfg, home_id, folder, marker.home_id)
    spool = markers.get(cfg.spool_dir)
    if spool is None and seq > 0:
        raise HomeError(
            f"{cfg.db_path} has made {seq} spool files and launches, but {cfg.spool_dir} has no"
            f" {MARKER}: was the database copied or moved here without its spool/? Put the"
            f" home's spool/ back, or run `moonshot recover` ({HOME_TROUBLESHOOTING})"
        )
    if spool and spool.evidence_seq > seq:
        raise _older(cfg, f"spool/{MARKER}", spool.evidence_seq, seq)
    outside = read_outside(home_id)
    if outside and outside.home_id == home_id and outside.evidence_seq > seq:
        raise _older(cfg, str(outside_marker(home_id) / MARKER), outside.evidence_seq, seq)


def _older(cfg: Config, where: str, counted: int, seq: int) -> HomeError:
    return HomeError(
        f"{cfg.db_path} is older than this home: {where} counts {counted} spool files,"
        f" launches and withdrawals, the database {seq} (restored from an older backup, with"
        " or without its spool/?). Coins may have moved on since, even launched: run"
        f" `moonshot recover`, which has a person settle each one ({HOME_TROUBLESHOOTING})"
    )


def attach(cfg: Config, store: Store) -> str:
    """Check the open database against the home's markers, give it a home id if it has
    none (a new home, or one from before homes had an id), refresh the markers and have
    the store keep the spool marker's count. Returns the home id."""
    # The markers first, then the database: the store writes the marker after each
    # commit, so a marker read first is never ahead of the database read after it.
    markers = {folder: read_marker(folder) for folder in marker_folders(cfg)}
    home_id, seq = store.identity()
    _check_markers(cfg, markers, home_id, seq)
    if home_id is None:
        home_id = store.claim_home_id(uuid.uuid4().hex)

    def keep(new_seq: int, durable: bool) -> None:
        now = read_marker(cfg.spool_dir)
        try:
            # (A later count already there: the other stage's agent wrote it, --split.)
            if now is None or now.home_id != home_id or now.evidence_seq < new_seq:
                write_marker(cfg.spool_dir, Marker(home_id, new_seq), durable)
            write_outside(Marker(home_id, new_seq), durable)
        except HomeTrouble:
            if durable:
                raise  # no launch without it
            # A spool file's count may lag (the next one writes it): a lagging marker is
            # only a weaker check, never a false refusal.

    for folder, marker in markers.items():
        want = Marker(home_id, seq if folder == cfg.spool_dir else 0)
        stale = marker is None or marker.home_id is None
        if stale or (folder == cfg.spool_dir and marker != want):
            # Best effort: a marker we cannot write now (a read-only command on a full
            # disk) is written by the next one; the database stays the authority. The
            # library's folder is the library's to create (health tells "missing" by it).
            with contextlib.suppress(OSError, MoonshotError):
                if folder == cfg.spool_dir:
                    folder.mkdir(parents=True, exist_ok=True)
                if folder.is_dir():
                    write_marker(folder, want, durable=True)
    with contextlib.suppress(OSError, MoonshotError):  # best effort, as above
        write_outside(Marker(home_id, seq), durable=True)
    _claim_place(cfg, home_id)
    store.seen_seq = max(store.seen_seq, seq)
    store.on_evidence = keep
    store.before_launch = lambda db_id, db_seq: check_current(cfg, home_id, lambda: (db_id, db_seq))
    return home_id


def _claim_place(cfg: Config, home_id: str) -> None:
    """One folder per home id: the state folder remembers where the home lives. A copy of
    a home (`cp -a home home2`) has the same id and the same coins; run beside the
    original, both would launch them. A home whose recorded place still holds a home of
    this id is a copy, refused; a home that moved (nothing left at its old place) takes
    its new place."""
    here = str(cfg.home.resolve())
    place = outside_marker(home_id) / "place"
    try:
        there = place.read_text(encoding="utf-8").strip()
    except OSError:
        there = ""
    if there and there != here:
        other = read_marker(Path(there) / "spool")
        if other is not None and other.home_id == home_id:
            raise HomeError(
                f"{cfg.home} is a copy of the home at {there} (the same home id"
                f" {home_id[:8]}, the same coins): run beside it, both would launch them."
                " Keep one: move the other away; a copy cannot become a home of its own"
                f" ({HOME_TROUBLESHOOTING})"
            )
    if there != here:
        with contextlib.suppress(OSError, MoonshotError):
            place.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(place, here.encode(), True)


def check_current(cfg: Config, home_id: str | None, identity) -> None:
    """The open database is still not behind the home's markers (HomeError otherwise):
    before every launch and every second while running, because a database restored in
    place (`sqlite3 moonshot.db ".restore backup.db"`, `cp backup.db moonshot.db`) keeps
    its file and only its count tells. `identity()` gives the database's (home id, count);
    it is asked after the markers are read, as in attach (a marker is written after its
    commit, so one read first is never ahead of the database read after it)."""
    spool = read_marker(cfg.spool_dir)
    outside = read_outside(home_id)
    db_id, db_seq = identity()
    for where, marker in (
        (f"spool/{MARKER}", spool),
        (str(outside_marker(home_id or "-") / MARKER), outside),
    ):
        if marker and marker.home_id == db_id and marker.evidence_seq > db_seq:
            older = _older(cfg, where, marker.evidence_seq, db_seq)
            raise HomeError(f"while moonshot run used it, {older}")


# -- the deliberate way back ------------------------------------------------------------------
def recover(cfg: Config) -> dict[str, Any]:
    """Rebuild or reconcile moonshot.db with the home's evidence so that nothing evidenced
    can launch again without a person: every coin the database has not settled goes to
    needs_review (it may have moved on, even launched, after the copy was made), and every
    coin file or ledger launch the database does not know becomes a coin of source
    `recovered` in needs_review. Never while a service runs; never over another home's
    database."""
    cfg.ensure_dirs()
    locks = lock_stages(cfg, STAGES, "before `moonshot recover`")
    try:
        return _recover(cfg)
    finally:
        for fd in locks:
            os.close(fd)


def _recover(cfg: Config) -> dict[str, Any]:
    version = _peek_version(cfg.db_path)
    spool = read_marker(cfg.spool_dir)
    marker_id = spool.home_id if spool else None
    fresh = not version
    store = Store(cfg.db_path)
    try:
        db_id, seq = store.identity()
        if marker_id and (db_id or not fresh) and db_id != marker_id:
            raise _not_ours(cfg, db_id, cfg.spool_dir, marker_id)
        outside = read_outside(marker_id or db_id)
        marker_seq = max(spool.evidence_seq if spool else 0, outside.evidence_seq if outside else 0)
        replaced = (cfg.home / REPLACED).exists()
        if not fresh and marker_seq <= seq and (spool is not None or seq == 0) and not replaced:
            attach(cfg, store)
            return {"home_id": db_id, "reviewed": [], "rebuilt": [], "nothing": True}
        home_id = store.claim_home_id(marker_id or db_id or uuid.uuid4().hex)
        found = _evidence_files(cfg)
        owners = {} if fresh else _join_known(cfg, store, found)
        reviewed = [] if fresh else _review_unsettled(store, _ledger_notes(cfg, store, owners))
        rebuilt = _rebuild_unknown(cfg, store, found, owners)
        store.set_identity(home_id, max(seq, marker_seq))
        attach(cfg, store)
        (cfg.home / REPLACED).unlink(missing_ok=True)  # settled: each coin is a person's now
        return {"home_id": home_id, "reviewed": reviewed, "rebuilt": rebuilt, "nothing": False}
    finally:
        store.close()


def _evidence_files(cfg: Config) -> dict[str, str]:
    """Every coin file name the home shows (spool/, spool/done/, the ledger), with where."""
    found: dict[str, str] = {}
    for path in coin_files(cfg):
        where = "spool/done/ (launched, or moved on)" if path.parent != cfg.spool_dir else "spool/"
        found.setdefault(path.name, where)
    for entry in ledger_lines(cfg):
        name = entry.get("image_filename")
        if isinstance(name, str) and parse_name(name) is not None:
            found.setdefault(name, f"{cfg.ledger_path.name} only")
    for name in _library_names(cfg):  # imported after the copy was made: still a coin
        if parse_name(name) is not None:
            found.setdefault(name, "the folder library only")
    return found


def _library_names(cfg: Config) -> list[str]:
    """The original file names of the folder library's photos (the macOS library holds
    everyone's photos: it is asked about a coin's own name only, by the pipeline)."""
    db = cfg.library_path / "library.db"
    if cfg.photos_kind != "folder" or not db.is_file():
        return []
    try:
        return [r[0] for r in _read_all(db, "SELECT original_filename FROM assets")]
    except sqlite3.Error:
        return []


def _join_known(cfg: Config, store: Store, found: dict[str, str]) -> dict[str, int]:
    """File name -> the coin of this database it belongs to: its owner row, else the
    coin its ledger line names (id and ticker), else, among the coins of its user and
    ticker that have no file yet (the copy was made before their downloads), the one in
    the same place in the order (coin ids against the files' times) when there are as
    many such coins as such files. A file found in spool/ is given to its coin; one in
    spool/done/ or only in the ledger is noted on it."""
    owners = {name: c.id for name in found if (c := store.find_by_filename(name)) is not None}
    by_line = {e.get("image_filename"): e for e in ledger_lines(cfg)}
    loose: dict[tuple[str, str], list[str]] = {}
    for name in sorted(found, key=lambda n: (parse_name(n).unix_ts, n)):  # type: ignore[union-attr]
        if name in owners:
            continue
        parsed = parse_name(name)
        assert parsed is not None
        line = by_line.get(name) or {}
        coin = store.get(line["coin_id"]) if isinstance(line.get("coin_id"), int) else None
        if coin is not None and coin.ticker == parsed.ticker and coin.id not in owners.values():
            owners[name] = coin.id
        else:
            loose.setdefault((parsed.twitter_user.casefold(), parsed.ticker), []).append(name)
    for (user, ticker), names in loose.items():
        taken = set(owners.values())
        coins = [c for c in store.without_file(user, ticker) if c.id not in taken]
        if len(coins) != len(names):
            continue  # not to be told apart: each file is rebuilt for a person to settle
        for name, coin in zip(names, coins, strict=True):
            owners[name] = coin.id
    for name, coin_id in owners.items():
        coin = store.get(coin_id)
        if found.get(name) == "spool/" and coin is not None and coin.image_filename is None:
            with contextlib.suppress(MoonshotError):
                store.give_file(coin.id, name)
    return owners


def _ledger_notes(cfg: Config, store: Store, owners: dict[str, int]) -> dict[int, str]:
    """coin id -> what the ledger says of it: a launch this database did not record."""
    notes: dict[int, str] = {}
    for entry in ledger_lines(cfg):
        name = entry.get("image_filename")
        coin_id = owners.get(name) if isinstance(name, str) else None
        if coin_id is None:
            continue
        notes[coin_id] = f"; {cfg.ledger_path.name} records its launch{_when(entry.get('at'))}"
    return notes


def _when(at: Any) -> str:
    if not isinstance(at, int | float) or isinstance(at, bool):
        return ""
    return f" at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(at))} UTC"


def _review_unsettled(store: Store, notes: dict[int, str]) -> list[dict[str, Any]]:
    out = []
    for coin in store.coins_in([*m.RETRYABLE, m.LAUNCHING, m.FAILED], order="id"):
        reason = (
            "moonshot recover: moonshot.db was restored from an older copy (or came without its"
            " spool/), and this coin may have moved on since, even launched"
            f"{notes.get(coin.id, '')}; check the app, then moonshot resolve"
            f" {coin.id} --launched | --not-launched | --withdraw"
        )
        trigger = "review" if coin.state == m.LAUNCHING else "recover"
        store.fire(coin, trigger, detail={"reason": reason}, last_error=reason)
        out.append({"id": coin.id, "ticker": coin.ticker, "was": coin.state})
    return out


def _rebuild_unknown(
    cfg: Config, store: Store, found: dict[str, str], owners: dict[str, int]
) -> list[dict[str, Any]]:
    """A coin of source `recovered` in needs_review for each file or ledger launch that
    belongs to no coin of this database."""
    launches = {e.get("image_filename"): e for e in ledger_lines(cfg)}
    out = []
    for name, where in sorted(found.items()):
        if name in owners:
            continue
        parsed = parse_name(name)
        assert parsed is not None
        launch = launches.get(name) or {}
        when = _when(launch.get("at"))
        said = f"; {cfg.ledger_path.name} records its launch{when}" if launch else ""
        name_text = launch.get("name") if isinstance(launch.get("name"), str) else parsed.ticker
        incoming = IncomingCoin(
            RECOVERED,
            name,
            parsed.ticker,
            name_text or parsed.ticker,
            f"spool/{name}",
            parsed.twitter_user,
        )
        coin_id, _ = store.add_coin(
            incoming,
            twitter_user=parsed.twitter_user,
            trigger="recovered",
            detail={"file": name, "found_in": where, "ledger": launch or None},
            image_filename=name,
        )
        if launch:
            # The ledger proves the launch: adding it anew would launch it a second time
            # (found from outside: the advice below was followed, and it was).
            reason = (
                f"moonshot recover: rebuilt from {name} in {where}{said}; moonshot.db did not"
                f" know it. It was launched: moonshot resolve {coin_id} --launched (never"
                " `moonshot add` it again: that launches it a second time)"
            )
        else:
            reason = (
                f"moonshot recover: rebuilt from {name} in {where}; moonshot.db did not know"
                f" it. It may have been launched: check the app, then moonshot resolve"
                f" {coin_id} --launched, or --withdraw (a rebuilt coin is never launched again"
                " from here; once the app shows no such token, `moonshot add` it anew)"
            )
        coin = store.get(coin_id)
        assert coin is not None
        store.fire(coin, "recover", detail={"reason": reason}, last_error=reason)
        out.append({"id": coin_id, "ticker": parsed.ticker, "file": name, "found_in": where})
    return out
