"""`moonshot flow record` against an app that behaves like real ones where that is hard on
the recorder (tests/app/standin_rocket.py: hover looks, a form whose look follows its
contents, one Close on both outcome screens, forward buttons at one spot) and a fast
person: xdotool moves and clicks in one command, ~0.4 s between actions. The flow it
writes must walk, dry-run and launch three coins on a moved window, and must not take
the error screen for a success."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from moonshot.app import flow as flowmod
from moonshot.store import Store
from tests.app import gui_support, standin_rocket
from tests.app.gui_support import ROOT, Standin, cli, run_once
from tests.app.test_launcher_gui import add
from tests.app.test_record import Recording, _window, xdo

xserver = gui_support.xserver

pytestmark = pytest.mark.gui

ROCKET = ROOT / "tests" / "app" / "standin_rocket.py"
TITLE = standin_rocket.TITLE
TEST_USER = 7


def centre(box: str) -> tuple[int, int]:
    x, y, w, h = standin_rocket.BOX[box]
    return x + w // 2, y + h // 2


SPOT = centre("review")  # New token, Review, Mint, Copy address
NAME, SYMBOL, PICK, CANCEL, CLOSE = (
    centre(b) for b in ("name-field", "symbol-field", "pick-image", "cancel", "close")
)
NEWEST = (standin_rocket.BOX["grid"][0] + 55, standin_rocket.BOX["grid"][1] + 55)


class FastPerson:
    """Arrives and clicks in one xdotool command (no pause over the button), then looks
    at the next screen for a moment; types quickly."""

    def __init__(self, origin: tuple[int, int], gap: float = 0.45):
        self.origin, self.gap = origin, gap

    def click(self, at: tuple[int, int]) -> None:
        x, y = self.origin[0] + at[0], self.origin[1] + at[1]
        xdo("mousemove", str(x), str(y), "click", "1")
        time.sleep(self.gap)

    def type(self, text: str) -> None:
        xdo("type", "--delay", "15", text)
        time.sleep(0.3)

    def empty(self, at: tuple[int, int]) -> None:
        self.click(at)
        xdo("key", "ctrl+a", "BackSpace")
        time.sleep(0.3)


def _home(base: Path, mode: str) -> Path:
    home = base / "home"
    home.mkdir(exist_ok=True)
    (home / "moonshot.toml").write_text(
        f'[photos]\nkind = "folder"\n[launch]\nmode = "{mode}"\n', encoding="utf-8"
    )
    return home


@pytest.fixture(scope="module")
def recorded(xserver, tmp_path_factory):
    """One recording of a real launch of the test coin (Mint, Copy address, Close), the
    way back from the review, and the flow it wrote (or the output saying why not)."""
    from moonshot.photos.library_folder import FolderLibrary

    base = tmp_path_factory.mktemp("rocket")
    home = _home(base, "off")
    FolderLibrary(home / "library").close()
    test_coin = add(home, base, TEST_USER, "Test One", "TEST1")
    done = run_once(home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Store(home / "moonshot.db").get(test_coin).state == "confirmed"
    app = Standin(home / "library", base / "app.jsonl", ROCKET).start()
    try:
        rec = Recording(home, "--coin", str(test_coin), "--app", TITLE)
        person = FastPerson(standin_rocket.POSITION)
        rec.wait_for("1. Show the app's start screen")
        rec.answer()
        rec.wait_for("2. Recording.")
        time.sleep(1.0)
        person.click(SPOT)  # 1 New token
        person.click(NAME)  # 2
        person.type("Test One")
        person.click(SYMBOL)  # 3: the preview card shows, Review turns orange
        person.type("TEST1")
        person.click(PICK)  # 4 Pick image
        person.click(NEWEST)  # 5 the newest photo: back on the form
        person.click(SPOT)  # 6 Review
        person.click(SPOT)  # 7 Mint: a real launch of the test coin
        person.click(SPOT)  # 8 Copy address
        person.click(CLOSE)  # 9 Close: home
        rec.answer()
        rec.wait_for("3. Which click spends money?")
        clicks = rec.output()
        rec.answer("7")
        rec.wait_for("4. The way back")
        # "take the app forward again to the deepest screen an attempt could stop on
        # ... WITHOUT clicking the spending button", as read.
        person.click(SPOT)  # New token
        person.click(NAME)
        person.type("Test One")
        person.click(SYMBOL)
        person.type("TEST1")
        person.click(SPOT)  # Review: the screen with the spending button
        rec.answer()
        rec.wait_for("5. Now bring the app back")
        person.click(CANCEL)  # Back (same place as the form's Cancel): the form, text kept
        person.empty(NAME)
        person.empty(SYMBOL)
        person.click(CANCEL)  # Cancel: home
        rec.answer()
        rec.wait_for("Type yes if that is the button that spends money", timeout=180)
        rec.answer("yes")
        output = rec.finish()
        creates = app.events("create")
    finally:
        app.stop()
    sessions = sorted((home / "logs" / "flow-record").glob("*"))
    return {
        "home": home,
        "base": base,
        "test_coin": test_coin,
        "output": output,
        "clicks": clicks,
        "returncode": rec.proc.returncode,
        "creates": creates,
        "session": sessions[-1] if sessions else None,
        "record": base / "app.jsonl",
    }


def _recorded_flow(recorded) -> flowmod.Flow:
    output = recorded["output"]
    print(f"session: {recorded['session']}\n{output}")
    assert "9 clicks in the app window" in recorded["clicks"], recorded["clicks"]
    assert recorded["returncode"] == 0, output
    # The only create is the person's own Mint: recording clicked and typed nothing.
    assert [(e["name"], e["ticker"]) for e in recorded["creates"]] == [("Test One", "TEST1")]
    return flowmod.load(recorded["home"] / "flow.toml")


def test_a_fast_person_recorded_on_a_hostile_app_walks_and_launches_three_coins(recorded, tmp_path):
    home, test_coin = recorded["home"], recorded["test_coin"]
    fl = _recorded_flow(recorded)
    output = recorded["output"]
    actions = [s.action for s in fl.steps]
    for needed in ("check_photo", "read_text", "read_photo", "outcome", "read_address"):
        assert needed in actions, (needed, output)
    spend = fl.steps[fl.irreversible_index]
    assert spend.image is not None and spend.image.is_file(), output
    assert [s.field for s in fl.steps if s.action == "type"] == ["name", "ticker"], output
    assert sum(1 for s in fl.reset if s.clear) == 2, output  # both fields emptied
    backs = [s for s in fl.reset if s.action == "click" and not s.clear]
    assert len(backs) == 2, [s.name for s in backs]  # Back and Cancel, nothing forward

    app = Standin(home / "library", recorded["record"], ROCKET).start()
    try:
        xdo("windowmove", _window(TITLE), "60", "150")
        time.sleep(0.5)
        walked = cli(home, "flow", "check", "--walk", "--coin", str(test_coin))
        assert walked.exit_code == 0, walked.output
        assert "NOT clicked: it is the irreversible step" in walked.output
        assert "back on the start screen" in walked.output
        dry = cli(home, "flow", "run", str(test_coin), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "ticker 'TEST1' shown as '$TEST1'" in dry.output, dry.output
        assert len(app.events("create")) == 1  # the walk and the dry run never spend

        wanted = [("Moon Dog #1", "MDOG"), ("Crème brûlée", "CREME"), ("Third", "ZZ9")]
        ids = [add(home, tmp_path, i, n, t) for i, (n, t) in enumerate(wanted)]
        _home(home.parent, "app")
        deny = {"MOONSHOT_LAUNCH_DENY_USERS": f"user{TEST_USER}"}
        done = run_once(home, deny, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        gui_support.assert_launched_once(home, ids, wanted, app.events("create"))
    finally:
        app.stop()
        _home(home.parent, "off")


def test_the_error_screen_of_a_recorded_flow_is_not_taken_for_success(recorded, tmp_path):
    """The app shows "Mint failed" after the spend: the coin is spent, but nothing says it
    launched; it must end failed or needs_review, never launched, and the outcome step
    itself must not pass on the error screen."""
    home = recorded["home"]
    _recorded_flow(recorded)
    app = Standin(home / "library", recorded["record"], ROCKET).start(None, "error")
    try:
        xdo("windowmove", _window(TITLE), "60", "150")
        time.sleep(0.5)
        checked = cli(home, "flow", "check")  # on the start screen: launches need a pass
        assert checked.exit_code == 0, checked.output
        coin_id = add(home, tmp_path, 21, "Error Coin", "ERRC")
        _home(home.parent, "app")
        # Only this coin: the test coin and the other test's coins are kept off.
        deny = {"MOONSHOT_LAUNCH_DENY_USERS": f"user{TEST_USER},user0,user1,user2"}
        done = run_once(home, deny, timeout=180)
        made = [e for e in app.events("create") if e["ticker"] == "ERRC"]
        assert len(made) == 1, done.stderr[-3000:]  # the flow got to Mint and spent, once
        assert done.returncode == 0, done.stderr[-3000:]
        coin = Store(home / "moonshot.db").get(coin_id)
        print(f"state {coin.state}: {coin.last_error}")
        assert coin.state in ("failed", "needs_review"), (coin.state, coin.last_error)
        # Not launched because the outcome step saw no success, not because a later step
        # (Copy address) happened to be missing from the error screen.
        assert "outcome" in (coin.last_error or "") or "failure screen" in (
            coin.last_error or ""
        ), coin.last_error
    finally:
        app.stop()
        _home(home.parent, "off")
