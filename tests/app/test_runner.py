"""The GuiLauncher and its flow runner against a drawn screen (tests/app/fakes.py), no
display needed: prepare fills the form and never spends; launch clicks the irreversible
step once; anything unclear after it is NeedsReview with a screenshot; app mode refuses
to start until `flow check` passed for this flow on this screen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moonshot import config
from moonshot.app import flow as flowmod
from moonshot.app import launcher_gui
from moonshot.app.flow import Rect
from moonshot.app.launcher_gui import GuiLauncher
from moonshot.app.runner import Runner
from moonshot.errors import ConfigError, NeedsReview, Rejected, TransientError
from moonshot.photos.library_folder import FolderLibrary
from moonshot.ports import Coin
from tests.app.fakes import ADDRESS, STALE, FakeScreen, photo, write_flow


def make_coin(coin_id: int, name: str, ticker: str, asset: str | None = None) -> Coin:
    return Coin(
        id=coin_id,
        state="confirmed",
        source="local",
        source_ref=f"r{coin_id}",
        ticker=ticker,
        name=name,
        twitter_user="someone",
        tweet_id=None,
        image_url="x",
        image_filename="c.jpg",
        attempts=0,
        last_error=None,
        photos_asset_id=asset,
        token_address=None,
        created_at="",
        updated_at="",
    )


@pytest.fixture
def rig(tmp_path):
    """A home with the fake app's flow, the coin's photo, and a fake screen showing it."""

    def build(non_ascii: str = "paste", **screen):
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        flow_file = write_flow(tmp_path / "flowdir", non_ascii)
        cfg = config.load(home, env={})
        cfg.launch.flow = str(flow_file)
        image = tmp_path / "coin.png"
        photo(1).save(image)
        fake = FakeScreen(newest_photo=photo(1), **screen)
        calls: list[str] = []
        launcher = GuiLauncher(
            cfg, flowmod.load(flow_file), fake, None, lambda: calls.append("irreversible")
        )
        return launcher, fake, image, calls

    return build


def screens(launcher: GuiLauncher) -> list[Path]:
    folder = launcher.cfg.logs_dir / "screens"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_launch_enters_the_exact_text_chooses_the_newest_photo_and_reads_the_address(rig):
    launcher, fake, image, calls = rig()
    coin = make_coin(1, "Moon Dog #1 (to the moon)!", "MDOG")
    launcher.prepare(coin, image)
    assert fake.creates == [] and calls == []  # prepare never spends
    result = launcher.launch(coin)
    assert result.token_address == ADDRESS
    assert len(fake.creates) == 1 and calls == ["irreversible"]
    made = fake.creates[0]
    assert (made["name"], made["ticker"]) == ("Moon Dog #1 (to the moon)!", "MDOG")
    assert made["photo"] is fake.newest_photo
    assert fake.typed == ["Moon Dog #1 (to the moon)!", "MDOG"] and fake.pasted == []
    assert fake.scene == "form"  # `done` went back to a fresh form


def test_retina_screen_and_a_moved_larger_window_are_scaled(rig):
    launcher, fake, image, _ = rig(ratio=2.0, win=Rect(220, 90, 450, 600))
    coin = make_coin(1, "Scaled", "SCL")
    launcher.prepare(coin, image)
    assert launcher.launch(coin).token_address == ADDRESS
    assert fake.creates[0]["name"] == "Scaled"


def test_long_and_non_ascii_names_are_trimmed_and_pasted(rig):
    launcher, fake, image, _ = rig()
    coin = make_coin(1, "Crème brûlée 🚀 to the moon and back", "CRB")
    launcher.prepare(coin, image)
    launcher.launch(coin)
    name = fake.creates[0]["name"]
    assert name == "Crème brûlée 🚀 to the moon"  # 32 bytes at most, whole characters
    assert len(name.encode()) <= 32 and fake.pasted == [name]


def test_refused_non_ascii_stops_before_any_click(rig):
    launcher, fake, image, _ = rig(non_ascii="refuse")
    with pytest.raises(Rejected, match="iPhone Mirroring"):  # no retry changes the text
        launcher.prepare(make_coin(1, "Café", "CAFE"), image)
    assert fake.clicks == [] and fake.creates == []


def test_a_failed_step_before_the_irreversible_one_is_transient_with_a_screenshot(rig):
    launcher, fake, image, _ = rig(scene="success")  # the app is not on the form
    with pytest.raises(TransientError) as info:
        launcher.prepare(make_coin(7, "X", "X"), image)
    message = str(info.value)
    assert "coin 7" in message and "step 2 'form'" in message
    shots = screens(launcher)
    assert len(shots) == 1 and str(shots[0]) in message and "coin7-form" in shots[0].name
    assert fake.creates == []
    with pytest.raises(NeedsReview, match="nothing was clicked"):
        launcher.launch(make_coin(7, "X", "X"))  # a failed prepare leaves nothing to launch
    assert fake.creates == []


def test_a_wrong_newest_photo_in_the_picker_refuses_to_launch(rig):
    launcher, fake, image, _ = rig()
    fake.newest_photo = photo(2)  # e.g. a photo synced to the phone, not yet on the Mac
    with pytest.raises(TransientError, match="first-photo-is-coin.*picker's first photo is not"):
        launcher.prepare(make_coin(1, "X", "X"), image)
    assert fake.creates == []


def test_a_library_whose_newest_asset_is_not_the_coin_refuses_before_any_click(rig, tmp_path):
    launcher, fake, image, _ = rig()
    library = FolderLibrary(tmp_path / "library")
    mine = library.import_file(image)
    other = tmp_path / "other.png"
    photo(3).save(other)
    library.import_file(other)
    launcher.library = library
    with pytest.raises(TransientError, match="newest photo is"):
        launcher.prepare(make_coin(1, "X", "X", mine.id), image)
    assert fake.clicks == []


@pytest.mark.parametrize(
    ("outcome", "copy_works", "expected"),
    [
        ("none", True, "outcome unknown"),
        ("error", True, "failure screen error.png"),
        ("success", False, "not a Solana address"),
    ],
)
def test_anything_unclear_after_the_click_is_needs_review_with_a_screenshot(
    rig, outcome, copy_works, expected
):
    launcher, fake, image, calls = rig(outcome=outcome, copy_works=copy_works)
    coin = make_coin(3, "X", "X")
    launcher.prepare(coin, image)
    fake.clipboard = STALE  # a stale address must never be taken for this coin's
    with pytest.raises(NeedsReview) as info:
        launcher.launch(coin)
    message = str(info.value)
    assert expected in message and "the irreversible click WAS made" in message
    shot = screens(launcher)[-1]
    assert str(shot) in message and shot.stat().st_size > 0
    assert len(fake.creates) == 1 and calls == ["irreversible"]


def test_irreversible_target_gone_is_needs_review_without_a_click(rig):
    launcher, fake, image, calls = rig()
    coin = make_coin(4, "X", "X")
    launcher.prepare(coin, image)
    fake.scene = "error"  # the form vanished between prepare and launch
    with pytest.raises(NeedsReview, match="nothing irreversible was clicked"):
        launcher.launch(coin)
    assert fake.creates == [] and calls == []


def test_a_failure_after_the_address_was_read_still_reports_the_launch(rig):
    launcher, fake, image, _ = rig()
    coin = make_coin(5, "X", "X")
    launcher.prepare(coin, image)
    original = fake.click

    def click(x, y):  # `done` does nothing: the success screen stays
        if fake.scene == "success" and fake._hit(x, y) == "done":
            fake.clicks.append((x, y))
            fake.scene = "error"
            return
        original(x, y)

    fake.click = click
    launcher.flow = flowmod.parse(
        {
            **_flow_data(launcher.flow.path),
            "step": _flow_data(launcher.flow.path)["step"]
            + [{"name": "back", "action": "verify", "image": "form.png"}],
        },
        launcher.flow.path,
    )
    launcher.prepare(coin, image)
    result = launcher.launch(coin)
    assert result.token_address == ADDRESS and "after_address_failed" in result.detail


def _flow_data(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text(encoding="utf-8"))


# -- flow check and the gate on app mode -----------------------------------------------------
def test_check_clicks_nothing_and_names_missing_or_unseen_images(rig):
    launcher, fake, _, _ = rig()
    runner = Runner(launcher.flow, fake, launcher.cfg.logs_dir / "screens")
    lines = runner.check()
    assert all(line.ok for line in lines) and fake.clicks == []
    launcher.flow.steps[1].image.unlink()  # form.png
    fake.scene = "picker"  # create.png is not on this screen
    bad = {
        (line.step.name, line.level)
        for line in Runner(launcher.flow, fake, Path("/nonexistent")).check(grace=0)
        if not line.ok
    }
    assert bad == {("form", "fail"), ("tap-create", "fail")}
    (launcher.flow.path.parent / "success.png").unlink()  # an outcome image: only a warning
    levels = {
        line.step.name: line.level
        for line in Runner(launcher.flow, fake, Path("/x")).check(grace=0)
        if line.step.name == "outcome" and "success.png" in line.message
    }
    assert levels == {"outcome": "warn"}


def test_app_mode_refuses_until_flow_check_passed_here(rig, monkeypatch):
    launcher, fake, _, _ = rig()
    cfg = launcher.cfg
    monkeypatch.setattr(launcher_gui, "make_driver", lambda flow: fake)
    with pytest.raises(ConfigError, match="has not passed") as info:
        GuiLauncher.from_config(cfg, None)
    assert "\n" not in str(info.value)
    launcher_gui.record_pass(cfg, launcher.flow, (1000, 700), 1.0)
    assert GuiLauncher.from_config(cfg, None).kind == "app"
    launcher_gui.record_pass(cfg, launcher.flow, (1440, 900), 2.0)
    with pytest.raises(
        ConfigError, match="the screen is 1000x700, `moonshot flow check` passed on 1440x900"
    ):
        GuiLauncher.from_config(cfg, None)
    launcher_gui.record_pass(cfg, launcher.flow, (1000, 700), 1.0)
    (launcher.flow.path.parent / "create.png").write_bytes(b"recaptured")
    with pytest.raises(ConfigError, match="changed since `moonshot flow check` passed"):
        GuiLauncher.from_config(cfg, None)
    record = json.loads(launcher_gui.check_record_path(cfg).read_text())
    assert record["screen"] == [1000, 700]
