"""The recorder's judgement without a display: which frame was the screen before a
click when the app redraws before the click reaches us (hostile timing), what a field
holds after select-all, backspace and paste, how the events of a session become clicks
(keys the flow cannot press refused, a copied address tied to its click), and that a
re-record keeps the user's [flow] table and comments. Also: nothing in the recorder can
click or type."""

from __future__ import annotations

import ast
import json

import pytest
import tomlkit
from PIL import Image, ImageDraw

from moonshot.app import propose, recorder
from moonshot.app.flow import Rect
from tests.conftest import ROOT


def screen(label: str, hover: bool = False) -> Image.Image:
    img = Image.new("RGB", (400, 300), "white" if label == "A" else (60, 60, 80))
    d = ImageDraw.Draw(img)
    d.rectangle((10, 10, 190, 40), fill=(40, 40, 200) if label == "A" else (200, 40, 40))
    d.text((20, 18), label * 8, fill="white")
    d.rectangle((20, 100, 120, 130), fill=(250, 200, 0) if hover else (90, 90, 90))
    return img


def test_the_frame_before_a_click_is_the_screen_the_person_saw_not_the_apps_redraw():
    s = recorder.Stream(lambda: None)
    t = 0.0
    for _ in range(20):  # screen A, still for 0.8 s
        s.add(t, t + 0.02, screen("A"))
        t += 0.04
    # The click lands at t; the app redraws (B) before the event reaches the listener,
    # 0.12 s later.
    click_at = t
    for _ in range(3):
        s.add(t, t + 0.02, screen("B"))
        t += 0.04
    assert not recorder.changed(s.before(click_at + 0.12), screen("A"))
    # A screen still long enough is what the person saw, even when it is the newest.
    for _ in range(10):
        s.add(t, t + 0.02, screen("B"))
        t += 0.04
    assert not recorder.changed(s.before(t), screen("B"))
    assert [recorder.changed(a, screen("A")) for _, a in s.settled] == [False, True]


def test_a_caret_blink_is_no_change_a_hover_stays_in_its_element():
    a = screen("A")
    caret = a.copy()
    ImageDraw.Draw(caret).line((60, 104, 60, 126), fill="black")
    assert not recorder.changed(a, caret)
    assert recorder.changed(a, screen("A", hover=True))
    # A hover is told from a new screen by where it is: nothing changed outside the
    # element under the pointer (what the recorder's hover-free frame relies on).
    hovered = screen("A", hover=True)
    assert recorder.changed_share(a, hovered, [(16, 96, 124, 134)]) == 0.0
    assert recorder.changed_much(a, screen("B"))
    typed = a.copy()
    ImageDraw.Draw(typed).text((30, 50), "Test One", fill="black")
    assert not recorder.changed_much(a, typed, [(28, 48, 90, 62)])  # the coin's text


def test_what_the_field_holds_after_the_keys():
    t = recorder.Typing()
    for ch in "Old":
        t.char(ch)
    t.select_all()
    for ch in "Moon":
        t.char(ch)
    t.backspace()
    t.char("n")
    assert (t.text, t.cleared) == ("Moon", True)
    t.paste(" Coin")
    assert (t.text, t.pasted) == ("Moon Coin", True)
    e = recorder.Typing()
    e.char("x")
    e.backspace()
    assert (e.text, e.cleared) == ("", True)


def _session(tmp_path, events: list[recorder.Event]) -> propose.Session:
    recorder.save_session(
        tmp_path, events, [(0.0, screen("A"))], Rect(0, 0, 200, 150), 1.0, "App", {}
    )
    return propose.Session.load(tmp_path)


def test_a_key_the_flow_cannot_press_is_refused(tmp_path):
    events = [
        recorder.Event("click", 1.0, 50, 25, image=screen("A")),
        recorder.Event("type", 1.5, text="Moon"),
        recorder.Event("key", 1.6, text="tab"),
        recorder.Event("phase", 9.0, text="launch-end"),
    ]
    with pytest.raises(propose.ProposeError, match="pressed Tab in the app after click 1"):
        _session(tmp_path, events).clicks()


