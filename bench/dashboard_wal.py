"""The WAL while someone runs runaway SQL on the dashboard (the outside attack's
finding 2): the real `moonshot dashboard` child over a home, a writer committing as the
service does (Store.write, its automatic checkpoints), first with the dashboard idle
(the baseline), then with three clients that send runaway queries (the attack's, and
many calls each under the dashboard's bound) and hang up after ATTACK_TIMEOUT_S. Prints the WAL's largest size in each phase, how a plain
page answered meanwhile, and how long a TRUNCATE checkpoint then waits."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from argparse import ArgumentParser
from pathlib import Path
from statistics import median

from bench.dashboard import serving
from bench.recovery import build
from moonshot.store import Store

ATTACKS = (
    # The attack report's: one instr() call over a 1 MB string.
    "select count(*), instr(printf('%.*c',1000000,'a'), printf('%.*c',500000,'a')||'b') from coins",
    # Many calls, each just under the dashboard's bound on a value (MAX_VALUE_BYTES).
    "with recursive n(x) as (select 1 union all select x + 1 from n where x < 100000)"
    " select count(*) from n"
    " where instr(printf('%.*c', 99990 - x % 2, 'a'), printf('%.*c', 49990, 'a') || 'b')",
)
ATTACKERS = 3  # datasette's num_sql_threads: the report's "three such requests"
ATTACK_TIMEOUT_S = 2.0
PAYLOAD = "x" * 2000


def _get(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _phase(home: Path, base: str, seconds: float, attack: bool) -> dict:
    wal = home / "moonshot.db-wal"
    stop = threading.Event()
    statuses: list[str] = []
    commits = [0]

    def write() -> None:
        store = Store(home / "moonshot.db")
        try:
            i = 0
            while not stop.is_set():
                with store.write() as conn:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key)"
                        " DO UPDATE SET value = excluded.value",
                        (f"bench.{i % 200}", PAYLOAD + str(i)),
                    )
                i += 1
                commits[0] += 1
                time.sleep(0.005)
        finally:
            store.close()

    def hammer(sql: str) -> None:
        url = f"{base}/moonshot.json?" + urllib.parse.urlencode({"sql": sql})
        while not stop.is_set():
            try:
                statuses.append(str(_get(url, ATTACK_TIMEOUT_S)))
            except OSError:
                statuses.append("hung up")

    biggest = [0]

    def watch() -> None:
        while not stop.wait(0.05):
            biggest[0] = max(biggest[0], wal.stat().st_size if wal.exists() else 0)

    threads = [threading.Thread(target=write), threading.Thread(target=watch)]
    if attack:
        threads += [
            threading.Thread(target=hammer, args=(ATTACKS[i % len(ATTACKS)],))
            for i in range(ATTACKERS)
        ]
    for t in threads:
        t.start()
    page_s, late = [], 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        try:
            _get(f"{base}/moonshot/waiting.json?_size=1", max(1.0, t_end - time.monotonic()))
            page_s.append(time.perf_counter() - t0)
        except OSError:  # still waiting when the phase ended
            late += 1
        time.sleep(0.25)
    stop.set()
    for t in threads:
        t.join()
    # How long until the whole WAL can be checkpointed and reset (no reader left).
    t0 = time.perf_counter()
    store = Store(home / "moonshot.db")
    try:
        while store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
            time.sleep(0.1)
    finally:
        store.close()
    return {
        "wal_max_mb": round(biggest[0] / 1e6, 1),
        "commits": commits[0],
        "pages": len(page_s),
        "pages_unanswered": late,
        "page_median_s": round(median(page_s), 3) if page_s else None,
        "page_max_s": round(max(page_s), 3) if page_s else None,
        "attacks": {s: statuses.count(s) for s in sorted(set(statuses))},
        "truncate_wait_s": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--coins", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moonshot-dashboard-wal-") as tmp:
        home = Path(tmp) / "home"
        build(home, a.coins)
        with serving(home) as base:
            out = {
                "coins": a.coins,
                "seconds": a.seconds,
                "idle": _phase(home, base, a.seconds, attack=False),
                "attack": _phase(home, base, a.seconds, attack=True),
            }
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{a.coins} coins, {a.seconds:g} s per phase; the writer commits every ~5 ms")
        print(f"{'':8} {'WAL max MB':>10} {'commits':>8} {'pages ok/late':>13} {'page p50 s':>10}"
              f" {'page max s':>10} {'TRUNCATE wait s':>15}  attack answers")  # fmt: skip
        for phase in ("idle", "attack"):
            r = out[phase]
            pages = f"{r['pages']}/{r['pages_unanswered']}"
            print(
                f"{phase:8} {r['wal_max_mb']:>10} {r['commits']:>8} {pages:>13}"
                f" {r['page_median_s']!s:>10} {r['page_max_s']!s:>10} {r['truncate_wait_s']:>15}"
                f"  {r['attacks'] or '-'}"
            )
        print("baseline: the idle row (the dashboard reading nothing)")
    return out


if __name__ == "__main__":
    main()
