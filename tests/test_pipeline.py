"""The pipeline in process, on the embedded adapters: every invariant of design.md
that does not need a crash (those are in test_crash.py)."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from PIL import Image

from moonshot import machine as m
from moonshot.errors import NeedsReview, PortUnavailable, Rejected, TransientError
from moonshot.photos.library_folder import FolderLibrary
from moonshot.ports import IncomingCoin
from tests.conftest import drain, make_image, spool_names


def add(svc, ticker="MOON", image=None, user="bob", ref=None, **kw):
    ref = ref or f"t:{ticker}:{time.monotonic_ns()}"
    coin_id, _ = svc.store.add_coin(
        IncomingCoin("local", ref, ticker, kw.get("name", ticker.title()), str(image), user),
        twitter_user=user,
    )
    return coin_id


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def ledger(svc):
    path = svc.cfg.ledger_path
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def states(svc):
    return {c.id: c.state for c in svc.store.coins_in(m.STATES)}


def test_three_coins_reach_launched_with_one_ledger_line_each(service_factory, tmp_path):
    svc = service_factory()
    ids = [
        add(svc, f"COIN{i}", make_image(tmp_path / f"{i}.png", color=(i * 80, 10, 10)))
        for i in range(3)
    ]
    drain(svc)
    assert states(svc) == dict.fromkeys(ids, m.LAUNCHED)
    lines = ledger(svc)
    assert sorted(e["coin_id"] for e in lines) == ids
    lib = svc.ports.library
    assert lib.count() == 3
    for coin_id in ids:
        coin = svc.store.get(coin_id)
        entry = next(e for e in lines if e["coin_id"] == coin_id)
        assert entry["ticker"] == coin.ticker and entry["photos_asset_id"] == coin.photos_asset_id
        assert lib.get(coin.photos_asset_id).original_filename == coin.image_filename


def test_spooled_file_is_reencoded_without_metadata(service_factory, tmp_path):
    exif = Image.Exif()
    exif[0x9003] = "2001:01:01 00:00:00"  # DateTimeOriginal: a capture date that must not survive
    exif[0x010F] = "SecretCam"
    src = make_image(tmp_path / "in.jpg", size=(300, 200), fmt="JPEG", exif=exif.tobytes())
    svc = service_factory({"MOONSHOT_SPOOL_MAX_SIDE": "100"})
    coin_id = add(svc, "META", src)
    drain(svc)
    coin = svc.store.get(coin_id)
    with Image.open(svc.cfg.spool_dir / coin.image_filename) as im:
        assert im.format == "JPEG"
        assert max(im.size) == 100
        assert not im.getexif()
        assert "icc_profile" not in im.info and "exif" not in im.info


def test_spool_writes_only_canonical_names_atomically(service_factory, tmp_path):
    svc = service_factory({"MOONSHOT_LAUNCH_MODE": "off"})
    coin_id = add(svc, "moon", make_image(tmp_path / "a.png"), user="Some_User")
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.CONFIRMED  # sync-only: stops at confirmed
    assert coin.image_filename.startswith("Some_User_MOON_") and coin.image_filename.endswith(
        ".jpg"
    )
    assert spool_names(svc.cfg.spool_dir) == [coin.image_filename]
    assert not svc.cfg.ledger_path.exists()


def test_same_second_same_ticker_gets_distinct_names(service_factory, tmp_path):
    svc = service_factory({"MOONSHOT_LAUNCH_MODE": "off"})
    img = make_image(tmp_path / "a.png")
    ids = [add(svc, "TWIN", img) for _ in range(3)]
    drain(svc)
    names = {svc.store.get(i).image_filename for i in ids}
    assert len(names) == 3


def test_invalid_input_is_rejected_with_reason(service_factory, tmp_path, image_server):
    svc = service_factory()
    html = image_server.add(
        "/page", b"<!doctype html><html>oops</html>", headers={"Content-Type": "image/jpeg"}
    )
    missing = image_server.base + "/nothing"
    bad_user = add(svc, "OK", make_image(tmp_path / "a.png"), user="bad user")
    not_image = add(svc, "HTML", html)
    gone = add(svc, "GONE", missing)
    ftp = add(svc, "FTP", "ftp://127.0.0.1/x.jpg")
    drain(svc)
    reasons = {i: svc.store.get(i) for i in (bad_user, not_image, gone, ftp)}
    assert all(c.state == m.REJECTED for c in reasons.values())
    assert "twitter user" in reasons[bad_user].last_error
    assert "not an image (an HTML page)" in reasons[not_image].last_error
    assert "HTTP 404" in reasons[gone].last_error
    assert "scheme 'ftp'" in reasons[ftp].last_error
    assert ledger(svc) == []
    assert spool_names(svc.cfg.spool_dir) == []


def test_transient_errors_back_off_then_succeed(service_factory, tmp_path, image_server):
    body = tmp_path / "x.jpg"
    make_image(body, fmt="JPEG")
    calls = {"n": 0}

    def flaky(handler):
        calls["n"] += 1
        if calls["n"] < 5:
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        data = body.read_bytes()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return None

    image_server.routes["/flaky.jpg"] = (200, {}, flaky)
    # 2 fast tries 0.02 s apart, then doubling: 0.02, 0.04, 0.08, 0.16 (up to 25 % shorter)
    svc = service_factory(
        {"MOONSHOT_SPOOL_DOWNLOAD_ATTEMPTS": "2", "MOONSHOT_SPOOL_BACKOFF_BASE": "0.02"}
    )
    coin_id = add(svc, "FLAKY", image_server.base + "/flaky.jpg")
    drain(svc)
    assert svc.store.get(coin_id).state == m.LAUNCHED
    hist = svc.store.history(coin_id)
    defers = [h["detail"] for h in hist if h["trigger"] == "defer"]
    assert len(defers) == 4 and all("HTTP 503" in d["error"] for d in defers)
    waits = [d["retry_in_s"] for d in defers]
    for wait, planned in zip(waits, (0.02, 0.04, 0.08, 0.16), strict=True):
        assert planned * 0.75 - 0.001 <= wait <= planned + 0.001, waits
    assert [d["attempt"] for d in defers] == [1, 2, 3, 4]
    assert svc.store.get(coin_id).retry_since is None  # spooled: the next stage starts afresh


def test_the_retry_window_runs_out_into_failed_and_retry_brings_it_back(
    service_factory, tmp_path, image_server
):
    image_server.routes["/down.jpg"] = (500, {}, b"")
    svc = service_factory(
        {"MOONSHOT_SERVICE_RETRY_WINDOW": "0.3", "MOONSHOT_SPOOL_BACKOFF_MAX": "0.05"}
    )
    coin_id = add(svc, "DOWN", image_server.base + "/down.jpg")
    drain(svc)
    coin = svc.store.get(coin_id)
    assert (
        coin.state == m.FAILED and coin.failed_from == m.FETCHED and "HTTP 500" in coin.last_error
    )
    assert "service.retry_window" in coin.last_error
    assert image_server.hits["/down.jpg"] >= 4  # tried all through the window, not 3 times
    hist = svc.store.history(coin_id)
    first_defer = next(h for h in hist if h["trigger"] == "defer")
    failed = hist[-1]
    assert failed["trigger"] == "fail"
    image_server.add("/down.jpg", make_image(tmp_path / "ok.jpg", fmt="JPEG").read_bytes())
    svc.store.fire(coin, "retry", attempts=0, not_before=0.0, last_error=None, retry_since=None)
    drain(svc)
    assert svc.store.get(coin_id).state == m.LAUNCHED
    assert first_defer["at"] < failed["at"]


class RecordingLibrary(FolderLibrary):
    """The folder library, recording how many coins were past `spooled` at each import."""

    def __init__(self, root, store):
        super().__init__(root)
        self.store = store
        self.busy_at_import: list[int] = []

    def import_file(self, path):
        self.busy_at_import.append(self.store.count_in(m.ACTIVE_PHOTO))
        return super().import_file(path)


def test_import_gate_keeps_one_coin_between_import_and_launch(service_factory, cfg, tmp_path):
    from moonshot.store import Store

    lib = RecordingLibrary(cfg.library_path, Store(cfg.db_path))
    svc = service_factory(library=lib, cfg=cfg)
    for i in range(5):
        add(svc, f"G{i}", make_image(tmp_path / f"{i}.png", color=(10, i * 40, 10)))
    drain(svc)
    assert lib.busy_at_import == [0] * 5
    assert len(ledger(svc)) == 5


def test_import_gate_is_off_in_sync_only_mode(service_factory, cfg_factory, tmp_path):
    from moonshot.store import Store

    cfg = cfg_factory({"MOONSHOT_LAUNCH_MODE": "off"})
    lib = RecordingLibrary(cfg.library_path, Store(cfg.db_path))
    svc = service_factory(library=lib, cfg=cfg)
    for i in range(3):
        add(svc, f"S{i}", make_image(tmp_path / f"{i}.png"))
    drain(svc)
    assert max(lib.busy_at_import) > 0  # imports went ahead while others were confirmed
    assert set(states(svc).values()) == {m.CONFIRMED}


class IntrudingLibrary(FolderLibrary):
    """A person takes a photo right after each of the first `times` confirms."""

    def __init__(self, root, intruder, times):
        super().__init__(root)
        self.intruder, self.times = intruder, times

    def confirm(self, asset_id, name, since):
        result = super().confirm(asset_id, name, since)
        if result.ready and self.times > 0:
            self.times -= 1
            super().import_file(self.intruder)
        return result


def test_newer_foreign_photo_supersedes_then_launches_own_image(service_factory, cfg, tmp_path):
    lib = IntrudingLibrary(
        cfg.library_path, make_image(tmp_path / "IMG_0001.JPG", fmt="JPEG"), times=1
    )
    svc = service_factory(library=lib, cfg=cfg)
    coin_id = add(svc, "SUPER", make_image(tmp_path / "a.png"))
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.LAUNCHED and coin.supersede_count == 1
    hist = svc.store.history(coin_id)
    sup = [h for h in hist if h["trigger"] == "supersede"]
    assert len(sup) == 1 and sup[0]["detail"]["reason"] == "superseded"
    assert sup[0]["from_state"] == m.CONFIRMED and sup[0]["to_state"] == m.SPOOLED
    # the launch used the second asset, which is the newest, and both are the coin's file
    (entry,) = ledger(svc)
    assert entry["photos_asset_id"] == coin.photos_asset_id == lib.newest().id
    assert len(lib.find(coin.image_filename)) == 2


def test_superseded_too_often_fails_without_launching(service_factory, cfg_factory, tmp_path):
    cfg = cfg_factory({"MOONSHOT_LAUNCH_SUPERSEDED_MAX": "2"})
    lib = IntrudingLibrary(
        cfg.library_path, make_image(tmp_path / "IMG_0002.JPG", fmt="JPEG"), times=99
    )
    svc = service_factory(library=lib, cfg=cfg)
    coin_id = add(svc, "NEVER", make_image(tmp_path / "a.png"))
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.FAILED and "superseded 2 times" in coin.last_error
    assert ledger(svc) == []


class ScriptedLauncher:
    kind = "scripted"

    def __init__(self, prepare_errors=0, launch_error=None):
        self.prepare_errors = prepare_errors
        self.launch_error = launch_error
        self.launched: list[int] = []
        self.prepared = 0

    def prepare(self, coin, image):
        self.prepared += 1
        if self.prepare_errors:
            self.prepare_errors -= 1
            raise TransientError("app window not found")

    def launch(self, coin):
        self.launched.append(coin.id)
        if self.launch_error:
            raise self.launch_error
        from moonshot.ports import LaunchResult

        return LaunchResult("So11111111111111111111111111111111111111112")


def test_failure_before_irreversible_step_returns_to_confirmed_with_backoff(
    service_factory, tmp_path
):
    launcher = ScriptedLauncher(prepare_errors=1)
    svc = service_factory({"MOONSHOT_LAUNCH_RETRY_BACKOFF": "0.01"}, launcher=launcher)
    coin_id = add(svc, "PREP", make_image(tmp_path / "a.png"))
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.LAUNCHED and coin.token_address.startswith("So1")
    assert launcher.prepared == 2 and launcher.launched == [coin_id]
    assert any(
        h["trigger"] == "defer" and h["to_state"] == m.CONFIRMED for h in svc.store.history(coin_id)
    )


@pytest.mark.parametrize(
    "error", [NeedsReview("screen not recognised"), RuntimeError("window vanished")]
)
def test_failure_after_irreversible_step_needs_review_never_relaunch(
    service_factory, tmp_path, error
):
    launcher = ScriptedLauncher(launch_error=error)
    svc = service_factory(launcher=launcher)
    coin_id = add(svc, "RISK", make_image(tmp_path / "a.png"))
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.NEEDS_REVIEW and str(error) in coin.last_error
    drain(svc)  # nothing moves it on its own
    svc.pipeline.recover(time.time())
    assert launcher.launched == [coin_id]
    assert svc.store.get(coin_id).state == m.NEEDS_REVIEW


def test_coin_found_launching_at_startup_goes_to_needs_review(service_factory, tmp_path):
    svc = service_factory()
    coin_id = add(svc, "HALF", make_image(tmp_path / "a.png"))
    coin = svc.store.get(coin_id)
    for trig in ("spool", "import_photo", "confirm", "start_launch"):
        svc.store.fire(coin, trig)
        coin = svc.store.get(coin_id)
    assert coin.state == m.LAUNCHING
    drain(svc)  # the first tick starts the service, which recovers
    assert svc.store.get(coin_id).state == m.NEEDS_REVIEW
    assert ledger(svc) == []
    assert not m.allowed(m.LAUNCHING, "resolve_not_launched")
    assert m.triggers_from(m.LAUNCHING) == ["finish_launch", "review"]


def test_manual_coin_waits_for_approval(service_factory, tmp_path):
    svc = service_factory()
    make_image(svc.cfg.spool_dir / "alice_DROP_1700000000.jpg", fmt="JPEG")
    drain(svc)
    (coin,) = svc.store.coins_in(m.STATES)
    assert coin.source == "manual" and coin.state == m.CONFIRMED and coin.twitter_user == "alice"
    assert svc.pipeline.launch_blocker(coin, time.time()).startswith("awaits approval")
    svc.store.fire(coin, "approve", approved=1)
    drain(svc)
    assert svc.store.get(coin.id).state == m.LAUNCHED and len(ledger(svc)) == 1


def test_drop_matching_a_failed_coin_moves_it_to_spooled(service_factory, tmp_path, image_server):
    image_server.routes["/x.jpg"] = (500, {}, b"")
    svc = service_factory({"MOONSHOT_SERVICE_RETRY_WINDOW": "0"})  # failed at the first error
    svc.start(watch=True)  # the real watchdog observer
    coin_id = add(svc, "RESCUE", image_server.base + "/x.jpg", user="carol")
    drain(svc)
    assert svc.store.get(coin_id).state == m.FAILED
    make_image(
        svc.cfg.spool_dir / "carol_RESCUE_1700000001.jpg", fmt="PNG"
    )  # a PNG under a .jpg name
    wait_for(lambda: svc.watcher.pending() > 0)
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.LAUNCHED and coin.image_filename == "carol_RESCUE_1700000001.jpg"
    with Image.open(svc.cfg.spool_dir / coin.image_filename) as im:
        assert im.format == "JPEG"  # re-encoded before import
    assert len(svc.store.coins_in(m.STATES)) == 1


def test_a_drop_matching_two_waiting_coins_is_taken_for_neither(
    service_factory, tmp_path, image_server
):
    """Found from outside: a drop matching two waiting coins of one user and ticker went
    to the oldest without a word, and launched. It is refused, named in status, until a
    person withdraws the coin it is not for."""
    from moonshot.ops.status import collect

    image_server.routes["/x.jpg"] = (500, {}, b"")
    svc = service_factory({"MOONSHOT_SERVICE_RETRY_WINDOW": "0"})
    svc.start(watch=True)
    first = add(svc, "DUP", image_server.base + "/x.jpg", user="carol", name="first")
    second = add(svc, "DUP", image_server.base + "/x.jpg", user="carol", name="second")
    drain(svc)
    assert {svc.store.get(i).state for i in (first, second)} == {m.FAILED}
    drop = svc.cfg.spool_dir / "carol_DUP_1700000001.jpg"
    make_image(drop, fmt="JPEG")
    wait_for(lambda: svc.watcher.pending() > 0)
    drain(svc)
    assert {svc.store.get(i).state for i in (first, second)} == {m.FAILED}
    assert ledger(svc) == []
    why = collect(svc.cfg, svc.store)["refused_drops"][drop.name]
    assert f"coins {first}, {second}" in why and "withdraw" in why
    # The person withdraws the coin it is not for and drops the file again: it is taken.
    from moonshot.pipeline import withdraw

    assert withdraw(svc.cfg, svc.store, svc.store.get(first), "not this one") == m.REJECTED
    make_image(drop, fmt="JPEG")
    wait_for(lambda: svc.watcher.pending() > 0)
    drain(svc)
    assert svc.store.get(second).state == m.LAUNCHED
    assert [e["coin_id"] for e in ledger(svc)] == [second]


def test_file_still_being_copied_is_not_taken_half_written(service_factory, tmp_path):
    svc = service_factory({"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.3", "MOONSHOT_LAUNCH_MODE": "off"})
    svc.start(watch=True)
    data = make_image(tmp_path / "big.jpg", size=(800, 600), fmt="JPEG").read_bytes()
    target = svc.cfg.spool_dir / "dave_SLOW_1700000002.jpg"
    with open(target, "wb") as f:
        for i in range(0, len(data), max(len(data) // 5, 1)):
            f.write(data[i : i + max(len(data) // 5, 1)])
            f.flush()
            svc.tick()
            assert svc.store.coins_in(m.STATES) == []  # still changing: not taken
            time.sleep(0.1)
    drain(svc)
    (coin,) = svc.store.coins_in(m.STATES)
    assert coin.state == m.CONFIRMED


def test_other_files_are_left_alone_and_parts_cleaned(service_factory, tmp_path):
    from moonshot.ops.status import collect

    svc = service_factory()
    (svc.cfg.spool_dir / "holiday.jpg").write_bytes(b"x")
    stale = svc.cfg.spool_dir / "bob_X_1.jpg.123-abcd.part"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 120, time.time() - 120))  # a crash's leftover
    # Written a moment ago: maybe another process's write in flight (the other agent).
    fresh = svc.cfg.spool_dir / ".moonshot-home.456-ef01.part"
    fresh.write_bytes(b"{}")
    drain(svc)
    assert (svc.cfg.spool_dir / "holiday.jpg").read_bytes() == b"x"
    assert not stale.exists()
    assert fresh.exists()
    assert svc.store.coins_in(m.STATES) == []
    assert collect(svc.cfg, svc.store)["unknown_spool_files"] == ["holiday.jpg"]


def test_undecodable_drop_makes_no_coin_and_is_taken_once_it_changes(
    service_factory, monkeypatch, tmp_path
):
    """Issue 15: a file that does not decode is refused for now, shown by status, and
    taken when it changes (a drop refused for good could never be fixed)."""
    from moonshot import pipeline
    from moonshot.ops.status import collect

    monkeypatch.setattr(pipeline, "DROP_GRACE", 0.05)
    svc = service_factory()
    drop = svc.cfg.spool_dir / "eve_JUNK_1700000003.jpg"
    drop.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    drain(svc)
    assert svc.store.coins_in(m.STATES) == []
    refused = collect(svc.cfg, svc.store, probe=False)["refused_drops"]
    assert "SVG" in refused["eve_JUNK_1700000003.jpg"]
    drop.write_bytes(make_image(tmp_path / "good.png", fmt="PNG").read_bytes())
    svc.watcher.notice(drop)  # what the watchdog thread does on the write
    drain(svc)
    (coin,) = svc.store.coins_in(m.STATES)
    assert coin.source == "manual" and coin.state == m.CONFIRMED  # waits for approval
    assert collect(svc.cfg, svc.store, probe=False)["refused_drops"] == {}


def test_import_after_crash_reuses_the_asset(service_factory, tmp_path):
    svc = service_factory()
    coin_id = add(svc, "ONCE", make_image(tmp_path / "a.png"))
    while svc.store.get(coin_id).state == m.FETCHED:  # the download runs off the tick
        svc.tick()
    coin = svc.store.get(coin_id)
    assert coin.state == m.SPOOLED
    # the previous run imported, then died before committing `imported`
    coin = svc.store.get(coin_id)
    svc.store.fire(coin, "attempt", attempts=1, import_started=time.time() - 1)
    svc.ports.library.import_file(svc.cfg.spool_dir / coin.image_filename)
    drain(svc)
    assert svc.store.get(coin_id).state == m.LAUNCHED
    assert len(svc.ports.library.find(coin.image_filename)) == 1
    hist = [h for h in svc.store.history(coin_id) if h["trigger"] == "import_photo"]
    assert hist[0]["detail"]["reused"] is True


def test_deny_and_allow_lists(service_factory, tmp_path):
    svc = service_factory(
        {"MOONSHOT_LAUNCH_DENY_USERS": "mallory", "MOONSHOT_LAUNCH_ALLOW_USERS": "bob,mallory"}
    )
    denied = add(svc, "D", make_image(tmp_path / "a.png"), user="Mallory")
    unlisted = add(svc, "U", make_image(tmp_path / "b.png"), user="trent")
    ok = add(svc, "OK", make_image(tmp_path / "c.png"), user="bob")
    drain(svc)
    assert "deny_users" in svc.store.get(denied).last_error
    assert "allow_users" in svc.store.get(unlisted).last_error
    assert svc.store.get(ok).state == m.LAUNCHED
    assert [e["coin_id"] for e in ledger(svc)] == [ok]


def test_launch_limits_hold(service_factory, tmp_path):
    svc = service_factory({"MOONSHOT_LAUNCH_MAX_PER_HOUR": "2"})
    ids = [add(svc, f"L{i}", make_image(tmp_path / f"{i}.png")) for i in range(3)]
    drain(svc)
    assert [svc.store.get(i).state for i in ids] == [m.LAUNCHED, m.LAUNCHED, m.CONFIRMED]
    assert "launch limits" in svc.pipeline.launch_blocker(svc.store.get(ids[2]), time.time())


def test_min_gap_between_launches(service_factory, tmp_path):
    svc = service_factory({"MOONSHOT_LAUNCH_MIN_GAP_SECONDS": "3600"})
    ids = [add(svc, f"M{i}", make_image(tmp_path / f"{i}.png")) for i in range(2)]
    drain(svc)
    assert [svc.store.get(i).state for i in ids] == [m.LAUNCHED, m.CONFIRMED]


def test_confirm_times_out_into_failed(service_factory, cfg_factory, tmp_path):
    cfg = cfg_factory({"MOONSHOT_PHOTOS_CONFIRM_TIMEOUT": "0"})

    class Forgetful(FolderLibrary):
        def confirm(self, asset_id, name, since):
            from moonshot.ports import Confirmation

            return Confirmation(False, False, None, f"{name} is not in the library")

    svc = service_factory(library=Forgetful(cfg.library_path), cfg=cfg)
    coin_id = add(svc, "LOST", make_image(tmp_path / "a.png"))
    drain(svc)
    coin = svc.store.get(coin_id)
    assert (
        coin.state == m.FAILED
        and coin.failed_from == m.IMPORTED
        and "not in the library" in coin.last_error
    )


def test_failed_coin_own_file_is_not_taken_as_a_drop(service_factory, cfg_factory, tmp_path):
    """Regression: a coin that failed after spooling keeps its file in spool/; neither
    the importer reading it nor a restart's rescan may re-import it in a loop."""
    cfg = cfg_factory({"MOONSHOT_LAUNCH_DENY_USERS": "baduser"})
    svc = service_factory(cfg=cfg)
    svc.start(watch=True)
    coin_id = add(svc, "BAD", make_image(tmp_path / "a.png"), user="baduser")
    drain(svc)
    time.sleep(0.3)  # let any watchdog events of the import arrive
    drain(svc)
    coin = svc.store.get(coin_id)
    assert coin.state == m.FAILED and "deny_users" in coin.last_error
    assert len(svc.ports.library.find(coin.image_filename)) == 1
    svc.close()
    again = service_factory(cfg=cfg)  # a restart: the rescan sees the file
    again.start(watch=True)
    drain(again)
    assert again.store.get(coin_id).state == m.FAILED
    assert len(again.ports.library.find(coin.image_filename)) == 1
    # a person dropping the file again (written after the failure) is a real drop
    path = cfg.spool_dir / coin.image_filename
    make_image(path, fmt="JPEG", color=(1, 2, 3))
    wait_for(lambda: again.watcher.pending() > 0)
    drain(again)
    assert [h["trigger"] for h in again.store.history(coin_id)].count("drop") == 1
    assert again.store.get(coin_id).state == m.FAILED  # still denied, once more, not in a loop


