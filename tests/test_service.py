"""The service loop against sources that misbehave (issue 16): claims sized by
`source.lookahead`, unstarted claims handed back at a clean stop and taken again, the
source's poll backing off from the failure, and what `run --once` says when it cannot
finish (RET_SOURCE, RET_WAITING) or can (RET_OK, also with coins waiting for a person)."""

from __future__ import annotations

import threading
import time

import pytest

from moonshot import machine as m
from moonshot.adapters import Ports
from moonshot.app.launcher_ledger import LedgerLauncher
from moonshot.errors import TransientError
from moonshot.photos.library_folder import FolderLibrary
from moonshot.ports import IncomingCoin
from moonshot.service import RET_OK, RET_SOURCE, RET_WAITING, Service
from moonshot.store import Store
from tests.conftest import drain, make_image

FAST = {"MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.02", "MOONSHOT_SOURCE_POLL_INTERVAL": "0.1"}


class SharedQueue:
    """What several services share: coins free to claim, and who holds which."""

    def __init__(self, urls: list[str]):
        self.lock = threading.Lock()
        self.free = [(str(i), url) for i, url in enumerate(urls)]
        self.holder: dict[str, str] = {}
        self.urls = dict(self.free)


class FakeSource:
    """A Supabase-like source over a SharedQueue; every call can be made to fail."""

    kind = "supabase"

    def __init__(self, queue: SharedQueue, worker: str = "w1"):
        self.queue = queue
        self.worker = worker
        self.image_hosts = ["127.0.0.1"]
        self.polls: list[tuple[int, int]] = []  # (limit asked for, coins held before the gate)
        self.held_before_gate = lambda: 0
        self.poll_error: Exception | None = None
        self.report_error: Exception | None = None
        self.on_poll = lambda: None
        self.reports: list[tuple[str, str]] = []
        self.released: list[str] = []

    def poll(self, now, limit):
        self.on_poll()
        self.polls.append((limit, self.held_before_gate()))
        if self.poll_error:
            raise self.poll_error
        with self.queue.lock:
            taken, self.queue.free = self.queue.free[:limit], self.queue.free[limit:]
            for ref, _ in taken:
                self.queue.holder[ref] = self.worker
        return [IncomingCoin("supabase", ref, f"Q{ref}", f"Coin {ref}", url) for ref, url in taken]

    def report(self, coin_ref, event, fields):
        if self.report_error:
            raise self.report_error
        self.reports.append((coin_ref, event))

    def keepalive(self, coin_refs, now):
        return []

    def release(self, refs):
        with self.queue.lock:
            back = [r for r in refs if self.queue.holder.get(r) == self.worker]
            for ref in back:
                del self.queue.holder[ref]
                self.queue.free.insert(0, (ref, self.queue.urls[ref]))
        self.released.extend(back)
        return back

    def close(self):
        return None


def images(image_server, tmp_path, n: int) -> list[str]:
    urls = []
    for i in range(n):
        data = make_image(tmp_path / f"q{i}.jpg", color=(i * 20 % 256, 80, 40), fmt="JPEG")
        urls.append(image_server.add(f"/q{i}.jpg", data.read_bytes()))
    return urls


def service(cfg_factory, source, env=None, clock=time.time, home=None) -> Service:
    cfg = cfg_factory({**FAST, "MOONSHOT_SPOOL_ALLOWED_HOSTS": "127.0.0.1", **(env or {})})
    store = Store(cfg.db_path)
    ports = Ports(source, FolderLibrary(cfg.library_path), LedgerLauncher(cfg.ledger_path))
    svc = Service(cfg, store=store, ports=ports, clock=clock)

    local = threading.local()  # the source is called on a thread of its own

    def held():
        if not hasattr(local, "store"):
            local.store = Store(cfg.db_path)
        return local.store.db.execute(
            "SELECT count(*) FROM coins WHERE state IN ('fetched', 'spooled') AND released = 0"
        ).fetchone()[0]

    source.held_before_gate = held
    return svc


