"""`moonshot ingest --x-api` against a stand-in X API v2 on 127.0.0.1: since_id persisted
so a restart neither misses nor repeats a tweet, the rate-limit window respected across
restarts, pagination walked, mentions mode, and the bearer token never printed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from moonshot import config
from moonshot.cli import cli
from moonshot.errors import ConfigError
from moonshot.store import Store
from moonshot.twitter.ingest import Ingestor, poll_x
from moonshot.twitter.xapi import XApi
from tests.twitter.helpers import XServer, XState, make_tweet

NOW = 1_750_000_000.0
BASE_ID = 1858500000000000000


def cfg_for(home, base, **ingest):
    values = {
        "x_api_base": base,
        "x_query": "@moonshotbot has:media",
        "x_max_results": 10,
        **ingest,
    }
    (home / "moonshot.toml").write_text(
        "[ingest]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    )
    return config.load(home, env={})


def start(home, state, **ingest):
    """A fresh process's view: config, store, ingestor and X client (a restart)."""
    server = XServer(state).__enter__()
    cfg = cfg_for(home, server.base, **ingest)
    store = Store(cfg.db_path)
    return (
        server,
        store,
        Ingestor.from_config(cfg, store),
        XApi(cfg, store, state.token, httpx.Client(timeout=5)),
    )


def tweet(n: int, ticker: str | None = None):
    ticker = ticker or f"T{n}"
    return make_tweet(
        BASE_ID + n, f"${ticker} Coin {n}", f"https://pbs.twimg.com/media/{ticker}.jpg"
    )


@pytest.fixture
def home(tmp_path):
    return tmp_path


def coins(store):
    return [(c.ticker, c.tweet_id) for c in store.coins_in(["fetched"], order="id")]


def test_since_id_survives_a_restart_and_nothing_repeats(home):
    state = XState(tweets=[tweet(n) for n in range(1, 26)])  # 25 tweets: 3 pages of 10
    server, store, ingestor, api = start(home, state)
    outcomes, poll = poll_x(ingestor, api, NOW)
    assert poll.complete and poll.requests == 3
    assert [o.status for o in outcomes] == ["accepted"] * 25
    assert [t for t, _ in coins(store)] == [f"T{n}" for n in range(1, 26)]  # oldest first
    first = state.requests[0]["params"]
    assert "since_id" not in first and first["start_time"] == "2025-06-15T14:06:40Z"  # NOW - 1 h
    assert first["expansions"] == "author_id,attachments.media_keys"
    assert api.cursor() == str(BASE_ID + 25)
    server.__exit__()
    store.close()

    # restart: two new tweets arrived meanwhile
    state.tweets += [tweet(26), tweet(27)]
    state.requests.clear()
    server, store, ingestor, api = start(home, state)
    outcomes, poll = poll_x(ingestor, api, NOW + 60)
    assert state.requests[0]["params"]["since_id"] == str(BASE_ID + 25)
    assert [(o.status, o.ticker) for o in outcomes] == [("accepted", "T26"), ("accepted", "T27")]
    outcomes, poll = poll_x(ingestor, api, NOW + 120)
    assert outcomes == [] and poll.complete
    assert len(coins(store)) == 27 and len(store.decisions(limit=100)) == 27
    server.__exit__()


def test_a_closed_rate_window_is_respected_even_after_a_restart(home):
    state = XState(tweets=[tweet(n) for n in range(1, 16)], remaining=[0], reset_at=int(NOW) + 900)
    server, store, ingestor, api = start(home, state)
    outcomes, poll = poll_x(ingestor, api, NOW)
    # page 1 came with remaining 0: stop there, ingest what came, keep the cursor
    assert not poll.complete and poll.rate_limited_until == NOW + 900 and poll.requests == 1
    assert [o.ticker for o in outcomes] == [f"T{n}" for n in range(6, 16)]  # the newest page
    assert api.cursor() is None
    server.__exit__()
    store.close()

    server, store, ingestor, api = start(home, state)  # restart inside the window
    outcomes, poll = poll_x(ingestor, api, NOW + 100)
    assert poll.requests == 0 and len(state.requests) == 1 and outcomes == []
    outcomes, poll = poll_x(ingestor, api, NOW + 901)  # window open again
    assert poll.complete and poll.requests == 2
    assert [(o.ticker, o.status) for o in outcomes] == [
        (f"T{n}", "accepted") for n in range(1, 6)
    ] + [(f"T{n}", "duplicate") for n in range(6, 16)]
    assert api.cursor() == str(BASE_ID + 15)
    assert len(coins(store)) == 15
    server.__exit__()


def test_429_waits_for_the_reset(home):
    state = XState(tweets=[tweet(1)], fail_next=1, reset_at=int(NOW) + 30)
    server, store, ingestor, api = start(home, state)
    outcomes, poll = poll_x(ingestor, api, NOW)
    assert outcomes == [] and poll.rate_limited_until == NOW + 30 and not poll.complete
    assert poll_x(ingestor, api, NOW + 10)[1].requests == 0
    outcomes, poll = poll_x(ingestor, api, NOW + 31)
    assert [o.status for o in outcomes] == ["accepted"]
    server.__exit__()