def test_denied_user_fails_even_while_launch_limits_block(service_factory, tmp_path):
    svc = service_factory(
        {"MOONSHOT_LAUNCH_MAX_PER_DAY": "1", "MOONSHOT_LAUNCH_DENY_USERS": "mallory"}
    )
    first = add(svc, "FIRST", make_image(tmp_path / "a.png"))
    denied = add(svc, "DENIED", make_image(tmp_path / "b.png"), user="mallory")
    drain(svc)
    assert svc.store.get(first).state == m.LAUNCHED
    assert svc.store.get(denied).state == m.FAILED


def test_a_second_service_on_the_same_home_is_refused(service_factory, cfg):
    """Review finding: a second `run` starting while the first is mid-launch would send
    the coin in hand to needs_review and lose the first one's outcome."""
    from moonshot.errors import MoonshotError

    first = service_factory(cfg=cfg)
    first.start(watch=False)
    second = service_factory(cfg=cfg)
    with pytest.raises(MoonshotError, match="already runs the sync stage"):
        second.start(watch=False)
    first.close()
    second.start(watch=False)  # free again once the first one stopped


def test_failed_commit_after_launch_makes_the_coin_visible_at_once(
    service_factory, tmp_path, monkeypatch
):
    """Review finding: a failed `finish_launch` commit left the coin in `launching`
    (holding the import gate) until the next restart."""
    import sqlite3

    svc = service_factory()
    coin_id = add(svc, "STUCK", make_image(tmp_path / "a.png"))
    real = svc.store.commit_transition

    def disk_full_once(coin_id_, frm, to, trig, *a, **k):
        if trig == "finish_launch":
            raise sqlite3.OperationalError("database or disk is full")
        return real(coin_id_, frm, to, trig, *a, **k)

    monkeypatch.setattr(svc.store, "commit_transition", disk_full_once)
    drain(svc)
    monkeypatch.setattr(svc.store, "commit_transition", real)
    coin = svc.store.get(coin_id)
    assert coin.state == m.NEEDS_REVIEW and "launch outcome not recorded" in coin.last_error
    assert len(ledger(svc)) == 1
    other = add(svc, "NEXT", make_image(tmp_path / "b.png", color=(1, 2, 3)))
    drain(svc)
    assert svc.store.get(other).state == m.LAUNCHED  # the import gate is open again


