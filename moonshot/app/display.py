"""Can this process reach the display, and if not, which variable or file to fix: one
line, never a traceback. Also keeps python-xlib's "no xauthority details" notice (a
print to stdout on every connection) out of moonshot's output. No screen driving here."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from moonshot import platform
from moonshot.errors import PortUnavailable

_quiet = threading.Lock()
_depth = 0
_saved = None


@contextlib.contextmanager
def quiet_xlib() -> Iterator[None]:
    """Swallow what python-xlib prints while it connects (it prints its Xauthority
    notices to stdout, which would corrupt `--json` output and repeat on every command).
    Safe from several threads at once (contextlib.redirect_stdout is not: two threads
    interleaving it leave stdout redirected for good)."""
    global _depth, _saved
    with _quiet:
        if _depth == 0:
            _saved, sys.stdout = sys.stdout, io.StringIO()
        _depth += 1
    try:
        yield
    finally:
        with _quiet:
            _depth -= 1
            if _depth == 0:
                sys.stdout, _saved = _saved, None


def _auth_file() -> tuple[str, Path | None]:
    """Which Xauthority file the X libraries read, and the name of the setting for it."""
    named = os.environ.get("XAUTHORITY")
    if named:
        return "XAUTHORITY", Path(named)
    home = os.environ.get("HOME")
    return "~/.Xauthority", Path(home) / ".Xauthority" if home else None


def problem() -> str | None:
    """Why the X display cannot be used, as one line naming the variable or file to set;
    None when it can (and always on macOS, where permissions are checked elsewhere)."""
    if platform.is_macos():
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return (
            "no display: DISPLAY is not set; run in the desktop session, or set DISPLAY"
            " (e.g. DISPLAY=:0) and XAUTHORITY for the X server you use"
        )
    setting, auth = _auth_file()
    if setting == "XAUTHORITY":
        if not auth.is_file():
            return (
                f"XAUTHORITY={auth} does not exist; set XAUTHORITY to the X server's cookie file"
                f" (`xauth info` in the desktop session shows it) or unset it"
            )
        if not os.access(auth, os.R_OK):
            return f"XAUTHORITY={auth} cannot be read by this user; fix its permissions or set XAUTHORITY to a readable copy"
    return _connect_problem(display, setting, auth)


def _connect_problem(display: str, setting: str, auth: Path | None) -> str | None:
    try:
        from Xlib import display as xdisplay
        from Xlib import error as xerror
    except ImportError:  # pragma: no cover - python-xlib comes with pyautogui and pynput
        return None
    try:
        with quiet_xlib():
            conn = xdisplay.Display(display)
    except xerror.XauthError:
        # Older python-xlib (python3-xlib, pyautogui's) insists on the file even for a
        # server without access control (Xvfb without -auth).
        return (
            f"{setting} ({auth}) is missing or unreadable; set XAUTHORITY to the X server's"
            f" cookie file, or create an empty one (`touch {auth}`) for a server without access control"
        )
    except (xerror.DisplayError, OSError) as exc:
        detail = " ".join(str(exc).replace("\\n", " ").split())
        if "uthoriz" in detail:
            return (
                f"the X server at DISPLAY={display} refused the connection (not authorized);"
                f" set XAUTHORITY to its cookie file (now {setting}: {auth})"
            )
        return (
            f"no X server answers at DISPLAY={display} ({detail[:120]}); start it, or set"
            " DISPLAY to the display of the desktop session"
        )
    conn.close()
    return None


def require() -> None:
    """PortUnavailable (one line with the fix) unless the display can be reached."""
    why = problem()
    if why:
        raise PortUnavailable(why)
