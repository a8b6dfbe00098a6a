"""SupabaseSource and the service against the PostgREST-shaped stand-in over the real
PostgreSQL: claims under contention, injected faults (503, dropped connections, lost
replies, timeouts, 401), an outage mid-run, two services sharing one project, NOTIFY."""

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
from pathlib import Path

import psycopg
import pytest

from moonshot.errors import TransientError
from moonshot.supabase.source_supabase import SupabaseAuthError, SupabaseSource
from tests.supabase.standin import Standin, fetch_coins, insert_coin

pytest_plugins = ["tests.supabase.plugin"]
pytestmark = pytest.mark.postgres


def source(standin: Standin, worker: str = "w1", **kw) -> SupabaseSource:
    return SupabaseSource(standin.url, standin.key, worker=worker, **kw)


def png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256)).save(
        buf, "PNG"
    )
    return buf.getvalue()


def add_coins(standin: Standin, dsn: str, n: int, start: int = 0) -> list[int]:
    ids = []
    for i in range(start, start + n):
        url = standin.put_object("coin-images", f"c{i}.png", png(i), "image/png")
        ids.append(insert_coin(dsn, f"T{i:03d}", f"Coin {i}", image_url=url, twitter_user="bot"))
    return ids


# -- the adapter alone ----------------------------------------------------------------------
def test_round_trip_fills_the_columns(standin, coins_db):
    (coin,) = add_coins(standin, coins_db, 1)
    src = source(standin)
    (incoming,) = src.poll(time.time(), 10)
    assert incoming.source_ref == str(coin) and incoming.image_url.startswith(standin.url)
    src.report(str(coin), "spooled", {"image_filename": "bot_T000_1.jpg"})
    src.report(str(coin), "imported", {"image_filename": "bot_T000_1.jpg"})
    src.report(
        str(coin), "launched", {"token_address": "So1ana", "image_filename": "bot_T000_1.jpg"}
    )
    (row,) = fetch_coins(coins_db)
    assert row["image_synced"] is True and row["image_filename"] == "bot_T000_1.jpg"
    assert row["image_sync_timestamp"] is not None and row["launched_at"] is not None
    assert (row["launch_state"], row["token_address"], row["claimed_by"]) == (
        "launched",
        "So1ana",
        "w1",
    )
    assert src.poll(time.time(), 10) == []
    src.close()


