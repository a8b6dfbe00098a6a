"""MacPhotosLibrary: its logic runs here on Linux against real Photos libraries (copies of
the fixtures). Photos itself is SIMULATED by an importer that inserts into the temporary
copy the rows Photos writes on an import; the real imports are the `macos` tests."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from moonshot import config as config_mod
from moonshot import machine as m
from moonshot.adapters import Ports, build_library
from moonshot.errors import PortUnavailable, TransientError
from moonshot.photos.library_macos import (
    APPLESCRIPT_LINES,
    DEFAULT_LIBRARY,
    ImportTimedOut,
    MacPhotosLibrary,
    applescript_import,
    library_from_config,
    photokit_import,
    run_osascript,
)
from moonshot.ports import IncomingCoin, PhotosLibrary
from moonshot.service import Service
from moonshot.store import Store
from moonshot.supabase.source_local import LocalSource
from tests.contracts.test_photos_library import (  # noqa: F401 - the contract, run here too
    test_confirm_of_unknown_file_is_not_present,
    test_find_respects_added_after,
    test_import_then_find_newest_confirm,
    test_is_a_photos_library,
    test_second_import_is_a_second_asset_and_newest,
)
from tests.photos.helpers import CLOUD, COMPARE, SimulatedPhotos, copy_library

macos = pytest.mark.skipif(sys.platform != "darwin", reason="needs macOS")


class FakeClock:
    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SimulatedImporter:
    """Does what Photos does on an import, on the temporary copy: insert the asset's
    rows (optionally late, or not at all) and answer like PhotoKit (`UUID/L0/001`)."""

    def __init__(
        self,
        sim: SimulatedPhotos,
        *,
        cloud_state: int | None = None,
        timeout: bool = False,
        write: bool = True,
        promise_id: bool = False,
    ):
        self.sim, self.cloud_state, self.timeout, self.write, self.promise_id = (
            sim,
            cloud_state,
            timeout,
            write,
            promise_id,
        )
        self.calls: list[tuple[Path, float]] = []
        self.uid: str | None = None

    def __call__(self, path: Path, timeout: float) -> str:
        self.calls.append((path, timeout))
        if self.write:
            self.uid = self.sim.add(path.name, time.time(), cloud_state=self.cloud_state)
        if self.timeout:
            raise ImportTimedOut(
                f"Photos did not finish importing {path.name} in {timeout:.0f} s",
                self.uid if self.promise_id else None,
            )
        return f"{self.uid}/L0/001"


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "spool" / "bob_MOON_1764140000.jpg"
    path.parent.mkdir()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(path, "JPEG")
    return path


@pytest.fixture
def compare(tmp_path):
    lib = copy_library(COMPARE, tmp_path)
    sim = SimulatedPhotos(lib)
    yield lib, sim
    sim.close()


@pytest.fixture
def cloud(tmp_path):
    lib = copy_library(CLOUD, tmp_path)
    sim = SimulatedPhotos(lib)
    yield lib, sim
    sim.close()


@pytest.fixture
def library(compare):
    """The PhotosLibrary contract suite (tests/contracts), run on Linux against this
    adapter with Photos simulated on a copy of a real library."""
    lib, sim = compare
    return MacPhotosLibrary(lib, importer=SimulatedImporter(sim))


def test_is_a_photos_library_port(compare):
    lib, _ = compare
    assert isinstance(MacPhotosLibrary(lib), PhotosLibrary)
    assert MacPhotosLibrary(lib).kind == "macos"


def test_simulated_import_then_confirm_and_newest(compare, image):
    lib, sim = compare
    importer = SimulatedImporter(sim)
    photos = MacPhotosLibrary(lib, importer=importer, import_timeout=7)
    since = time.time()
    asset = photos.import_file(image)
    assert importer.calls == [(image.resolve(), 7)]
    assert asset.id == importer.uid and "/" not in asset.id
    assert asset.original_filename == image.name
    assert asset.date_added >= since - 1
    assert photos.newest() == asset
    assert photos.find(image.name, added_after=since - 1) == [asset]
    found = photos.confirm(asset.id, image.name, since - 1)
    assert (found.present, found.ready, found.asset) == (True, True, asset)
    # Without the id (a crash before it was committed), by name and time:
    assert photos.confirm(None, image.name, since - 1).asset == asset
    assert not photos.confirm(None, image.name, time.time() + 60).present


def test_confirm_before_photos_writes(compare):
    lib, _ = compare
    found = MacPhotosLibrary(lib).confirm("0000-MISSING", "bob_X_1.jpg", time.time())
    assert (found.present, found.ready) == (False, False)
    assert "bob_X_1.jpg is not in the Photos library yet" in found.detail


def test_icloud_wait_until_uploaded(cloud, image):
    lib, sim = cloud
    photos = MacPhotosLibrary(
        lib, importer=SimulatedImporter(sim, cloud_state=1), require_icloud=True
    )
    since = time.time() - 1
    asset = photos.import_file(image)
    waiting = photos.confirm(asset.id, image.name, since)
    assert (waiting.present, waiting.ready) == (True, False)
    assert "not uploaded to iCloud Photos yet" in waiting.detail
    sim.set_cloud_state(asset.id, 3)  # Photos finished the upload (simulated)
    done = photos.confirm(asset.id, image.name, since)
    assert (done.present, done.ready, done.asset.in_cloud) == (True, True, True)


def test_icloud_required_but_no_cloud_record(compare, image):
    lib, sim = compare
    photos = MacPhotosLibrary(lib, importer=SimulatedImporter(sim), require_icloud=True)
    asset = photos.import_file(image)
    found = photos.confirm(asset.id, image.name, time.time() - 5)
    assert (found.present, found.ready) == (True, False)
    assert "no iCloud Photos record" in found.detail
    assert MacPhotosLibrary(lib, require_icloud=False).confirm(asset.id, image.name, 0).ready


def _service(tmp_path, library, env):
    home = tmp_path / "home"
    home.mkdir()
    cfg = config_mod.load(home, env={"MOONSHOT_LAUNCH_MODE": "off", **env})
    cfg.ensure_dirs()
    return Service(cfg, store=Store(cfg.db_path), ports=Ports(LocalSource(), library, None))


def _run_to(svc, coin_id, states, now):
    deadline = time.monotonic() + 30  # the download runs off the tick (issue 16)
    while time.monotonic() < deadline:
        if svc.store.get(coin_id).state in states:
            return svc.store.get(coin_id)
        if not svc.tick(now):
            time.sleep(0.01)
    raise AssertionError(svc.store.get(coin_id))


@pytest.mark.parametrize("uploaded", [True, False], ids=["uploaded", "icloud-timeout"])
def test_pipeline_confirms_after_icloud_upload_or_fails_on_timeout(tmp_path, cloud, uploaded):
    """End to end through the real pipeline: spool, import (simulated Photos), then
    confirm waits for the iCloud upload; without it the coin fails after icloud_timeout."""
    lib, sim = cloud
    importer = SimulatedImporter(sim, cloud_state=1)
    photos = MacPhotosLibrary(lib, importer=importer, require_icloud=True)
    svc = _service(tmp_path, photos, {"MOONSHOT_PHOTOS_ICLOUD_TIMEOUT": "30"})
    src = tmp_path / "in.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(src)
    coin_id, _ = svc.store.add_coin(
        IncomingCoin("local", "t:1", "MOON", "Moon", str(src), "bob"), twitter_user="bob"
    )
    t0 = time.time()
    coin = _run_to(svc, coin_id, {m.IMPORTED}, t0)
    assert coin.photos_asset_id == importer.uid
    assert len(importer.calls) == 1
    svc.tick(t0 + 2)
    coin = svc.store.get(coin_id)
    assert coin.state == m.IMPORTED and "not uploaded to iCloud Photos yet" in coin.last_error
    if uploaded:
        sim.set_cloud_state(importer.uid, 3)
        coin = _run_to(svc, coin_id, {m.CONFIRMED, m.FAILED}, t0 + 4)
        assert coin.state == m.CONFIRMED
    else:
        svc.tick(t0 + 20)
        assert svc.store.get(coin_id).state == m.IMPORTED
        coin = _run_to(svc, coin_id, {m.CONFIRMED, m.FAILED}, t0 + 40)
        assert coin.state == m.FAILED and coin.failed_from == m.IMPORTED
        assert "not uploaded to iCloud Photos yet after 30 s" in coin.last_error
    assert sim.count_named(coin.image_filename) == 1
    svc.close()


def test_timed_out_import_found_by_name_is_not_imported_again(compare, image):
    lib, sim = compare
    importer = SimulatedImporter(sim, timeout=True)  # Photos wrote the asset, then we gave up
    clock = FakeClock()
    photos = MacPhotosLibrary(lib, importer=importer, clock=clock, sleep=clock.sleep)
    clock.now = time.time() - 1
    asset = photos.import_file(image)
    assert asset.id == importer.uid
    assert len(importer.calls) == 1
    assert sim.count_named(image.name) == 1


def test_timed_out_import_appears_while_waiting(compare, image):
    lib, sim = compare
    importer = SimulatedImporter(sim, timeout=True, write=False)
    clock = FakeClock(time.time() - 1)
    late = {}

    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:  # Photos finishes the slow import a little later
            late["uid"] = sim.add(image.name, time.time())

    photos = MacPhotosLibrary(lib, importer=importer, clock=clock, sleep=sleep, settle_timeout=10)
    asset = photos.import_file(image)
    assert asset.id == late["uid"]
    assert len(clock.sleeps) == 3
    assert len(importer.calls) == 1


def test_timed_out_import_with_promised_id(compare, image):
    lib, sim = compare
    importer = SimulatedImporter(sim, timeout=True, promise_id=True)
    photos = MacPhotosLibrary(lib, importer=importer)
    assert photos.import_file(image).id == importer.uid


def test_timed_out_import_never_seen_is_transient_without_retrying(compare, image):
    lib, sim = compare
    importer = SimulatedImporter(sim, timeout=True, write=False)
    clock = FakeClock()
    photos = MacPhotosLibrary(
        lib, importer=importer, clock=clock, sleep=clock.sleep, settle_timeout=5, poll=1
    )
    with pytest.raises(TransientError, match="not in the library 5 s later; will retry"):
        photos.import_file(image)
    assert len(importer.calls) == 1  # the pipeline retries, counted, after finding nothing
    assert sum(clock.sleeps) == 5
    assert sim.count_named(image.name) == 0
    assert "did not finish importing" in photos.health()["last_import_error"]


def test_import_answered_before_photos_wrote_its_database(compare, image):
    lib, sim = compare
    clock = FakeClock()
    photos = MacPhotosLibrary(
        lib, importer=lambda p, t: "ABCD-1234/L0/001", clock=clock, sleep=clock.sleep
    )
    asset = photos.import_file(image)
    assert (asset.id, asset.original_filename, asset.in_cloud) == ("ABCD-1234", image.name, None)
    assert not photos.confirm(asset.id, image.name, clock.now - 10).present
    sim.add(image.name, time.time(), uuid="ABCD-1234")
    assert photos.confirm(asset.id, image.name, 0).present


def test_missing_file_is_transient(compare, tmp_path):
    lib, sim = compare
    importer = SimulatedImporter(sim)
    with pytest.raises(TransientError, match="cannot import gone.jpg: file not found"):
        MacPhotosLibrary(lib, importer=importer).import_file(tmp_path / "gone.jpg")
    assert importer.calls == []


def test_unknown_import_method_is_refused(compare):
    with pytest.raises(PortUnavailable, match="expected photokit or applescript"):
        MacPhotosLibrary(compare[0], import_method="carrier-pigeon")


def test_library_from_config(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    assert library_from_config(config_mod.load(home, env={})) == Path(DEFAULT_LIBRARY).expanduser()
    cfg = config_mod.load(home, env={"MOONSHOT_PHOTOS_LIBRARY": "libs/Mine.photoslibrary"})
    assert library_from_config(cfg) == home.resolve() / "libs" / "Mine.photoslibrary"
    cfg = config_mod.load(home, env={"MOONSHOT_PHOTOS_LIBRARY": "~/P/Other.photoslibrary"})
    assert library_from_config(cfg) == Path("~/P/Other.photoslibrary").expanduser()


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the refusal off macOS")
def test_factory_refuses_macos_library_off_macos(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    cfg = config_mod.load(home, env={"MOONSHOT_PHOTOS_KIND": "macos"})
    with pytest.raises(
        PortUnavailable,
        match=f"needs macOS; this is {sys.platform}: set photos.kind = auto or folder",
    ):
        build_library(cfg)
    assert build_library(config_mod.load(home, env={})).kind == "folder"


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the refusal off macOS")
@pytest.mark.parametrize("importer", [applescript_import, photokit_import])
def test_importers_need_macos(image, importer):
    with pytest.raises(PortUnavailable, match="needs macOS"):
        importer(image, 5)


# -- AppleScript: the path is an argument, never script text -----------------------------
FAKE_OSASCRIPT = """#!{python}
import json, os, sys
with open(os.environ["OSASCRIPT_LOG"], "w") as f:
    json.dump(sys.argv[1:], f)
