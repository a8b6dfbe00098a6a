"""The real CLI in a subprocess: the issue's done-when, one-line errors, --json."""

from __future__ import annotations

import json
import sqlite3

import pytest

from moonshot import machine
from tests.conftest import make_image, run_cli


def test_three_local_coins_reach_launched(home, tmp_path):
    for i in range(3):
        img = make_image(tmp_path / f"c{i}.png", color=(i * 90, 50, 50), fmt="PNG")
        proc = run_cli(
            home,
            "add",
            "--ticker",
            f"cli{i}",
            "--name",
            f"Coin {i}",
            "--image",
            str(img),
            check=True,
        )
        assert proc.stdout.strip() == str(i + 1)
    run_cli(home, "run", "--once", check=True)
    lines = [json.loads(x) for x in (home / "launches.jsonl").read_text().splitlines()]
    assert sorted(e["coin_id"] for e in lines) == [1, 2, 3]
    status = json.loads(run_cli(home, "status", "--json").stdout)
    assert status["counts"]["launched"] == 3
    assert set(status["counts"]) == set(machine.STATES)  # every state, even at 0
    rows = (
        sqlite3.connect(home / "moonshot.db")
        .execute("select state, count(*) from coins group by state")
        .fetchall()
    )
    assert rows == [("launched", 3)]
    hist = json.loads(run_cli(home, "history", "1", "--json").stdout)
    assert [t["to_state"] for t in hist["transitions"] if t["from_state"] != t["to_state"]] == [
        "fetched",
        "spooled",
        "imported",
        "confirmed",
        "launching",
        "launched",
    ]
    assert (home / "logs" / "moonshot.log").read_text().count("coin=1 ") >= 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ticker", "../x", "--name", "x"], "invalid ticker"),
        (["--ticker", "OK", "--name", "x", "--twitter-user", "a/b"], "invalid twitter user"),
        (["--ticker", "OK", "--name", "line\nbreak"], "control character"),
        (["--ticker", "OK", "--name", "ab\u202ecd"], "invisible character (U+202E)"),
        (["--ticker", "OK", "--name", "x", "--tweet-id", "12; rm"], "invalid tweet id"),
    ],
)
def test_bad_add_exits_nonzero_and_queues_nothing(home, tmp_path, args, message):
    img = make_image(tmp_path / "a.png")
    proc = run_cli(home, "add", *args, "--image", str(img))
    assert proc.returncode != 0
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (home / "moonshot.db").exists()  # nothing queued, no home started


def test_an_emoji_sequence_name_is_queued(home, tmp_path):
    """Found from outside: a family emoji (joined by U+200D) was refused as a control
    character; it is an ordinary coin name, pasted into the app."""
    img = make_image(tmp_path / "a.png")
    name = "ab\U0001f468\u200d\U0001f469\u200d\U0001f467"
    proc = run_cli(home, "add", "--ticker", "FAM", "--name", name, "--image", str(img))
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(home / "moonshot.db")
    assert conn.execute("SELECT name FROM coins").fetchone()[0] == name
    conn.close()


def test_add_missing_image_and_bad_scheme(home):
    proc = run_cli(home, "add", "--ticker", "A", "--name", "a", "--image", "/nope/missing.png")
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    proc = run_cli(home, "add", "--ticker", "A", "--name", "a", "--image", "file:///etc/passwd")
    assert proc.returncode == 1 and "scheme 'file'" in proc.stderr


def test_same_tweet_is_queued_once(home, tmp_path):
    img = make_image(tmp_path / "a.png")
    first = run_cli(
        home,
        "add",
        "--ticker",
        "T",
        "--name",
        "t",
        "--image",
        str(img),
        "--tweet-id",
        "42",
        check=True,
    )
    again = run_cli(
        home,
        "add",
        "--ticker",
        "T",
        "--name",
        "t",
        "--image",
        str(img),
        "--tweet-id",
        "42",
        check=True,
    )
    assert first.stdout == again.stdout and "already queued" in again.stderr


