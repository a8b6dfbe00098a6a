"""The app flow with real pyautogui on a real X server (Xvfb) against the Tk stand-in
app: the exact name and ticker arrive, the newest photo is the one chosen, the
irreversible click happens once per coin even when the runner dies right after it, a
wrong newest photo refuses to launch, and `flow check` names a step it cannot see."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from moonshot.store import Store
from tests.app import gui_support
from tests.app.gui_support import ROOT, add_coin, cli, env, run_once

# The fixtures this module uses (the shared conftest.py belongs to the core).
xserver = gui_support.xserver
calibrated_flow = gui_support.calibrated_flow
app_home = gui_support.app_home

pytestmark = pytest.mark.gui


def coin_image(path: Path, seed: int) -> Path:
    img = Image.new("RGB", (480, 360), ((seed * 83) % 256, (seed * 151) % 256, 90))
    draw = ImageDraw.Draw(img)
    draw.rectangle((30 + (seed % 4) * 40, 40, 220, 320), fill=(250, 250, 250))
    draw.ellipse((240, 30 + (seed % 4) * 25, 460, 250), fill=(10, 10, 10))
    img.save(path)
    return path


def add(home: Path, tmp: Path, seed: int, name: str, ticker: str) -> int:
    return add_coin(home, coin_image(tmp / f"img{seed}.png", seed), name, ticker, f"user{seed}")


def test_run_once_launches_three_coins_each_with_its_own_image_name_and_ticker(app_home, tmp_path):
    home, app = app_home
    wanted = [
        ("Moon Dog #1 (to the moon)!", "MDOG"),
        ("Crème brûlée", "CREME"),
        # Shifted keys typed one by one. (A backtick or a pipe reads as ' or l on screen:
        # readback refuses them, see test_a_name_ocr_misreads_is_refused_not_launched.)
        ("a+b=c; d@e {#9}", "ZZ9"),
    ]
    ids = [add(home, tmp_path, i, name, ticker) for i, (name, ticker) in enumerate(wanted)]
    started = time.monotonic()
    done = run_once(home)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    store = Store(home / "moonshot.db")
    coins = [store.get(i) for i in ids]
    assert [c.state for c in coins] == ["launched"] * 3, [c.last_error for c in coins]
    creates = app.events("create")
    # The photo chosen in the picker is each coin's own asset, the newest at the time.
    gui_support.assert_each_coin_created_once(creates, coins, wanted)
    assert len({c.photos_asset_id for c in coins}) == 3
    copied = [e["address"] for e in app.events("copy")]
    by_ticker = dict(zip([e["ticker"] for e in creates], copied, strict=True))
    assert {c.ticker: c.token_address for c in coins} == by_ticker and len(set(copied)) == 3
    per_coin = elapsed / 3
    print(
        f"\nmoonshot run --once, app mode, stand-in on Xvfb: 3 coins in {elapsed:.2f} s,"
        f" {per_coin:.2f} s per coin"
    )
    assert per_coin < 10


def _one_coin_and_crash(home: Path, tmp: Path, app, how: str) -> int:
    coin_id = add(home, tmp, 5, "Crash Test", "CRASH")
    if how == "crash-point":
        first = run_once(home, {"MOONSHOT_CRASH_AT": "after_irreversible"})
        assert first.returncode == 86, first.stderr[-2000:]  # moonshot.crash.CRASH_EXIT
    else:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run", "--once"],
            env=env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not app.events("create"):
            assert time.monotonic() < deadline and proc.poll() is None, "no create click seen"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 right after the irreversible click
        proc.wait(timeout=10)
    assert len(app.events("create")) == 1
    second = run_once(home)
    assert second.returncode == 0, second.stderr[-2000:]
    return coin_id


@pytest.mark.parametrize("how", ["crash-point", "kill-9"])
def test_the_irreversible_click_happens_once_even_when_the_runner_dies_right_after_it(
    app_home, tmp_path, how
):
    home, app = app_home
    coin_id = _one_coin_and_crash(home, tmp_path, app, how)
    coin = Store(home / "moonshot.db").get(coin_id)
    assert len(app.events("create")) == 1  # the restart did not click again
    if how == "crash-point":
        assert coin.state == "needs_review"
        assert "launching" in coin.last_error
    else:  # SIGKILL may land before or after `launched` was committed; never a second launch
        assert coin.state in ("needs_review", "launched")


def test_a_wrong_newest_photo_refuses_to_launch(app_home, tmp_path):
    """The Mac's library says the coin is newest, but the picker shows another photo
    (one synced to the phone that the Mac has not seen yet): the flow stops before the
    irreversible click, on the photo check, with a screenshot."""
    from moonshot import config
    from moonshot.app.launcher_gui import GuiLauncher
    from moonshot.errors import TransientError
    from moonshot.photos.library_folder import FolderLibrary

    home, app = app_home
    coin_id = add(home, tmp_path, 1, "Right Photo", "RIGHT")
    done = run_once(home, {"MOONSHOT_LAUNCH_MODE": "off"})  # fetched -> confirmed, no launch
    assert done.returncode == 0, done.stderr[-2000:]
    coin = Store(home / "moonshot.db").get(coin_id)
    assert coin.state == "confirmed"
    library = FolderLibrary(home / "library")
    library.import_file(coin_image(tmp_path / "intruder.png", 3))

    class MacLibraryBehind:  # what the Mac's library answered before the sync arrived
        def newest(self):
            return library.get(coin.photos_asset_id)

        def path_of(self, asset_id):
            return library.path_of(asset_id)

    cfg = config.load(home, env={})
    launcher = GuiLauncher.from_config(cfg, MacLibraryBehind())
    with pytest.raises(
        TransientError, match="first-photo-is-coin.*picker's first photo is not"
    ) as info:
        launcher.prepare(coin, home / "spool" / coin.image_filename)
    assert app.events("create") == []
    assert "screenshot" in str(info.value) and list(
        (home / "logs" / "screens").glob("*first-photo*.png")
    )
    # The pipeline's own check, with the real library, supersedes the coin: imported
    # again, it is the newest photo and launches with its new asset.
    # The reset closed the picker and emptied the form: the app is back where it starts.
    assert [e["screen"] for e in app.events("screen")][-2:] == ["picker", "form"]
    assert "reset failed" not in str(info.value)
    again = run_once(home)
    assert again.returncode == 0, again.stderr[-2000:]
    coin = Store(home / "moonshot.db").get(coin_id)
    history = [t["detail"].get("reason") for t in Store(home / "moonshot.db").history(coin_id)]
    assert "superseded" in history and coin.state == "launched"
    assert [e["photo"]["asset_id"] for e in app.events("create")] == [coin.photos_asset_id]


def test_flow_check_names_the_step_whose_reference_image_is_missing_or_unseen(app_home, tmp_path):
    home, app = app_home
    flow_dir = tmp_path / "flow"
    (home / "logs" / "flow-check.json").unlink()
    blocked = run_once(home)
    assert blocked.returncode == 2 and "has not passed" in blocked.stderr  # RET_CONFIG
    assert app.events("create") == []
    (flow_dir / "form.png").rename(tmp_path / "form.png")
    result = cli(home, "flow", "check")
    assert result.exit_code == 1
    assert (
        "flow check failed at step 2 'form': reference image form.png is missing" in result.output
    )
    (tmp_path / "form.png").rename(flow_dir / "form.png")
    (flow_dir / "copy.png").replace(flow_dir / "create.png")  # an image not on this screen
    result = cli(home, "flow", "check")
    assert result.exit_code == 1
    assert "step 14 'tap-create': create.png not found on screen" in result.output
    assert app.events("create") == [] and app.events("copy") == []  # check clicked nothing


def test_dry_run_fills_the_form_reads_it_back_stops_before_the_spend_and_resets(app_home, tmp_path):
    home, app = app_home
    coin_id = add(home, tmp_path, 2, "Dry Run", "DRY")
    done = run_once(home, {"MOONSHOT_LAUNCH_MODE": "off"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = cli(home, "flow", "run", str(coin_id), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "stopped before step 14 'tap-create'" in result.output
    # What the app showed, read off the screen (OCR) and out of the fields (clipboard):
    assert "type-name: field holds 'Dry Run'" in result.output
    assert "read-name: name 'Dry Run' shown as 'Dry Run'" in result.output
    assert "read-ticker: ticker 'DRY' shown as 'DRY'" in result.output
    assert "read-picture.score: " in result.output
    assert "reset: 4 steps, the app is back on its start screen" in result.output
    assert app.events("create") == []
    # The reset emptied the form: a click on create by hand now sends no name, no ticker.
    subprocess.run(["xdotool", "mousemove", "250", "555", "click", "1"], check=True, env=env())
    deadline = time.monotonic() + 5
    while not app.events("create") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(e["name"], e["ticker"]) for e in app.events("create")] == [("", "")]


def test_limits_and_lists_hold_in_app_mode(app_home, tmp_path):
    home, app = app_home
    denied = cli(
        home,
        "add",
        "--ticker",
        "BAD",
        "--name",
        "Denied",
        "--image",
        str(coin_image(tmp_path / "bad.png", 1)),
        "--twitter-user",
        "baduser",
    )
    assert denied.exit_code == 0, denied.output
    denied_id = int(denied.output.split()[0])
    first = add(home, tmp_path, 0, "First", "ONE")
    third = add(home, tmp_path, 2, "Over The Limit", "THREE")
    limits = {"MOONSHOT_LAUNCH_DENY_USERS": "baduser", "MOONSHOT_LAUNCH_MAX_PER_DAY": "1"}
    done = run_once(home, limits)
    store = Store(home / "moonshot.db")
    if store.get(third).state == "confirmed":
        # it waits for the daily limit: time will move it, so not exit 0 (issue 16)
        assert done.returncode == 5, done.stderr[-2000:]  # moonshot.service.RET_WAITING
        assert "1 coin(s) held by the launch limits" in done.stderr.splitlines()[-1]
    else:
        assert done.returncode == 0, done.stderr[-2000:]
    assert [e["name"] for e in app.events("create")] == ["First"]
    refused = [t for t in store.history(denied_id) if t["trigger"] == "fail"]
    assert refused and "deny_users" in refused[0]["detail"]["reason"]
    assert store.get(first).state == "launched"
    # The third coin never reaches the app today. (It may wait in `spooled`: the denied
    # coin's own spool file is re-adopted as a manual drop after it failed, and then
    # holds the import gate; reported to the core, see the issue 5 report.)
    assert store.get(third).state in ("spooled", "confirmed")
