"""Graceful stop of a real `moonshot run` subprocess, as launchd does it: SIGTERM in the
middle of a batch exits 0 within 10 s and a restart finishes the batch with nothing lost
or doubled; a second signal exits at once without losing state; `status` tells a dead
service from a live one; the split agents (`run --stages`) share one home safely."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.stress

ROOT = Path(__file__).resolve().parents[1]
RET_OK, RET_HARD_STOP = 0, 3  # moonshot.service
# Slow enough that a signal lands mid-batch: launches at least 0.4 s apart.
SLOW = {
    "MOONSHOT_LAUNCH_MIN_GAP_SECONDS": "0.4",
    "MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01",
    "MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.2",
}


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


FAST = {"MOONSHOT_LAUNCH_MIN_GAP_SECONDS": "0"}


def env(extra: dict | None = None) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MOONSHOT_")}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(SLOW)
    out.update(extra or {})
    return out


def cli(home: Path, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "moonshot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env(extra),
        timeout=120,
    )


def start(home: Path, *args: str, extra: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "moonshot", "--home", str(home), "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(extra),
    )


def add_coins(home: Path, tmp_path: Path, n: int) -> list[int]:
    ids = []
    for i in range(n):
        img = tmp_path / f"img{i}.jpg"
        # Noise: a JPEG that takes real time to decode and re-encode.
        Image.effect_noise((900, 900), 40 + i).convert("RGB").save(img, quality=95)
        proc = cli(home, "add", "--ticker", f"SIG{i}", "--name", f"Signal {i}", "--image", str(img))
        assert proc.returncode == 0, proc.stderr
        ids.append(int(proc.stdout.strip()))
    return ids


def ledger(home: Path) -> list[int]:
    path = home / "launches.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["coin_id"] for line in path.read_text().splitlines() if line.strip()]


def states(home: Path) -> dict[int, str]:
    conn = sqlite3.connect(home / "moonshot.db")
    try:
        return dict(conn.execute("SELECT id, state FROM coins"))
    finally:
        conn.close()


def library_assets(home: Path) -> list[str]:
    conn = sqlite3.connect(home / "library" / "library.db")
    try:
        return [r[0] for r in conn.execute("SELECT original_filename FROM assets")]
    finally:
        conn.close()


def wait_for(cond, timeout: float = 60.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(
    proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    rc = proc.wait(timeout=timeout)
    return rc, time.monotonic() - t0


def status(home: Path) -> tuple[int, dict]:
    proc = cli(home, "status", "--json")
    return proc.returncode, json.loads(proc.stdout)


def check_nothing_lost_or_doubled(home: Path, ids: list[int]) -> None:
    assert states(home) == dict.fromkeys(ids, "launched")
    launched = ledger(home)
    assert sorted(launched) == sorted(ids), "a coin was launched twice or not at all"
    assets = library_assets(home)
    assert len(assets) == len(set(assets)) == len(ids), "a photo was imported twice"
    conn = sqlite3.connect(home / "moonshot.db")
    try:
        starts = conn.execute(
            "SELECT coin_id, count(*) FROM transitions WHERE trigger = 'start_launch' GROUP BY coin_id"
        ).fetchall()
    finally:
        conn.close()
    assert dict(starts) == dict.fromkeys(ids, 1)


def test_sigterm_mid_batch_exits_0_and_restart_finishes(home, tmp_path):
    ids = add_coins(home, tmp_path, 8)
    proc = start(home)
    try:
        wait_for(lambda: len(ledger(home)) >= 2, what="two launches")
        rc, took = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == RET_OK, proc.stderr.read()
    assert took < 10.0
    done = ledger(home)
    assert 2 <= len(done) < len(ids), "the signal did not land in the middle of the batch"
    now = states(home)
    assert "launching" not in now.values()  # the step in hand was finished, not cut
    assert sorted(i for i, s in now.items() if s == "launched") == sorted(done)
    code, report = status(home)
    assert code == 1 and report["service"]["state"] == "stopped"

    # `run --once` does not wait out launch limits, so the restart runs without the gap.
    rc = cli(home, "run", "--once", extra=FAST).returncode
    assert rc == RET_OK
    check_nothing_lost_or_doubled(home, ids)


def test_second_signal_exits_at_once_and_nothing_is_lost(home, tmp_path):
    ids = add_coins(home, tmp_path, 6)
    proc = start(home)
    try:
        wait_for(lambda: len(ledger(home)) >= 1, what="a launch")
        proc.send_signal(signal.SIGTERM)
        rc, took = stop(proc, signal.SIGINT, timeout=5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The first signal may have finished the loop before the second one arrived.
    assert rc in (RET_HARD_STOP, RET_OK)
    assert took < 5.0
    cli(home, "run", "--once", extra=FAST)
    # A coin cut between `launching` and `launched` waits for a person, never relaunches.
    for coin_id, state in states(home).items():
        if state == "needs_review":
            flag = "--launched" if coin_id in ledger(home) else "--not-launched"
            assert cli(home, "resolve", str(coin_id), flag).returncode == 0
    assert cli(home, "run", "--once", extra=FAST).returncode == RET_OK
    check_nothing_lost_or_doubled(home, ids)


def test_status_tells_dead_from_live(home, tmp_path):
    add_coins(home, tmp_path, 1)
    proc = start(home, extra=FAST)
    try:
        wait_for(lambda: states(home) == {1: "launched"}, what="the launch")
        code, report = status(home)
        assert code == 0, report["problems"]
        assert report["service"]["state"] == "running" and report["service"]["pid"] == proc.pid
        assert report["healthy"] is True
        text = cli(home, "status").stdout
        assert f"service: alive (pid {proc.pid}" in text
        proc.kill()  # SIGKILL: no clean stop, the heartbeat stays fresh
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    code, report = status(home)
    assert code == 1
    assert report["service"]["state"] == "dead"
    assert f"process {proc.pid} is gone" in report["problems"][0]
    assert "NOT RUNNING (dead" in cli(home, "status").stdout


def test_split_agents_share_a_home(home, tmp_path):
    """What `launchd install --split` runs: a sync agent and a launch agent at once."""
    ids = add_coins(home, tmp_path, 4)
    sync = start(home, "--stages", "sync", extra=FAST)
    launch = start(home, "--stages", "launch", extra=FAST)
    try:
        wait_for(lambda: len(ledger(home)) == len(ids), what="every launch")
        code, report = status(home)
        assert code == 0, report["problems"]
        assert report["services"] == {"sync": "running", "launch": "running"}
        assert stop(launch)[0] == RET_OK
        code, report = status(home)
        assert code == 1 and report["service"]["detail"] == "split agents: launch: stopped"
        assert stop(sync)[0] == RET_OK
    finally:
        for p in (sync, launch):
            if p.poll() is None:
                p.kill()
    check_nothing_lost_or_doubled(home, ids)


def test_launch_stage_alone_never_spools(home, tmp_path):
    add_coins(home, tmp_path, 2)
    assert cli(home, "run", "--once", "--stages", "launch").returncode == RET_OK
    assert set(states(home).values()) == {"fetched"}
    assert cli(home, "run", "--once", "--stages", "sync").returncode == RET_OK
    # The import gate holds: one coin confirmed, the next waits in spooled for the launcher.
    assert sorted(states(home).values()) == ["confirmed", "spooled"]
    assert ledger(home) == []


def test_service_moves_launched_files_to_done_and_never_reimports(home, tmp_path):
    ids = add_coins(home, tmp_path, 3)
    proc = start(home, extra={**FAST, "MOONSHOT_CLEANUP_INTERVAL": "0.2"})
    try:
        wait_for(lambda: len(ledger(home)) == 3, what="three launches")
        done = home / "spool" / "done"
        wait_for(lambda: done.is_dir() and len(list(done.iterdir())) == 3, what="clean-up")
        assert [p.name for p in (home / "spool").iterdir() if p.is_file()] == []
        # A new coin afterwards: the files in done/ are not imported again.
        (tmp_path / "more").mkdir()
        more = add_coins(home, tmp_path / "more", 1)
        wait_for(lambda: len(ledger(home)) == 4, what="the fourth launch")
        assert stop(proc)[0] == RET_OK
    finally:
        if proc.poll() is None:
            proc.kill()
    check_nothing_lost_or_doubled(home, ids + more)