def test_retry_resolve_approve_refuse_wrong_states(home, tmp_path):
    img = make_image(tmp_path / "a.png")
    run_cli(home, "add", "--ticker", "T", "--name", "t", "--image", str(img), check=True)
    assert "not failed" in run_cli(home, "retry", "1").stderr
    assert "not needs_review" in run_cli(home, "resolve", "1", "--launched").stderr
    assert "no coin with id 9" in run_cli(home, "history", "9").stderr
    assert run_cli(home, "approve", "1").returncode == 0
    assert "already approved" in run_cli(home, "approve", "1").stdout


def test_resolve_needs_review(home, tmp_path):
    from moonshot.store import Store

    img = make_image(tmp_path / "a.png")
    run_cli(home, "add", "--ticker", "T", "--name", "t", "--image", str(img), check=True)
    store = Store(home / "moonshot.db")
    for trig in ("spool", "import_photo", "confirm", "start_launch", "review"):
        store.fire(store.get(1), trig)
    address = "So11111111111111111111111111111111111111112"
    proc = run_cli(home, "resolve", "1", "--launched", "--token-address", address, check=True)
    assert "needs_review -> launched" in proc.stdout
    assert store.get(1).token_address == address


def test_bad_config_is_one_line(home):
    (home / "moonshot.toml").write_text("[launch]\nmode = 'yolo'\n")
    proc = run_cli(home, "status")
    assert proc.returncode == 1 and "launch.mode" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_doctor_on_a_fresh_home(home):
    proc = run_cli(home, "doctor", "--json")
    checks = json.loads(proc.stdout)
    assert proc.returncode == 0, checks
    assert {c["name"] for c in checks} >= {
        "config",
        "database",
        "spool",
        "photos",
        "launcher",
        "source",
    }


def test_status_says_not_running_and_exits_nonzero(home):
    proc = run_cli(home, "status")
    assert proc.returncode == 1 and "NOT RUNNING" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["history", "99999999999999999999"], "COIN_ID"),
        (["retry", "0"], "COIN_ID"),
        (["add", "--ticker", "A", "--name", "n", "--image", "http://[::1"], "cannot be parsed"),
        (["decisions", "--limit", "-5"], "--limit"),
        (["decisions", "--refused", "--accepted"], "mutually exclusive"),
    ],
)
def test_bad_arguments_are_clear_errors_not_tracebacks(home, args, message):
    proc = run_cli(home, *args)
    assert proc.returncode in (1, 2), proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MOONSHOT_LOG_LEVEL": "LOUD"}, "log.level"),
        ({"MOONSHOT_SOURCE_BOGUS": "1"}, "unknown key source.bogus"),
        ({"MOONSHOT_SOURCE_BATCH": "0"}, "source.batch = 0: expected a number at least 1"),
        ({"MOONSHOT_SPOOL_JPEG_QUALITY": "500"}, "from 1 to 95"),
        ({"MOONSHOT_SERVICE_IDLE_SLEEP_MIN": "nan"}, "service.idle_sleep_min"),
        ({"MOONSHOT_CLEANUP_KEEP_DAYS": "-1"}, "cleanup.keep_days"),
    ],
)
def test_bad_settings_stop_run_with_one_line(home, env, message):
    proc = run_cli(home, "run", "--once", env=env)
    assert proc.returncode != 0
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_home_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli(blocker / "home", "run", "--once")
    assert proc.returncode == 1 and "cannot create" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_status_never_creates_a_home(tmp_path):
    """Issue 15: `status` of a home that does not exist says so; it creates nothing."""
    missing = tmp_path / "typo"
    proc = run_cli(missing, "status")
    assert proc.returncode == 1 and "no such folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not missing.exists()


def test_version_works_from_source(home):
    proc = run_cli(home, "--version", check=True)
    assert "moonshot" in proc.stdout
