"""Fixtures for the gui tests: a real X server (Xvfb on a free display, started here),
the Tk stand-in apps in a subprocess (the form of standin_app.py, the multi-screen
standin_multi.py), and their flows calibrated from the live window with the real
`moonshot flow calibrate`. Missing tools skip locally, fail in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "app" / "standin_app.py"
FLOW = ROOT / "tests" / "app" / "flows" / "standin.toml"
MULTI = ROOT / "tests" / "app" / "standin_multi.py"
MULTI_FLOW = ROOT / "tests" / "app" / "flows" / "multi.toml"
TOOLS = ("Xvfb", "xdotool", "xclip")
# (step, --box on the stand-in's screen, screen shown, failure image name)
CAPTURES = [
    ("form", "20,14,230,36", "form", None),
    ("tap-create", "20,500,380,50", "form", None),
    ("picker", "20,14,120,36", "picker", None),
    ("close-picker", "300,16,100,36", "picker", None),
    ("outcome", "20,14,200,36", "success", None),
    ("copy-address", "20,120,180,40", "success", None),
    ("done", "220,120,180,40", "success", None),
    ("outcome", "20,14,300,36", "error", "error.png"),
]
# The multi-screen stand-in: (step, its box name in standin_multi.BOX, screen, image).
MULTI_CAPTURES = [
    ("home", "home", "home", None),
    ("new-coin", "new-coin", "home", None),
    ("details", "details", "details", None),
    ("choose-photo", "choose-photo", "details", None),
    ("next", "next", "details", None),
    ("leave-details", "back", "details", None),  # back.png: both Back buttons look alike
    ("picker", "picker", "picker", None),
    ("leave-picker", "picker-cancel", "picker", None),
    ("review", "review", "review", None),
    ("launch", "launch", "review", None),
    ("read-ticker", "ticker", "review", None),  # regions: set, nothing captured
    ("read-name", "name", "review", None),
    ("read-picture", "picture", "review", None),
    ("dialog", "dialog", "dialog", None),
    ("confirm", "confirm", "dialog", None),
    ("cancel-dialog", "dialog-cancel", "dialog", None),
    ("outcome", "live", "success", None),
    ("copy-address", "copy", "success", None),
    ("done", "done", "success", None),
    ("whats-new", "whats-new", "whats-new", None),
    ("whats-new", "got-it", "whats-new", "got-it.png"),
]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


# Each test module binds these session fixtures under its own name (`xserver =
# gui_support.xserver`), so pytest holds one fixture definition per module, each run once
# per session. They must still share one X server: pyautogui opens its display when it is
# first imported, and a second Xvfb would leave this process clicking on the first one
# while the stand-ins draw on the second (found when two gui modules ran in one session).
_SHARED: dict[str, object] = {}


@pytest.fixture(scope="session")
def xserver(tmp_path_factory):
    """Xvfb :N 1280x800x24 on a display number it picks itself (-displayfd), one per
    test process."""
    if "xserver" in _SHARED:
        yield _SHARED["xserver"]
        return
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        _missing(f"gui tests need {', '.join(missing)}: apt-get install xvfb xdotool xclip")
    try:
        import tkinter  # noqa: F401
    except ImportError:
        _missing("gui tests need tkinter for the stand-in app: apt-get install python3-tk")
    auth = tmp_path_factory.mktemp("x11") / "Xauthority"
    auth.touch()  # python-xlib insists on the file; Xvfb without -auth needs no cookie
    read, write = os.pipe()
    proc = subprocess.Popen(
        # RECORD: `flow record` listens to the "person" (xdotool) through it, as on a desktop.
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"]
        + ["+extension", "RECORD"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not start")
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "XDG_SESSION_TYPE", "XAUTHORITY")}
    os.environ.update(DISPLAY=f":{number}", XDG_SESSION_TYPE="x11", XAUTHORITY=str(auth))
    _SHARED["xserver"] = f":{number}"
    yield f":{number}"
    _SHARED.pop("xserver", None)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)


def env() -> dict[str, str]:
    """The environment for `moonshot` subprocesses: this display, this checkout."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.pop("MOONSHOT_HOME", None)
    out.pop("MOONSHOT_CRASH_AT", None)
    return out