def test_mentions_mode_pages_with_pagination_token(home):
    state = XState(tweets=[tweet(n) for n in range(1, 8)])
    server, store, ingestor, api = start(
        home, state, x_mode="mentions", x_user_id="1500000000000000000", x_max_results=5
    )
    outcomes, poll = poll_x(ingestor, api, NOW)
    assert poll.complete and len(outcomes) == 7
    paths = {r["path"] for r in state.requests}
    assert paths == {"/2/users/1500000000000000000/mentions"}
    assert state.requests[1]["params"]["pagination_token"] == "5"
    assert "query" not in state.requests[0]["params"]
    server.__exit__()


def test_the_token_is_never_printed(home, caplog):
    secret = "AAAA-very-secret-bearer-0123456789"
    state = XState(tweets=[tweet(1, "SAFE")], token=secret)
    with XServer(state) as server:
        cfg_for(home, server.base)
        caplog.set_level(logging.DEBUG)
        r = CliRunner().invoke(
            cli, ["--home", str(home), "ingest", "--x-api"], env={"X_BEARER_TOKEN": secret}
        )
        assert r.exit_code == 0, r.output
        assert "accepted $SAFE" in r.output
        assert state.requests[0]["auth"] == f"Bearer {secret}"
        # a wrong token: one line naming the variable, not its value
        r2 = CliRunner().invoke(
            cli,
            ["--home", str(home), "ingest", "--x-api"],
            env={"X_BEARER_TOKEN": "wrong-" + secret},
        )
        assert r2.exit_code == 1 and "HTTP 401" in r2.output and "X_BEARER_TOKEN" in r2.output
        r3 = CliRunner().invoke(
            cli, ["--home", str(home), "ingest", "--x-api"], env={"X_BEARER_TOKEN": ""}
        )
        assert r3.exit_code == 1 and "X_BEARER_TOKEN is not set" in r3.output
    for text in (
        r.output,
        r2.output,
        r3.output,
        caplog.text,
        repr(XApi(config.load(home, env={}), Store(home / "moonshot.db"), secret)),
    ):
        assert secret not in text


def test_an_error_title_echoing_the_token_never_shows_it(home):
    """Review finding: an X API error whose title echoes the Authorization header
    printed the bearer token."""
    secret = "AAAA-echoed-bearer-9876543210"
    state = XState(tweets=[tweet(1)], token=secret, echo_auth=400)
    with XServer(state) as server:
        cfg_for(home, server.base)
        r = CliRunner().invoke(
            cli, ["--home", str(home), "ingest", "--x-api"], env={"X_BEARER_TOKEN": secret}
        )
    assert r.exit_code == 1 and "HTTP 400" in r.output and "***" in r.output
    assert secret not in r.output


def test_config_errors_name_the_key(home):
    cfg = cfg_for(home, "http://127.0.0.1:9", x_query="")
    with pytest.raises(ConfigError, match="ingest.x_query"):
        XApi(cfg, Store(cfg.db_path), "t")
    cfg = cfg_for(home, "http://127.0.0.1:9", x_mode="mentions", x_user_id="bob")
    with pytest.raises(ConfigError, match="ingest.x_user_id"):
        XApi(cfg, Store(cfg.db_path), "t")


def test_follow_polls_until_term(home):
    """The real CLI in a subprocess: it polls, picks up a tweet that arrives later, and
    a TERM ends it between polls with exit 0."""
    state = XState(tweets=[tweet(1)])
    with XServer(state) as server:
        cfg_for(home, server.base, x_poll_interval=0.2)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moonshot",
                "--home",
                str(home),
                "ingest",
                "--x-api",
                "--follow",
            ],
            env={**os.environ, "X_BEARER_TOKEN": state.token},
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.time() + 20
            while len(state.requests) < 1 and time.time() < deadline:
                time.sleep(0.05)
            state.tweets.append(tweet(2))
            polls = len(state.requests)
            while len(state.requests) < polls + 2 and time.time() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "accepted $T1" in out and "accepted $T2" in out
    assert len(state.requests) >= 3
    assert all(r["params"].get("since_id") for r in state.requests[1:])  # restarts from the cursor
    assert state.token not in out + err


def test_follow_rides_out_a_transient_error_and_honours_the_window(home):
    """follow_x with a fake clock: an X 503 waits one interval, a closed window waits for
    its reset, and the loop stops when told."""
    from moonshot.twitter.ingest import follow_x

    state = XState(tweets=[tweet(1)])
    server, store, ingestor, api = start(home, state)
    clock = [NOW]
    answers = iter(["503", "closed", "ok", "ok"])
    real_fetch = api.fetch

    def fetch(now=None):
        what = next(answers)
        if what == "503":
            from moonshot.errors import TransientError

            raise TransientError("X API answered HTTP 503")
        if what == "closed":
            store.meta_set("x_api.blocked_until", repr(clock[0] + 100))
        return real_fetch(clock[0])

    api.fetch = fetch
    wakes, warnings, reports = [], [], []

    def sleep(seconds):
        clock[0] += seconds
        wakes.append(round(clock[0] - NOW, 1))

    follow_x(
        ingestor,
        api,
        10.0,
        stopped=lambda: len(reports) >= 2,
        report=reports.append,
        warn=warnings.append,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    assert len(warnings) == 1 and "503" in warnings[0]
    assert reports[0] == []  # the window was closed: nothing fetched
    assert [o.ticker for o in reports[1]] == ["T1"]
    assert 10.0 in wakes and max(wakes) >= 110.0  # one interval, then the reset
    server.__exit__()
