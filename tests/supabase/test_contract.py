"""The exact PostgREST requests SupabaseSource sends (method, path, query string, Prefer,
body), how it classes replies, and that the key never leaks. No server: an httpx
MockTransport answers as PostgREST v12 would."""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

import httpx
import pytest

from moonshot.errors import ConfigError, TransientError
from moonshot.supabase import source_supabase as sb

KEY = "sk-live-SECRET-0123456789"
URL = "https://proj.supabase.co"
WORKER = "mac1:abc"
ROW = {
    "id": 7,
    "ticker": "MOON",
    "name": "Moon",
    "image_url": "https://proj.supabase.co/storage/v1/object/public/img/m.jpg",
    "twitter_user": "elon",
    "tweet_id": 123,
    "created_at": "2026-01-01T00:00:00+00:00",
}


class Fake:
    """Records requests; answers from a list of (status, json body) or a callable."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else (200, [])
        if callable(reply):
            return reply(request)
        status, body = reply
        return httpx.Response(status, json=body)

    def lines(self) -> list[str]:
        return [f"{r.method} {r.url.path}?{unquote(r.url.query.decode())}" for r in self.requests]


def make(fake: Fake, **kw) -> sb.SupabaseSource:
    clock = kw.pop("clock", lambda: 1000.0)
    return sb.SupabaseSource(
        URL, KEY, worker=WORKER, transport=httpx.MockTransport(fake), clock=clock, **kw
    )


def test_poll_rereads_own_claims_then_claims_via_rpc():
    fake = Fake((200, []), (200, [ROW]), (200, []))
    src = make(fake)
    coins = src.poll(1000.0, 5)
    src.poll(1001.0, 5)
    assert fake.lines() == [
        "GET /rest/v1/coins?select=id,ticker,name,image_url,twitter_user,tweet_id,created_at"
        "&claimed_by=eq.mac1:abc&image_synced=eq.false&launch_state=is.null"
        "&order=created_at.asc,id.asc&limit=1000",
        "POST /rest/v1/rpc/moonshot_claim?",
        "POST /rest/v1/rpc/moonshot_claim?",
    ]
    claim = fake.requests[1]
    assert json.loads(claim.content) == {"p_worker": WORKER, "p_limit": 5, "p_lease_seconds": 600}
    assert "prefer" not in claim.headers
    assert claim.headers["apikey"] == KEY and claim.headers["authorization"] == f"Bearer {KEY}"
    assert [(c.source, c.source_ref, c.ticker, c.tweet_id) for c in coins] == [
        ("supabase", "7", "MOON", "123")
    ]


def test_report_imported_is_a_plain_eq_patch():
    fake = Fake((200, [ROW]))
    src = make(fake)
    src.report("7", "imported", {"image_filename": "elon_MOON_1.jpg", "trigger": "import"})
    (req,) = fake.requests
    assert (req.method, req.url.path, unquote(req.url.query.decode())) == (
        "PATCH",
        "/rest/v1/coins",
        "id=eq.7&claimed_by=eq.mac1:abc",
    )
    assert req.headers["prefer"] == "return=representation"
    body = json.loads(req.content)
    assert body["image_synced"] is True and body["image_filename"] == "elon_MOON_1.jpg"
    assert body["image_sync_timestamp"].startswith("1970-01-01T00:16:40")
    assert body["launch_state"] is None and body["sync_state"] == "imported"


def test_report_launched_fills_launch_columns():
    fake = Fake((200, [ROW]))
    make(fake).report("7", "launched", {"token_address": "So1abc", "last_error": "old"})
    body = json.loads(fake.requests[0].content)
    assert body["launch_state"] == "launched" and body["token_address"] == "So1abc"
    assert body["launched_at"].startswith("1970-01-01") and body["last_error"] is None


def test_report_takes_unclaimed_row_and_never_overwrites_another_holder():
    fake = Fake((200, []), (200, []), (200, [{"id": 7}]))
    src = make(fake)
    src.report("7", "failed", {"last_error": "boom"})
    assert fake.lines() == [
        "PATCH /rest/v1/coins?id=eq.7&claimed_by=eq.mac1:abc",
        "PATCH /rest/v1/coins?id=eq.7&claimed_by=is.null",
        "GET /rest/v1/coins?select=id&id=eq.7",
    ]
    assert src.health()["claims_lost"] == ["7"]


def test_no_logic_filters_on_writes():
    """PostgREST v12 re-applies or=/and= to PATCH results (#3707): never send them."""
    fake = Fake((200, []), (200, [ROW]), (200, [ROW]), (200, []), (200, []), (200, [{"id": 7}]))
    src = make(fake)
    src.poll(1000.0, 5)
    src.report("7", "spooled", {"image_filename": "a.jpg"})
    src.report("7", "launched", {})
    for req in fake.requests:
        query = unquote(req.url.query.decode())
        assert "or=" not in query and "and=" not in query, query


def test_keepalive_renews_through_rpc_at_most_every_third_of_the_lease():
    fake = Fake((200, ["7"]), (200, ["7"]))
    src = make(fake, lease_seconds=300)
    assert src.keepalive(["7", "8"], 1000.0) == ["8"]
    assert src.keepalive(["7"], 1050.0) == []  # too soon: no request
    src.keepalive(["7"], 1100.0)
    assert fake.lines() == ["POST /rest/v1/rpc/moonshot_renew?"] * 2
    assert json.loads(fake.requests[0].content) == {
        "p_worker": WORKER,
        "p_ids": ["7", "8"],
        "p_lease_seconds": 300,
    }
    assert src.health()["claims_lost"] == ["8"]


def test_holds_trusts_a_fresh_renewal_then_asks_again():
    fake = Fake((200, ["7"]), (200, []))
    src = make(fake, lease_seconds=600, clock=lambda: 1000.0)
    src.keepalive(["7"], 1000.0)
    assert src.holds("7", 1100.0) is True
    assert len(fake.requests) == 1
    assert src.holds("7", 1590.0) is False  # within the margin: asks, and lost it
    assert len(fake.requests) == 2


def test_supabase_get_retry_is_off():
    """postgrest-py would retry a GET on 503 three times with sleeps; we send one."""
    fake = Fake(*[(503, {"code": "PGRST001", "message": "db down"})] * 4)
    src = make(fake)
    with pytest.raises(TransientError, match="PGRST001"):
        src.poll(1000.0, 5)
    assert len(fake.requests) == 1


def test_http_client_is_explicit_http1_with_timeouts():
    src = make(Fake(), connect_timeout=3.0, read_timeout=9.0)
    assert src.http.timeout.connect == 3.0 and src.http.timeout.read == 9.0
    assert src.client.postgrest.session is src.http
    assert src.client.postgrest.retry_enabled is False
    real = sb.SupabaseSource(URL, KEY, worker=WORKER)
    pool = real.http._transport._pool
    assert pool._http1 is True and pool._http2 is False
    real.close()


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (503, "PGRST001", "transient"),
        (504, "PGRST003", "transient"),
        (500, "PGRST000", "transient"),
        (502, None, "transient"),
        (None, "520", "transient"),
        (429, None, "transient"),
        (401, "PGRST301", "auth"),
        (401, None, "auth"),
        (403, "42501", "auth"),
        (404, "42P01", "setup"),
        (404, "PGRST202", "setup"),
        (400, "PGRST204", "setup"),
        (400, "22001", "coin"),
        (409, "23505", "coin"),
        (400, "PGRST100", "coin"),
    ],
)
def test_classify(status, code, kind):
    assert sb.classify(status, code) == kind


