"""Graceful stop of a real `moonshot run` subprocess, as launchd does it: SIGTERM in the
middle of a batch exits 0 within 10 s and a restart finishes the batch with nothing lost
or doubled; a second signal exits at once without losing state; `status` tells a dead
service from a live one; the split agents (`run --stages`) share one home safely."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from moonshot.cli import cli as cli_main
from tests.conftest import DripHost

pytestmark = pytest.mark.stress

ROOT = Path(__file__).resolve().parents[1]
RET_OK, RET_HARD_STOP = 0, 3  # moonshot.service
BASE = {"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01", "MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.2"}


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def env(extra: dict | None = None) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MOONSHOT_")}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(BASE)
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
    """Queued in-process (`moonshot add` is not under test here); the service is the subprocess."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        img = tmp_path / f"img{i}.jpg"
        Image.new("RGB", (64, 48), (40 * i % 256, 90, 160)).save(img, quality=95)
        args = ["--home", str(home), "add", "--ticker", f"SIG{i}", "--name", f"Signal {i}"]
        result = CliRunner().invoke(cli_main, [*args, "--image", str(img)])
        assert result.exit_code == 0, result.output
        ids.append(int(result.stdout.strip()))
    return ids


class GatedImage:
    """A real HTTP server on 127.0.0.1 whose one image is held back until `release()`:
    the service's download, inside the spool step, is then provably in progress."""

    def __init__(self):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (10, 200, 90)).save(buf, "JPEG")
        body = buf.getvalue()
        self.requested = threading.Event()
        self.gate = threading.Event()
        gated = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                gated.requested.set()
                gated.gate.wait(60)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/held.jpg"

    def release(self):
        self.gate.set()

    def close(self):
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def gated():
    g = GatedImage()
    yield g
    g.close()


def add_url_coin(home: Path, url: str) -> int:
    args = ["--home", str(home), "add", "--ticker", "HELD", "--name", "Held", "--image", url]
    result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip())


def attempts(home: Path, coin_id: int) -> int:
    conn = sqlite3.connect(home / "moonshot.db")
    try:
        return conn.execute("SELECT attempts FROM coins WHERE id = ?", (coin_id,)).fetchone()[0]
    finally:
        conn.close()


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


def explain(home: Path, **procs: subprocess.Popen) -> str:
    """What a timed-out wait saw: every coin's trail, and each process's own words."""
    lines = [f"ledger: {ledger(home)}"]
    for coin_id, state in sorted(states(home).items()):
        trail = [f"{t[0]}@{t[1]}" for t in transitions(home, coin_id)]
        lines.append(f"coin {coin_id}: {state}: {' '.join(trail)}")
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate(timeout=10)[1] or ""
        lines.append(f"--- {name} (exit {proc.returncode}):\n{err[-3000:]}")
    for log in sorted((home / "logs").glob("*.log")):
        lines.append(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}")
    return "\n".join(lines)


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


def batch_with_held_coin(home: Path, tmp_path: Path, gated: GatedImage) -> tuple[list[int], int]:
    """Coins 1-2 from files, coin 3 from the held URL, coins 4-6 from files: the held
    download holds only its own coin (issue 16), so the other five launch meanwhile."""
    first = add_coins(home, tmp_path / "a", 2)
    held = add_url_coin(home, gated.url)
    rest = add_coins(home, tmp_path / "b", 3)
    return [*first, held, *rest], held


def others_launched(home: Path, ids: list[int], held: int) -> None:
    others = sorted(i for i in ids if i != held)
    wait_for(lambda: sorted(ledger(home)) == others, what="the other coins' launches")


def test_sigterm_mid_download_finishes_it_and_restart_finishes(home, tmp_path, gated):
    ids, held = batch_with_held_coin(home, tmp_path, gated)
    proc = start(home)
    try:
        assert gated.requested.wait(60), "the service never asked for the held image"
        others_launched(home, ids, held)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "TERM cut the download in hand at once instead of finishing it"
        t0 = time.monotonic()
        gated.release()
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == RET_OK, proc.stderr.read()
    assert took < 10.0
    # The download in hand finished within the stop budget and was committed.
    assert states(home)[held] == "spooled"
    assert [states(home)[i] for i in ids if i != held] == ["launched"] * 5
    code, report = status(home)
    assert code == 1 and report["service"]["state"] == "stopped"

    assert cli(home, "run", "--once").returncode == RET_OK
    check_nothing_lost_or_doubled(home, ids)


