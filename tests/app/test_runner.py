"""The GuiLauncher and its flow runner against a drawn screen (tests/app/fakes.py), no
display needed: prepare fills the form and never spends; launch clicks the irreversible
step once; anything unclear after it is NeedsReview with a screenshot; app mode refuses
to start until `flow check` passed for this flow on this screen."""

from __future__ import annotations

import dataclasses
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
from tests.app.fakes import (
    ADDRESS,
    POPUP,
    STALE,
    FakeReader,
    FakeScreen,
    photo,
    write_flow,
)


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
            cfg,
            flowmod.load(flow_file),
            fake,
            None,
            lambda: calls.append("irreversible"),
            reader=FakeReader(fake),
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
    coin = make_coin(1, "Crème brûlée über to the moon and back", "CRB")
    launcher.prepare(coin, image)
    launcher.launch(coin)
    name = fake.creates[0]["name"]
    assert name == "Crème brûlée über to the moo"  # 32 bytes at most, whole characters
    assert len(name.encode()) <= 32 and fake.pasted == [name]


def test_a_name_the_screen_cannot_confirm_is_refused_before_the_spend(rig):
    """An emoji is pasted into the field (and copied back exactly), but OCR cannot
    confirm it on screen: no read-back, no launch (readback.unconfirmable)."""
    launcher, fake, image, calls = rig()
    with pytest.raises(TransientError, match="read-name.*OCR cannot confirm"):
        launcher.prepare(make_coin(1, "Rocket 🚀", "RKT"), image)
    assert fake.creates == [] and calls == []


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
    # The reset cannot bring the app back to the form either: said, with its own screen.
    assert "reset failed, the app is not back on its start screen" in message
    assert "reset 2 'on-form'" in message
    shots = screens(launcher)
    assert [p.name.split("-", 1)[1] for p in shots] == ["coin7-form.png", "coin7-on-form.png"]
    assert all(str(p) in message for p in shots)
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
    assert bad == {("form", "fail"), ("on-form", "fail"), ("tap-create", "fail")}
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


# -- verified launch (invariant 6): what the app shows is this coin ---------------------------
def _refused(launcher, fake, calls, image, coin, match: str) -> str:
    """prepare refuses before the spend: retryable, with a screenshot, nothing clicked
    that spends, and the reset brings the app back to the form."""
    with pytest.raises(TransientError, match=match) as info:
        launcher.prepare(coin, image)
    message = str(info.value)
    assert fake.creates == [] and calls == []
    shot = screens(launcher)[0]
    assert str(shot) in message and shot.stat().st_size > 0
    assert "reset failed" not in message and fake.scene == "form"
    with pytest.raises(NeedsReview, match="nothing was clicked"):
        launcher.launch(coin)  # a refused prepare leaves nothing to launch
    assert fake.creates == []
    return message


def test_a_form_left_filled_is_cleared_and_launches_the_exact_text(rig):
    launcher, fake, image, _ = rig()
    fake.fields = {"name": "Old", "ticker": "XX"}  # an earlier attempt's text
    coin = make_coin(1, "Prefilled Coin", "PRE")
    launcher.prepare(coin, image)
    launcher.launch(coin)
    assert [(c["name"], c["ticker"]) for c in fake.creates] == [("Prefilled Coin", "PRE")]


def test_a_clear_that_deletes_nothing_is_caught_by_the_clipboard_read_back(rig):
    """Tk on X11: Ctrl+A is start-of-line, the old text stays and the app would create
    PREXX. The field, copied back, is not the coin's text: refused before the spend."""
    launcher, fake, image, calls = rig(clear_works=False)
    fake.fields = {"name": "", "ticker": "XX"}
    message = _refused(
        launcher, fake, calls, image, make_coin(1, "Prefilled", "PRE"), "type-ticker"
    )
    assert "the ticker field does not hold the coin's text" in message
    assert fake.clipboard == ""  # put back as it was before the read-back


def test_a_field_that_cannot_be_copied_back_is_refused_with_the_fix(rig):
    launcher, fake, image, calls = rig(field_copy_works=False)
    message = _refused(launcher, fake, calls, image, make_coin(1, "Copy", "CPY"), "type-name")
    assert "could not be copied back" in message and 'verify = "ocr"' in message