mode = os.environ.get("OSASCRIPT_MODE", "ok")
if mode == "ok":
    print("11111111-2222-3333-4444-555555555555/L0/001")
    sys.exit(0)
sys.stderr.write(os.environ["OSASCRIPT_ERROR"] + "\\n")
sys.exit(1)
"""


@pytest.fixture
def fake_osascript(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "osascript"
    exe.write_text(FAKE_OSASCRIPT.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "osascript.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OSASCRIPT_LOG", str(log))
    return log


def test_applescript_path_reaches_osascript_intact_as_an_argument(tmp_path, fake_osascript):
    nasty = tmp_path / 'we"ird\\ na\'me\nend tell\ndo shell script "rm -rf ~"\n.jpg'
    nasty.write_bytes(b"jpeg")
    asset_id = run_osascript(nasty, 42)
    assert asset_id == "11111111-2222-3333-4444-555555555555"
    argv = json.loads(fake_osascript.read_text())
    script = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert script == list(APPLESCRIPT_LINES)
    assert argv[-2:] == [str(nasty), "42"]
    assert all(str(nasty) not in line and "rm -rf" not in line for line in script)
    assert "skip check duplicates true" in " ".join(script)
    assert "with timeout of waitSeconds seconds" in script


@pytest.mark.parametrize(
    ("message", "error", "match"),
    [
        (
            "execution error: Photos got an error: AppleEvent timed out. (-1712)",
            ImportTimedOut,
            "did not finish",
        ),
        (
            "execution error: Not authorized to send Apple events to Photos. (-1743)",
            PortUnavailable,
            "Automation",
        ),
        (
            "execution error: Photos got an error: The library is locked. (-10000)",
            TransientError,
            "busy, locked",
        ),
        (
            "execution error: Photos got an error: unsupported file (-50)",
            TransientError,
            "AppleScript import of x.jpg failed",
        ),
    ],
)
def test_applescript_errors_are_named(tmp_path, fake_osascript, monkeypatch, message, error, match):
    monkeypatch.setenv("OSASCRIPT_MODE", "fail")
    monkeypatch.setenv("OSASCRIPT_ERROR", message)
    path = tmp_path / "x.jpg"
    path.write_bytes(b"jpeg")
    with pytest.raises(error, match=match) as info:
        run_osascript(path, 5)
    assert type(info.value) is error


# -- watch, doctor, health --------------------------------------------------------------------
def test_watch_wakes_when_photos_writes_not_when_we_read(compare):
    lib, sim = compare
    photos = MacPhotosLibrary(lib)
    photos.newest()
    woke = threading.Event()
    stop = photos.watch(woke.set)
    try:
        for _ in range(5):
            photos.newest()
            photos.find("IMG_1994.JPG")
        assert not woke.wait(0.5), "our own reads must not wake the service"
        sim.add("new.jpg", time.time())  # Photos writes its database (simulated)
        assert woke.wait(10)
    finally:
        stop()


def _by_name(checks):
    return {c.name: c for c in checks}


def test_checks_on_an_icloud_library(cloud):
    checks = _by_name(MacPhotosLibrary(cloud[0], require_icloud=True).checks())
    lib = checks["photos library"]
    assert (
        lib.status == "ok"
        and "Photos 5" in lib.message
        and "AFTERNOON WALK IN TOKYO.jpeg" in lib.message
    )
    assert checks["icloud photos"].status == "ok"
    settings = checks["photos settings"]
    assert settings.status == "warn"
    for words in ("iCloud Photos", "Download Originals", "Optimize Mac Storage", "Login Items"):
        assert words in settings.fix
    if sys.platform != "darwin":
        assert checks["photos import (photokit)"].status == "fail"


def test_checks_icloud_required_on_a_local_library(compare):
    checks = _by_name(MacPhotosLibrary(compare[0], require_icloud=True).checks())
    assert checks["icloud photos"].status == "fail"
    assert "turn on iCloud Photos" in checks["icloud photos"].fix
    assert _by_name(MacPhotosLibrary(compare[0]).checks())["icloud photos"].status == "ok"


def test_checks_missing_library(tmp_path):
    checks = _by_name(MacPhotosLibrary(tmp_path / "Nope.photoslibrary").checks())
    assert checks["photos library"].status == "fail"
    assert "photos.library" in checks["photos library"].fix


def test_health(compare):
    health = MacPhotosLibrary(compare[0], import_method="applescript").health()
    assert health["kind"] == "macos"
    assert health["photos_version"] == 8
    assert health["reader"] == "direct"
    assert health["import_method"] == "applescript"
    assert "error" in MacPhotosLibrary(compare[0].parent / "missing").health()


# -- real Photos (macOS only) ---------------------------------------------------------------
@pytest.mark.macos
@macos
@pytest.mark.parametrize("method", ["photokit", "applescript"])
def test_real_import_into_photos(tmp_path, method):
    """Imports a fresh JPEG into the user's real library and confirms it by reading
    Photos.sqlite. Needs Photos access and Full Disk Access for the test runner."""
    path = tmp_path / f"moonshot_TEST_{int(time.time())}_{method}.jpg"
    Image.new("RGB", (64, 64), (255, 0, 255)).save(path, "JPEG")
    photos = MacPhotosLibrary(DEFAULT_LIBRARY, import_method=method, import_timeout=120)
    since = time.time() - 1
    asset = photos.import_file(path)
    deadline = time.time() + 60
    found = photos.confirm(asset.id, path.name, since)
    while not found.present and time.time() < deadline:
        time.sleep(1)
        found = photos.confirm(asset.id, path.name, since)
    assert found.present and found.asset.original_filename == path.name
    assert photos.newest().id == found.asset.id
    assert len(photos.find(path.name, added_after=since)) == 1


@pytest.mark.parametrize("mac", [True, False])
def test_auto_is_the_photos_library_on_a_mac_and_the_folder_elsewhere(tmp_path, monkeypatch, mac):
    """photos.kind = auto (the default): the macOS adapter on macOS, the folder library on
    any other OS. The platform is asked in one place (moonshot.platform), patched here."""
    from moonshot import platform as platform_mod
    from moonshot.photos.library_macos import MacPhotosLibrary

    monkeypatch.setattr(platform_mod, "is_macos", lambda: mac)
    home = tmp_path / "h"
    home.mkdir()
    cfg = config_mod.load(home, env={})
    assert cfg.photos.kind == "auto"
    library = build_library(cfg)
    if mac:
        assert isinstance(library, MacPhotosLibrary) and library.kind == "macos"
        assert library.library == Path("~/Pictures/Photos Library.photoslibrary").expanduser()
    else:
        assert library.kind == "folder"