def test_the_enter_that_answers_the_terminal_is_not_the_apps(tmp_path):
    events = [
        recorder.Event("click", 1.0, 50, 25, image=screen("A")),
        recorder.Event("key", 8.9, text="enter"),  # the person's Enter in the terminal
        recorder.Event("phase", 9.0, text="launch-end"),
    ]
    launch, reset, mark, end = _session(tmp_path, events).clicks()
    assert len(launch) == 1 and reset == [] and mark is None


def test_a_copied_address_belongs_to_the_click_before_it(tmp_path):
    address = "So11111111111111111111111111111111111111112"
    events = [
        recorder.Event("click", 1.0, 50, 25, image=screen("A")),
        recorder.Event("click", 5.0, 70, 115, image=screen("B")),
        recorder.Event("clipboard", 5.6, text=address),
        recorder.Event("click", 9.0, 150, 115, image=screen("B"), inside=False),  # terminal
        recorder.Event("phase", 9.5, text="launch-end"),
        recorder.Event("click", 10.0, 50, 25, image=screen("A")),
        recorder.Event("type", 10.5, text="", cleared=True),
        recorder.Event("phase", 12.0, text="reset-end"),
    ]
    launch, reset, _, _ = _session(tmp_path, events).clicks()
    assert [c.n for c in launch] == [1, 2] and launch[1].copied == address
    assert launch[0].copied is None
    assert reset[0].typed["cleared"] and reset[0].typed["text"] == ""


def test_a_new_recording_keeps_the_users_flow_table_and_comments():
    previous = tomlkit.parse(
        '# my notes about this Mac\n[flow]\napp = "Old"  # renamed later\n'
        "settle = 0.6  # the Mac mini is slow\n\n[calibration]\nwindow = [1.0, 1.0]\n"
        '\n[[interrupt]]\nname = "rate-us"\nimage = "rate.png"  # the rating prompt\n'
    )
    rows = [propose.Row("step", {"name": "front", "action": "activate"})]
    p = propose.Proposal(rows, Rect(0, 0, 300, 400), 2.0)
    text = tomlkit.dumps(propose.document(p, "Moonshot", previous))
    for kept in ("# my notes about this Mac", "# the Mac mini is slow", "# the rating prompt"):
        assert kept in text
    data = tomlkit.parse(text).unwrap()
    assert data["flow"]["app"] == "Moonshot" and data["flow"]["settle"] == 0.6
    assert data["calibration"] == {"window": [300.0, 400.0], "pixel_ratio": 2.0}
    assert data["interrupt"][0]["name"] == "rate-us"
    assert json.dumps(data["step"]) == json.dumps([{"name": "front", "action": "activate"}])