@pytest.mark.parametrize(
    ("shows", "reason"),
    [
        ({"ticker": "PREXX"}, "read-ticker.*2 characters too many"),
        ({"ticker": "Prefilled"}, "read-ticker"),  # the name typed into the ticker field
        ({"name": "Prefilled CoinOld"}, "read-name.*too many"),
        ({"name": "Prefilled Coi"}, "read-name.*too few"),
        ({"name": ""}, "read-name.*nothing read"),
    ],
)
def test_the_app_showing_other_text_than_the_coin_is_refused(rig, shows, reason):
    launcher, fake, image, calls = rig()
    fake.shows = shows  # what the app displays, whatever the fields hold
    _refused(launcher, fake, calls, image, make_coin(1, "Prefilled Coin", "PRE"), reason)


def test_text_read_without_confidence_is_refused(rig):
    launcher, fake, image, calls = rig()
    launcher.reader = FakeReader(fake, confidence=0.5)
    message = _refused(launcher, fake, calls, image, make_coin(1, "Blurry", "BLR"), "read-name")
    assert "with confidence 0.50 < 0.80" in message


def test_the_app_showing_the_ticker_with_a_dollar_and_another_case_launches(rig):
    launcher, fake, image, _ = rig()
    fake.shows = {"ticker": "$mdog"}
    coin = make_coin(1, "Moon Dog", "MDOG")
    launcher.prepare(coin, image)
    assert launcher.launch(coin).token_address == ADDRESS


def test_a_tap_that_picks_another_photo_is_caught_by_the_picture_read_back(rig):
    """The picker's first thumbnail is the coin's (check_photo passes), but the tap
    chose another photo (the grid moved under it): the picture the app will use is
    read back and refused."""
    launcher, fake, image, calls = rig()
    fake.picks = photo(2)
    message = _refused(launcher, fake, calls, image, make_coin(1, "Pic", "PIC"), "read-picture")
    assert "the picture the app shows is not coin.png" in message


def test_a_popup_is_answered_before_the_spend_and_recorded(rig):
    launcher, fake, image, _ = rig(popup=True)
    fake.popup_on = "picker"  # and once more when the picker opens
    coin = make_coin(1, "Popup", "POP")
    launcher.prepare(coin, image)
    result = launcher.launch(coin)
    assert [c["name"] for c in fake.creates] == ["Popup"] and not fake.popup
    assert result.detail["interrupts"] == "whats-new x2"


def test_a_popup_more_often_than_allowed_stops_before_the_spend(rig):
    launcher, fake, image, calls = rig(popup=True)
    fake.popup_on = "picker"
    launcher.flow = dataclasses.replace(
        launcher.flow,
        interrupts=tuple(dataclasses.replace(p, times=1) for p in launcher.flow.interrupts),
    )
    with pytest.raises(TransientError, match="coin 1: flow step") as info:
        launcher.prepare(make_coin(1, "Popup", "POP"), image)
    assert fake.creates == [] and calls == []
    # The reset has its own budget: it answers the card and gets back to the form.
    assert "reset failed" not in str(info.value) and fake.scene == "form" and not fake.popup


def test_interrupts_are_never_answered_after_the_irreversible_click(rig):
    launcher, fake, image, calls = rig()
    coin = make_coin(1, "After", "AFT")
    launcher.prepare(coin, image)
    fake.popup_on = "success"  # a card over the success screen: for a person, not the flow
    clicks = len(fake.clicks)
    with pytest.raises(NeedsReview, match="the irreversible click WAS made"):
        launcher.launch(coin)
    assert fake.popup and len(fake.creates) == 1 and calls == ["irreversible"]
    bx, by, bw, bh, _ = POPUP["close"]
    on_close = [
        (x, y)
        for x, y in fake.clicks[clicks:]
        if bx <= x - 100 < bx + bw and by <= y - 50 < by + bh
    ]
    assert on_close == []  # the flow's own steps only (create, copy): nothing on the card


