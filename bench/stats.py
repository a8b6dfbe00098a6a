"""Small measuring helpers for the benchmarks: percentiles, child RSS, stage
latencies read back from the `transitions` audit table."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def ts(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def env() -> dict[str, str]:
    """The environment for a child that imports moonshot from this checkout."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    return out


def run_child(
    args: list[str], log: Path, extra_env: dict[str, str] | None = None, timeout: float = 1800
) -> tuple[float, float, int, float]:
    """Run a child to completion, stderr to `log`: (seconds, its own peak RSS in MB,
    exit code, CPU seconds). os.wait4 gives the rusage of this child alone."""
    e = env()
    e.update(extra_env or {})
    with open(log, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=e, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime


def stage_latencies(db: Path) -> dict[str, list[float]]:
    """Per-coin seconds of each stage: spool = first attempt in fetched -> spooled,
    import = attempt in spooled -> imported, confirm = imported -> confirmed."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT coin_id, from_state, trigger, at FROM transitions ORDER BY id"
    ).fetchall()
    conn.close()
    start: dict[tuple[int, str], float] = {}
    out: dict[str, list[float]] = {"spool": [], "import": [], "confirm": [], "total": []}
    first: dict[int, float] = {}
    for coin_id, frm, trigger, at in rows:
        t = ts(at)
        if trigger == "attempt":
            start.setdefault((coin_id, frm), t)
            first.setdefault(coin_id, t)
        elif trigger == "spool" and (coin_id, "fetched") in start:
            out["spool"].append(t - start[(coin_id, "fetched")])
        elif trigger == "import_photo" and (coin_id, "spooled") in start:
            out["import"].append(t - start[(coin_id, "spooled")])
            start[(coin_id, "imported")] = t
        elif trigger == "confirm" and (coin_id, "imported") in start:
            out["confirm"].append(t - start[(coin_id, "imported")])
            if coin_id in first:
                out["total"].append(t - first[coin_id])
    return out
