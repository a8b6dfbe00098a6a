"""The alert commands as a person runs them (real CLI, subprocess): `alerts test` against
a live loopback receiver, a dead port and one that never answers; `alerts list`;
`watch` with a heartbeat written in the past; `status` showing undelivered alerts;
`doctor`; a token URL in moonshot.toml refused. No output ever holds the token."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from moonshot import machine as m
from moonshot.ops import alert_events as ev
from tests.conftest import home_store, run_cli
from tests.ops.receivers import Receiver, dead_port

pytest_plugins = ["tests.ops.receiver_plugin"]  # the `receiver` fixture

TOKEN = "tok-9c1f7e2b5a4d3c2b1a0f"


def secret_env(*urls: str, **extra: str) -> dict:
    return {"MOONSHOT_ALERT_URLS": " ".join(urls), "MOONSHOT_ALERTS_TIMEOUT": "1", **extra}


def no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def test_alerts_test_reaches_a_live_receiver(home, receiver):
    url = receiver.url(user="moonshot", password=TOKEN)
    result = run_cli(home, "alerts", "test", env=secret_env(url))
    assert result.returncode == 0, result.stderr
    # named with its port (two receivers on one host differ by it), never its password
    assert result.stdout.strip() == f"#1 json://127.0.0.1:{receiver.port}: delivered"
    (post,) = receiver.posts
    assert post["body"]["title"] == "moonshot: test alert"
    assert post["auth"] == Receiver.basic("moonshot", TOKEN)
    no_token(result.stdout, result.stderr)


def test_alerts_test_says_which_receiver_failed_and_exits_1(home, receiver):
    live = receiver.url(user="moonshot", password=TOKEN)
    dead = f"json://127.0.0.1:{dead_port()}/hook"
    (home / "moonshot.toml").write_text(f'[alerts]\nurls = ["{dead}"]\n')
    result = run_cli(home, "alerts", "test", env=secret_env(live))
    assert result.returncode == 1
    port = dead.split(":")[2].split("/")[0]
    assert result.stdout.splitlines() == [
        f"#1 json://127.0.0.1:{port}: NOT delivered (connection failed)",
        f"#2 json://127.0.0.1:{receiver.port}: delivered",
    ]
    assert len(receiver.posts) == 1
    no_token(result.stdout, result.stderr)


def test_alerts_test_gives_up_on_a_receiver_that_never_answers(home, receiver):
    receiver.mode = "hang"
    started = time.monotonic()
    result = run_cli(home, "alerts", "test", "--json", env=secret_env(receiver.url()))
    assert result.returncode == 1
    assert time.monotonic() - started < 30  # 2 x timeout + margin, plus start-up
    (r,) = json.loads(result.stdout)
    assert r["delivered"] is False and r["receiver"].startswith("#1 json://127.0.0.1")


def test_alerts_test_without_a_url_is_one_line(home):
    result = run_cli(home, "alerts", "test")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "MOONSHOT_ALERT_URLS" in result.stderr


@pytest.mark.parametrize("command", [["status"], ["run", "--once"], ["alerts", "test"]])
def test_a_token_url_in_moonshot_toml_is_refused_in_one_line(home, command):
    (home / "moonshot.toml").write_text(f'[alerts]\nurls = ["tgram://123456:{TOKEN}/42"]\n')
    result = run_cli(home, *command)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MOONSHOT_ALERT_URLS" in lines[0] and "tgram://***" in lines[0]
    assert "Traceback" not in result.stderr
    no_token(result.stdout, result.stderr)


def test_watch_raises_and_delivers_a_stale_heartbeat(home, receiver):
    store = home_store(home)
    past = time.time() - 3600
    store.meta_set_many({"heartbeat_at": repr(past), "heartbeat_pid": str(os.getpid())})
    store.close()
    env = secret_env(receiver.url(user="moonshot", password=TOKEN))
    result = run_cli(home, "watch", env=env)
    assert result.returncode == 1  # the service is not running
    assert "all: hung" in result.stdout
    assert f"alert raised: service_down:all:{past!r}" in result.stdout
    assert "alerts: 1 sent, 0 waiting" in result.stdout
    assert receiver.alert_keys() == [f"service_down:all:{past!r}"]
    again = run_cli(home, "watch", env=env)
    assert "alert raised" not in again.stdout and len(receiver.posts) == 1
    no_token(result.stdout, result.stderr, again.stdout, again.stderr)


def test_status_and_list_show_undelivered_alerts(home):
    store = home_store(home)
    store.record_alert(ev.row(ev.SOURCE_DOWN, "source_down:1", reason="HTTP 503"))
    a = store.alerts()[0]
    store.alert_progress(a["id"], [], sent=False, error="#1 tgram://***: HTTP 401", next_try=0)
    store.close()
    nobody = run_cli(home, "status")
    assert "alerts: no alert URL configured; 1 event(s) told to nobody" in nobody.stdout
    status = run_cli(home, "status", env={"MOONSHOT_ALERTS_URLS": "json://localhost:9/x"})
    assert "alerts not delivered yet: 1" in status.stdout
    assert "(last error: #1 tgram://***: HTTP 401)" in status.stdout
    listed = run_cli(home, "alerts", "list", "--pending", "--json")
    (row,) = json.loads(listed.stdout)
    assert row["key"] == "source_down:1" and row["attempts"] == 1
    text = run_cli(home, "alerts", "list").stdout
    assert "pending" in text and "[source_down:1]" in text and "HTTP 401" in text


def test_doctor_names_each_receiver_by_label_only(home, receiver):
    url = receiver.url(user="moonshot", password=TOKEN)
    result = run_cli(home, "doctor", env=secret_env(url, f"tgram://123456:{TOKEN}/42"))
    assert f"alert #1 json://127.0.0.1:{receiver.port}: apprise can use it" in result.stdout
    assert "alert #2 tgram://***" in result.stdout
    assert "secret MOONSHOT_ALERT_URLS: from environment" in result.stdout
    no_token(result.stdout, result.stderr)
    bare = run_cli(home, "doctor")
    assert "[warn] alerts: no alert URL" in bare.stdout


def test_the_commands_an_alert_names_work_as_written(home, tmp_path):
    """A person who types what the alert says: every `moonshot ...` in backticks runs."""
    import re

    from moonshot.ports import IncomingCoin

    store = home_store(home)
    ids = []
    for i in range(3):
        coin_id, _ = store.add_coin(
            IncomingCoin("local", f"r{i}", f"R{i}", "R", str(tmp_path / "x.png"), "u"),
            twitter_user="u",
        )
        ids.append(coin_id)
    store.fire(store.get(ids[0]), "fail", detail={"reason": "x"}, failed_from=m.FETCHED)
    for coin_id in ids[1:]:
        for trigger in ("spool", "import_photo", "confirm", "start_launch", "review"):
            store.fire(store.get(coin_id), trigger, detail={"reason": "unclear"})
    commands = [r["command"] for r in reversed(store.alerts())]
    store.close()
    typed = [re.findall(r"`(moonshot [^`]+)`", c) for c in commands]
    assert typed == [
        [f"moonshot history {ids[0]}", f"moonshot retry {ids[0]}"],
        [f"moonshot resolve {ids[1]} --launched", f"moonshot resolve {ids[1]} --not-launched"],
        [f"moonshot resolve {ids[2]} --launched", f"moonshot resolve {ids[2]} --not-launched"],
    ]
    # history, retry, then one review settled each way
    for line in (typed[0][0], typed[0][1], typed[1][0], typed[2][1]):
        result = run_cli(home, *line.split()[1:])
        assert result.returncode == 0, (line, result.stderr)


@pytest.mark.skipif(sys.platform == "darwin", reason="macosx:// works on macOS")
def test_macosx_off_macos_is_refused_in_one_line(home):
    (home / "moonshot.toml").write_text('[alerts]\nurls = ["macosx://"]\n')
    run = run_cli(home, "run", "--once")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "Error: alert URL #1 macosx://: apprise cannot use it here (unknown scheme, a typo,"
        " or a service this system lacks); fix or remove it"
    )
    test = run_cli(home, "alerts", "test")
    assert test.returncode == 1
    assert test.stdout.strip() == "#1 macosx://: NOT delivered (apprise cannot use this URL here)"


@pytest.mark.macos
def test_macos_notification_center_through_terminal_notifier(home):
    notifiers = ("/opt/homebrew/bin/terminal-notifier", "/usr/local/bin/terminal-notifier")
    if not any(os.access(p, os.X_OK) for p in notifiers):
        pytest.skip("needs terminal-notifier: brew install terminal-notifier")
    (home / "moonshot.toml").write_text('[alerts]\nurls = ["macosx://"]\n')
    result = run_cli(home, "alerts", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "#1 macosx://: delivered"