def test_claims_keep_only_lookahead_coins_before_the_import_gate(
    cfg_factory, image_server, tmp_path
):
    queue = SharedQueue(images(image_server, tmp_path, 10))
    src = FakeSource(queue)
    svc = service(cfg_factory, src, {"MOONSHOT_SOURCE_LOOKAHEAD": "2"})
    deadline = time.monotonic() + 60
    while len(svc.ports.launcher.entries()) < 10 and time.monotonic() < deadline:
        if not svc.tick():
            time.sleep(0.01)
    assert len(svc.ports.launcher.entries()) == 10
    assert src.polls, "never polled"
    for limit, held in src.polls:
        assert limit >= 1 and limit + held <= 2, src.polls  # never more than 2 in hand
    assert max(limit for limit, _ in src.polls) == 2
    svc.close()


def test_a_clean_stop_hands_unstarted_claims_back_and_they_are_taken_again(
    cfg_factory, image_server, tmp_path
):
    held = threading.Event()

    def hang(handler):  # the image host accepts and never answers
        held.set()
        time.sleep(30)

    image_server.routes["/hang.jpg"] = (200, {}, hang)
    urls = [image_server.base + "/hang.jpg", *images(image_server, tmp_path, 2)]
    queue = SharedQueue(urls)
    src = FakeSource(queue)
    env = {"MOONSHOT_SOURCE_LOOKAHEAD": "3", "MOONSHOT_SERVICE_STOP_TIMEOUT": "1"}
    box: dict = {}

    def run() -> None:  # the service lives on its own thread, as under launchd
        box["svc"] = service(cfg_factory, src, {**env, "MOONSHOT_LAUNCH_REQUIRE_APPROVAL": "true"})
        box["code"] = box["svc"].run()

    runner = threading.Thread(target=run)
    runner.start()
    assert held.wait(30), "the hanging download never started"
    svc = box["svc"]
    store = Store(svc.cfg.db_path)  # this thread's own connection
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        store.count_in([m.CONFIRMED]) < 1 or store.outbox_pending()
    ):
        time.sleep(0.02)
    # what launchd's TERM does: the handler sets the flags
    svc._stop_at = time.monotonic()
    svc.stopping = True
    svc.wake()
    runner.join(10)
    assert not runner.is_alive(), "the stop waited for the hanging download"
    assert box["code"] == RET_OK
    states = {c.source_ref: c for c in store.coins_in(m.STATES)}
    # "0" hangs (fetched), "1" is confirmed waiting for approval, "2" waits at the gate
    assert states["0"].state == m.FETCHED and states["0"].released
    assert states["0"].attempts == 0  # the cut-off download is not the coin's failure
    cut = [h for h in store.history(states["0"].id) if h["trigger"] == "defer"]
    assert cut and "cancelled" in cut[-1]["detail"]
    assert src.released == ["0"]  # spooled and confirmed coins keep their claims
    assert queue.holder == {"1": "w1", "2": "w1"} and queue.free[0][0] == "0"
    assert not list(svc.cfg.spool_dir.glob("*.part"))

    # the next start takes it again (the host answers now) and resumes the coin
    image_server.add("/hang.jpg", (tmp_path / "q0.jpg").read_bytes())
    for coin in states.values():
        store.set_fields(coin.id, approved=1)
    again = service(cfg_factory, FakeSource(queue), env)
    drain(again)
    back = again.store.get(states["0"].id)
    assert back.state == m.LAUNCHED and not back.released
    assert [h["trigger"] for h in again.store.history(back.id)].count("reclaim") == 1
    assert sorted(e["coin_id"] for e in again.ports.launcher.entries()) == sorted(
        c.id for c in states.values()
    )
    again.close()


def test_the_source_poll_backs_off_from_the_failure(cfg_factory, image_server, tmp_path):
    clock = [1000.0]
    queue = SharedQueue(images(image_server, tmp_path, 1))
    src = FakeSource(queue)
    src.poll_error = TransientError("Supabase claim: HTTP 503")

    def slow_failure():
        clock[0] += 5.0  # the request took 5 s to fail

    src.on_poll = slow_failure
    svc = service(cfg_factory, src, {"MOONSHOT_SOURCE_POLL_INTERVAL": "30"}, clock=lambda: clock[0])
    svc.pipeline.rng.random = lambda: 0.0  # no jitter: the wait is exactly 1 s
    svc.tick(clock[0])
    assert len(src.polls) == 1 and svc.source_error and "503" in svc.source_error
    failed_at = clock[0]  # 1005
    src.on_poll = lambda: None
    svc.tick(failed_at + 0.9)  # 1 s after the failure has not passed yet
    assert len(src.polls) == 1
    svc.tick(failed_at + 1.01)
    assert len(src.polls) == 2  # not 1001 (from the start of the attempt): 1006
    src.poll_error = None
    svc.tick(failed_at + 5)
    assert len(src.polls) == 3 and svc.source_error is None
    svc.close()