def test_second_signal_exits_at_once_and_nothing_is_lost(home, tmp_path, gated):
    ids, held = batch_with_held_coin(home, tmp_path, gated)
    proc = start(home)
    try:
        assert gated.requested.wait(60), "the service never asked for the held image"
        others_launched(home, ids, held)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        rc, took = stop(proc, signal.SIGINT, timeout=5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == RET_HARD_STOP
    assert took < 2.0
    # The attempt was committed before the download; the rest is untouched.
    now = states(home)
    assert now[held] == "fetched" and attempts(home, held) == 1
    assert not [p for p in (home / "spool").iterdir() if p.name.startswith("moonshot_HELD")]
    code, report = status(home)
    assert code == 1 and report["service"]["state"] == "dead"

    gated.release()
    assert cli(home, "run", "--once").returncode == RET_OK
    check_nothing_lost_or_doubled(home, ids)


def transitions(home: Path, coin_id: int) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(home / "moonshot.db")
    try:
        return conn.execute(
            "SELECT trigger, at, detail FROM transitions WHERE coin_id = ? ORDER BY id", (coin_id,)
        ).fetchall()
    finally:
        conn.close()


def test_a_drip_host_holds_only_its_coin_and_term_is_honoured_in_time(home, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 10)).save(buf, "JPEG")
    # one byte a second (issue 16: one attempt once took 6.5 minutes, TERM waited 240 s)
    drip = DripHost("headers", buf.getvalue(), interval=1.0)
    timeout, stop_timeout = 5.0, 4.0
    extra = {
        "MOONSHOT_SPOOL_DOWNLOAD_TIMEOUT": str(timeout),
        "MOONSHOT_SERVICE_STOP_TIMEOUT": str(stop_timeout),
        "MOONSHOT_SPOOL_BACKOFF_BASE": "0.5",
    }
    try:
        args = ["--home", str(home), "add", "--ticker", "DRIP", "--name", "Drip"]
        result = CliRunner().invoke(cli_main, [*args, "--image", drip.url])
        dripping = int(result.stdout.strip())
        others = add_coins(home, tmp_path, 3)
        proc = start(home, extra=extra)
        try:
            # the other coins go on while the first image drips
            wait_for(lambda: sorted(ledger(home)) == others, what="the other launches")
            assert states(home)[dripping] == "fetched"
            # each attempt is cut at the deadline and retried (measured from the failure)
            wait_for(lambda: attempts(home, dripping) >= 2, timeout=30, what="a second attempt")
            trail = transitions(home, dripping)
            first_cut = next(t for t in trail if t[0] == "defer")
            assert "longer than 5 s" in first_cut[2]
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # mid-download: the second attempt drips
            rc = proc.wait(timeout=stop_timeout + 10)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert rc == RET_OK, proc.stderr.read()
        print(f"TERM honoured after {took:.2f} s (stop_timeout {stop_timeout:g} s)")
        assert took < stop_timeout, f"TERM honoured after {took:.1f} s"
        assert not list((home / "spool").glob("*.part"))
        assert states(home)[dripping] == "fetched"
        assert "cancelled" in transitions(home, dripping)[-1][2]
        drip.mode = "serve"
        assert cli(home, "run", "--once", extra=extra).returncode == RET_OK
        check_nothing_lost_or_doubled(home, [dripping, *others])
    finally:
        drip.close()


def test_status_tells_dead_from_live(home, tmp_path):
    add_coins(home, tmp_path, 1)
    proc = start(home)
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
    sync = start(home, "--stages", "sync")
    launch = start(home, "--stages", "launch")
    try:
        try:
            wait_for(lambda: len(ledger(home)) == len(ids), what="every launch")
        except AssertionError:
            raise AssertionError(explain(home, sync=sync, launch=launch)) from None
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
    proc = start(home, extra={"MOONSHOT_CLEANUP_INTERVAL": "0.2"})
    try:
        wait_for(lambda: len(ledger(home)) == 3, what="three launches")
        done = home / "spool" / "done"
        wait_for(lambda: done.is_dir() and len(list(done.iterdir())) == 3, what="clean-up")
        assert [p.name for p in (home / "spool").iterdir() if p.is_file()] == [".moonshot-home"]
        # A new coin afterwards: the files in done/ are not imported again.
        more = add_coins(home, tmp_path / "more", 1)
        wait_for(lambda: len(ledger(home)) == 4, what="the fourth launch")
        assert stop(proc)[0] == RET_OK
    finally:
        if proc.poll() is None:
            proc.kill()
    check_nothing_lost_or_doubled(home, ids + more)
