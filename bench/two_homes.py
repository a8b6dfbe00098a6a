"""Throughput of two homes sharing one Supabase source against one home alone, in
coins per minute, side by side (issue 16). Each run drains the same number of coins
through `moonshot run` (ledger launcher, folder library) against the PostgREST stand-in
(tests/supabase/standin.py) over the real PostgreSQL; every image download waits
`--image-delay` seconds at the stand-in's Storage, as a distant host would.

    python -m bench.two_homes [--coins 40] [--image-delay 0.5] [--lookahead 3] [--faults] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.supabase_latency import png, throwaway_database  # noqa: E402 - needs the repo on the path
from tests.supabase.standin import (  # noqa: E402
    BASE_COINS_SQL,
    Standin,
    apply_migration,
    fetch_coins,
    insert_coin,
)


def start(home: Path, standin: Standin, lookahead: int) -> subprocess.Popen:
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SUPABASE_URL": standin.url,
        "SUPABASE_SERVICE_ROLE_KEY": standin.key,
        "MOONSHOT_SOURCE_KIND": "supabase",
        "MOONSHOT_SOURCE_POLL_INTERVAL": "0.5",
        "MOONSHOT_SOURCE_LOOKAHEAD": str(lookahead),
        "MOONSHOT_LAUNCH_MODE": "ledger",
        "MOONSHOT_PHOTOS_KIND": "folder",
        "MOONSHOT_SPOOL_BACKOFF_BASE": "0.05",
        "MOONSHOT_SPOOL_BACKOFF_MAX": "1",
        "MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.1",
    }
    env.pop("SUPABASE_DB_URL", None)
    out = (home / "service.out").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def ledger(home: Path) -> int:
    path = home / "launches.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def drain(dsn: str, standin: Standin, homes: int, coins: int, lookahead: int, seq: list[int]):
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BASE_COINS_SQL)
    apply_migration(dsn)
    for _ in range(coins):
        seq[0] += 1
        url = standin.put_object("bench", f"c{seq[0]}.png", png(seq[0]), "image/png")
        insert_coin(dsn, f"B{seq[0]:05d}", f"Bench {seq[0]}", image_url=url)
    base = Path(tempfile.mkdtemp(prefix=f"moonshot-bench-{homes}homes-"))
    t0 = time.monotonic()
    procs = [
        (base / f"home{i}", start(base / f"home{i}", standin, lookahead)) for i in range(homes)
    ]
    try:
        deadline = t0 + 600
        while time.monotonic() < deadline:
            rows = fetch_coins(dsn)
            if all(r["launch_state"] == "launched" for r in rows):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{homes} home(s): not drained in time; see {base}/*/service.out")
        took = time.monotonic() - t0
    finally:
        for _, p in procs:
            p.send_signal(signal.SIGTERM)
        for _, p in procs:
            p.wait(timeout=60)
    shares = [ledger(h) for h, _ in procs]
    if sum(shares) != coins:
        raise SystemExit(f"{homes} home(s): {sum(shares)} launches for {coins} coins; see {base}")
    return {
        "homes": homes,
        "coins": coins,
        "seconds": round(took, 2),
        "coins_per_min": round(coins / took * 60, 1),
        "launches_per_home": shares,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coins", type=int, default=40, help="coins per run (default 40)")
    ap.add_argument("--image-delay", type=float, default=0.5, help="seconds per image download")
    ap.add_argument("--lookahead", type=int, default=3, help="source.lookahead (default 3)")
    ap.add_argument("--faults", action="store_true", help="12 %% 503s, 5 %% dropped connections")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()

    with throwaway_database() as dsn:
        standin = Standin(dsn).start()
        if args.faults:  # first: a request the draw spares still gets the image delay
            standin.faults.chaos(status_rate=0.12, drop_rate=0.05)
        if args.image_delay > 0:
            standin.faults.add(
                "delay", times=-1, path="/storage/v1/object/", delay=args.image_delay
            )
        seq = [0]
        try:
            results = [
                drain(dsn, standin, homes, args.coins, args.lookahead, seq) for homes in (1, 2)
            ]
        finally:
            standin.stop()
    one, two = results
    summary = {
        "image_delay_s": args.image_delay,
        "lookahead": args.lookahead,
        "faults": args.faults,
        "one_home": one,
        "two_homes": two,
        "speedup": round(two["coins_per_min"] / one["coins_per_min"], 2),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{args.coins} coins, image delay {args.image_delay:g} s, lookahead {args.lookahead},"
        f" faults {'on' if args.faults else 'off'}"
    )
    print(f"{'':10} {'coins/min':>10} {'seconds':>8}  launches per home")
    for label, r in (("one home", one), ("two homes", two)):
        shares = "/".join(str(n) for n in r["launches_per_home"])
        print(f"{label:10} {r['coins_per_min']:>10.1f} {r['seconds']:>8.1f}  {shares}")
    print(f"two homes / one home: {summary['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
