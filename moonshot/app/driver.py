"""The real screen Driver: pyautogui (mouse, keys), Pillow's ImageGrab (screenshots),
pyperclip (clipboard), xdotool or System Events (the app window). Imports pyautogui only
when built (it opens the display on import); never touches the state database."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

from PIL import Image, ImageGrab

from moonshot import platform
from moonshot.app import display
from moonshot.app.flow import Rect
from moonshot.errors import PortUnavailable

# Window bounds and activation on macOS: the app name is passed as an argument, never
# spliced into the AppleScript source (invariant 5 spirit, even for config values).
_OSA_BOUNDS = (
    'on run argv\n tell application "System Events" to tell process (item 1 of argv)\n'
    "  set {x, y} to position of window 1\n  set {w, h} to size of window 1\n end tell\n"
    ' return (x as text) & " " & (y as text) & " " & (w as text) & " " & (h as text)\nend run'
)
_OSA_ACTIVATE = "on run argv\n tell application (item 1 of argv) to activate\nend run"


def _run(args: list[str], timeout: float = 5.0) -> str | None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


class PyAutoGuiDriver:
    def __init__(self, pause: float = 0.05):
        display.require()  # one line naming DISPLAY or XAUTHORITY when the screen is out of reach
        try:
            with display.quiet_xlib():
                import pyautogui
                import pyperclip
        except Exception as exc:  # Xlib raises its own errors for a display it cannot open
            raise PortUnavailable(
                f"pyautogui cannot reach the display ({type(exc).__name__}: {exc});"
                " run in the desktop session (macOS: grant Accessibility)"
            ) from None
        pyautogui.PAUSE = pause
        pyautogui.FAILSAFE = True  # a person can abort by moving the mouse to a corner
        self.pag, self.clip = pyautogui, pyperclip
        self.mod = "command" if platform.is_macos() else "ctrl"

    def screen_size(self) -> tuple[int, int]:
        size = self.pag.size()
        return (int(size[0]), int(size[1]))

    def screenshot(self) -> Image.Image:
        # macOS returns an empty or wallpaper-only image without Screen Recording permission.
        return ImageGrab.grab().convert("RGB")

    def window(self, app: str) -> Rect | None:
        if platform.is_macos():
            out = _run(["osascript", "-e", _OSA_BOUNDS, app])
            parts = out.split() if out else []
            if len(parts) != 4:
                return None
            x, y, w, h = (float(p) for p in parts)
            return Rect(x, y, w, h)
        ids = _run(["xdotool", "search", "--onlyvisible", "--name", f"^{re.escape(app)}$"])
        if not ids or not ids.split():
            return None
        geo = _run(["xdotool", "getwindowgeometry", "--shell", ids.split()[0]]) or ""
        vals = dict(line.split("=", 1) for line in geo.splitlines() if "=" in line)
        try:
            return Rect(
                float(vals["X"]), float(vals["Y"]), float(vals["WIDTH"]), float(vals["HEIGHT"])
            )
        except (KeyError, ValueError):
            return None

    def activate(self, app: str) -> None:
        if platform.is_macos():
            _run(["osascript", "-e", _OSA_ACTIVATE, app], timeout=10)
            return
        ids = _run(["xdotool", "search", "--onlyvisible", "--name", f"^{re.escape(app)}$"])
        if ids and ids.split():
            wid = ids.split()[0]
            # windowactivate needs a window manager; raise + focus works with or without one.
            _run(["xdotool", "windowraise", wid])
            _run(["xdotool", "windowfocus", "--sync", wid])

    def position(self) -> tuple[int, int]:
        pos = self.pag.position()
        return (int(pos[0]), int(pos[1]))

    def move(self, x: float, y: float) -> None:
        self.pag.moveTo(round(x), round(y))

    def click(self, x: float, y: float) -> None:
        self.pag.click(round(x), round(y))

    def type_keys(self, text: str, interval: float) -> None:
        # Only printable ASCII reaches here (safetext.entry_method): write() drops any
        # character it has no key for, silently.
        if any(not " " <= ch <= "~" for ch in text):
            raise ValueError("type_keys takes printable ASCII only")
        self.pag.write(text, interval=interval)

    def paste(self, text: str) -> None:
        self.clipboard_set(text)
        self.pag.hotkey(self.mod, "v")

    def select_all(self) -> None:
        if platform.is_macos():
            self.pag.hotkey("command", "a")
            return
        # X11: Ctrl+A is "start of line" in Tk and in Emacs-style bindings, not select
        # all (issue 14: a retried flow typed after the old text, `PREXX`). End, then
        # Shift+Home selects the whole line in Tk, GTK and Qt alike.
        self.pag.press("end")
        self.pag.hotkey("shift", "home")

    def copy(self) -> None:
        self.pag.hotkey(self.mod, "c")

    def clear_field(self) -> None:
        self.select_all()
        self.pag.press("backspace")

    def _copy(self, text: str) -> None:
        if platform.is_macos() or shutil.which("xclip") is None:
            self.clip.copy(text)
            return
        # xclip stays alive to serve the selection until another client takes it, and
        # pyperclip's xclip inherits our stdout and stderr: a parent reading them (the
        # crash test, a pipe to a log) would wait for it after we exit (issue 14, found
        # when the field read-back started setting the clipboard on every type step).
        done = subprocess.run(
            ["xclip", "-selection", "clipboard"],
            input=text.encode("utf-8"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError("xclip could not take the clipboard; is the display reachable?")

    def clipboard_get(self) -> str:
        return self.clip.paste() or ""

    def clipboard_set(self, text: str) -> None:
        # On X11 xclip takes the selection asynchronously; until the read-back matches,
        # a paste may still get the previous owner's text (found by the gui test: the
        # last coin's address pasted as this coin's name).
        self._copy(text)
        deadline = time.monotonic() + 2.0
        while self.clip.paste() != text:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "the clipboard did not take the text; is xclip or xsel installed?"
                )
            time.sleep(0.02)