def timed_once(svc: Service) -> tuple[int, float]:
    t0 = time.monotonic()
    code = svc.run(once=True)
    return code, time.monotonic() - t0


def test_once_with_the_source_down_exits_ret_source_and_says_why(cfg_factory):
    src = FakeSource(SharedQueue([]))
    src.poll_error = TransientError("Supabase claim: HTTP 503 PGRST001 Database client error")
    svc = service(cfg_factory, src, {"MOONSHOT_SERVICE_ONCE_PATIENCE": "1"})
    code, took = timed_once(svc)
    assert code == RET_SOURCE
    assert "\n" not in svc.exit_line
    assert "source failed, coins not fetched" in svc.exit_line
    assert "HTTP 503" in svc.exit_line and "service.once_patience" in svc.exit_line
    assert took < 15  # at most the patience, or sooner when the next poll would come after it
    assert len(src.polls) >= 2  # it kept trying, backing off


def test_once_rides_out_a_short_source_outage(cfg_factory, image_server, tmp_path):
    src = FakeSource(SharedQueue(images(image_server, tmp_path, 2)))
    src.poll_error = TransientError("Supabase claim: HTTP 503")
    started = time.monotonic()

    def heal():
        if time.monotonic() - started > 1.5:
            src.poll_error = None

    src.on_poll = heal
    svc = service(cfg_factory, src, {"MOONSHOT_SERVICE_ONCE_PATIENCE": "20"})
    code, _ = timed_once(svc)
    assert code == RET_OK and svc.exit_line is None
    assert len(svc.ports.launcher.entries()) == 2


def test_once_with_reports_undelivered_exits_ret_source(cfg_factory, image_server, tmp_path):
    src = FakeSource(SharedQueue(images(image_server, tmp_path, 1)))
    src.report_error = TransientError("Supabase report launched for coin 0: timed out")
    svc = service(cfg_factory, src, {"MOONSHOT_SERVICE_ONCE_PATIENCE": "1"})
    code, _ = timed_once(svc)
    assert code == RET_SOURCE
    assert "report(s) not delivered" in svc.exit_line
    assert "coins not fetched" not in svc.exit_line
    assert len(svc.ports.launcher.entries()) == 1  # the coin itself went all the way


def test_once_with_an_image_host_down_exits_ret_waiting(service_factory, image_server):
    image_server.routes["/down.jpg"] = (503, {}, b"busy")
    svc = service_factory(
        {
            **FAST,
            "MOONSHOT_SERVICE_ONCE_PATIENCE": "1",
            "MOONSHOT_SPOOL_BACKOFF_BASE": "0.2",
            "MOONSHOT_SPOOL_ALLOWED_HOSTS": "127.0.0.1",
        }
    )
    svc.store.add_coin(
        IncomingCoin("local", "d", "DOWN", "Down", image_server.base + "/down.jpg"),
        twitter_user="u",
    )
    code, took = timed_once(svc)
    assert code == RET_WAITING
    assert "1 coin(s) waiting to retry" in svc.exit_line
    (coin,) = svc.store.coins_in(m.STATES)
    assert coin.state == m.FETCHED and coin.retry_since is not None  # not failed: within the window


@pytest.mark.parametrize("wait", ["approval", "failed", "needs_review"])
def test_once_exits_0_when_only_a_person_can_move_what_is_left(service_factory, tmp_path, wait):
    env = {**FAST, "MOONSHOT_SERVICE_ONCE_PATIENCE": "30"}
    if wait == "approval":
        env["MOONSHOT_LAUNCH_REQUIRE_APPROVAL"] = "true"
    svc = service_factory(env)
    image = make_image(tmp_path / "p.png")
    coin_id, _ = svc.store.add_coin(
        IncomingCoin("local", "p", "PERSON", "Person", str(image)), twitter_user="u"
    )
    if wait != "approval":
        coin = svc.store.get(coin_id)
        if wait == "failed":
            svc.store.fire(coin, "fail", detail={"reason": "t"}, failed_from=m.FETCHED)
        else:
            for trig in ("spool", "import_photo", "confirm", "start_launch", "review"):
                svc.store.fire(svc.store.get(coin_id), trig)
    code, took = timed_once(svc)
    assert code == RET_OK and svc.exit_line is None
    assert took < 10  # did not wait out the patience