def test_ten_concurrent_claims_through_rest_one_winner(standin, coins_db):
    (coin,) = add_coins(standin, coins_db, 1)
    sources = [source(standin, f"w{i}") for i in range(10)]
    barrier = threading.Barrier(10)
    got: dict[str, list[str]] = {}

    def run(src: SupabaseSource) -> None:
        barrier.wait()
        got[src.worker] = [c.source_ref for c in src.poll(time.time(), 5)]

    threads = [threading.Thread(target=run, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = {w: refs for w, refs in got.items() if refs}
    assert len(got) == 10 and list(winners.values()) == [[str(coin)]]
    (row,) = fetch_coins(coins_db)
    assert row["claimed_by"] == next(iter(winners))
    for s in sources:
        s.close()


def test_or_filter_claim_loses_the_winners_reply(standin, coins_db):
    """Why claims go through rpc(): on PostgREST v12 a conditional PATCH with or= updates
    the row and returns nothing (PostgREST #3707); the stand-in reproduces it."""
    (coin,) = add_coins(standin, coins_db, 1)
    src = source(standin)
    reply = (
        src.client.table("coins")
        .update({"claimed_by": "w1"})
        .eq("id", coin)
        .or_("claimed_by.is.null,claim_expires_at.lt.2000-01-01")
        .execute()
    )
    assert reply.data == []
    assert fetch_coins(coins_db)[0]["claimed_by"] == "w1"
    src.close()


def test_503_then_recovery(standin, coins_db):
    add_coins(standin, coins_db, 2)
    src = source(standin)
    standin.faults.add("status", times=2, status=503, body={"code": "PGRST001", "message": "down"})
    with pytest.raises(TransientError, match="503"):
        src.poll(1000.0, 10)
    with pytest.raises(TransientError, match="503"):
        src.poll(1001.0, 10)  # when to ask again is the service's (moonshot.retry)
    assert len(src.poll(1003.0, 10)) == 2
    src.close()


def test_dropped_connection_before_the_claim_claims_nothing(standin, coins_db):
    add_coins(standin, coins_db, 1)
    src = source(standin)
    src.poll(time.time(), 0)  # the first poll's re-read of own claims, done
    standin.faults.add("drop", path="/rest/v1/rpc/moonshot_claim")
    with pytest.raises(TransientError, match="unreachable"):
        src.poll(time.time(), 5)
    assert fetch_coins(coins_db)[0]["claimed_by"] is None
    assert len(src.poll(time.time() + 10, 5)) == 1
    src.close()


@pytest.mark.parametrize("fault", ["drop_reply", "timeout"])
def test_a_claim_whose_reply_is_lost_is_settled_by_rereading(standin, coins_db, fault):
    (coin,) = add_coins(standin, coins_db, 1)
    src = source(standin, read_timeout=0.5)
    src.poll(time.time(), 0)
    if fault == "drop_reply":
        standin.faults.add("drop_reply", path="/rest/v1/rpc/moonshot_claim")
    else:
        standin.faults.add("slow_reply", path="/rest/v1/rpc/moonshot_claim", delay=1.0)
    (incoming,) = src.poll(time.time(), 5)
    assert incoming.source_ref == str(coin)
    assert fetch_coins(coins_db)[0]["claimed_by"] == "w1"
    paths = [r.path for r in standin.recorded("/rest/v1/")]
    assert paths[-2:] == ["/rest/v1/rpc/moonshot_claim", "/rest/v1/coins"]  # the re-read
    assert src.poll(time.time() + 10, 5) == []  # handed over once
    src.close()


def test_timeout_is_transient_and_bounded(standin, coins_db):
    src = source(standin, read_timeout=0.3)
    standin.faults.add("delay", times=-1, delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        src.poll(time.time(), 5)
    assert time.monotonic() - started < 0.9
    standin.faults.clear()
    src.close()


def test_401_stops_fetching_and_doctor_says_so(standin, coins_db):
    add_coins(standin, coins_db, 1)
    bad = SupabaseSource(standin.url, "not-the-key", worker="w1")
    with pytest.raises(SupabaseAuthError):
        bad.poll(1000.0, 5)
    before = len(standin.recorded())
    with pytest.raises(SupabaseAuthError):
        bad.poll(1010.0, 5)
    assert len(standin.recorded()) == before
    checks = {c.name: c.status for c in bad.checks()}
    assert checks["supabase key"] == "fail"
    assert fetch_coins(coins_db)[0]["claimed_by"] is None
    bad.close()
    good = source(standin)
    assert {c.name: c.status for c in good.checks()}["supabase migration"] == "ok"
    good.close()


def test_doctor_names_a_missing_migration(standin, coins_db):
    with psycopg.connect(coins_db, autocommit=True) as conn:
        conn.execute("DROP FUNCTION moonshot_schema_version()")
    src = source(standin)
    checks = {c.name: c for c in src.checks()}
    assert checks["supabase migration"].status == "fail"
    assert "moonshot supabase sql" in checks["supabase migration"].fix
    src.close()


def test_lease_expiry_lets_another_service_take_over_and_the_first_knows(standin, coins_db):
    (coin,) = add_coins(standin, coins_db, 1)
    first = source(standin, "first", lease_seconds=1)
    second = source(standin, "second")
    assert len(first.poll(time.time(), 5)) == 1
    assert second.poll(time.time(), 5) == []
    time.sleep(1.2)
    assert [c.source_ref for c in second.poll(time.time(), 5)] == [str(coin)]
    assert first.keepalive([str(coin)], time.time()) == [str(coin)]
    assert first.holds(str(coin), time.time()) is False
    first.report(str(coin), "failed", {"last_error": "lost"})  # must not touch second's row
    row = fetch_coins(coins_db)[0]
    assert (row["claimed_by"], row["launch_state"]) == ("second", None)
    first.close()
    second.close()


def test_notify_wakes_within_a_second(standin, coins_db):
    src = source(standin, db_url=coins_db)
    woke = threading.Event()
    stop = src.watch(woke.set)
    deadline = time.monotonic() + 5
    while not src.health()["listening"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert src.health()["listening"]
    woke.clear()  # the wake-up every (re)connect gives
    started = time.monotonic()
    add_coins(standin, coins_db, 1)
    assert woke.wait(1.0)
    latency = time.monotonic() - started
    stop()
    assert latency < 1.0
    assert not src.health()["listening"]
    checks = {c.name: c.status for c in src.checks()}
    assert checks["supabase notify"] == "ok"
    with psycopg.connect(coins_db, autocommit=True) as conn:
        conn.execute("DROP TRIGGER coins_moonshot_notify ON coins")
    assert {c.name: c.status for c in src.checks()}["supabase notify"] == "fail"
    src.close()


def test_storage_endpoints_and_their_error_shape(standin, coins_db):
    src = source(standin)
    storage = src.client.storage
    storage.create_bucket("imgs", options={"public": True})
    storage.from_("imgs").upload("a/b.png", png(1), {"content-type": "image/png"})
    from storage3.exceptions import StorageApiError

    with pytest.raises(StorageApiError) as info:
        storage.from_("imgs").upload("a/b.png", png(2), {"content-type": "image/png"})
    assert str(info.value.status) == "409"
    storage.from_("imgs").upload("a/b.png", png(3), {"content-type": "image/png", "upsert": "true"})
    assert storage.from_("imgs").download("a/b.png") == png(3)
    public = src.http.get(storage.from_("imgs").get_public_url("a/b.png"))
    assert public.status_code == 200 and public.content == png(3)
    missing = src.http.get(f"{standin.url}/storage/v1/object/public/imgs/nope.png")
    assert missing.status_code == 400 and missing.json()["statusCode"] == "404"
    src.close()


# -- the service, as `moonshot run` in its own process and home ----------------------------
ROOT = Path(__file__).resolve().parents[2]
SERVICE_ENV = {
    "MOONSHOT_SOURCE_KIND": "supabase",
    "MOONSHOT_SOURCE_POLL_INTERVAL": "0.2",
    "MOONSHOT_LAUNCH_MODE": "ledger",
    "MOONSHOT_PHOTOS_KIND": "folder",
    "MOONSHOT_SPOOL_BACKOFF_BASE": "0.05",
    "MOONSHOT_SPOOL_BACKOFF_MAX": "0.5",
    "MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.1",
}


class Running:
    def __init__(self, home: Path, proc: subprocess.Popen):
        self.home = home
        self.proc = proc

    def ledger(self) -> list[str]:
        path = self.home / "launches.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["ticker"] for line in path.read_text().splitlines() if line]

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "moonshot.db")


def start_service(tmp_path: Path, name: str, standin: Standin, **env: str) -> Running:
    home = tmp_path / name
    home.mkdir()
    full = {
        **os.environ,
        **SERVICE_ENV,
        **env,
        "SUPABASE_URL": standin.url,
        "SUPABASE_SERVICE_ROLE_KEY": standin.key,
        "PYTHONPATH": str(ROOT),
    }
    log = (home / "service.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonshot", "--home", str(home), "run"],
        env=full,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Running(home, proc)


def run_until(services: list[Running], done, timeout: float, during=None) -> None:
    """Wait for `done()` (calling `during()` meanwhile), then stop each service by TERM."""
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            if during:
                during()
            time.sleep(0.05)
    finally:
        for s in services:
            s.proc.send_signal(signal.SIGTERM)
        for s in services:
            try:
                s.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
    for s in services:
        assert s.proc.returncode == 0, (s.home / "service.out").read_text()[-2000:]


def all_launched(dsn: str, n: int):
    def done() -> bool:
        rows = fetch_coins(dsn)
        return len(rows) == n and all(r["launch_state"] == "launched" for r in rows)

    return done


def test_a_coin_reaches_launched_through_the_service(standin, coins_db, tmp_path):
    add_coins(standin, coins_db, 1)
    svc = start_service(tmp_path, "home", standin)
    run_until([svc], all_launched(coins_db, 1), timeout=30)
    (row,) = fetch_coins(coins_db)
    assert row["image_synced"] is True and row["image_filename"].startswith("bot_T000_")
    assert row["launch_state"] == "launched" and row["launched_at"] is not None
    assert svc.ledger() == ["T000"]


def test_storage_errors_in_a_400_are_classed_by_the_download(standin, coins_db):
    """Storage answers HTTP 400 with the real status in the body: a 503 or 429 there is
    retried later, a 404 rejects the coin (moonshot/images.py)."""
    from moonshot import images
    from moonshot.errors import Rejected

    url = standin.put_object("coin-images", "ok.png", png(5), "image/png")

    def get(u):
        return images.download(u, timeout=5, max_bytes=10**6, allowed_hosts=["127.0.0.1"])

    for status in ("503", "429"):
        body = {"statusCode": status, "error": "x", "message": "busy"}
        standin.faults.add("status", path="/storage/v1/object/public/", status=400, body=body)
        with pytest.raises(TransientError, match=f"storage status {status}"):
            get(url)
    with pytest.raises(Rejected, match="HTTP 400"):
        get(url.replace("ok.png", "missing.png"))
    assert get(url) == png(5)


def test_an_outage_mid_run_loses_and_duplicates_nothing(standin, coins_db, tmp_path):
    add_coins(standin, coins_db, 6)
    svc = start_service(tmp_path, "home", standin)
    state: dict = {}

    def during() -> None:
        if "outage" not in state and svc.ledger():
            # Mid-run, the database behind PostgREST goes away. (Storage outages are the
            # image download's retry policy: moonshot.retry, tested in core.)
            state["outage"] = standin.faults.outage(path="/rest/v1/")
            state["at"] = time.monotonic()
        elif "outage" in state and state["outage"].times and time.monotonic() - state["at"] > 2:
            state["outage"].times = 0

    run_until([svc], all_launched(coins_db, 6), timeout=90, during=during)
    assert state["outage"].hits > 0
    assert sorted(svc.ledger()) == [f"T{i:03d}" for i in range(6)]
    rows = fetch_coins(coins_db)
    assert all(r["image_synced"] and r["launch_state"] == "launched" for r in rows)
    with svc.db() as db:
        assert db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone() == (
            0,
        )


@pytest.mark.stress
def test_two_services_drain_100_coins_once_each(standin, coins_db, tmp_path):
    add_coins(standin, coins_db, 100)
    services = [start_service(tmp_path, f"home{i}", standin) for i in range(2)]
    run_until(services, all_launched(coins_db, 100), timeout=170)
    a, b = (s.ledger() for s in services)
    assert not set(a) & set(b), "a coin was launched by both services"
    assert sorted(a + b) == [f"T{i:03d}" for i in range(100)]
    assert a and b, "one service did all the work: no contention was exercised"
    assert len({r["claimed_by"] for r in fetch_coins(coins_db)}) == 2


# -- the service in-process, stepped -----------------------------------------------------------
def inproc(cfg_factory, src: SupabaseSource, **env: str):
    from moonshot.adapters import Ports
    from moonshot.app.launcher_ledger import LedgerLauncher
    from moonshot.home import open_store
    from moonshot.photos.library_folder import FolderLibrary
    from moonshot.service import Service

    cfg = cfg_factory({**SERVICE_ENV, **env})
    ports = Ports(src, FolderLibrary(cfg.library_path), LedgerLauncher(cfg.ledger_path))
    return Service(cfg, store=open_store(cfg), ports=ports)


def test_status_and_doctor_show_a_rejected_key(standin, coins_db, cfg_factory, monkeypatch):
    from moonshot.ops import status
    from moonshot.ops.doctor import run_checks
    from moonshot.store import Store

    monkeypatch.setenv("SUPABASE_URL", standin.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "wrong-key")
    cfg = cfg_factory(SERVICE_ENV)
    for name, value in SERVICE_ENV.items():  # doctor loads the config itself
        monkeypatch.setenv(name, value)
    report = status.collect(cfg, Store(cfg.db_path))
    assert any("SUPABASE_SERVICE_ROLE_KEY" in p for p in report["problems"])
    doctor = {c.name: c.status for c in run_checks(str(cfg.home))}
    assert doctor["supabase key"] == "fail"
    assert "wrong-key" not in json.dumps(report, default=str)


def test_a_coin_whose_claim_was_lost_is_not_launched(standin, coins_db, cfg_factory):
    """Service A claims a coin, then cannot reach Supabase to record the import or renew
    its lease; the lease runs out and service B takes the coin. A must not launch it."""
    from tests.conftest import drain

    (coin,) = add_coins(standin, coins_db, 1)
    a = SupabaseSource(standin.url, standin.key, worker="A", lease_seconds=1)
    svc = inproc(cfg_factory, a, MOONSHOT_LAUNCH_REQUIRE_APPROVAL="true")
    cut = [
        standin.faults.add("status", times=-1, method="PATCH", path="/rest/v1/coins", status=503),
        standin.faults.add("status", times=-1, path="/rest/v1/rpc/moonshot_renew", status=503),
    ]
    deadline = time.monotonic() + 60
    while not svc.store.coins_in(["confirmed"]) and time.monotonic() < deadline:
        if not svc.tick():  # (no drain: the reports are owed and retried for good)
            time.sleep(0.02)
    (local,) = svc.store.coins_in(["confirmed"])  # waits for approval
    time.sleep(1.2)
    b = source(standin, "B")
    assert [c.source_ref for c in b.poll(time.time(), 5)] == [str(coin)]
    for rule in cut:
        rule.times = 0
    svc.store.set_fields(local.id, approved=1)
    drain(svc)
    after = svc.store.get(local.id)
    assert after.state == "failed" and "another moonshot service" in after.last_error
    assert svc.ports.launcher.entries() == []
    row = fetch_coins(coins_db)[0]
    assert (row["claimed_by"], row["launch_state"], row["image_synced"]) == ("B", None, False)
    assert str(coin) in a.health()["claims_lost"]
    svc.close()
    b.close()


def test_cli_lists_and_releases_this_homes_claims(standin, coins_db, home, monkeypatch):
    from click.testing import CliRunner

    from moonshot.cli import cli
    from moonshot.supabase.source_supabase import worker_id

    first, second = add_coins(standin, coins_db, 2)
    src = source(standin, worker_id(home))
    assert len(src.poll(time.time(), 5)) == 2
    src.report(str(second), "imported", {"image_filename": "bot_T001_1.jpg"})
    src.close()
    monkeypatch.setenv("SUPABASE_URL", standin.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", standin.key)
    runner = CliRunner()
    listed = runner.invoke(cli, ["--home", str(home), "supabase", "claims", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["worker"] == worker_id(home)
    assert [c["id"] for c in data["claims"]] == [first, second]
    released = runner.invoke(
        cli, ["--home", str(home), "supabase", "release", str(first), str(second)]
    )
    assert released.exit_code == 0, released.output
    assert (
        f"released 1 claim(s): {first}" in released.output and f"kept {second}" in released.output
    )
    rows = {r["id"]: r["claimed_by"] for r in fetch_coins(coins_db)}
    assert rows == {first: None, second: worker_id(home)}
    assert standin.key not in listed.output + released.output


# -- issue 16: outages, `run --once`, sharing between Macs ---------------------------------
def run_once(
    tmp_path: Path, name: str, standin: Standin, **env: str
) -> subprocess.CompletedProcess:
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    full = {
        **os.environ,
        **SERVICE_ENV,
        **env,
        "SUPABASE_URL": standin.url,
        "SUPABASE_SERVICE_ROLE_KEY": standin.key,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "moonshot", "--home", str(home), "run", "--once"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_once_with_the_source_down_exits_non_zero_and_says_why(standin, coins_db, tmp_path):
    from moonshot.service import RET_SOURCE

    add_coins(standin, coins_db, 2)
    standin.faults.outage(path="/rest/v1/")
    t0 = time.monotonic()
    done = run_once(tmp_path, "home", standin, MOONSHOT_SERVICE_ONCE_PATIENCE="3")
    took = time.monotonic() - t0
    assert done.returncode == RET_SOURCE, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("run --once: nothing") and "service.once_patience" in line
    assert "the source failed, coins not fetched" in line and "503" in line
    assert standin.key not in done.stderr + done.stdout
    assert 3 <= took < 60
    claims = [r for r in standin.recorded("/rest/v1/rpc/moonshot_claim")]
    reads = [r for r in standin.recorded("/rest/v1/coins") if r.method == "GET"]
    assert len(claims) + len(reads) >= 3  # it kept asking, backing off, for the patience

    standin.faults.clear()  # the source is back: the next run finishes and exits 0
    done = run_once(tmp_path, "home", standin, MOONSHOT_SERVICE_ONCE_PATIENCE="3")
    assert done.returncode == 0, done.stderr
    assert all(r["launch_state"] == "launched" for r in fetch_coins(coins_db))


def test_run_once_with_reports_undelivered_exits_non_zero(standin, coins_db, tmp_path):
    from moonshot.service import RET_SOURCE

    add_coins(standin, coins_db, 1)
    standin.faults.add("status", times=-1, method="PATCH", path="/rest/v1/coins", status=503)
    done = run_once(tmp_path, "home", standin, MOONSHOT_SERVICE_ONCE_PATIENCE="2")
    assert done.returncode == RET_SOURCE, done.stderr
    assert "report(s) not delivered" in done.stderr
    assert "coins not fetched" not in done.stderr
    assert (tmp_path / "home" / "launches.jsonl").read_text().count("\n") == 1


@pytest.mark.stress
def test_two_homes_share_40_coins_through_503s_and_dropped_connections(standin, coins_db, tmp_path):
    """Two services against a Supabase where 12 % of all requests
    (REST, RPC, Storage) answer 503 and 5 % lose the connection, half of them after the
    work was done: every coin is launched exactly once across both homes, each home
    launches a fair share (at least 30 %), and every report reaches Supabase."""
    n = 40
    add_coins(standin, coins_db, n)
    injected = standin.faults.chaos(status_rate=0.12, drop_rate=0.05)
    env = {
        "MOONSHOT_SOURCE_LOOKAHEAD": "2",
        "MOONSHOT_SPOOL_DOWNLOAD_TIMEOUT": "5",
        "MOONSHOT_SPOOL_BACKOFF_BASE": "0.05",
        "MOONSHOT_SPOOL_BACKOFF_MAX": "1",
    }
    first = start_service(tmp_path, "home0", standin, **env)
    # The second Mac comes up once the first is at work (a claim of `source.batch`
    # coins per poll let the first one take all 40 before the second asked).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not first.ledger():
        time.sleep(0.05)
    services = [first, start_service(tmp_path, "home1", standin, **env)]

    def delivered() -> bool:
        if not all_launched(coins_db, n)():
            return False
        for s in services:
            with s.db() as db:
                if db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[
                    0
                ]:
                    return False
        return True

    run_until(services, delivered, timeout=240)
    assert sum(r.hits for r in injected[:1]) > 20 and sum(r.hits for r in injected[1:]) > 5
    a, b = (s.ledger() for s in services)
    launched = a + b
    assert len(launched) == n and sorted(launched) == [f"T{i:03d}" for i in range(n)]
    assert min(len(a), len(b)) >= 0.3 * n, f"not a fair share: {len(a)} and {len(b)}"
    rows = fetch_coins(coins_db)
    assert all(r["image_synced"] and r["launch_state"] == "launched" for r in rows)
    owner = {r["ticker"]: r["claimed_by"] for r in rows}
    workers = {s.home: None for s in services}
    for s, tickers in zip(services, (a, b), strict=True):
        by = {owner[t] for t in tickers}
        assert len(by) == 1, f"{s.home.name}'s coins are recorded under {by}"
        workers[s.home] = by.pop()
    assert len(set(workers.values())) == 2
    for s in services:
        with s.db() as db:
            assert db.execute("SELECT count(*) FROM coins WHERE state = 'failed'").fetchone() == (
                0,
            )


def test_release_hands_a_coin_over_so_that_only_the_other_mac_launches_it(
    standin, coins_db, cfg_factory, home, monkeypatch
):
    """Issue 15, attacker pass: `supabase release` as the README says ("before retiring
    this Mac"), with this home's coin already spooled. This home must never launch it:
    it is withdrawn here, its pending reports are not sent (they would claim it back),
    and a running service (its lease good in its memory) makes the release refuse."""
    from click.testing import CliRunner

    from moonshot.cli import cli
    from moonshot.supabase.source_supabase import worker_id
    from tests.conftest import drain

    (coin,) = add_coins(standin, coins_db, 1)
    monkeypatch.setenv("SUPABASE_URL", standin.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", standin.key)
    for name, value in SERVICE_ENV.items():  # the CLI loads the config itself
        monkeypatch.setenv(name, value)
    svc = inproc(cfg_factory, source(standin, worker_id(home)))
    deadline = time.monotonic() + 30
    while not svc.store.coins_in(["spooled"]) and time.monotonic() < deadline:
        svc.tick()  # fetched (claimed), then spooled once its download ends
    (local,) = svc.store.coins_in(["spooled"])
    runner = CliRunner()
    refused = runner.invoke(cli, ["--home", str(home), "supabase", "release", str(coin)])
    assert refused.exit_code == 1 and "stop it first" in refused.output
    svc.close()
    released = runner.invoke(cli, ["--home", str(home), "supabase", "release", str(coin)])
    assert released.exit_code == 0 and f"released 1 claim(s): {coin}" in released.output
    assert svc.store.get(local.id).state == "rejected"
    assert svc.store.outbox_pending() == 0
    other = start_service(home.parent, "other", standin)
    run_until([other], all_launched(coins_db, 1), timeout=30)
    again = inproc(cfg_factory, source(standin, worker_id(home)))
    drain(again)
    assert again.ports.launcher.entries() == [] and other.ledger() == ["T000"]
    again.close()
