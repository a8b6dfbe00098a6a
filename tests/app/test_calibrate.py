"""`moonshot flow calibrate` and `moonshot flow check` on a drawn screen (no display):
the guided capture writes positions, images and the window's size into the user's
flow file and clicks nothing; single steps are captured with --step and --box/--at."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image, ImageChops

from moonshot.app import flow as flowmod
from moonshot.app import launcher_gui
from moonshot.cli import cli
from tests.app.fakes import SCENES, FakeScreen, render, write_flow


@pytest.fixture
def setup(tmp_path, monkeypatch):
    flow_file = write_flow(tmp_path / "flowdir")
    for png in ("form.png", "create.png", "picker.png"):
        (tmp_path / "flowdir" / png).unlink()
    home = tmp_path / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text(f'[launch]\nflow = "{flow_file}"\n', encoding="utf-8")
    fake = FakeScreen()
    monkeypatch.setattr(launcher_gui, "make_driver", lambda flow: fake)
    return home, flow_file, fake


def run(home, *args, input=None):
    return CliRunner().invoke(
        cli, ["--home", str(home), *args], input=input, catch_exceptions=False
    )


def corner(fake, scene, element, far=False, show=False):
    """Where the user points: an element's top-left (or bottom-right) corner on screen;
    with show, the user first opened that screen by hand."""
    x, y, w, h, _ = SCENES[scene][element]
    point = (fake.win.x + x + (w if far else 0), fake.win.y + y + (h if far else 0))
    return (*point, scene) if show else point


def test_guided_calibration_captures_every_step_up_to_the_irreversible_one(setup):
    home, flow_file, fake = setup
    fake.win = flowmod.Rect(100, 50, 300, 400)
    fake.positions = [
        corner(fake, "form", "header"),
        corner(fake, "form", "header", far=True),  # form (verify)
        (fake.win.x + 33, fake.win.y + 71),  # tap-name
        (fake.win.x + 44, fake.win.y + 111),  # tap-ticker
        (fake.win.x + 55, fake.win.y + 170),  # tap-image
        corner(fake, "picker", "header", show=True),
        corner(fake, "picker", "header", far=True),  # picker, shown by hand
        corner(fake, "picker", "thumb"),
        corner(fake, "picker", "thumb", far=True),  # first-photo-is-coin
        (fake.win.x + 50, fake.win.y + 100),  # tap-first-photo
        corner(fake, "form", "name", show=True),
        corner(fake, "form", "name", far=True),  # read-name
        corner(fake, "form", "ticker"),
        corner(fake, "form", "ticker", far=True),  # read-ticker
        corner(fake, "form", "tile"),
        corner(fake, "form", "tile", far=True),  # read-picture
        corner(fake, "form", "create"),
        corner(fake, "form", "create", far=True),  # tap-create
    ]
    prompts = 18
    result = run(home, "flow", "calibrate", input="\n" * prompts)
    assert result.exit_code == 0, result.output
    assert fake.clicks == [] and fake.positions == []
    assert "skip step 15 'outcome': shown only after a launch" in result.output
    fl = flowmod.load(flow_file)
    steps = {s.name: s for s in fl.steps}
    assert steps["tap-name"].at == (33.0, 71.0) and steps["tap-image"].at == (55.0, 170.0)
    assert steps["first-photo-is-coin"].region == (10.0, 60.0, 80.0, 80.0)
    assert steps["read-name"].region == (10.0, 60.0, 280.0, 30.0)
    assert steps["read-ticker"].region == (10.0, 100.0, 280.0, 30.0)
    assert steps["read-picture"].region == (10.0, 150.0, 80.0, 80.0)
    assert "reset 2 'on-form': capture its image on its own screen" in result.output
    assert fl.calibration == flowmod.Calibration((300.0, 400.0), 1.0)
    for name, scene, element in (
        ("form", "form", "header"),
        ("picker", "picker", "header"),
        ("tap-create", "form", "create"),
    ):
        x, y, w, h, _ = SCENES[scene][element]
        expected = render(scene, None).crop((x, y, x + w, y + h))
        with Image.open(steps[name].image) as got:
            assert ImageChops.difference(got.convert("RGB"), expected).getbbox() is None, name
    fake.scene = "form"
    check = run(home, "flow", "check")
    assert check.exit_code == 0, check.output
    assert "flow check passed on 1000x700" in check.output and fake.clicks == []
    as_json = json.loads(run(home, "flow", "check", "--json").output)
    assert as_json["passed"] and {r["step"] for r in as_json["steps"]} >= {"form", "tap-create"}


def test_single_steps_and_their_errors(setup):
    home, flow_file, fake = setup
    ok = run(home, "flow", "calibrate", "--step", "tap-create", "--box", "10,340,280,40")
    assert ok.exit_code == 0, ok.output
    assert flowmod.load(flow_file).entry("tap-create").image.is_file()
    moved = run(home, "flow", "calibrate", "--step", "tap-name", "--at", "12,70")
    assert moved.exit_code == 0 and flowmod.load(flow_file).steps[2].at == (12.0, 70.0)
    unknown = run(home, "flow", "calibrate", "--step", "tap-nope", "--at", "1,1")
    assert unknown.exit_code == 1 and "no step 'tap-nope'" in unknown.output
    flat = run(home, "flow", "calibrate", "--step", "form", "--box", "250,300,40,30")
    assert flat.exit_code == 1 and "that area is flat" in flat.output
    fake.win = flowmod.Rect(100, 50, 450, 600)  # the window was resized since calibration
    resized = run(home, "flow", "calibrate", "--step", "form", "--box", "10,10,200,30")
    assert resized.exit_code == 1 and "recalibrate every step" in resized.output
    window = run(home, "flow", "calibrate", "--window")
    assert window.exit_code == 0 and "calibration window 450x600" in window.output
    assert flowmod.load(flow_file).calibration.window == (450.0, 600.0)
    again = run(home, "flow", "calibrate", "--step", "form", "--box", "15,15,300,45")
    assert again.exit_code == 0, again.output
    missing = run(home, "flow", "check")
    assert missing.exit_code == 1
    assert (
        "flow check failed at step 8 'picker': reference image picker.png is missing"
        in missing.output
    )


def commented(text: str) -> str:
    """The fake flow as a person keeps it: a comment above every step, one after
    every value, and a header."""
    out = ["# My flow for the fake app: hand-written, keep these notes."]
    for line in text.strip().splitlines():
        if line == "[[step]]":
            out += ["", f"# note {len(out)}: what this step is for", line]
        elif "=" in line:
            out.append(f"{line}   # because {len(out)}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def comments(text: str) -> list[str]:
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


def test_calibrate_keeps_every_comment_and_says_what_it_changed(setup):
    home, flow_file, fake = setup
    hand = commented(flow_file.read_text(encoding="utf-8"))
    flow_file.write_text(hand, encoding="utf-8")
    fake.win = flowmod.Rect(100, 50, 300, 400)
    moved = run(home, "flow", "calibrate", "--step", "tap-name", "--at", "33,71")
    assert moved.exit_code == 0, moved.output
    assert "~ step 'tap-name': at [150.0, 75.0] -> [33.0, 71.0]" in moved.output
    swapped = run(home, "flow", "calibrate", "--step", "tap-image", "--box", "10,150,80,80")
    assert swapped.exit_code == 0, swapped.output
    assert "+ step 'tap-image': image = \"tap-image.png\"" in swapped.output
    assert "- step 'tap-image': at (was [50.0, 190.0])" in swapped.output
    assert "captured tap-image.png (80x80 px)" in swapped.output
    fake.positions = [corner(fake, "form", "header"), corner(fake, "form", "header", far=True)]
    guided = run(home, "flow", "calibrate", input="\n\n" + "s\n" * 12)
    assert guided.exit_code == 0, guided.output
    assert "captured form.png" in guided.output
    text = flow_file.read_text(encoding="utf-8")
    assert comments(text) == comments(hand)
    # The values moved where they were, comment and all.
    assert "at = [33.0, 71.0]   # because" in text
    assert 'image = "tap-image.png"   # because' in text
    assert flowmod.load(flow_file).steps[6].image.name == "tap-image.png"


def test_guided_calibration_asks_once_for_an_image_two_steps_share(setup):
    home, flow_file, fake = setup
    text = flow_file.read_text(encoding="utf-8").replace(
        '[[step]]\nname = "tap-create"',
        '[[step]]\nname = "form-again"\naction = "wait"\nimage = "create.png"\n'
        '[[step]]\nname = "tap-create"',
    )
    flow_file.write_text(text, encoding="utf-8")
    result = run(home, "flow", "calibrate", input="s\n" * 20)
    assert result.exit_code == 0, result.output
    assert "'tap-create': create.png captured above" not in result.output  # skipped: s
    fake.positions = [corner(fake, "form", "create"), corner(fake, "form", "create", far=True)]
    answers = "s\n" * 10 + "\n\n"  # skip up to form-again, capture it
    result = run(home, "flow", "calibrate", input=answers + "s\n" * 10)
    assert result.exit_code == 0, result.output
    assert "'tap-create': create.png captured above" in result.output
    assert result.output.count("captured create.png (280x40 px)") == 1


def test_interrupts_reset_steps_and_read_back_regions_are_captured_by_name(setup):
    home, flow_file, fake = setup
    text = flow_file.read_text(encoding="utf-8")
    text += '\n[[interrupt]]\nname = "popup"\nimage = "popup.png"\ntarget = "close.png"\n'
    flow_file.write_text(text, encoding="utf-8")
    steps = [
        ("popup", "--box", "10,10,200,30", []),
        ("popup", "--box", "10,60,130,40", ["--image", "close.png"]),
        ("on-form", "--box", "10,10,200,30", []),
        ("read-ticker", "--box", "12,101,200,28", []),
    ]
    fake.scene = "success"
    for name, flag, value, extra in steps:
        done = run(home, "flow", "calibrate", "--step", name, flag, value, *extra)
        assert done.exit_code == 0, done.output
    fl = flowmod.load(flow_file)
    popup = fl.entry("popup")
    assert popup.image.is_file() and popup.target.is_file() and popup.section == "interrupt"
    assert fl.entry("on-form").image.is_file()
    assert fl.entry("read-ticker").region == (12.0, 101.0, 200.0, 28.0)
    moved = run(home, "flow", "calibrate", "--step", "popup", "--at", "40,50")
    assert moved.exit_code == 0, moved.output
    popup = flowmod.load(flow_file).entry("popup")
    assert popup.at == (40.0, 50.0) and popup.target is None  # clicks a position now
    wrong = run(
        home, "flow", "calibrate", "--step", "popup", "--box", "1,1,50,50", "--image", "x.png"
    )
    assert wrong.exit_code == 1 and "--image must name one of its other images" in wrong.output
    assert fake.clicks == []


def test_flow_show_draws_every_step_with_its_image_pixel_for_pixel(setup, monkeypatch):
    from moonshot.app import display

    home, flow_file, fake = setup
    monkeypatch.setattr(display, "problem", lambda: None)  # the fake screen is "reachable"
    for step, box in (("form", "10,10,200,30"), ("tap-create", "10,340,280,40")):
        done = run(home, "flow", "calibrate", "--step", step, "--box", box)
        assert done.exit_code == 0, done.output
    fake.scene = "picker"
    done = run(home, "flow", "calibrate", "--step", "picker", "--box", "10,10,150,30")
    assert done.exit_code == 0, done.output
    fake.scene = "form"
    shown = run(home, "flow", "show")
    assert shown.exit_code == 0, shown.output
    assert "contact sheet:" in shown.output and "no live column" not in shown.output
    out = home / "logs" / "flow-show"
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    fl = flowmod.load(flow_file)
    assert [e["step"] for e in index["steps"]] == [s.name for s in fl.entries]
    assert sheet_holds_the_images(home, fl) >= 5
    live = {e["step"]: e["live"] for e in index["steps"]}
    assert live["form"].startswith("now: match 1.00")  # the form shows: found where it is
    assert "not this screen" in live["picker"]  # the picker does not show now
    assert (home / "logs" / "flow-show" / "index.html").read_text().count("<tr>") == 1 + len(
        index["steps"]
    )
    assert (flow_file.parent / "screens" / "picker.png").is_file()  # captured on its screen


def sheet_holds_the_images(home, fl: flowmod.Flow) -> int:
    """The contact sheet's PNG holds each step's reference image, pixel for pixel (where
    index.json says); how many were compared."""
    out = home / "logs" / "flow-show"
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    with Image.open(out / "sheet.png") as img:
        sheet = img.convert("RGB")
    compared = 0
    for entry in index["steps"]:
        step = fl.entry(entry["step"])
        if step.image is None or "crop" not in entry or entry.get("scaled"):
            continue
        x, y, w, h = entry["crop"]
        with Image.open(step.image) as ref:
            drawn = sheet.crop((x, y, x + w, y + h))
            assert ImageChops.difference(drawn, ref.convert("RGB")).getbbox() is None, step.name
        compared += 1
    return compared
