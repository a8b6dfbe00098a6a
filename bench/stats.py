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


class PeakRss:
    """The peak RSS of a child after its exec, from /proc/<pid>/status (VmHWM, a
    high-water mark, polled). Not ru_maxrss: Linux carries the pre-exec high-water
    mark into it, which for a vfork'ed child is the parent's own (the benchmark with
    its images in memory), and would be reported as the child's."""

    def __init__(self, pid: int, argv: list[str], every: float = 0.02):
        self.pid, self.every = pid, every
        self._argv = [a.encode() for a in argv]
        self.kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[:-1]
            if cmdline != self._argv:
                return  # not exec'ed yet
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.kb = max(self.kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self._read()

    def stop(self) -> float | None:
        """Stop polling (call before reaping the child); the peak in MB, None if the
        child ended before it could be read."""
        self._stop.set()
        self._thread.join()
        self._read()
        return self.kb / 1024 if self.kb else None


def run_child(
    args: list[str], log: Path, extra_env: dict[str, str] | None = None, timeout: float = 1800
) -> tuple[float, float | None, int, float]:
    """Run a child to completion, stderr to `log`: (seconds, its own peak RSS in MB,
    exit code, CPU seconds). os.wait4 gives the CPU time of this child alone."""
    e = env()
    e.update(extra_env or {})
    with open(log, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=e, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        rss = PeakRss(proc.pid, args)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            # wait without reaping, so the last VmHWM can still be read
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            peak = rss.stop()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, peak, proc.returncode, usage.ru_utime + usage.ru_stime


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