def test_auth_failure_stops_fetching_and_shows_in_health():
    fake = Fake((401, {"message": "Invalid API key", "hint": "Double check"}))
    src = make(fake)
    with pytest.raises(sb.SupabaseAuthError, match="SUPABASE_SERVICE_ROLE_KEY"):
        src.poll(1000.0, 5)
    with pytest.raises(sb.SupabaseAuthError):
        src.poll(1030.0, 5)
    assert len(fake.requests) == 1  # paused: no request while the key is known bad
    health = src.health()
    assert health["auth"] == "failed" and "401" in health["auth_problem"]
    src.poll(1000.0 + sb.AUTH_PAUSE + 1, 5)  # after the pause it asks again
    assert len(fake.requests) == 3


def test_transient_failures_are_counted_and_the_schedule_is_the_services():
    """The adapter asks whenever it is called (the service's poll schedule backs off,
    moonshot.retry), counts the failures in a row for health, and forgets them on success."""
    fake = Fake(*[(503, {"code": "PGRST002", "message": "schema cache"})] * 3, (200, []), (200, []))
    src = make(fake)
    for now in (1000.0, 1000.1, 1000.2):
        with pytest.raises(TransientError, match="503"):
            src.poll(now, 5)
    assert len(fake.requests) == 3
    assert src.health()["consecutive_failures"] == 3
    assert src.poll(1000.3, 5) == []
    assert src.health()["consecutive_failures"] == 0


def test_a_coin_problem_does_not_block_the_outbox():
    fake = Fake(
        (400, {"code": "22001", "message": "value too long for type character varying(255)"})
    )
    src = make(fake)
    src.report("7", "spooled", {"image_filename": "x" * 300})  # no raise: later reports go on
    assert "22001" in src.health()["report_errors"]["7"]


def test_key_never_leaks(caplog):
    def echo_key(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused, sent {request.headers['apikey']}", request=request)

    def api_echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"code": "XX000", "message": f"bad token {KEY}"})

    caplog.set_level(logging.DEBUG)
    src = make(Fake(echo_key, api_echo, api_echo))
    errors = []
    for now in (1000.0, 5000.0):
        with pytest.raises(TransientError) as info:
            src.poll(now, 5)
        errors.append(str(info.value))
    with pytest.raises(TransientError) as info:
        src.report("7", "launched", {})
    errors.append(str(info.value))
    texts = [*errors, repr(src), json.dumps(src.health()), caplog.text]
    assert all(KEY not in t for t in texts)
    assert "***" in errors[0] and "***" in errors[1]


