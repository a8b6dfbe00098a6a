"""Insert-to-spooled latency of the Supabase source: NOTIFY wake-up vs polling alone.
Runs `moonshot run` against the PostgREST stand-in (tests/supabase/standin.py) over the
real PostgreSQL, inserts coins one at a time at random moments of the poll cycle, and
reads when each reached `fetched` and `spooled` in the service's moonshot.db.

    python bench/supabase_latency.py [--coins 5] [--poll-interval 5] [--mode both] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.supabase.standin import (  # noqa: E402 - needs the repository on the path
    BASE_COINS_SQL,
    PG_ADMIN_DSN,
    Standin,
    apply_migration,
    insert_coin,
)


def png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (seed % 256, (seed * 7) % 256, 90)).save(buf, "PNG")
    return buf.getvalue()


def parse_at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def reached(db: Path, ref: str) -> dict[str, float]:
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=5) as conn:
        rows = conn.execute(
            "SELECT t.to_state, min(t.at) FROM transitions t JOIN coins c ON c.id = t.coin_id"
            " WHERE c.source = 'supabase' AND c.source_ref = ? AND t.to_state IN ('fetched', 'spooled')"
            " GROUP BY t.to_state",
            (ref,),
        ).fetchall()
    return {state: parse_at(at) for state, at in rows}


def listening(dsn: str) -> bool:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN moonshot_coins'"
                " AND datname = current_database()"
            ).fetchone()[0]
            > 0
        )


def run_mode(
    mode: str, standin: Standin, dsn: str, coins: int, poll: float, seq: list[int]
) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"moonshot-bench-{mode}-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SUPABASE_URL": standin.url,
        "SUPABASE_SERVICE_ROLE_KEY": standin.key,
        "MOONSHOT_SOURCE_KIND": "supabase",
        "MOONSHOT_SOURCE_POLL_INTERVAL": str(poll),
        "MOONSHOT_LAUNCH_MODE": "off",
        "MOONSHOT_PHOTOS_KIND": "folder",
    }
    if mode == "notify":
        env["SUPABASE_DB_URL"] = dsn
    else:
        env.pop("SUPABASE_DB_URL", None)
    out = (home / "service.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    db = home / "moonshot.db"
    fetched, spooled = [], []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            db.exists() and (mode == "poll" or listening(dsn))
        ):
            time.sleep(0.1)
        time.sleep(poll)  # past the start-up poll: from here on, a coin waits for a wake-up
        for _ in range(coins):
            time.sleep(random.uniform(0, poll))  # a random moment of the poll cycle
            seq[0] += 1
            url = standin.put_object("bench", f"c{seq[0]}.png", png(seq[0]), "image/png")
            t0 = time.time()
            ref = str(insert_coin(dsn, f"B{seq[0]:04d}", f"Bench {seq[0]}", image_url=url))
            limit = time.monotonic() + poll + 30
            while time.monotonic() < limit:
                got = reached(db, ref)
                if "spooled" in got:
                    break
                time.sleep(0.02)
            else:
                raise SystemExit(f"{mode}: coin {ref} not spooled in time; see {home}/service.out")
            fetched.append(got["fetched"] - t0)
            spooled.append(got["spooled"] - t0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {
            "min": round(ordered[0], 3),
            "median": round(statistics.median(ordered), 3),
            "max": round(ordered[-1], 3),
            "mean": round(statistics.fmean(ordered), 3),
        }

    return {
        "mode": mode,
        "coins": coins,
        "poll_interval_s": poll,
        "insert_to_fetched_s": summary(fetched),
        "insert_to_spooled_s": summary(spooled),
    }


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for one bench run (its DSN); dropped after."""
    import psycopg

    name = f"moonshot_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = dict(p.split("=", 1) for p in PG_ADMIN_DSN.split())
    parts["dbname"] = name
    try:
        yield " ".join(f"{k}={v}" for k, v in parts.items())
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coins", type=int, default=5, help="coins per mode (default 5)")
    ap.add_argument("--poll-interval", type=float, default=5.0, help="source.poll_interval (s)")
    ap.add_argument("--mode", choices=["notify", "poll", "both"], default="both")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()

    import psycopg

    results = []
    with throwaway_database() as dsn:
        standin = Standin(dsn).start()
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(BASE_COINS_SQL)
            apply_migration(dsn)
            seq = [0]
            modes = ["notify", "poll"] if args.mode == "both" else [args.mode]
            for mode in modes:
                results.append(run_mode(mode, standin, dsn, args.coins, args.poll_interval, seq))
        finally:
            standin.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        f, s = r["insert_to_fetched_s"], r["insert_to_spooled_s"]
        print(
            f"{r['mode']:>6}: {r['coins']} coins, poll every {r['poll_interval_s']:g} s;"
            f" insert->fetched median {f['median']:.3f} s (max {f['max']:.3f});"
            f" insert->spooled median {s['median']:.3f} s (min {s['min']:.3f}, max {s['max']:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
