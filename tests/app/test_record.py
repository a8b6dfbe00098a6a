"""`moonshot flow record` on a real X server: a "person" (xdotool: real X input events,
which pynput's RECORD listener sees like a hand's) does one launch of a test coin in the
stand-in app while moonshot watches; the flow it writes passes `flow check --walk` and
then launches three other coins right, each with its own name, ticker and photo, on a
window moved elsewhere after the recording. Recording itself clicks nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from moonshot.app import flow as flowmod
from moonshot.store import Store
from tests.app import gui_support
from tests.app.gui_support import MULTI, ROOT, Standin, cli, env, run_once
from tests.app.test_calibrate import sheet_holds_the_images
from tests.app.test_launcher_gui import add

xserver = gui_support.xserver

pytestmark = pytest.mark.gui


class Recording:
    """`moonshot flow record` in a subprocess: its prompts are read, its questions
    answered on stdin, as a person at the terminal would."""

    def __init__(self, home: Path, *args: str):
        self.out = home / "record.out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "flow", "record", *args],
            env=env(),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=self.out.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.1)

    def answer(self, line: str = "") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 180) -> str:
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        return self.output()


def xdo(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, env=env())


class Person:
    """Clicks and types with real X events, at a person's pace (a person looks at a
    screen before clicking it; the recorder relies on that, see recorder.STILL)."""

    def __init__(self, origin: tuple[int, int]):
        self.origin = origin

    def click(self, x: int, y: int, settle: float = 0.9) -> None:
        xdo("mousemove", str(self.origin[0] + x), str(self.origin[1] + y))
        time.sleep(0.6)
        xdo("click", "1")
        time.sleep(settle)

    def type(self, text: str) -> None:
        xdo("type", "--delay", "40", text)
        time.sleep(0.4)

    def keys(self, *keys: str) -> None:
        xdo("key", *keys)
        time.sleep(0.3)

    def point(self, x: int, y: int) -> None:
        xdo("mousemove", str(self.origin[0] + x), str(self.origin[1] + y))
        time.sleep(0.6)


def test_recorded_flow_walks_and_launches_three_coins_on_a_moved_window(xserver, tmp_path):
    from moonshot.photos.library_folder import FolderLibrary

    home = tmp_path / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text(
        '[photos]\nkind = "folder"\n[launch]\nmode = "off"\n', encoding="utf-8"
    )
    FolderLibrary(home / "library").close()
    test_coin = add(home, tmp_path, 7, "Test One", "TEST1")  # user7
    done = run_once(home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Store(home / "moonshot.db").get(test_coin).state == "confirmed"
    app = Standin(home / "library", tmp_path / "app.jsonl").start()
    try:
        rec = Recording(home, "--coin", str(test_coin))
        person = Person((40, 30))  # where the stand-in's window is
        rec.wait_for("1. Show the app's start screen")
        rec.answer()
        rec.wait_for("2. Recording.")
        time.sleep(1.0)
        person.click(200, 118)  # the name field
        person.type("Test One")
        person.click(200, 188)  # the ticker field
        person.type("TEST1")
        person.click(80, 290)  # "Add image": the picker opens
        person.click(68, 118)  # the first (newest) thumbnail: back on the form
        person.click(210, 525)  # Create coin: a real launch of the test coin
        person.click(110, 140)  # Copy address
        person.click(310, 140)  # Done: back on an empty form
        rec.answer()
        rec.wait_for("3. Which click spends money?")
        assert "7 clicks in the app window" in rec.output()
        assert "then typed 'Test One'" in rec.output()  # what each click did, not only where
        rec.answer("1")  # a wrong answer (the name field) is refused, and asked again
        rec.wait_for("click 1 was followed by typing: it is a field")
        rec.answer("5")
        rec.wait_for("4. The way back")
        rec.answer()  # the way back starts where the app is: an empty form
        rec.wait_for("5. Now bring the app back")
        person.click(200, 118)  # empty the fields, as after a failed attempt
        person.keys("ctrl+a", "BackSpace")
        person.click(200, 188)
        person.keys("ctrl+a", "BackSpace")
        rec.answer()
        rec.wait_for("Type yes if that is the button that spends money", timeout=180)
        rec.answer("yes")
        output = rec.finish()
        assert rec.proc.returncode == 0, output
        creates = app.events("create")
        # The only create is the person's own click: recording clicked and typed nothing.
        assert [(e["name"], e["ticker"]) for e in creates] == [("Test One", "TEST1")]
    finally:
        app.stop()

    flow_file = home / "flow.toml"
    fl = flowmod.load(flow_file)
    actions = [s.action for s in fl.steps]
    for needed in ("check_photo", "read_text", "read_photo", "outcome", "read_address"):
        assert needed in actions, (needed, output)
    spend = fl.steps[fl.irreversible_index]
    assert spend.image is not None and spend.image.is_file(), output
    assert [s.field for s in fl.steps if s.action == "type"] == ["name", "ticker"]
    assert any(s.clear for s in fl.reset), "the reset empties the fields it was shown"
    assert "step 'type-name' (new)" in output and "+ calibration (new)" in output
    # The person's Create coin launched the test coin: never again by the service.
    assert "was launched by your click: it is needs_review now" in output, output
    spent = Store(home / "moonshot.db").get(test_coin)
    assert spent.state == "needs_review" and "flow record" in spent.last_error

    # The window is elsewhere now: positions follow it, images are found where it is.
    app = Standin(home / "library", tmp_path / "app.jsonl").start()
    try:
        xdo("windowmove", _window("Moonshot"), "610", "170")
        time.sleep(0.5)
        walked = cli(home, "flow", "check", "--walk", "--coin", str(test_coin))
        assert walked.exit_code == 0, walked.output
        assert "NOT clicked: it is the irreversible step" in walked.output
        assert "back on the start screen" in walked.output
        assert len(app.events("create")) == 1  # the walk never spends
        shown = cli(home, "flow", "show")
        assert shown.exit_code == 0, shown.output
        assert sheet_holds_the_images(home, fl) >= 5

        wanted = [("Moon Dog #1", "MDOG"), ("Crème brûlée", "CREME"), ("Third", "ZZ9")]
        ids = [add(home, tmp_path, i, n, t) for i, (n, t) in enumerate(wanted)]
        (home / "moonshot.toml").write_text(
            '[photos]\nkind = "folder"\n[launch]\nmode = "app"\n', encoding="utf-8"
        )
        # The test coin was launched by hand while recording: keep the service off it.
        done = run_once(home, {"MOONSHOT_LAUNCH_DENY_USERS": "user7"}, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        gui_support.assert_launched_once(home, ids, wanted, app.events("create"))
    finally:
        app.stop()


def _window(title: str) -> str:
    return subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
        capture_output=True,
        text=True,
        env=env(),
        check=True,
    ).stdout.split()[0]


def test_a_multi_screen_app_recorded_up_to_the_spend_walks_on_a_moved_window(xserver, tmp_path):
    """The other way to record: stop at the confirmation dialog without spending, point
    at Confirm, then come back from as deep as the dialog. The flow reads the coin back
    on the last screens that show it, and its reset brings the app home from the dialog."""
    from moonshot.photos.library_folder import FolderLibrary

    home = tmp_path / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text(
        '[photos]\nkind = "folder"\n[launch]\nmode = "off"\n', encoding="utf-8"
    )
    FolderLibrary(home / "library").close()
    test_coin = add(home, tmp_path, 11, "Test One", "TEST1")
    assert run_once(home).returncode == 0
    app = Standin(home / "library", tmp_path / "app.jsonl", MULTI).start()
    try:
        rec = Recording(home, "--coin", str(test_coin), "--app", "Moonshot Multi")
        person = Person((600, 10))  # standin_multi.POSITION
        rec.wait_for("1. Show the app's start screen")
        rec.answer()
        rec.wait_for("2. Recording.")
        time.sleep(1.0)
        person.click(220, 708)  # New coin
        person.click(220, 134)  # the name box
        person.type("Test One")
        person.click(220, 218)  # the symbol box
        person.type("TEST1")
        person.click(210, 314)  # Choose photo
        person.click(68, 128)  # the newest
        person.click(220, 708)  # Next: the review
        person.click(220, 708)  # Launch coin: the dialog
        rec.answer()  # stopped before Confirm
        rec.wait_for("3. Which click spends money?")
        rec.answer("p")
        rec.wait_for("Point the mouse at the button that spends money")
        person.point(310, 452)  # Confirm, not clicked
        rec.answer()
        rec.wait_for("4. The way back")
        rec.answer()  # the dialog is as deep as an attempt goes
        rec.wait_for("5. Now bring the app back")
        person.click(130, 452)  # the dialog's Cancel
        person.click(61, 34)  # Back: details
        person.click(61, 34)  # Back: home
        rec.answer()
        rec.wait_for("Type yes if that is the button that spends money", timeout=180)
        rec.answer("yes")
        output = rec.finish()
        assert rec.proc.returncode == 0, output
        assert app.events("create") == []  # nothing spent: not by the person, not by record
        fl = flowmod.load(home / "flow.toml")
        actions = [s.action for s in fl.steps]
        for needed in ("check_photo", "read_text", "read_photo", "outcome"):
            assert needed in actions, (needed, output)
        spend = fl.steps[fl.irreversible_index]
        assert spend.image is not None and spend.image.is_file(), output
        assert [s.optional for s in fl.reset if s.action == "click"] == [True] * 3, output
        assert "the screen after the spend was not recorded" in output

        xdo("windowmove", _window("Moonshot Multi"), "380", "15")
        time.sleep(0.5)
        walked = cli(home, "flow", "check", "--walk", "--coin", str(test_coin))
        assert walked.exit_code == 0, walked.output
        assert "spend.png found" in walked.output and "NOT clicked" in walked.output
        dry = cli(home, "flow", "run", str(test_coin), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "ticker 'TEST1' shown as '$TEST1'" in dry.output
        assert app.events("create") == []
    finally:
        app.stop()