def test_crash_between_manual_coin_insert_and_drop_commit(service_factory, tmp_path):
    """Review finding: the manual coin was inserted without its file name, so after a
    crash here the spool step rejected it ("scheme '(none)'") and the drop was lost."""
    from moonshot.naming import parse_name

    svc = service_factory()
    name = "alice_DROP_1700000000.jpg"
    make_image(svc.cfg.spool_dir / name, fmt="PNG")
    coin = svc.pipeline._manual_coin(parse_name(name), name, time.time())  # then the crash
    svc.close()
    again = service_factory(cfg=svc.cfg)
    drain(again)
    got = again.store.get(coin.id)
    assert got.state == m.CONFIRMED and got.image_filename == name  # awaits approval
    assert len(again.store.coins_in(m.STATES)) == 1
    with Image.open(again.cfg.spool_dir / name) as im:
        assert im.format == "JPEG"


def test_status_says_why_a_confirmed_coin_is_held(service_factory, tmp_path):
    from moonshot.ops.status import collect, render

    svc = service_factory({"MOONSHOT_LAUNCH_REQUIRE_APPROVAL": "true"})
    coin_id = add(svc, "HOLD", make_image(tmp_path / "a.png"))
    drain(svc)
    report = collect(svc.cfg, svc.store, probe=False)
    assert report["held"] == [
        {"id": coin_id, "ticker": "HOLD", "reason": f"awaits approval: moonshot approve {coin_id}"}
    ]
    assert f"held in confirmed: coin {coin_id} HOLD: awaits approval" in render(report)