class Standin:
    """A stand-in app in a subprocess; `events()` reads what it recorded."""

    def __init__(self, library: Path, record: Path, script: Path = STANDIN):
        self.library, self.record, self.script, self.proc = library, record, script, None

    def start(self, screen: str | None = None, outcome: str = "success", *extra: str) -> Standin:
        self.stop()
        before = len(self.events("ready"))
        screen = screen or ("form" if self.script == STANDIN else "home")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(self.script),
                "--library",
                str(self.library),
                "--record",
                str(self.record),
                "--screen",
                screen,
                "--outcome",
                outcome,
                *extra,
            ],
            env=env(),
        )
        deadline = time.monotonic() + 15
        while len(self.events("ready")) <= before:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail("the stand-in app did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.record.exists():
            return []
        rows = [json.loads(x) for x in self.record.read_text(encoding="utf-8").splitlines() if x]
        return [r for r in rows if kind is None or r["event"] == kind]


def cli(home: Path, *args: str):
    """The real CLI in this process (it shares the display set by `xserver`)."""
    from moonshot.cli import cli as main

    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def add_coin(home: Path, image: Path, name: str, ticker: str, user: str) -> int:
    """`moonshot add` for the embedded source; the new coin's id."""
    result = cli(
        home,
        "add",
        "--ticker",
        ticker,
        "--name",
        name,
        "--image",
        str(image),
        "--twitter-user",
        user,
    )
    assert result.exit_code == 0, result.output
    return int(result.output.split()[0])


def run_once(
    home: Path, extra_env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`moonshot run --once` in a subprocess on this display; a hang fails the test with
    what the service logged."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run", "--once"],
            env={**env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"moonshot run --once hung {timeout:g}s:\n{(exc.stderr or b'').decode()[-4000:]}"
        )


def assert_each_coin_created_once(creates: list[dict], coins: list, wanted) -> None:
    """Every coin created exactly once, with its own name, ticker and photo asset, in
    whatever order the pipeline took them (download workers may spool a later coin
    first): each Create event is matched to its coin by ticker."""
    by_ticker = {e["ticker"]: e for e in creates}
    assert len(creates) == len(by_ticker) == len(coins), creates
    for coin, (name, ticker) in zip(coins, wanted, strict=True):
        made = by_ticker[ticker]
        assert (made["name"], coin.ticker) == (name, ticker)
        assert made["photo"]["asset_id"] == coin.photos_asset_id


def assert_launched_once(home: Path, ids: list[int], wanted, creates: list[dict]) -> None:
    """The coins `ids` (name, ticker as in `wanted`) all `launched`, with an address, each
    created exactly once in the app's record (`creates`, the test coin's left out)."""
    from moonshot.store import Store

    store = Store(home / "moonshot.db")
    coins = [store.get(i) for i in ids]
    assert [c.state for c in coins] == ["launched"] * len(ids), [c.last_error for c in coins]
    made = [e for e in creates if e["ticker"] != "TEST1"]
    assert_each_coin_created_once(made, coins, wanted)
    assert all(c.token_address for c in coins)


def write_home(home: Path, flow_file: Path, **launch: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[photos]", 'kind = "folder"', "[launch]", 'mode = "app"', f'flow = "{flow_file}"']
    lines += [f"{k} = {v}" for k, v in launch.items()]
    (home / "moonshot.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return home


def calibrate(base: Path, template: Path, script: Path, captures: list) -> Path:
    """A copy of the flow template with its reference images and regions captured from
    the live stand-in by `moonshot flow calibrate --step ... --box ...` (the same code a
    user runs)."""
    from moonshot.photos.library_folder import FolderLibrary

    flow_dir = base / "flow"
    flow_dir.mkdir()
    shutil.copyfile(template, flow_dir / "flow.toml")
    home = write_home(base / "home", flow_dir / "flow.toml")
    FolderLibrary(base / "library").close()
    app = Standin(base / "library", base / "record.jsonl", script)
    try:
        shown = None
        for step, box, screen, image in captures:
            if screen != shown:
                app.start(screen)
                shown = screen
            args = ["flow", "calibrate", "--step", step, "--box", box]
            result = cli(home, *args, *(["--image", image] if image else []))
            assert result.exit_code == 0, result.output
    finally:
        app.stop()
    return flow_dir


@pytest.fixture(scope="session")
def calibrated_flow(xserver, tmp_path_factory) -> Path:
    if "calibrated_flow" not in _SHARED:
        base = tmp_path_factory.mktemp("calibration")
        _SHARED["calibrated_flow"] = calibrate(base, FLOW, STANDIN, CAPTURES)
    return _SHARED["calibrated_flow"]


@pytest.fixture(scope="session")
def multi_flow(xserver, tmp_path_factory) -> Path:
    from tests.app.standin_multi import BOX

    if "multi_flow" not in _SHARED:
        captures = [
            (step, ",".join(str(v) for v in BOX[box]), screen, image)
            for step, box, screen, image in MULTI_CAPTURES
        ]
        base = tmp_path_factory.mktemp("multi-calibration")
        _SHARED["multi_flow"] = calibrate(base, MULTI_FLOW, MULTI, captures)
    return _SHARED["multi_flow"]


def checked_home(flow: Path, tmp_path: Path, script: Path, *app_args: str, **launch: str):
    """A home in app mode with its own copy of the calibrated flow, its folder library,
    the stand-in app showing that library, and a passing `flow check`."""
    from moonshot.photos.library_folder import FolderLibrary

    flow_dir = tmp_path / "flow"
    shutil.copytree(flow, flow_dir)
    home = write_home(tmp_path / "home", flow_dir / "flow.toml", **launch)
    FolderLibrary(home / "library").close()
    app = Standin(home / "library", tmp_path / "record.jsonl", script).start(
        None, "success", *app_args
    )
    result = cli(home, "flow", "check")
    assert result.exit_code == 0, result.output
    return home, app


@pytest.fixture
def app_home(calibrated_flow, tmp_path):
    home, app = checked_home(calibrated_flow, tmp_path, STANDIN)
    yield home, app
    app.stop()
