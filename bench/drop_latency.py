"""Manual-drop latency: a real `moonshot run` child watches spool/ while files with
canonical names are copied in one at a time; for each, the time from the file being
complete (closed) to its `imported` transition. Sync-only, folder library."""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import imageset
from bench.pipeline import CACHE, write_config
from bench.stats import ROOT, env, pct, ts


def imported_at(db: Path, filename: str) -> float | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return None
    try:
        row = conn.execute(
            "SELECT t.at FROM transitions t JOIN coins c ON c.id = t.coin_id"
            " WHERE c.image_filename = ? AND t.trigger = 'import_photo'",
            (filename,),
        ).fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        row = None
    finally:
        conn.close()
    return ts(row[0]) if row else None


def wait_up(db: Path, proc: subprocess.Popen, limit: float = 30.0) -> None:
    """Until the service has written its first heartbeat (it is ticking)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                if conn.execute("SELECT 1 FROM meta WHERE key = 'heartbeat_at'").fetchone():
                    return
            except sqlite3.OperationalError:  # not migrated yet
                pass
            finally:
                conn.close()
        time.sleep(0.05)
    raise SystemExit(f"the service did not start within {limit} s (exit code {proc.poll()})")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drops", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=10.0, help="per drop, seconds")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    jpegs = [s for s in imageset.pool("typical", CACHE) if s.content_type == "image/jpeg"]
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="moonshot-drop-") as tmp:
        home = Path(tmp) / "home"
        write_config(home, 0)
        log = open(Path(tmp) / "run.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
            env=env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            db = home / "moonshot.db"
            wait_up(db, proc)
            base_ts = int(time.time())
            for i in range(a.drops):
                name = f"dropper_D{i}_{base_ts + i}.jpg"
                data = jpegs[i % len(jpegs)].data
                with open(home / "spool" / name, "wb") as f:  # a copy, as Finder makes it
                    f.write(data)
                done = time.time()
                end = time.monotonic() + a.timeout
                got = None
                while got is None and time.monotonic() < end and proc.poll() is None:
                    time.sleep(0.005)
                    got = imported_at(db, name)
                if got is None:
                    raise SystemExit(f"{name} was not imported within {a.timeout} s")
                latencies.append(got - done)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    result = {
        "drops": a.drops,
        "p50_ms": round(pct(latencies, 50) * 1000, 1),
        "p95_ms": round(pct(latencies, 95) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "command": f"python -m bench.drop_latency --drops {a.drops}",
    }
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{a.drops} drops: complete -> imported p50 {result['p50_ms']} ms,"
            f" p95 {result['p95_ms']} ms, max {result['max_ms']} ms"
        )
    return result


if __name__ == "__main__":
    main()
