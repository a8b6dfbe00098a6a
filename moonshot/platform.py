"""Platform checks in one place. Call `platform.is_macos()`; never copy the flag
(`from .platform import IS_MACOS` makes tests patch two modules, osxphotos' trap)."""

from __future__ import annotations

import sys


def is_macos() -> bool:
    return sys.platform == "darwin"


def require_macos(what: str) -> None:
    from moonshot.errors import PortUnavailable

    if not is_macos():
        raise PortUnavailable(f"{what} needs macOS; this is {sys.platform}")
