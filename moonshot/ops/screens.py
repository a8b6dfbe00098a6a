"""The launcher's screenshots in logs/screens, as `moonshot dashboard` serves them and
alerts attach them: only regular, singly linked PNG files named as the launcher names
them, opened through the home's real folder without following a symlink at any level
below it, at the time of each read. Never hands out anything else of the home
(moonshot.env), whatever was linked into logs/."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

LOGS, SCREENS = "logs", "screens"
# The launcher saves {stamp}-coin{id}-{step}.png (app/runner.py Runner.save_screen); a
# person may copy one under another name with spaces, quotes or %: still a coin's shot.
NAME = re.compile(r"(?!\.)[^/\x00]*-coin(?P<coin>[0-9]+)-[^/\x00]*\.png")
PNG = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 64 << 20  # a 6K Retina screen is ~20 MB as PNG
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """Not a screenshot the dashboard serves (missing, a symlink, a FIFO, a hard link,
    not a PNG ...); the message says which, for the log, never for the page."""


@dataclass(frozen=True)
class Screens:
    """`home` is the home's real path, resolved once at start: logs/ and screens/ below
    it are opened with O_NOFOLLOW on every request, so a symlink put there after the
    start (`ln -s .. logs/screens`) is refused too."""

    home: Path

    def names(self, coin_id: int) -> list[str]:
        """The coin's screenshots that `read` would serve, oldest first (by name: the
        launcher's names start with a UTC stamp)."""
        try:
            folder = self._folder()
        except Refused:
            return []
        try:
            found = []
            for name in sorted(os.listdir(folder)):
                match = NAME.fullmatch(name)
                if match and int(match["coin"]) == coin_id:
                    try:
                        os.close(self._open(folder, name))
                    except Refused:
                        continue
                    found.append(name)
            return found
        finally:
            os.close(folder)

    def read(self, name: str) -> bytes:
        """The PNG's bytes, or Refused."""
        if not NAME.fullmatch(name):
            raise Refused(f"{name!r} is not named as a launcher screenshot")
        folder = self._folder()
        try:
            fd = self._open(folder, name)
        finally:
            os.close(folder)
        with os.fdopen(fd, "rb") as f:
            return f.read(MAX_BYTES)

    def _folder(self) -> int:
        """logs/screens of the home, no symlink followed below the home."""
        try:
            home = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise Refused(f"{self.home}: {exc.strerror}") from None
        try:
            logs = os.open(LOGS, _DIR, dir_fd=home)
        except OSError as exc:  # ELOOP or ENOTDIR for a symlink
            raise Refused(f"{LOGS}: {exc.strerror}") from None
        finally:
            os.close(home)
        try:
            return os.open(SCREENS, _DIR, dir_fd=logs)
        except OSError as exc:
            raise Refused(f"{LOGS}/{SCREENS}: {exc.strerror}") from None
        finally:
            os.close(logs)

    @staticmethod
    def _open(folder: int, name: str) -> int:
        """An fd of a regular file with one link that starts as a PNG. lstat first, so a
        FIFO or a device is never opened; O_NONBLOCK in case one is swapped in."""
        try:
            before = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except OSError as exc:
            raise Refused(f"{name}: {exc.strerror}") from None
        if not stat.S_ISREG(before.st_mode):
            raise Refused(f"{name}: not a regular file")
        try:
            fd = os.open(name, _FILE, dir_fd=folder)
        except OSError as exc:
            raise Refused(f"{name}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
                before.st_dev,
                before.st_ino,
            ):
                raise Refused(f"{name}: changed while it was opened")
            if st.st_nlink != 1:  # a hard link to moonshot.env is a regular file too
                raise Refused(f"{name}: has {st.st_nlink} links")
            if st.st_size > MAX_BYTES:
                raise Refused(f"{name}: {st.st_size} bytes, more than a screenshot")
            if os.pread(fd, len(PNG), 0) != PNG:
                raise Refused(f"{name}: not a PNG")
        except BaseException:
            os.close(fd)
            raise
        return fd