def test_optional_steps_run_when_their_image_shows_and_are_skipped_otherwise(rig):
    launcher, fake, image, _ = rig()
    data = _flow_data(launcher.flow.path)
    # "close the picker if it is open": not open here, so skipped.
    data["step"].insert(
        1, {"name": "maybe-picker", "action": "click", "image": "picker.png", "optional": True}
    )
    launcher.flow = flowmod.parse(data, launcher.flow.path)
    coin = make_coin(1, "Optional", "OPT")
    launcher.prepare(coin, image)
    assert launcher.launch(coin).token_address == ADDRESS
    fake.scene = "picker"  # now it is open: the optional click closes it, the flow goes on
    launcher.prepare(coin, image)
    launcher.launch(coin)
    assert [c["name"] for c in fake.creates] == ["Optional", "Optional"]


def test_the_reset_runs_after_a_refusal_and_leaves_the_picker(rig):
    launcher, fake, image, calls = rig()
    fake.newest_photo = photo(2)  # refused on the picker: the flow stops there
    with pytest.raises(TransientError, match="first-photo-is-coin") as info:
        launcher.prepare(make_coin(1, "X", "X"), image)
    assert fake.scene == "form" and "reset failed" not in str(info.value)
    assert launcher.reset() is None  # and again, from the form: nothing to do


def test_an_app_that_spends_before_the_marked_step_is_reviewed_never_retried(rig):
    """Found from outside: an app that stopped showing its confirmation dialog spent at an
    ordinary step before the irreversible one; the next step failed, the refusal was taken
    for "nothing spent", the reset ran and every retry bought the coin again. The success
    screen showing before the irreversible click is proof enough: NeedsReview, no reset."""
    launcher, fake, image, calls = rig()
    fake.tile_spends = True  # opening the picker creates the token at once
    coin = make_coin(1, "Early", "EARLY", asset="a1")
    with pytest.raises(NeedsReview, match="shows success.png.*may have spent") as info:
        launcher.prepare(coin, image)
    assert "moonshot resolve 1" in str(info.value)
    assert len(fake.creates) == 1 and fake.scene == "success"  # no reset clicked past it
    assert calls == []  # the irreversible step itself never ran


def test_a_refusal_with_no_outcome_on_screen_is_counted_toward_prepare_attempts(rig):
    """A step whose image is not found (nothing spent) counts like a read-back refusal:
    the coin holds the import gate, so it fails after launch.prepare_attempts."""
    from moonshot.errors import Mismatch

    launcher, fake, image, _ = rig()
    fake.scene = "error"  # a screen the flow's first steps never find
    with pytest.raises(Mismatch):
        launcher.prepare(make_coin(1, "X", "X"), image)


def test_outcome_without_failure_images_recognises_success_and_reviews_the_rest(rig):
    launcher, fake, image, _ = rig()
    (launcher.flow.path.parent / "error.png").unlink()  # the error screen never seen yet
    coin = make_coin(1, "First", "ONE")
    launcher.prepare(coin, image)
    assert launcher.launch(coin).token_address == ADDRESS  # success still recognised
    fake.outcome = "error"
    launcher.prepare(coin, image)
    with pytest.raises(NeedsReview, match="outcome unknown: neither success.png nor a known"):
        launcher.launch(coin)


def test_type_verified_by_ocr_reads_the_field_region(rig):
    launcher, fake, image, calls = rig(clear_works=False)
    data = _flow_data(launcher.flow.path)
    data["flow"]["verify"] = "ocr"
    step_by = {s["name"]: s for s in data["step"]}
    step_by["type-name"]["region"] = [10, 60, 280, 30]
    step_by["type-ticker"]["region"] = [10, 100, 280, 30]
    launcher.flow = flowmod.parse(data, launcher.flow.path)
    fake.fields = {"name": "Old", "ticker": ""}
    message = _refused(launcher, fake, calls, image, make_coin(1, "New", "NEW"), "type-name")
    assert "the name field does not hold the coin's text" in message
    assert fake.clipboard == ""  # ocr: the clipboard is not used to read back