@pytest.mark.parametrize("module", ["recorder", "propose"])
def test_recording_can_neither_click_nor_type(module):
    """It only listens: no pyautogui, no pynput Controller, no driver."""
    tree = ast.parse((ROOT / "moonshot" / "app" / f"{module}.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    imported = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            imported |= {n.module or ""} | {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            imported |= {a.name for a in n.names}
    assert not {"Controller", "click", "press", "type_keys", "moveTo"} & names
    assert not {"pyautogui", "moonshot.app.driver", "PyAutoGuiDriver"} & imported


def test_events_count_in_time_order_not_in_the_order_threads_appended_them(tmp_path):
    address = "So11111111111111111111111111111111111111112"
    events = [
        recorder.Event("click", 1.0, 50, 25, image=screen("A")),  # the spend
        # The clipboard poller appended its change before the listener appended the click
        # that made it (that one was still choosing its frame):
        recorder.Event("clipboard", 2.05, text=address),
        recorder.Event("click", 2.0, 70, 115, image=screen("B")),  # Copy address
        recorder.Event("phase", 9.0, text="launch-end"),
    ]
    launch, _, _, _ = _session(tmp_path, events).clicks()
    assert [c.copied for c in launch] == [None, address]


def test_overlapping_read_boxes_are_cut_apart():
    """Found from outside: the recorder's ticker box [6,265,448,57] held the top of the
    name line [6,308,448,43] below it; the ticker read `.$SROCKT` and the coin failed."""
    from moonshot.app.propose import apart

    ticker, name = [6.0, 265.0, 448.0, 57.0], [6.0, 308.0, 448.0, 43.0]
    assert apart(ticker, name)
    assert ticker[1] + ticker[3] < name[1]  # no row of pixels in both
    assert ticker[1] == 265.0 and name[1] + name[3] == 351.0  # the outer edges stay
    side_by_side = [[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 10.0, 10.0]]
    assert not apart(*side_by_side)
    stacked = [[0.0, 0.0, 10.0, 10.0], [0.0, 12.0, 10.0, 10.0]]
    assert not apart(*stacked) and stacked[0][3] == 10.0


def test_clicks_that_go_deep_before_the_way_back_are_no_reset_steps(tmp_path):
    """The way back is asked in two parts: the clicks that take the app forward to a
    deep screen (before "deep-end") are not steps; every click after it is, in order,
    whatever screen it leads to (a form whose contents change its look cannot make a
    Back click look like a click forward)."""
    events = [
        recorder.Event("click", 1.0, 50, 25, image=screen("A")),
        recorder.Event("phase", 2.0, text="launch-end"),
        recorder.Event("click", 3.0, 50, 25, image=screen("A")),  # forward: not a step
        recorder.Event("click", 4.0, 70, 115, image=screen("B")),  # forward: not a step
        recorder.Event("phase", 5.0, text="deep-end"),
        recorder.Event("click", 6.0, 30, 20, image=screen("B")),  # Back
        recorder.Event("click", 7.0, 40, 20, image=screen("A")),  # Back
        recorder.Event("phase", 8.0, text="reset-end"),
    ]
    session = _session(tmp_path, events)
    assert session.two_part
    launch, reset, _, _ = session.clicks()
    assert [c.t for c in launch] == [1.0]
    assert [c.t for c in reset] == [6.0, 7.0]
    old = [e for e in events if e.text != "deep-end"]  # a recording of the first kind
    _, reset, _, _ = _session(tmp_path / "old", old).clicks()
    assert [c.t for c in reset] == [3.0, 4.0, 6.0, 7.0]  # told apart by screen order


def _success_screen(copy: bool) -> Image.Image:
    """A success screen whose title names the coin (never a reference): a Close button at
    the top, which the error screen has too, and, lower down, a Copy address button."""
    from PIL import ImageFont

    font = ImageFont.truetype("DejaVuSans-Bold.ttf", 18)
    img = Image.new("RGB", (400, 300), "white")
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((280, 14, 380, 50), 6, fill=(60, 60, 70))
    d.text((300, 20), "Close", fill="white", font=font)
    if copy:
        d.rounded_rectangle((110, 200, 290, 240), 6, fill=(20, 120, 60))
        d.text((122, 208), "Copy address", fill="white", font=font)
    return img


@pytest.mark.parametrize("copy", [True, False])
def test_the_success_image_is_not_a_button_any_screen_has(copy):
    """Found from outside: the success image was a Close button that the error screen
    shows at the same place, so an error screen passed for success. A crop of the success
    screen's own (Copy address) is preferred; with nothing else, Close is kept and said."""
    from moonshot.app.ocr import default_reader

    reader = default_reader()
    shown = _success_screen(copy)
    before = Image.new("RGB", (400, 300), (235, 235, 240))
    proposer = propose.Proposer.__new__(propose.Proposer)
    proposer.reader = reader
    box = propose.distinctive(
        shown, 1.0, [], before, [], prefer=lambda crop: not proposer.generic(crop)
    )
    text = reader.read_line(shown.crop(box)).text
    assert proposer.generic(shown.crop(box)) is (not copy), text
    assert ("Copy" in text) is copy


def test_a_fast_hand_still_gets_the_buttons_plain_look():
    """Found from outside: a person (xdotool) who points at a button 0.2 s after its
    screen appears and clicks a moment later. The screen had not been still for STILL
    (then 0.25 s) before the pointer came, so the frame before the click was taken from
    the screen before, and the plain look was looked for among frames still that long;
    the reference kept the hover look, which the runner (pointer parked) never sees."""
    rec = recorder.Recorder("App", Rect(0, 0, 400, 300), 1.0)
    t = 0.0
    for _ in range(10):  # screen B, the one before
        rec.stream.add(t, t + 0.02, screen("B"))
        t += 0.04
    for _ in range(5):  # screen A appears; 0.2 s later the pointer is on its button
        rec.stream.add(t, t + 0.02, screen("A"))
        t += 0.04
    rec._trail.extend([(0.1, 300.0, 250.0), (t, 70.0, 115.0)])
    for _ in range(3):
        rec.stream.add(t + 0.01, t + 0.03, screen("A", hover=True))
        t += 0.04
    assert not recorder.changed(rec.stream.before(t), screen("A"))  # not B: A was seen
    shown = rec.stream.latest()  # a hover that lasted: what showed at the click
    look = rec._plain(t, (70.0, 115.0), shown)
    assert look.plain is not None and not recorder.changed(look.plain, screen("A"))
    assert not look.rested and look.pointer == (300.0, 250.0)  # where it was then
    # The pointer rested where the new screen put its button: no plain look exists, and
    # the click says so (its step gets `hover`: the runner points there to look).
    rec._trail.clear()
    rec._trail.extend([(0.1, 300.0, 250.0), (0.2, 70.0, 115.0)])
    assert rec._plain(t, (70.0, 115.0), shown) == recorder.Look(None, True)
    # Found by the first run of it: the first move of the recording went straight onto a
    # button and clicked (one xdotool command); the frame before the click was grabbed
    # before the pointer came, so it is plain, and no `hover` may be written for it.
    rec._trail.clear()
    rec._trail.extend([(t - 0.01, 70.0, 115.0)])
    assert rec._plain(t, (70.0, 115.0), shown, shown_at=t - 0.05) == recorder.NO_LOOK


def test_a_line_that_holds_the_coins_text_is_never_a_reference():
    """Found by the Rocket Mint test: the success title "$TEST1 is live" was the outcome
    image ("$TEST1"): every other coin's success screen then passed for unknown."""
    proposer = propose.Proposer.__new__(propose.Proposer)
    proposer.coin = propose.Coin("Test One", "TEST1", screen("A"))
    for line in ("$TEST1 is live", "$TESTI", "Minted: test one!", "TEST1"):
        assert proposer._holds_coin(line), line
    for line in ("Rocket Mint", "Mint failed", "Copy address", "TEST"):
        assert not proposer._holds_coin(line), line


def test_a_figure_that_changes_with_the_form_is_not_preferred_to_tell_its_screen():
    """Found from outside: the form's wait image was its character counter "0/32 0/10",
    which matched 0.94 with another count and failed at 0.89 with a third."""
    from PIL import ImageFont

    from moonshot.app.ocr import default_reader

    font = ImageFont.truetype("DejaVuSans-Bold.ttf", 18)
    proposer = propose.Proposer.__new__(propose.Proposer)
    proposer.reader = default_reader()

    def line(text: str) -> Image.Image:
        img = Image.new("RGB", (220, 40), "white")
        ImageDraw.Draw(img).text((8, 8), text, fill="black", font=font)
        return img

    assert not proposer.steady(line("0/32 · 0/10"))
    assert proposer.steady(line("New coin"))
    assert proposer.specific(line("Coin launched!")) and not proposer.specific(line("Coin"))


def test_the_click_list_says_what_each_click_did_and_refuses_a_spend_that_cannot_be():
    """Found from outside: "which click spends?" listed positions only, and a wrong number
    was taken (the flow would have spent on that step)."""
    from moonshot.cli.flow import _not_the_spend, _what_followed

    address = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
    ev = recorder.Event
    # 1 New token, 2 the name field, 3 the ticker field, 4 Mint, 5 Copy address, 6 Close
    clicks = [ev("click", t, 10 * t, 20) for t in (1, 3, 5, 7, 9, 11)]
    events = [
        *clicks,
        ev("type", 4, text="Test One"),
        ev("type", 6, text="TEST1"),
        ev("clipboard", 10, text=address),
        ev("click", 10.5, 999, 999, inside=False),  # the terminal: not the app's
        ev("type", 10.6, text="ignored"),
    ]
    followed = _what_followed(events, clicks)
    assert followed == {2: ["typed 'Test One'"], 3: ["typed 'TEST1'"], 5: ["an address was copied"]}
    assert "is a field" in _not_the_spend(2, followed)
    assert "after all the typing" in _not_the_spend(1, followed)
    assert "click 5 or one before it" in _not_the_spend(6, followed)
    assert _not_the_spend(4, followed) is None  # Mint: after the typing, before the copy
    assert _not_the_spend(5, followed) is None  # a Mint that copies the address itself