class SlowLockedLibrary(FolderLibrary):
    """Photos answers "locked" only after 30 s (on the injected clock), once."""

    def __init__(self, root, clock: list[float]):
        super().__init__(root)
        self.clock = clock
        self.refusals = 1

    def import_file(self, path):
        if self.refusals:
            self.refusals -= 1
            self.clock[0] += 30.0
            raise TransientError("Photos library is locked")
        return super().import_file(path)


def test_the_retry_wait_is_measured_from_the_failure(cfg_factory, tmp_path):
    """Issue 16: after a 30 s timeout the "retry in 2 s" attempt started 3 ms later,
    because the wait was counted from the start of the attempt."""
    from moonshot.adapters import Ports
    from moonshot.app.launcher_ledger import LedgerLauncher
    from moonshot.service import Service
    from moonshot.store import Store
    from moonshot.supabase.source_local import LocalSource

    clock = [10_000.0]
    cfg = cfg_factory({"MOONSHOT_SPOOL_BACKOFF_BASE": "2"})
    library = SlowLockedLibrary(cfg.library_path, clock)
    ports = Ports(LocalSource(), library, LedgerLauncher(cfg.ledger_path))
    svc = Service(cfg, store=Store(cfg.db_path), ports=ports, clock=lambda: clock[0])
    svc.pipeline.rng.random = lambda: 0.0  # no jitter
    coin_id = add(svc, "SLOW", make_image(tmp_path / "s.png"))
    while svc.store.get(coin_id).state == m.FETCHED:
        svc.tick(clock[0])
    started = clock[0]
    svc.tick(clock[0])  # the import: locked, after 30 s
    coin = svc.store.get(coin_id)
    assert coin.state == m.SPOOLED and coin.attempts == 1
    assert coin.not_before == started + 30.0 + 2.0  # from the failure, not from `started`
    assert coin.retry_since == started + 30.0
    assert svc.next_due(clock[0]) == started + 32.0
    assert not svc.tick(started + 31.9)  # not yet
    assert svc.tick(started + 32.0)
    assert svc.store.get(coin_id).state == m.IMPORTED
    svc.close()


