"""Start-up with a big state database: 10,000 coins in mixed states (with their
transition history, spooled files and library assets), then a real `moonshot run`
child: seconds from spawn to its first step of work, and its peak RSS."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path

from PIL import Image

from bench.stats import ROOT, PeakRss, env, ts
from moonshot.photos.library_folder import FolderLibrary
from moonshot.store import Store, iso

# share of each state; `launching` coins are what a crash leaves behind
MIX = {
    "launched": 0.60,
    "rejected": 0.05,
    "failed": 0.04,
    "needs_review": 0.01,
    "launching": 0.001,
    "confirmed": 0.02,
    "imported": 0.001,
    "spooled": 0.05,
    "fetched": 0.228,
}
PATH = {  # the triggers that lead to each state
    "fetched": ["add"],
    "spooled": ["add", "attempt", "spool"],
    "imported": ["add", "attempt", "spool", "attempt", "import_photo"],
    "confirmed": ["add", "attempt", "spool", "attempt", "import_photo", "confirm"],
    "launching": [
        "add",
        "attempt",
        "spool",
        "attempt",
        "import_photo",
        "confirm",
        "attempt",
        "start_launch",
    ],
    "launched": [
        "add",
        "attempt",
        "spool",
        "attempt",
        "import_photo",
        "confirm",
        "attempt",
        "start_launch",
        "finish_launch",
    ],
    "needs_review": [
        "add",
        "attempt",
        "spool",
        "attempt",
        "import_photo",
        "confirm",
        "attempt",
        "start_launch",
        "review",
    ],
    "rejected": ["add", "attempt", "reject"],
    "failed": ["add", "attempt", "defer", "attempt", "defer", "attempt", "fail"],
}
DEST = {
    "add": "fetched",
    "spool": "spooled",
    "import_photo": "imported",
    "confirm": "confirmed",
    "start_launch": "launching",
    "finish_launch": "launched",
    "review": "needs_review",
    "reject": "rejected",
    "fail": "failed",
}


def small_jpeg(seed: int) -> bytes:
    rng = random.Random(seed)
    im = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    im.save(out, "JPEG")
    return out.getvalue()


def build(home: Path, n: int, seed: int = 3) -> dict[str, int]:
    """The database, spool files and library of `n` coins; returns counts per state."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "moonshot.toml").write_text("[photos]\nkind = 'folder'\n")
    (home / "spool").mkdir(exist_ok=True)
    rng = random.Random(seed)
    states = [s for s, share in MIX.items() for _ in range(round(share * n))]
    states += ["fetched"] * (n - len(states))
    rng.shuffle(states)
    image = home / "source.jpg"
    image.write_bytes(small_jpeg(seed))
    library = FolderLibrary(home / "library")
    store = Store(home / "moonshot.db")
    t0 = time.time() - 86400
    coins, transitions, assets = [], [], []
    for i, state in enumerate(states, start=1):
        at = iso(t0 + i)
        name = f"user{i % 97}_R{i}_{1_700_000_000 + i}.jpg" if state != "fetched" else None
        asset = None
        if state in ("imported", "confirmed", "launching", "launched", "needs_review"):
            asset = f"ASSET-{i:06d}"
            assets.append((asset, name, t0 + i, f"originals/{asset}.jpg"))
        if state in ("spooled", "imported", "confirmed"):
            (home / "spool" / name).write_bytes(small_jpeg(i))
        err = {"failed": "HTTP 503 from example", "rejected": "not an image (an HTML page)"}
        coins.append(
            (
                i,
                state,
                "local",
                f"bench:{i}",
                f"R{i}",
                f"Recovery {i}",
                f"user{i % 97}",
                str(image),
                name,
                0,
                err.get(state),
                asset,
                at,
                at,
                "fetched" if state == "failed" else None,
            )
        )
        prev = None
        for trig in PATH[state]:
            dest = DEST.get(trig, prev)
            transitions.append((i, prev, dest, trig, at, "{}"))
            prev = dest
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO coins (id, state, source, source_ref, ticker, name, twitter_user,"
            " image_url, image_filename, attempts, last_error, photos_asset_id, created_at,"
            " updated_at, failed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            coins,
        )
        conn.executemany(
            "INSERT INTO transitions (coin_id, from_state, to_state, trigger, at, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            transitions,
        )
    library._conn.executemany(
        "INSERT INTO assets (id, original_filename, date_added, path) VALUES (?, ?, ?, ?)",
        assets,
    )
    for asset_id, *_ in assets[-50:]:  # the recent ones have their original file
        (home / "library" / "originals" / f"{asset_id}.jpg").write_bytes(small_jpeg(1))
    library.close()
    store.close()
    return {s: states.count(s) for s in MIX}


def first_step(db: Path, after_id: int, proc: subprocess.Popen, limit: float) -> float | None:
    """Time stamp of the first transition the service commits that is not crash
    recovery (`review` of a coin found in launching)."""
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "SELECT min(at) FROM transitions WHERE id > ? AND trigger != 'review'",
                (after_id,),
            ).fetchone()
        finally:
            conn.close()
        if row[0]:
            return ts(row[0])
        time.sleep(0.005)
    return None


def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--coins", type=int, default=10_000)
    ap.add_argument("--run-seconds", type=float, default=5.0, help="work on after the first step")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moonshot-recovery-") as tmp:
        home = Path(tmp) / "home"
        counts = build(home, a.coins)
        db = home / "moonshot.db"
        conn = sqlite3.connect(db)
        last_id = conn.execute("SELECT max(id) FROM transitions").fetchone()[0]
        conn.close()
        with open(Path(tmp) / "run.log", "wb") as log:
            args = [sys.executable, "-m", "moonshot", "--home", str(home), "run"]
            spawned = time.time()
            proc = subprocess.Popen(
                args, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log
            )
            rss = PeakRss(proc.pid, args)
            try:
                first = first_step(db, last_id, proc, 60.0)
                time.sleep(a.run_seconds)
            finally:
                proc.send_signal(signal.SIGTERM)
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                peak = rss.stop()
                proc.wait()
        if first is None:
            raise SystemExit(
                f"no step of work within 60 s; log: {(Path(tmp) / 'run.log').read_text()[-2000:]}"
            )
        tracebacks = (Path(tmp) / "run.log").read_text(errors="replace").count("Traceback")
        conn = sqlite3.connect(db)
        triggers = dict(
            conn.execute(
                "SELECT trigger, count(*) FROM transitions WHERE id > ? GROUP BY trigger",
                (last_id,),
            ).fetchall()
        )
        steps = conn.execute(
            "SELECT count(*) FROM transitions WHERE id > ?", (last_id,)
        ).fetchone()[0]
        reviewed = conn.execute(
            "SELECT count(*) FROM transitions WHERE id > ? AND trigger = 'review'", (last_id,)
        ).fetchone()[0]
        conn.close()
    result = {
        "coins": a.coins,
        "states": counts,
        "startup_s": round(first - spawned, 3),
        "peak_rss_mb": round(peak, 1) if peak else None,
        "recovered_to_review": reviewed,
        "transitions_in_run": steps,
        "triggers_in_run": triggers,
        "tracebacks_in_log": tracebacks,
        "run_seconds": a.run_seconds,
        "command": f"python -m bench.recovery --coins {a.coins}",
    }
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{a.coins} coins: first step of work {result['startup_s']} s after spawn;"
            f" peak RSS {result['peak_rss_mb']} MB over {a.run_seconds} s of work"
            f" ({steps} transitions, {reviewed} launching coin(s) sent to review)"
        )
    return result


if __name__ == "__main__":
    main()
