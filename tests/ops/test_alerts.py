"""Alerts through apprise's real `json://` plugin to a loopback receiver the test starts
(tests/ops/receivers.py), in process: every event's message, the alert recorded in the
transition's own transaction, dedup, the rate limit, retries with backoff against 500,
429 and a receiver that never answers, per-receiver delivery, expiry, the screenshot,
the source hooks, launch limits, the daily summary, the restart and `watch` checks."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time

import pytest

from moonshot import machine as m
from moonshot.errors import StaleState, TransientError
from moonshot.ops import alert_events as ev
from moonshot.ops import alerts, health
from moonshot.ports import IncomingCoin
from moonshot.store import Store
from moonshot.supabase.source_supabase import SupabaseAuthError
from tests.conftest import drain, make_image
from tests.ops.receivers import Receiver, dead_port

pytest_plugins = ["tests.ops.receiver_plugin"]  # the `receiver` fixture

TOKEN = "SECRETtoken-4f9a8b7c6d5e"


@pytest.fixture
def alert_cfg(cfg_factory, receiver, monkeypatch):
    """A home whose one receiver is the loopback one, through a URL with a password
    (a secret: MOONSHOT_ALERT_URLS), and short timeouts."""

    def make(env: dict | None = None, url: str | None = None):
        monkeypatch.setenv(
            "MOONSHOT_ALERT_URLS", url or receiver.url(user="moonshot", password=TOKEN)
        )
        base = {
            "MOONSHOT_ALERTS_TIMEOUT": "1",
            "MOONSHOT_ALERTS_RETRY_BASE": "10",
            **(env or {}),
        }
        return cfg_factory(base)

    return make


def add(store: Store, n: int = 1, ticker: str = "MOON") -> list[int]:
    out = []
    for i in range(n):
        coin_id, _ = store.add_coin(
            IncomingCoin(
                "local", f"c{ticker}{i}", f"{ticker}{i}" if n > 1 else ticker, "Moon", "/x.png", "u"
            ),
            twitter_user="u",
        )
        out.append(coin_id)
    return out


def fail(store: Store, coin_id: int, reason: str = "download from example.org failed: HTTP 500"):
    coin = store.get(coin_id)
    store.fire(coin, "fail", detail={"reason": reason}, last_error=reason, failed_from=coin.state)


def review(store: Store, coin_id: int, reason: str):
    coin = store.get(coin_id)
    for trigger in ("spool", "import_photo", "confirm", "start_launch"):
        coin = store.get(coin_id)
        store.fire(coin, trigger)
    store.fire(store.get(coin_id), "review", detail={"reason": reason}, last_error=reason)


def sender(cfg, store) -> alerts.Sender:
    return alerts.Sender(cfg, store, alerts.check_targets(cfg))


def one_failed_coin(cfg) -> tuple[Store, alerts.Sender]:
    store = Store(cfg.db_path)
    (coin_id,) = add(store)
    fail(store, coin_id)
    return store, sender(cfg, store)


def rows(store: Store) -> list[dict]:
    return list(reversed(store.alerts(limit=1000)))


# -- recorded with the transition ------------------------------------------------------------
def test_failed_and_needs_review_are_recorded_by_the_transition(store):
    a, b = add(store, 2)
    fail(store, a)
    review(store, b, "launch outcome unknown: TimeoutError")
    got = rows(store)
    assert [(r["event"], r["coin_id"], r["ticker"], r["state"]) for r in got] == [
        ("failed", a, "MOON0", "failed"),
        ("needs_review", b, "MOON1", "needs_review"),
    ]
    last = store.history(b)[-1]
    assert got[1]["key"] == f"needs_review:{b}:{last['id']}"  # names its transition
    assert got[0]["command"].endswith(f"`moonshot retry {a}`")
    assert f"moonshot resolve {b} --launched" in got[1]["command"]
    assert f"moonshot resolve {b} --not-launched" in got[1]["command"]
    assert all(r["status"] == "pending" for r in got)


def test_the_alert_is_in_the_same_transaction_as_the_transition(store):
    """If the alert cannot be written, the transition is not committed either (and the
    other way round): a crash can never keep one without the other."""
    (coin_id,) = add(store)
    store.db.execute(
        "CREATE TRIGGER no_alerts BEFORE INSERT ON alerts BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        fail(store, coin_id)
    assert store.get(coin_id).state == m.FETCHED
    assert [t["to_state"] for t in store.history(coin_id)] == [m.FETCHED]
    store.db.execute("DROP TRIGGER no_alerts")
    with pytest.raises(StaleState):  # a stale transition records no alert
        store.commit_transition(coin_id, m.SPOOLED, m.FAILED, "fail", {}, {})
    assert rows(store) == []


def test_only_entering_failed_or_needs_review_alerts(store):
    (coin_id,) = add(store)
    coin = store.get(coin_id)
    store.fire(coin, "attempt", attempts=1)
    store.fire(store.get(coin_id), "defer", detail={"error": "x"})
    store.fire(store.get(coin_id), "spool")
    assert rows(store) == []
    fail(store, coin_id)
    store.fire(store.get(coin_id), "retry")
    fail(store, coin_id, "again")
    keys = [r["key"] for r in rows(store)]
    assert len(keys) == 2 and len(set(keys)) == 2  # each failure is its own event


def test_a_screenshot_named_in_the_reason_is_the_attachment(store):
    (coin_id,) = add(store)
    shot = "/home/x/logs/screens/20261201T101010.000000Z-coin1-outcome.png"
    review(
        store,
        coin_id,
        f"coin 1: flow outcome (outcome) failed: unknown screen; screenshot {shot}; ...",
    )
    assert rows(store)[0]["attachment"] == shot


# -- delivery ----------------------------------------------------------------------------------
def test_every_event_arrives_with_what_settles_it(alert_cfg, receiver):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    a, b = add(store, 2)
    fail(store, a)
    review(store, b, "found in launching at start-up")
    for event, key, reason in [
        (ev.SOURCE_AUTH, "source_auth:1", "Supabase poll: HTTP 401"),
        (ev.SOURCE_DOWN, "source_down:1", "no answer for 900 s"),
        (ev.SOURCE_BACK, "source_back:1", "answers again"),
        (ev.LAUNCH_LIMIT, "launch_limit:max_per_hour:1", "3 launches in the last hour"),
        (ev.SERVICE_DOWN, "service_down:all:1.0", "the service is dead"),
        (ev.RESTARTED, "restarted:all:1.0", "the last service ended without a clean stop"),
        (ev.DAILY_SUMMARY, "daily_summary:2026-12-01", "launched in 24 h: 3"),
    ]:
        assert store.record_alert(ev.row(event, key, reason=reason))
    assert sender(cfg, store).round() == {"messages": 9, "sent": 9, "failed": 0, "waiting": 0}
    assert [r["status"] for r in rows(store)] == ["sent"] * 9
    bodies = {p["body"]["title"]: p["body"] for p in receiver.posts}
    failed = bodies["moonshot: coin 1 MOON0 failed"]
    assert failed["type"] == "failure"
    msg = failed["message"]
    assert "coin 1 MOON0: now failed" in msg and "reason: download from example.org failed" in msg
    assert "`moonshot retry 1`" in msg and f"home: {cfg.home}" in msg
    assert (
        "moonshot resolve 2 --not-launched"
        in bodies["moonshot: coin 2 MOON1 needs review"]["message"]
    )
    assert len(receiver.alert_keys()) == 9 and set(receiver.alert_keys()) == {
        r["key"] for r in rows(store)
    }
    assert all(p["auth"] == Receiver.basic("moonshot", TOKEN) for p in receiver.posts)
    assert bodies["moonshot: daily summary"]["type"] == "info"
    store.close()


def test_the_same_event_twice_is_recorded_once(alert_cfg, receiver):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    assert store.record_alert(ev.row(ev.SOURCE_DOWN, "source_down:5", reason="x"))
    assert not store.record_alert(ev.row(ev.SOURCE_DOWN, "source_down:5", reason="y"))
    s = sender(cfg, store)
    s.round()
    s.round()
    assert receiver.alert_keys() == ["source_down:5"]


def test_the_rate_limit_folds_the_rest_into_one_message(alert_cfg, receiver):
    cfg = alert_cfg({"MOONSHOT_ALERTS_MAX_PER_HOUR": "3"})
    store = Store(cfg.db_path)
    ids = add(store, 7)
    for coin_id in ids:
        fail(store, coin_id)
    s = sender(cfg, store)
    now = time.time()
    assert s.round(now) == {"messages": 3, "sent": 7, "failed": 0, "waiting": 0}
    assert len(receiver.posts) == 3
    last = receiver.posts[-1]["body"]
    assert last["title"] == "moonshot: 5 alerts" and "alerts.max_per_hour = 3" in last["message"]
    assert sorted(receiver.alert_keys()) == sorted(r["key"] for r in rows(store))  # each one, once
    # The hour is used up: later alerts wait (they are not dropped) until it has passed.
    (late,) = add(store, 1, "LATE")
    fail(store, late)
    assert s.round(now + 60)["waiting"] == 1 and len(receiver.posts) == 3
    assert s.round(now + 3601)["sent"] == 1 and len(receiver.posts) == 4


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_receiver_is_retried_with_backoff(alert_cfg, receiver, status):
    receiver.mode, receiver.status, receiver.fail_first = "flaky", status, 2
    store, s = one_failed_coin(alert_cfg())
    now = time.time()
    assert s.round(now)["failed"] == 1
    (a,) = rows(store)
    assert a["status"] == "pending" and a["attempts"] == 1
    assert a["last_error"] == f"#1 json://127.0.0.1:{receiver.port}: HTTP {status}"
    assert now + 8 <= a["next_try"] <= now + 12  # retry_base 10 s, with jitter
    assert s.round(now + 1)["messages"] == 0  # not due yet
    assert s.round(a["next_try"])["failed"] == 1
    (a,) = rows(store)
    assert a["attempts"] == 2 and a["next_try"] >= now + 8 + 16  # doubled (20 s less 20 %)
    assert s.round(a["next_try"])["sent"] == 1
    assert rows(store)[0]["status"] == "sent" and len(receiver.posts) == 3


def test_a_receiver_that_never_answers_is_given_up_and_retried(alert_cfg, receiver):
    receiver.mode = "hang"
    store, s = one_failed_coin(alert_cfg({"MOONSHOT_ALERTS_TIMEOUT": "0.5"}))
    started = time.monotonic()
    assert s.round()["failed"] == 1
    assert time.monotonic() - started < 30  # given up (the receiver holds it for 120 s)
    (a,) = rows(store)
    assert a["status"] == "pending" and "json://127.0.0.1" in a["last_error"]


def test_each_receiver_gets_it_once_even_when_another_fails(alert_cfg, receiver, tmp_path):
    other = f"json://127.0.0.1:{dead_port()}/nobody"
    url = receiver.url(user="moonshot", password=TOKEN)
    store, s = one_failed_coin(alert_cfg(url=f"{url} {other}"))
    now = time.time()
    assert s.round(now)["failed"] == 1
    (a,) = rows(store)
    assert a["delivered"] == [alerts.Target(1, url).id]
    assert a["last_error"].startswith("#2 json://127.0.0.1") and "nobody" not in a["last_error"]
    s.round(a["next_try"])  # the dead one is tried again; the live one is not sent twice
    assert len(receiver.posts) == 1


def test_an_alert_too_old_to_matter_expires(alert_cfg, receiver):
    cfg = alert_cfg({"MOONSHOT_ALERTS_MAX_AGE": "3600"})
    store = Store(cfg.db_path)
    store.record_alert(ev.row(ev.SOURCE_DOWN, "source_down:1", reason="x"), now=time.time() - 7200)
    assert sender(cfg, store).round()["messages"] == 0
    assert rows(store)[0]["status"] == "expired" and receiver.posts == []


def test_the_screenshot_goes_with_a_needs_review_alert(alert_cfg, receiver):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    shot = make_image(cfg.logs_dir / "screens" / "x-coin1-outcome.png", fmt="PNG")
    elsewhere = make_image(cfg.home / "not-a-screen.png", fmt="PNG")
    a, b = add(store, 2)
    review(store, a, f"unknown screen; screenshot {shot}; check the app")
    review(store, b, f"unknown screen; screenshot {elsewhere}; check the app")
    sender(cfg, store).round()
    by_coin = {p["body"]["title"].split()[2]: p["body"] for p in receiver.posts}
    (attachment,) = by_coin[str(a)]["attachments"]
    assert base64.b64decode(attachment["base64"]) == shot.read_bytes()
    assert by_coin[str(b)]["attachments"] == []  # only from logs/screens/


def test_a_url_apprise_cannot_use_is_one_line_naming_its_label(cfg_factory, monkeypatch):
    from moonshot.errors import ConfigError

    monkeypatch.setenv("MOONSHOT_ALERT_URLS", f"nosuchservice://{TOKEN}@alerts.example.com/x")
    cfg = cfg_factory()
    with pytest.raises(ConfigError) as err:
        alerts.check_targets(cfg)
    assert "#1 nosuchservice://alerts.example.com" in str(err.value) and TOKEN not in str(err.value)


# -- events the service sees -----------------------------------------------------------------
def test_source_down_alerts_after_source_down_after_once_and_back_once(alert_cfg):
    cfg = alert_cfg({"MOONSHOT_ALERTS_SOURCE_DOWN_AFTER": "600"})
    store = Store(cfg.db_path)
    hooks = alerts.Alerts(cfg, store)
    t0 = 1_800_000_000.0
    for dt in (0, 30, 300, 599):
        hooks.source_failed(TransientError("Supabase poll: HTTP 503; will retry"), t0 + dt)
    assert rows(store) == []
    hooks.source_failed(TransientError("Supabase poll: HTTP 503; will retry"), t0 + 601)
    # A restart in the middle of the outage keeps the episode (meta), and its alert.
    hooks = alerts.Alerts(cfg, store)
    hooks.source_failed(TransientError("Supabase poll: HTTP 503; will retry"), t0 + 900)
    got = rows(store)
    assert [r["key"] for r in got] == [f"source_down:{t0:.0f}"]
    assert got[0]["reason"].startswith("no answer for 601 s: Supabase poll: HTTP 503")
    hooks.source_ok(t0 + 1000)
    hooks.source_ok(t0 + 1030)
    assert [r["event"] for r in rows(store)] == ["source_down", "source_back"]
    assert store.meta_get("alert_source_down_since") == ""


def test_a_short_outage_raises_nothing(alert_cfg):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    hooks = alerts.Alerts(cfg, store)
    hooks.source_failed(TransientError("timed out"), 100.0)
    hooks.source_ok(130.0)
    hooks.source_failed(TransientError("timed out"), 2000.0)  # a new episode starts here
    hooks.source_failed(TransientError("timed out"), 2000.0 + cfg.alerts.source_down_after - 1)
    assert rows(store) == []


def test_an_auth_problem_alerts_at_once(alert_cfg):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    hooks = alerts.Alerts(cfg, store)
    for dt in (0, 30, 60):
        hooks.source_failed(SupabaseAuthError("Supabase poll: HTTP 401 PGRST301"), 50.0 + dt)
    (a,) = rows(store)
    assert a["event"] == "source_auth" and "SUPABASE_SERVICE_ROLE_KEY" in a["command"]


def test_a_service_whose_poll_fails_calls_the_hooks(service_factory, monkeypatch):
    svc = service_factory({"MOONSHOT_ALERTS_SOURCE_DOWN_AFTER": "0"})

    class Down:
        kind = "flaky"

        def poll(self, now, limit):
            raise TransientError("source unreachable")

    monkeypatch.setattr(svc.ports, "source", Down())
    svc.tick(1000.0)
    assert [r["event"] for r in rows(svc.store)] == ["source_down"]


def test_a_launch_limit_is_one_alert_per_episode(service_factory, tmp_path):
    svc = service_factory({"MOONSHOT_LAUNCH_MAX_PER_HOUR": "1"})
    for i in range(3):
        img = make_image(tmp_path / f"{i}.png")
        svc.store.add_coin(
            IncomingCoin("local", f"r{i}", f"R{i}", "R", str(img), "u"), twitter_user="u"
        )
    drain(svc)
    assert svc.store.counts()[m.LAUNCHED] == 1 and svc.store.counts()[m.CONFIRMED] == 1
    now = time.time()
    for dt in (0, 5, 60):
        alerts.launch_limits(svc.cfg, svc.store, now + dt)
    (a,) = rows(svc.store)
    assert a["event"] == "launch_limit" and "launch.max_per_hour = 1" in a["reason"]
    assert "1 coin(s) wait in confirmed" in a["reason"]
    # The queue drains: the episode ends; the next time the limit holds a coin is a new one.
    for c in svc.store.coins_in([m.CONFIRMED, m.SPOOLED, m.FETCHED]):
        svc.store.fire(c, "fail", detail={"reason": "x"}, failed_from=c.state)
    alerts.launch_limits(svc.cfg, svc.store, now + 100)
    assert svc.store.meta_get("alert_launch_limit:max_per_hour") == ""


def test_the_daily_summary_once_a_day_after_its_time(cfg_factory):
    cfg = cfg_factory({"MOONSHOT_ALERTS_DAILY_SUMMARY": "09:00"})
    store = Store(cfg.db_path)
    add(store, 1)
    day = time.mktime((2026, 12, 1, 8, 59, 0, 0, 0, -1))
    assert not alerts.daily_summary(cfg, store, day)
    assert alerts.daily_summary(cfg, store, day + 120)
    assert not alerts.daily_summary(cfg, store, day + 3600)
    assert alerts.daily_summary(cfg, store, day + 86400 + 120)
    got = rows(store)
    assert [r["key"] for r in got] == ["daily_summary:2026-12-01", "daily_summary:2026-12-02"]
    assert "waiting: fetched 1" in got[0]["reason"]


def test_a_start_after_a_crash_alerts_and_a_clean_one_does_not(alert_cfg):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    store.meta_set_many({"heartbeat_at": "0", "heartbeat_pid": "1"})
    alerts.Alerts(cfg, store).on_start(time.time())
    assert rows(store) == []
    store.meta_set_many({"heartbeat_at": repr(time.time() - 40), "heartbeat_pid": "4242"})
    hooks = alerts.Alerts(cfg, store)
    hooks.on_start(time.time())
    hooks.stop(5)
    (a,) = rows(store)
    assert a["event"] == "restarted" and "pid 4242" in a["reason"]


@pytest.mark.parametrize("pid", ["alive", "dead"])
def test_watch_alerts_once_per_stale_heartbeat(alert_cfg, receiver, pid):
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    past = time.time() - 1000
    who = os.getpid() if pid == "alive" else 2**22 + 12345
    store.meta_set_many({"heartbeat_at": repr(past), "heartbeat_pid": str(who)})
    report = alerts.watch(cfg, store)
    state = health.HUNG if pid == "alive" else health.DEAD
    assert report["services"]["all"]["state"] == state and not report["healthy"]
    assert report["raised"] == [f"service_down:all:{past!r}"]
    assert report["round"]["sent"] == 1 and receiver.alert_keys() == [f"service_down:all:{past!r}"]
    assert f"is {state}" in receiver.posts[0]["body"]["message"]
    again = alerts.watch(cfg, store)  # the same stale heartbeat: no second alert
    assert again["raised"] == [] and len(receiver.posts) == 1
    # A running service: nothing.
    store.meta_set_many({"heartbeat_at": repr(time.time()), "heartbeat_pid": str(os.getpid())})
    assert alerts.watch(cfg, store)["healthy"]


@pytest.mark.parametrize("trick", ["screens-is-a-link", "hard-link", "named-like-a-shot"])
def test_an_alert_never_attaches_a_secret_linked_into_logs(alert_cfg, receiver, trick):
    """The dashboard attack (`ln -s .. logs/screens`) aimed at alerts: moonshot.env must
    never leave the Mac as an 'attachment', however it was put in logs/screens."""
    cfg = alert_cfg()
    store = Store(cfg.db_path)
    secret = cfg.home / "moonshot.env"
    secret.write_text("SUPABASE_SERVICE_ROLE_KEY=sk-never-sent\n")
    screens = cfg.logs_dir / "screens"
    screens.parent.mkdir(parents=True, exist_ok=True)
    if trick == "screens-is-a-link":  # logs/screens -> elsewhere, holding a real PNG
        elsewhere = cfg.home / "elsewhere"
        make_image(elsewhere / "x-coin1-outcome.png", fmt="PNG")
        screens.symlink_to(elsewhere)
        shot = screens / "x-coin1-outcome.png"
    elif trick == "hard-link":
        screens.mkdir()
        shot = screens / "x-coin1-outcome.png"
        os.link(secret, shot)
    else:
        screens.mkdir()
        shot = screens / "x-coin1-outcome.png"
        shot.write_bytes(secret.read_bytes())  # not a PNG
    (a,) = add(store)
    review(store, a, f"unknown screen; screenshot {shot}; check the app")
    sender(cfg, store).round()
    (post,) = receiver.posts
    assert post["body"]["attachments"] == []
    assert "sk-never-sent" not in json.dumps(post)