def test_a_row_under_an_id_this_home_knows_as_another_coin_is_not_taken(service_factory, tmp_path):
    """Found from outside: with the source's ids started again (a table re-created), new
    rows matched old coins by id; the home claimed them and did nothing, silently, and
    `run --once` exited 0. Now: not taken, the claim handed back, the error and an alert."""
    from moonshot.supabase.source_local import LocalSource

    class Reused(LocalSource):
        kind = "supabase"

        def __init__(self, rows):
            self.rows, self.released = rows, []

        def poll(self, now, limit):
            rows, self.rows = self.rows, []
            return rows

        def release(self, refs):
            self.released += refs
            return refs

    svc = service_factory()
    img = str(tmp_path / "x.png")
    old = IncomingCoin("supabase", "1", "PING", "Ping", img, "bob")
    coin_id, _ = svc.store.add_coin(old, twitter_user="bob")
    new = IncomingCoin("supabase", "1", "NEWDB", "New Db", img, "carol")
    svc.ports.source = source = Reused([new])
    svc._poll_source(time.time(), force=True)
    assert svc.store.get(coin_id).ticker == "PING"  # the known coin is untouched
    assert source.released == ["1"]
    assert "is not coin 1 (PING" in svc.source_error and "ids start again" in svc.source_error
    (alert,) = [a for a in svc.store.alerts() if a["event"] == "source_conflict"]
    assert "NEWDB" in alert["reason"]


def test_coins_waiting_out_a_transient_error_do_not_fill_the_lookahead(service_factory, tmp_path):
    """Found from outside: three hanging image URLs held the whole lookahead, and a one-Mac
    home claimed nothing else for the retry window. A retrying coin keeps no place, and all
    held stay under LOOKAHEAD_CAP x lookahead."""
    from moonshot.service import LOOKAHEAD_CAP
    from moonshot.supabase.source_local import LocalSource

    class Shared(LocalSource):
        kind = "supabase"

    svc = service_factory({"MOONSHOT_SOURCE_LOOKAHEAD": "3"})
    svc.ports.source = Shared()
    img = str(tmp_path / "x.png")
    ids = [
        svc.store.add_coin(
            IncomingCoin("supabase", str(i), f"C{i}", "c", img, "u"), twitter_user="u"
        )[0]
        for i in range(3)
    ]
    assert svc.claim_room() == 0  # three ready coins: the lookahead is full
    for coin_id in ids:
        svc.store.set_fields(coin_id, retry_since=time.time(), last_error="HTTP 503")
    assert svc.claim_room() == 3  # all three wait out an error: room for three more
    more = [
        svc.store.add_coin(
            IncomingCoin("supabase", str(i), f"D{i}", "d", img, "u"), twitter_user="u"
        )[0]
        for i in range(3, 3 * LOOKAHEAD_CAP)
    ]
    for coin_id in more:
        svc.store.set_fields(coin_id, retry_since=time.time(), last_error="HTTP 503")
    assert svc.claim_room() == 0  # the cap


def test_a_reclaimed_coin_starts_its_retry_window_again(service_factory, tmp_path):
    """Found from outside: the time a coin spent handed back (a clean stop) counted
    against its retry window, so after a reclaim it failed on its first blip."""
    from moonshot.supabase.source_local import LocalSource

    img = str(tmp_path / "x.png")
    row = IncomingCoin("supabase", "7", "BACK", "Back", img, "u")

    class Hands(LocalSource):
        kind = "supabase"

        def poll(self, now, limit):
            return [row]

    svc = service_factory()
    coin_id, _ = svc.store.add_coin(row, twitter_user="u")
    svc.store.set_fields(coin_id, released=1, retry_since=time.time() - 7200, last_error="503")
    svc.ports.source = Hands()
    svc._poll_source(time.time(), force=True)
    coin = svc.store.get(coin_id)
    assert not coin.released and coin.retry_since is None


class HangingServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers: a
    Supabase that hangs (found from outside: it stalled the loop for its HTTP timeout)."""

    def __init__(self):
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)  # held open, never read from, never answered
            self.accepted.set()

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_hanging_source_stalls_neither_the_heartbeat_nor_the_local_work(cfg_factory, tmp_path):
    """Found from outside: a Supabase that accepts the connection and never answers held
    the pipeline's thread for its HTTP timeout on every pass (claim, reports): no
    heartbeat, no launch of a confirmed coin, no import, no drop. Source calls run on a
    thread of their own now, one at a time; the loop goes on."""
    from moonshot.naming import format_name
    from moonshot.supabase.source_supabase import SupabaseSource

    server = HangingServer()
    read_timeout = 30.0
    src = SupabaseSource(
        f"http://127.0.0.1:{server.port}",
        "service-role-key",
        worker="w-hang",
        read_timeout=read_timeout,
        connect_timeout=5,
    )
    box: dict = {}
    made = threading.Event()

    def run() -> None:  # the service lives on its own thread, as under launchd
        box["svc"] = service(cfg_factory, src, {"MOONSHOT_SERVICE_STOP_TIMEOUT": "2"})
        made.set()
        box["code"] = box["svc"].run()

    runner = threading.Thread(target=run)
    runner.start()
    assert made.wait(30)
    svc = box["svc"]
    try:
        assert server.accepted.wait(10), "the service never asked the source"
        hang_started = time.monotonic()
        store = Store(svc.cfg.db_path)  # this thread's own connection, as `moonshot add`
        ids = [
            store.add_coin(
                IncomingCoin("local", f"l{i}", f"LOC{i}", f"Local {i}", str(img)),
                twitter_user="u",
            )[0]
            for i, img in enumerate(
                make_image(tmp_path / f"l{i}.png", color=(10 + 40 * i, 90, 20)) for i in range(2)
            )
        ]
        beats: list[tuple[float, str]] = []  # (when seen, heartbeat_at) at each change
        dropped = None
        deadline = hang_started + 20
        while time.monotonic() < deadline:
            beat = store.meta_get("heartbeat_at")
            if not beats or beats[-1][1] != beat:
                beats.append((time.monotonic(), beat))
            launched = store.count_in([m.LAUNCHED])
            if launched == 2 and dropped is None:
                # a manual drop, once the gate is free: imported and confirmed (it then
                # waits for `moonshot approve`)
                dropped = format_name("dropper", "DROP", int(time.time()))
                make_image(tmp_path / "d.jpg", color=(5, 5, 200), fmt="JPEG")
                (tmp_path / "d.jpg").rename(svc.cfg.spool_dir / dropped)
            drop = dropped and store.find_by_filename(dropped)
            if drop and drop.state == m.CONFIRMED and time.monotonic() - hang_started > 4:
                break
            time.sleep(0.05)
        during = time.monotonic() - hang_started
        assert during < read_timeout - 5, "the test must measure during the hang"
        assert [store.get(i).state for i in ids] == [m.LAUNCHED, m.LAUNCHED]
        assert drop and drop.state == m.CONFIRMED, drop
        gaps = [b[0] - a[0] for a, b in zip(beats, beats[1:], strict=False)]
        gaps.append(time.monotonic() - beats[-1][0])
        assert len(beats) >= 4 and max(gaps) < 2.5, (len(beats), gaps)
        assert svc.pipeline.source_calls.busy() is not None  # the claim still hangs
    finally:
        svc._stop_at = time.monotonic()
        svc.stopping = True
        svc.wake()
        runner.join(15)
        server.close()
    assert not runner.is_alive(), "the stop waited for the hanging source"
    assert box["code"] == RET_OK


def test_a_claim_check_that_hangs_makes_the_coin_wait_not_the_loop(service_factory, tmp_path):
    """The last check before a launch (`holds`) asks the source when its last renewal
    cannot answer: a source that does not answer makes that coin wait, without an
    attempt, and never holds the pipeline's thread (or starts a second call)."""
    from moonshot.supabase.source_local import LocalSource

    class Hangs(LocalSource):
        kind = "supabase"

        def __init__(self):
            self.answer = threading.Event()
            self.asked = 0

        def holds(self, ref, now):
            self.asked += 1
            self.answer.wait(5)
            return True

    svc = service_factory()
    svc.ports.source = src = Hangs()
    row = IncomingCoin("supabase", "9", "HOLD", "Hold", str(tmp_path / "x.png"), "u")
    coin_id, _ = svc.store.add_coin(row, twitter_user="u")
    coin = svc.store.get(coin_id)
    t0 = time.monotonic()
    assert svc.pipeline._source_holds(coin, time.time()) is False
    assert time.monotonic() - t0 < 1.5
    waiting = svc.store.get(coin_id)
    assert waiting.attempts == 0 and waiting.not_before > time.time()
    assert "waiting for the source to confirm" in waiting.last_error
    assert svc.pipeline._source_holds(coin, time.time()) is False and src.asked == 1
    src.answer.set()
    deadline = time.monotonic() + 5
    while svc.pipeline.source_calls.busy() and time.monotonic() < deadline:
        svc._collect_source(wait=0.1)
    assert svc.pipeline._source_holds(coin, time.time()) is True and src.asked == 2


