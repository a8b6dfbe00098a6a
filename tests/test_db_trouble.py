"""Database trouble pauses, never kills (issue 15, item 7): a real second program holding
moonshot.db's write lock longer than the busy timeout, and a disk that is really full
(a small tmpfs). The service waits and goes on by itself; `status` says why; `add` and
`status` answer in one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import make_image, run_cli, wait_for
from tests.person import launch_counts, status_json

FAST = {"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01", "MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.2"}

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")          # the write lock, as a DB browser's edit holds it
conn.execute("INSERT INTO meta (key, value) VALUES ('held', 'yes')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def one_line(proc) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) <= 1, proc.stderr
    return lines[0] if lines else ""


@pytest.mark.stress
def test_a_write_lock_held_for_25_s_pauses_the_service_which_resumes(
    home, tmp_path, service_process
):
    run_cli(
        home,
        "add",
        "--ticker",
        "A",
        "--name",
        "a",
        "--image",
        str(make_image(tmp_path / "a.png")),
        check=True,
    )
    service = service_process(home, FAST)
    wait_for(lambda: launch_counts(home) == {("moonshot", "A"): 1}, what="the first launch")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(home / "moonshot.db"), "25"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        proc = run_cli(home, "status")  # reads go on; it says why the service waits
        assert proc.returncode == 1 and "locked by another program" in proc.stdout, proc.stdout
        one_line(proc)
        img = make_image(tmp_path / "b.png", color=(0, 0, 200))
        proc = run_cli(home, "add", "--ticker", "B", "--name", "b", "--image", str(img))
        if proc.returncode:  # waited the busy timeout (15 s) with the lock still held
            assert "locked by another program" in one_line(proc)
            assert time.monotonic() - started < 25
        time.sleep(max(0.0, 18 - (time.monotonic() - started)))
        assert service.poll() is None, service.err()  # past the busy timeout: still there
    finally:
        holder.wait(timeout=60)
    if proc.returncode:
        run_cli(home, "add", "--ticker", "B", "--name", "b", "--image", str(img), check=True)
    wait_for(
        lambda: launch_counts(home) == {("moonshot", "A"): 1, ("moonshot", "B"): 1}, timeout=90
    )
    report = wait_for(lambda: (r := status_json(home))["service"]["alive"] and r)
    assert not [p for p in report["problems"] if "locked" in p or "paused" in p], report["problems"]
    assert service.poll() is None and "Traceback" not in service.err()
    assert "paused" in service.err() and "resumed" in service.err()


def test_a_full_disk_is_one_line_for_add_and_status_and_the_service_waits(
    small_disk, tmp_path, service_process
):
    disk = small_disk("8m")
    home = disk.path / "home"
    home.mkdir()
    img = make_image(tmp_path / "a.png")
    run_cli(home, "add", "--ticker", "A", "--name", "a", "--image", str(img), env=FAST, check=True)
    service = service_process(home, FAST)
    wait_for(lambda: launch_counts(home), what="the first launch")
    disk.fill()
    proc = run_cli(home, "add", "--ticker", "B", "--name", "b", "--image", str(img), env=FAST)
    assert proc.returncode == 1 and "disk is full" in one_line(proc)
    proc = run_cli(home, "status", env=FAST)
    assert proc.returncode == 1 and "full" in proc.stdout
    one_line(proc)
    time.sleep(3)  # heartbeats fail meanwhile
    assert service.poll() is None, service.err()
    disk.free_up()
    run_cli(home, "add", "--ticker", "B", "--name", "b", "--image", str(img), env=FAST, check=True)
    wait_for(lambda: sum(launch_counts(home).values()) == 2, what="the second launch")
    assert service.poll() is None and "Traceback" not in service.err()