@pytest.mark.parametrize(
    "error, state",
    [
        (TransientError("the app window is not on screen"), m.CONFIRMED),
        (Rejected("coin 1: the name cannot be typed (iPhone Mirroring)"), m.FAILED),
        (PortUnavailable("not allowed to control the app: grant Accessibility"), m.FAILED),
    ],
)
def test_a_permanent_launcher_error_fails_at_once_a_transient_one_waits(
    service_factory, tmp_path, error, state
):
    from moonshot.app.launcher_ledger import LedgerLauncher

    class Refusing(LedgerLauncher):
        def prepare(self, coin, image):
            raise error

    cfg_svc = service_factory()
    svc = service_factory(cfg=cfg_svc.cfg, launcher=Refusing(cfg_svc.cfg.ledger_path))
    coin_id = add(svc, "PERM", make_image(tmp_path / "p.png"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # (no drain: a transient error waits 30 s)
        coin = svc.store.get(coin_id)
        if coin.state == m.FAILED or (coin.state == m.CONFIRMED and coin.last_error):
            break
        svc.tick()
    assert coin.state == state and str(error) in coin.last_error
    assert coin.attempts == 1  # one try; a transient one waits launch.retry_backoff (30 s)
    if state == m.CONFIRMED:
        assert coin.retry_since is not None and coin.not_before > time.time() + 20


@pytest.mark.parametrize("error", ["mismatch", "transient"])
def test_a_coin_the_app_keeps_showing_wrong_fails_after_prepare_attempts(
    service_factory, tmp_path, error
):
    """A read-back that refuses (the app shows another ticker, name or picture) is tried
    launch.prepare_attempts times, then the coin fails: it holds the import gate, so a
    whole retry window of refusals would stop every coin behind it. An app that is not
    there (a transient error) is waited for within the retry window instead."""
    from moonshot.app.launcher_ledger import LedgerLauncher
    from moonshot.errors import Mismatch

    class Refusing(LedgerLauncher):
        def prepare(self, coin, image):
            if error == "mismatch":
                raise Mismatch(f"coin {coin.id}: the app does not show the coin's ticker")
            raise TransientError(f"coin {coin.id}: no window 'Moonshot' on screen")

    env = {"MOONSHOT_LAUNCH_PREPARE_ATTEMPTS": "2", "MOONSHOT_LAUNCH_RETRY_BACKOFF": "0.01"}
    cfg_svc = service_factory(env)
    svc = service_factory(cfg=cfg_svc.cfg, launcher=Refusing(cfg_svc.cfg.ledger_path))
    coin_id = add(svc, "SHOWN", make_image(tmp_path / "s.png"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        coin = svc.store.get(coin_id)
        if coin.state == m.FAILED or (coin.state == m.CONFIRMED and coin.attempts >= 4):
            break
        svc.tick()
        time.sleep(0.01)
    if error == "mismatch":
        assert coin.state == m.FAILED and coin.attempts == 2
        assert "launch.prepare_attempts = 2" in coin.last_error
    else:
        assert coin.state == m.CONFIRMED and coin.attempts >= 4  # still within the window


def test_a_prepare_that_may_have_spent_sends_the_coin_to_review_never_again(
    service_factory, tmp_path
):
    """The app showed an outcome before the irreversible step (a step before it spent):
    the coin is recorded `launching` then `needs_review`, prepared once, never launched."""
    from moonshot.errors import NeedsReview

    prepared = []

    class SpentEarly:
        kind = "app"

        def prepare(self, coin, image):
            prepared.append(coin.id)
            raise NeedsReview(f"coin {coin.id}: the app shows success.png before the mark")

        def launch(self, coin):  # pragma: no cover - never reached
            raise AssertionError("launched after a prepare that may have spent")

    svc = service_factory({"MOONSHOT_LAUNCH_RETRY_BACKOFF": "0.01"}, launcher=SpentEarly())
    coin_id = add(svc, "EARLY", make_image(tmp_path / "e.png"))
    deadline = time.monotonic() + 20  # the download runs in a worker: wait by time
    while time.monotonic() < deadline and svc.store.get(coin_id).state != m.NEEDS_REVIEW:
        svc.tick(time.time())
        time.sleep(0.01)
    for _ in range(20):  # and a while longer: it must not be prepared again
        svc.tick(time.time())
    coin = svc.store.get(coin_id)
    assert coin.state == m.NEEDS_REVIEW and "before the mark" in coin.last_error
    assert prepared == [coin_id]
    trail = [t["to_state"] for t in svc.store.history(coin_id)]
    assert trail[-2:] == [m.LAUNCHING, m.NEEDS_REVIEW]


def test_status_says_why_a_confirmed_coin_is_retrying(service_factory, tmp_path):
    """A launcher that refuses before the spend (a read-back, a reset that cannot reach
    the start screen) leaves the coin in confirmed: status says why, and when it retries."""
    from moonshot.errors import TransientError
    from moonshot.ops.status import collect, render

    class Refusing:
        kind = "app"

        def prepare(self, coin, image):
            raise TransientError(f"coin {coin.id}: reset failed, the app is not back home")

        def launch(self, coin):  # pragma: no cover - never reached
            raise AssertionError("launched after a refused prepare")

    svc = service_factory({"MOONSHOT_LAUNCH_RETRY_BACKOFF": "600"}, launcher=Refusing())
    coin_id = add(svc, "WAIT", make_image(tmp_path / "a.png"))
    # Up to the first refusal (drain would wait out the backoff), by time: the download
    # runs in a worker, so a count of ticks is too few on a loaded machine.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        svc.tick(time.time())
        coin = svc.store.get(coin_id)
        if coin.state == m.CONFIRMED and coin.last_error:
            break
        time.sleep(0.01)
    report = collect(svc.cfg, svc.store, probe=False)
    (row,) = report["retrying"]
    assert (row["id"], row["attempts"]) == (coin_id, 1)
    # spool.backoff_max caps the backoff; the jitter shortens a wait by up to 25 %
    assert 0.75 * 300 - 10 < row["retry_in_s"] <= 300
    line = next(ln for ln in render(report).splitlines() if ln.startswith("retrying:"))
    assert line.startswith(f"retrying: coin {coin_id} WAIT (attempt 1, retry in ")
    assert line.endswith("reset failed, the app is not back home")


def test_status_says_why_a_coin_waits_after_a_transient_download_error(
    service_factory, image_server
):
    """Found from outside: during an image host outage status said only "oldest waiting"
    ("retrying" empty), though each coin held its error and its next try."""
    from moonshot.ops.status import collect, render

    url = image_server.add("/down.jpg", b"busy", status=503)  # down from now on
    svc = service_factory({"MOONSHOT_SPOOL_BACKOFF_MAX": "600"})
    coin_id = add(svc, "DOWN", url)
    deadline = time.monotonic() + 20  # the download runs in a worker: wait by time
    while time.monotonic() < deadline:
        svc.tick(time.time())
        coin = svc.store.get(coin_id)
        if coin.last_error:
            break
        time.sleep(0.02)
    assert coin.state == m.FETCHED and coin.last_error
    report = collect(svc.cfg, svc.store, probe=False)
    (row,) = report["retrying"]
    assert (row["id"], row["state"]) == (coin_id, m.FETCHED) and row["retry_in_s"] >= 0
    line = next(ln for ln in render(report).splitlines() if ln.startswith("retrying:"))
    assert f"coin {coin_id} DOWN" in line and coin.last_error in line


def test_a_withdrawn_coin_handed_again_by_a_remote_source_is_not_launched(service_factory):
    """The Supabase source may hand the same row again (a reset claim), or a new row for
    the same tweet: neither launches a coin a person withdrew (issue 15)."""
    from moonshot.pipeline import withdraw

    svc = service_factory()
    img = str(make_image(svc.cfg.home / "w.png"))
    first = IncomingCoin("supabase", "row-7", "WD", "w", img, "bob", "77")
    coin_id, _ = svc.store.add_coin(first, twitter_user="bob")
    withdraw(svc.cfg, svc.store, svc.store.get(coin_id), "a person said no")
    assert svc.store.add_coin(first, twitter_user="bob") == (coin_id, False)
    other = IncomingCoin("supabase", "row-8", "WD", "w", img, "bob", "77")
    other_id, created = svc.store.add_coin(other, twitter_user="bob")
    assert created
    drain(svc)
    assert svc.store.get(other_id).state == m.REJECTED
    assert svc.store.get(other_id).last_error == f"tweet 77 is already coin {coin_id}"
    assert ledger(svc) == []


def test_an_address_another_coin_holds_is_no_proof_of_this_launch(service_factory, tmp_path):
    """Found from outside: an error screen taken for success, whose Copy button still gave
    the last coin's address; the coin was recorded launched with coin 1's token and never
    launched (lost). A token is one coin's: the second is a review, with both ids named."""
    launcher = ScriptedLauncher()  # the same address every time
    svc = service_factory(launcher=launcher)
    first = add(svc, "ONE", make_image(tmp_path / "a.png"))
    drain(svc)
    second = add(svc, "TWO", make_image(tmp_path / "b.png", color=(10, 200, 30)))
    drain(svc)
    assert svc.store.get(first).state == m.LAUNCHED
    coin = svc.store.get(second)
    assert coin.state == m.NEEDS_REVIEW and coin.token_address is None
    assert f"which is coin {first}'s (ONE)" in coin.last_error
    assert launcher.launched == [first, second]


class TamperingLibrary(FolderLibrary):
    """After each of the first `times` confirms, the coin's original in the library is
    overwritten with another picture (or deleted): the asset id stays the newest."""

    def __init__(self, root, other: bytes | None, times):
        super().__init__(root)
        self.other, self.times = other, times

    def confirm(self, asset_id, name, since):
        result = super().confirm(asset_id, name, since)
        if result.ready and self.times > 0:
            self.times -= 1
            path = self.path_of(result.asset.id)
            if self.other is None:
                path.unlink()
            else:
                path.write_bytes(self.other)
        return result


@pytest.mark.parametrize("how", ["overwritten", "deleted"])
def test_a_library_photo_that_is_no_longer_the_coins_image_is_never_launched(
    service_factory, cfg, tmp_path, how
):
    """Found from outside: the newest asset was still the coin's by id, but its file held
    another picture (or none), and the coin launched with it."""
    other = make_image(tmp_path / "other.jpg", fmt="JPEG", color=(250, 2, 2)).read_bytes()
    lib = TamperingLibrary(cfg.library_path, other if how == "overwritten" else None, times=1)
    svc = service_factory(library=lib, cfg=cfg)
    coin_id = add(svc, "TAMPER", make_image(tmp_path / "a.png"))
    drain(svc)
    coin = svc.store.get(coin_id)
    sup = [h for h in svc.store.history(coin_id) if h["trigger"] == "supersede"]
    what = "is another picture" if how == "overwritten" else "is missing"
    assert len(sup) == 1 and what in sup[0]["detail"]["why"], sup
    # A fresh import of the spooled file: the launch takes a photo that is the coin's.
    assert coin.state == m.LAUNCHED and coin.supersede_count == 1
    (entry,) = ledger(svc)
    launched = lib.path_of(entry["photos_asset_id"]).read_bytes()
    assert hashlib.sha256(launched).hexdigest() == coin.image_sha256
