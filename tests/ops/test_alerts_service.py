"""Alerts from the real `moonshot run` (subprocess) to a loopback receiver through
apprise's `json://`: each event once across a crash between the transition's commit and
the send, a repeat with the same alert-id after a crash between the send and its "sent"
commit (at-least-once), random kill -9, and hostile receivers (never answers, 500,
200 after 20 s) that do not hold the pipeline back. No log, database file, stdout or
stderr ever holds the token of the receiver's URL."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from moonshot.crash import CRASH_EXIT
from moonshot.ops.alerts import ALERT_CRASH_POINTS
from tests.conftest import cli_env, make_image, run_cli
from tests.ops.receivers import Receiver, dead_port

pytest_plugins = ["tests.ops.receiver_plugin"]  # the `receiver` fixture

pytestmark = pytest.mark.stress
TOKEN = "bot-7e3d9a1c5f2b8e4d6a0c"


def env_for(receiver: Receiver, **extra: str) -> dict:
    return {
        "MOONSHOT_ALERT_URLS": receiver.url(user="moonshot", password=TOKEN),
        "MOONSHOT_ALERTS_TIMEOUT": "2",
        "MOONSHOT_ALERTS_RETRY_BASE": "0.2",
        "MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01",
        "MOONSHOT_SPOOL_BACKOFF_BASE": "0.01",
        "MOONSHOT_SERVICE_RETRY_WINDOW": "0",  # a coin whose image is down fails at once
        **extra,
    }


def add(home: Path, image: str, ticker: str) -> int:
    out = run_cli(home, "add", "--ticker", ticker, "--name", ticker, "--image", image, check=True)
    return int(out.stdout)


def good_image(tmp_path: Path, i: int) -> str:
    return str(make_image(tmp_path / f"img{i}.png", color=(i * 40 % 255, 90, 200), fmt="PNG"))


def dead_image() -> str:
    return f"http://127.0.0.1:{dead_port()}/gone.png"


def table(home: Path) -> dict[str, str]:
    db = sqlite3.connect(home / "moonshot.db")
    return dict(db.execute("SELECT key, status FROM alerts"))


def states(home: Path) -> dict[int, str]:
    return dict(sqlite3.connect(home / "moonshot.db").execute("SELECT id, state FROM coins"))


def assert_no_secret(home: Path, *outputs: str) -> None:
    """The token is in no file of the home (logs, moonshot.db and its -wal) nor output."""
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token in {path}"
    for text in outputs:
        assert TOKEN not in text


def test_crash_points_are_named():
    assert ALERT_CRASH_POINTS == ("before_send", "after_send")


def test_crash_before_the_send_loses_nothing(home, receiver):
    coin = add(home, dead_image(), "GONE")
    env = env_for(receiver)
    first = run_cli(home, "run", "--once", env={**env, "MOONSHOT_CRASH_AT": "alert_before_send"})
    assert first.returncode == CRASH_EXIT, first.stderr[-2000:]
    assert states(home)[coin] == "failed" and receiver.posts == []
    (key,) = [k for k in table(home) if k.startswith("failed:")]
    assert table(home)[key] == "pending"  # committed with the transition, not sent
    second = run_cli(home, "run", "--once", env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    got = Counter(receiver.alert_keys())
    assert got[key] == 1
    # The second run also says the first one died (its key names the dead run's heartbeat).
    assert [k for k in got if not k.startswith("failed:")] == [
        k for k in table(home) if k.startswith("restarted:all:")
    ]
    assert set(got.values()) == {1} and set(table(home).values()) == {"sent"}
    assert_no_secret(home, first.stdout, first.stderr, second.stdout, second.stderr)


def test_crash_after_the_send_repeats_it_with_the_same_alert_id(home, receiver):
    coin = add(home, dead_image(), "GONE")
    env = env_for(receiver)
    first = run_cli(home, "run", "--once", env={**env, "MOONSHOT_CRASH_AT": "alert_after_send"})
    assert first.returncode == CRASH_EXIT, first.stderr[-2000:]
    assert states(home)[coin] == "failed"
    (first_id,) = receiver.ids()
    assert table(home)[first_id.split("/", 1)[1]] == "pending"  # sent, not marked
    second = run_cli(home, "run", "--once", env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    ids = receiver.ids()
    assert ids.count(first_id) == 2  # at-least-once: the repeat carries the same id
    assert len(set(ids)) == len(table(home))  # after dropping repeats, each event once
    assert set(table(home).values()) == {"sent"}
    assert_no_secret(home, first.stdout, first.stderr, second.stdout, second.stderr)


def test_a_coin_cut_in_launching_alerts_needs_review_and_the_restart(home, receiver, tmp_path):
    coin = add(home, good_image(tmp_path, 1), "CUT")
    env = env_for(receiver)
    first = run_cli(
        home, "run", "--once", env={**env, "MOONSHOT_CRASH_AT": "after_launching_commit"}
    )
    assert first.returncode == CRASH_EXIT
    second = run_cli(home, "run", "--once", env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert states(home)[coin] == "needs_review"
    events = Counter(k.split(":")[0] for k in receiver.alert_keys())
    assert events == {"needs_review": 1, "restarted": 1}
    (review,) = [p["body"] for p in receiver.posts if "needs review" in p["body"]["title"]]
    assert f"moonshot resolve {coin} --launched" in review["message"]
    assert "found in launching at start-up" in review["message"]
    assert_no_secret(home, first.stderr, second.stderr)


def test_random_kill_9_neither_loses_nor_invents_an_alert(home, receiver, tmp_path):
    """Coins fail one after the other while `moonshot run` is killed at random moments
    (receiver answers after 0.3 s, so kills land before, during and after sends)."""
    receiver.mode, receiver.delay = "slow", 0.3
    env = env_for(receiver)
    rng = random.Random(16)
    coins = [add(home, dead_image(), f"K{i}") for i in range(8)]
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
            env=cli_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(rng.uniform(0.5, 1.5))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert TOKEN not in err
        coins.append(add(home, dead_image(), f"M{len(coins)}"))
    receiver.mode = "ok"
    final = run_cli(home, "run", "--once", env=env)
    assert final.returncode == 0, final.stderr[-2000:]
    assert set(states(home).values()) == {"failed"}
    recorded = table(home)
    failed_keys = {k for k in recorded if k.startswith("failed:")}
    assert {int(k.split(":")[1]) for k in failed_keys} == set(coins)  # one per coin
    assert set(recorded.values()) == {"sent"}
    arrived = set(receiver.alert_keys())
    assert arrived == set(recorded)  # none lost, none made up
    assert_no_secret(home, final.stdout, final.stderr)


def _start(home: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(cond, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_receiver_that_never_answers_holds_no_coin_back(home, receiver, tmp_path):
    receiver.mode = "hang"
    env = env_for(receiver, MOONSHOT_ALERTS_TIMEOUT="30", MOONSHOT_SERVICE_STOP_TIMEOUT="6")
    bad = add(home, dead_image(), "BAD")
    proc = _start(home, env)
    try:
        assert receiver.wait_for(lambda r: r.open == 1), "the alert never reached the receiver"
        good = add(home, good_image(tmp_path, 2), "GOOD")
        # Launched while the sender still waits on the receiver that never answers.
        assert _wait(lambda: states(home).get(good) == "launched", 60)
        assert receiver.open == 1 and len(receiver.posts) == 1
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        # Within launchd's ExitTimeOut (stop_timeout + 10 s), after which it would KILL.
        assert proc.returncode == 0 and time.monotonic() - stopped < 6 + 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert states(home)[bad] == "failed"
    assert table(home)[next(k for k in table(home) if k.startswith("failed:"))] == "pending"
    receiver.mode = "ok"
    again = run_cli(home, "run", "--once", env=env_for(receiver))
    assert again.returncode == 0
    assert set(table(home).values()) == {"sent"}
    assert_no_secret(home, out, err, again.stderr)


@pytest.mark.parametrize("status", [500, 429])
def test_a_refusing_receiver_is_retried_while_coins_go_on(home, receiver, tmp_path, status):
    receiver.mode, receiver.status, receiver.fail_first = "flaky", status, 3
    env = env_for(receiver)
    bad = add(home, dead_image(), "BAD")
    proc = _start(home, env)
    try:
        good = add(home, good_image(tmp_path, 3), "GOOD")
        assert _wait(lambda: states(home).get(good) == "launched")
        assert _wait(lambda: set(table(home).values()) == {"sent"}, 60), table(home)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    key = next(k for k in table(home) if k.startswith(f"failed:{bad}:"))
    assert Counter(receiver.alert_keys())[key] == 4  # three refusals, then delivered
    db = sqlite3.connect(home / "moonshot.db")
    assert db.execute("SELECT attempts FROM alerts WHERE key = ?", (key,)).fetchone()[0] == 3
    assert f"HTTP {status}" in err
    assert_no_secret(home, out, err)


def test_a_receiver_that_answers_after_20_s_gets_it_once(home, receiver, tmp_path):
    receiver.mode, receiver.delay = "slow", 20.0
    env = env_for(receiver, MOONSHOT_ALERTS_TIMEOUT="30")
    add(home, dead_image(), "BAD")
    proc = _start(home, env)
    try:
        assert receiver.wait_for(lambda r: r.open == 1)
        good = add(home, good_image(tmp_path, 4), "GOOD")
        assert _wait(lambda: states(home).get(good) == "launched")
        assert receiver.open == 1  # the coin did not wait for the slow receiver
        assert _wait(lambda: set(table(home).values()) == {"sent"}, 60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(receiver.posts) == 1
    assert_no_secret(home, out, err)
