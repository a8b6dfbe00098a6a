"""The dashboard on a big home: every canned query through the real `moonshot dashboard`
child (HTTP, JSON), against the same SQL on a plain read-only sqlite3 connection (the
baseline). Datasette stops a query at 1 s (sql_time_limit_ms): a query over it is an
error page, so this says how many coins the canned queries stand."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from argparse import ArgumentParser
from pathlib import Path
from statistics import median

from bench.recovery import build
from bench.stats import env

RUNS = 5
LIMIT_S = 1.0  # datasette's sql_time_limit_ms default, which the dashboard keeps


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--coins", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from moonshot.ops import dashboard

    queries = dashboard.metadata()["databases"]["moonshot"]["queries"]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="moonshot-dashboard-") as tmp:
        home = Path(tmp) / "home"
        build(home, a.coins)
        import sqlite3

        conn = sqlite3.connect(f"file:{home / 'moonshot.db'}?mode=ro", uri=True)
        transitions = conn.execute("select count(*) from transitions").fetchone()[0]
        port = _port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "dashboard"]
            + ["--port", str(port)],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _get(base + "/-/versions.json")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the dashboard did not start in 60 s")
                time.sleep(0.2)
            for name, q in queries.items():
                params = {"id": 1, "_moonshot_home": "'.'"}
                base_times, http_times, status = [], [], 200
                for _ in range(RUNS):
                    t0 = time.perf_counter()
                    conn.execute(q["sql"], params).fetchall()
                    base_times.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    code, _ = _get(f"{base}/moonshot/{name}.json?id=1&_shape=objects")
                    http_times.append(time.perf_counter() - t0)
                    status = max(status, code)
                results[name] = {
                    "sqlite_ms": round(median(base_times) * 1000, 1),
                    "dashboard_ms": round(median(http_times) * 1000, 1),
                    "status": status,
                }
        finally:
            proc.terminate()
            proc.wait(20)
            conn.close()
    out = {"coins": a.coins, "transitions": transitions, "queries": results}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{a.coins} coins, {transitions} transitions; median of {RUNS} runs")
        print(f"{'query':<18} {'sqlite3 ms':>10} {'dashboard ms':>13}  status")
        for name, r in results.items():
            over = "" if r["status"] == 200 else f"  (over the {LIMIT_S:g} s limit?)"
            print(f"{name:<18} {r['sqlite_ms']:>10} {r['dashboard_ms']:>13}  {r['status']}{over}")
    return out


if __name__ == "__main__":
    main()