def test_a_coin_another_home_holds_fails_with_advice_to_withdraw_not_retry(
    service_factory, tmp_path
):
    """Found from outside: a coin another home took (and launched) failed here with an
    alert saying `moonshot retry`; it must say the coin is launched elsewhere, and
    withdraw it."""
    from moonshot.ops import alert_events
    from moonshot.supabase.source_local import LocalSource

    class Elsewhere(LocalSource):
        kind = "supabase"

        def holds(self, ref, now):
            return False  # another home holds the claim

    svc = service_factory()
    svc.ports.source = Elsewhere()
    row = IncomingCoin("supabase", "5", "GONE", "Gone", str(tmp_path / "x.png"), "u")
    coin_id, _ = svc.store.add_coin(row, twitter_user="u")
    for trigger in ("spool", "import_photo", "confirm"):
        svc.store.fire(svc.store.get(coin_id), trigger)
    assert svc.pipeline._source_holds(svc.store.get(coin_id), time.time()) is False
    assert svc.store.get(coin_id).state == m.FAILED
    (alert,) = [a for a in svc.store.alerts() if a["event"] == "failed"]
    assert "retry" not in alert["command"].replace("never retry", "")
    assert f"moonshot withdraw {coin_id}" in alert["command"]
    assert "launches it there" in alert["command"]
    _, body, _ = alert_events.message(alert, "/home", "tag")
    assert "moonshot retry" not in body and "launched there" in body
    # any other failure still says retry
    assert "moonshot retry 3" in alert_events.command("failed", 3)


def test_an_image_host_refusing_or_looping_rejects_the_coin_with_an_alert(
    service_factory, image_server, tmp_path
):
    """Found from outside: an image host answering 401, or redirecting forever, rejected
    the coin and told nobody. A rejection by the service alerts, with a one-line reason;
    a withdrawal (a person's decision) does not."""
    from moonshot.pipeline import withdraw

    image_server.routes["/auth.jpg"] = (401, {"WWW-Authenticate": "Basic"}, b"who are you")
    image_server.routes["/loop.jpg"] = (302, {"Location": "/loop.jpg"}, b"")
    svc = service_factory({**FAST, "MOONSHOT_SPOOL_ALLOWED_HOSTS": "127.0.0.1"})
    ids = [
        svc.store.add_coin(
            IncomingCoin("local", ref, ref.upper(), ref, image_server.base + f"/{ref}.jpg"),
            twitter_user="u",
        )[0]
        for ref in ("auth", "loop")
    ]
    kept, _ = svc.store.add_coin(
        IncomingCoin("local", "w", "WITHDRAWN", "w", str(tmp_path / "w.png")), twitter_user="u"
    )
    withdraw(svc.cfg, svc.store, svc.store.get(kept), "not wanted")
    drain(svc)
    assert [svc.store.get(i).state for i in ids] == [m.REJECTED, m.REJECTED]
    alerts = {a["coin_id"]: a for a in svc.store.alerts() if a["event"] == "rejected"}
    assert sorted(alerts) == ids  # the withdrawn coin raised none
    auth, loop = (alerts[i] for i in ids)
    assert auth["reason"].startswith("HTTP 401 from 127.0.0.1: the image host asks for credentials")
    assert loop["reason"].startswith("more than 5 redirects from 127.0.0.1: a redirect loop")
    for a in (auth, loop):
        assert "\n" not in a["reason"] and a["state"] == m.REJECTED
        assert f"moonshot history {a['coin_id']}" in a["command"]
        assert "moonshot retry" not in a["command"]