def test_no_click_but_the_irreversible_step_lands_on_the_spending_button(rig):
    """A reset click by position where the app shows its spend button (the app was on
    another screen than the recording's, or puts its spend button where Back was): the
    click is refused, nothing is spent. Without the guard the reset would buy the coin."""
    launcher, fake, image, calls = rig()
    data = _flow_data(launcher.flow.path)
    # (150, 360): the middle of the fake form's Create button, in calibration points.
    data["reset"].insert(1, {"name": "empty-name", "action": "click", "at": [150.0, 360.0]})
    launcher.flow = flowmod.parse(data, launcher.flow.path)
    problem = launcher.reset(1)
    assert problem and "would land on create.png" in problem, problem
    assert fake.creates == [] and calls == []
    fake.scene = "picker"  # no spend button under the point there: the click is made
    clicks = len(fake.clicks)
    launcher.reset(1)
    assert len(fake.clicks) > clicks and fake.creates == []


def _hover_flow(launcher, fake, hover: bool) -> None:
    """create.png as recorded when the person's pointer rested on it: its hover look."""
    from PIL import ImageOps

    from tests.app.fakes import SCENES, render

    x, y, w, h, _ = SCENES["form"]["create"]
    crop = ImageOps.invert(render("form", None).crop((x, y, x + w, y + h)))
    crop.save(launcher.flow.path.parent / "create.png")
    data = _flow_data(launcher.flow.path)
    spend = next(s for s in data["step"] if s.get("irreversible"))
    if hover:
        spend["hover"] = [x + w / 2, y + h / 2]
    launcher.flow = flowmod.parse(data, launcher.flow.path)
    fake.hover_look = True


@pytest.mark.parametrize("hover", [True, False])
def test_an_image_recorded_in_its_hover_look_is_looked_for_with_the_pointer_there(rig, hover):
    """Found from outside: a person clicking one spot screen after screen; the spend
    button showed up under the pointer, so its image has its hover look, which the runner
    never saw with the pointer parked (0.75 < 0.9): no launch could ever happen. With
    `hover` the runner points there before it looks; without it the step is not found."""
    launcher, fake, image, calls = rig()
    _hover_flow(launcher, fake, hover)
    coin = make_coin(1, "Hover", "HOVER", asset="a1")
    if hover:
        launcher.prepare(coin, image)
        assert launcher.launch(coin).token_address == ADDRESS
        assert [c["name"] for c in fake.creates] == ["Hover"] and calls == ["irreversible"]
    else:
        launcher.prepare(coin, image)
        with pytest.raises(NeedsReview, match="create.png not found"):
            launcher.launch(coin)
        assert fake.creates == [] and calls == []


def test_the_guard_knows_a_spend_button_recorded_in_its_hover_look(rig):
    launcher, fake, image, calls = rig()
    _hover_flow(launcher, fake, hover=True)
    data = _flow_data(launcher.flow.path)
    data["reset"].insert(1, {"name": "empty-name", "action": "click", "at": [150.0, 360.0]})
    launcher.flow = flowmod.parse(data, launcher.flow.path)
    problem = launcher.reset(1)
    assert problem and "would land on create.png" in problem, problem
    assert fake.creates == []


def test_an_outcome_recorded_in_its_hover_look_is_recognised(rig):
    """Found by the Rocket Mint test: the success screen's own image was the Copy address
    button under the pointer left by the spend click (its hover look, `hover`); the outcome
    looked with the pointer parked and every launch became a review."""
    from PIL import ImageOps

    from tests.app.fakes import SCENES, render

    launcher, fake, image, calls = rig()
    x, y, w, h, _ = SCENES["success"]["header"]
    crop = ImageOps.invert(render("success", None).crop((x, y, x + w, y + h)))
    crop.save(launcher.flow.path.parent / "success.png")
    data = _flow_data(launcher.flow.path)
    outcome = next(s for s in data["step"] if s["action"] == "outcome")
    outcome["hover"] = [x + w / 2, y + h / 2]
    launcher.flow = flowmod.parse(data, launcher.flow.path)
    fake.hover_look = True
    coin = make_coin(1, "Hover", "HOVER", asset="a1")
    launcher.prepare(coin, image)
    assert launcher.launch(coin).token_address == ADDRESS