def test_storage_status_reads_the_body():
    def resp(status, body):
        return httpx.Response(status, json=body)

    assert sb.storage_status(resp(400, {"statusCode": "503", "error": "x", "message": "y"})) == 503
    assert sb.storage_is_transient(resp(400, {"statusCode": "429", "error": "x", "message": "y"}))
    assert not sb.storage_is_transient(resp(400, {"statusCode": "404", "error": "not_found"}))
    assert sb.storage_status(httpx.Response(400, text="<html>")) == 400


def test_image_hosts_and_config(monkeypatch, tmp_path):
    from moonshot import config

    assert make(Fake()).image_hosts == ["proj.supabase.co"]
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", KEY)
    with pytest.raises(ConfigError, match="SUPABASE_URL") as info:
        sb.SupabaseSource.from_config(config.load(tmp_path, env={}))
    assert KEY not in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("SUPABASE_URL", URL)
    src = sb.SupabaseSource.from_config(config.load(tmp_path, env={}))
    assert src.worker == sb.worker_id(tmp_path) and src.worker != sb.worker_id(tmp_path / "other")
    src.close()


def test_database_password_never_leaks(caplog):
    db_url = "postgresql://postgres:pw-S3CRET-42@127.0.0.1:1/postgres"
    src = make(Fake(), db_url=db_url)
    caplog.set_level(logging.DEBUG)
    notify = {c.name: c for c in src.checks()}["supabase notify"]
    assert notify.status == "fail"
    assert "pw-S3CRET-42" not in notify.message + caplog.text + repr(src)
    assert src.scrub(f"bad dsn {db_url}") == "bad dsn ***"
    assert src.scrub("password pw-S3CRET-42 refused") == "password *** refused"


def test_claims_and_release_requests():
    fake = Fake((200, [{"id": 7, "ticker": "MOON"}]), (200, ["7"]))
    src = make(fake)
    assert src.claims() == [{"id": 7, "ticker": "MOON"}]
    assert src.release(["8", "7", "7"]) == ["7"]
    assert fake.lines() == [
        "GET /rest/v1/coins?select=id,ticker,sync_state,image_synced,claim_expires_at"
        "&claimed_by=eq.mac1:abc&launch_state=is.null&order=id.asc&limit=1000",
        "POST /rest/v1/rpc/moonshot_release?",
    ]
    assert json.loads(fake.requests[1].content) == {"p_worker": WORKER, "p_ids": ["7", "8"]}


class Unreachable:
    """A remote source whose reports always fail (Supabase down)."""

    kind = "supabase"

    def __init__(self):
        self.reports = 0

    def poll(self, now, limit):
        return []

    def report(self, coin_ref, event, fields):
        self.reports += 1
        raise TransientError("Supabase unreachable")

    def keepalive(self, coin_refs, now):
        return []

    def close(self):
        return None


def test_a_stuck_outbox_does_not_busy_loop_the_service(cfg_factory, home):
    """Entries queued behind a failing one are not due: only each coin's oldest is sent,
    and its retries back off from each failure (never dropped: a report is owed)."""
    from moonshot.adapters import Ports
    from moonshot.photos.library_folder import FolderLibrary
    from moonshot.ports import IncomingCoin
    from moonshot.service import Service
    from moonshot.store import Store

    cfg = cfg_factory({"MOONSHOT_LAUNCH_MODE": "off", "MOONSHOT_SPOOL_BACKOFF_BASE": "1"})
    source = Unreachable()
    clock = [1000.0]
    svc = Service(
        cfg,
        store=Store(cfg.db_path),
        ports=Ports(source, FolderLibrary(home), None),
        clock=lambda: clock[0],
    )
    coin_id, _ = svc.store.add_coin(
        IncomingCoin("supabase", "7", "MOON", "Moon", "http://x/m.png"), twitter_user="bot"
    )
    coin = svc.store.get(coin_id)
    svc.store.fire(coin, "reject", detail={"reason": "test"}, last_error="test")
    assert svc.store.outbox_pending() == 2  # fetched, then rejected behind it
    waits = []
    for _ in range(6):
        due = svc.next_due(clock[0])
        assert due is not None and due >= clock[0] - 1
        waits.append(due - clock[0])
        clock[0] = max(clock[0], due) + 0.01
        svc.tick(clock[0])
    assert source.reports == 6  # one report per due time: nothing sent behind the head
    assert waits[-1] > waits[2] > 0.5  # backing off: 1, 1, 2, 4 s ...
    assert svc.store.outbox_pending() == 2
    svc.close()


def test_holds_refuses_a_claim_keepalive_found_lost():
    """Review finding: `holds` answered from the renewal cache for up to a lease after
    keepalive had reported the claim lost; it is the last check before a launch."""
    fake = Fake((200, []), (200, [ROW]), (200, []))
    src = make(fake, lease_seconds=600, clock=lambda: 1000.0)
    assert [c.source_ref for c in src.poll(1000.0, 5)] == ["7"]
    assert src.keepalive(["7"], 1200.0) == ["7"]  # another service holds it now
    assert src.health()["claims_lost"] == ["7"]
    assert src.holds("7", 1250.0) is False
