"""Crash safety of the real service (design.md, "Proving crash safety"): `moonshot
run` dies at every named crash point in turn and by SIGKILL at random moments, is
restarted, and the invariants are checked: every coin terminal or visible, no coin
with two ledger lines or two library assets, `PRAGMA integrity_check` ok."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from moonshot import machine as m
from moonshot.crash import CRASH_EXIT, CRASH_POINTS
from moonshot.ports import IncomingCoin
from moonshot.store import Store
from tests.conftest import cli_env, make_image, run_cli

pytestmark = pytest.mark.stress
ENV = {"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01", "MOONSHOT_SPOOL_BACKOFF_BASE": "0.01"}


def add_coins(home: Path, images: Path, n: int, start: int = 0) -> None:
    store = Store(home / "moonshot.db")
    for i in range(start, start + n):
        img = images / f"{i}.png"
        if not img.exists():
            make_image(img, size=(600, 600), color=((i * 37) % 255, (i * 91) % 255, 120), fmt="PNG")
        store.add_coin(
            IncomingCoin("local", f"c{i}", f"K{i}", f"Coin {i}", str(img), "crash"),
            twitter_user="crash",
        )
    store.close()


def check_invariants(home: Path, allow_review: bool = True) -> dict:
    db = sqlite3.connect(home / "moonshot.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    states = dict(db.execute("SELECT id, state FROM coins").fetchall())
    ledger_path = home / "launches.jsonl"
    ledger = (
        [json.loads(x) for x in ledger_path.read_text().splitlines()]
        if ledger_path.exists()
        else []
    )
    per_coin = Counter(e["coin_id"] for e in ledger)
    assert all(n == 1 for n in per_coin.values()), f"a coin launched twice: {per_coin}"
    lib = sqlite3.connect(home / "library" / "library.db")
    names = dict(db.execute("SELECT id, image_filename FROM coins").fetchall())
    assets = Counter(r[0] for r in lib.execute("SELECT original_filename FROM assets"))
    for coin_id, state in states.items():
        assert state in m.TERMINAL | m.VISIBLE, f"coin {coin_id} left in {state}"
        if state == m.LAUNCHED:
            assert per_coin[coin_id] == 1, f"coin {coin_id} launched without a ledger line"
        if state == m.NEEDS_REVIEW:
            assert allow_review
            assert per_coin[coin_id] <= 1
        if names[coin_id]:
            assert assets[names[coin_id]] <= 1, (
                f"coin {coin_id} has {assets[names[coin_id]]} assets"
            )
    launching_twice = db.execute(
        "SELECT coin_id FROM transitions WHERE to_state = 'launching' AND from_state != 'launching'"
        " GROUP BY coin_id HAVING count(*) > 1"
    ).fetchall()
    assert launching_twice == []
    assert not list((home / "spool").glob("*.part"))
    return {"states": Counter(states.values()), "ledger": per_coin}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_each_point_then_resume(tmp_path, point):
    home = tmp_path / "home"
    home.mkdir()
    add_coins(home, tmp_path, 3)
    first = run_cli(home, "run", "--once", env={**ENV, "MOONSHOT_CRASH_AT": point})
    assert first.returncode == CRASH_EXIT, f"{point} was never reached: {first.stderr[-500:]}"
    second = run_cli(home, "run", "--once", env=ENV)
    assert second.returncode == 0, second.stderr[-2000:]
    result = check_invariants(home)
    reviewed = result["states"][m.NEEDS_REVIEW]
    if point in ("after_launching_commit", "after_irreversible"):
        # the coin in hand may or may not have been launched: a person decides
        assert reviewed == 1 and result["states"][m.LAUNCHED] == 2
        (coin_id,) = [
            c
            for c, s in sqlite3.connect(home / "moonshot.db").execute("SELECT id, state FROM coins")
            if s == m.NEEDS_REVIEW
        ]
        assert result["ledger"][coin_id] == (1 if point == "after_irreversible" else 0)
    else:
        assert reviewed == 0 and result["states"][m.LAUNCHED] == 3


def test_random_sigkill_loop(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    add_coins(home, tmp_path, 20)
    rng = random.Random(20261126)
    kills, added = 0, 20
    deadline = time.monotonic() + 120
    while kills < 20 and time.monotonic() < deadline:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
            env=cli_env(ENV),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.6, 1.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(10)
        add_coins(home, tmp_path, 2, start=added)  # keep work in flight for the next kill
        added += 2
    assert kills >= 20
    final = run_cli(home, "run", "--once", env=ENV)
    assert final.returncode == 0, final.stderr[-2000:]
    result = check_invariants(home)
    assert sum(result["states"].values()) == added
    assert (
        result["states"][m.LAUNCHED] >= added - kills
    )  # at most one coin per kill is left to review
