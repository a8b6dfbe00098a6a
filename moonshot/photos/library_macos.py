"""The real Photos library on the user's Mac: imports a spooled file by PhotoKit or by
AppleScript, and answers find/newest/confirm from Photos.sqlite, read-only (photos_db).
It never writes to the library's database, never puts a path into AppleScript source
text, and never imports macOS-only modules at module top."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moonshot import platform
from moonshot.errors import PortUnavailable, TransientError
from moonshot.photos.photos_sqlite import FDA_FIX, PhotosDB, library_root
from moonshot.ports import Asset, Check, Confirmation

log = logging.getLogger(__name__)

DEFAULT_LIBRARY = "~/Pictures/Photos Library.photoslibrary"
DEFAULT_LIBRARY_SETTING = "library"  # PhotosConfig.library's default (the folder library)
# After Photos reports the import, give its database this long to show the asset.
AFTER_IMPORT_SETTLE = 5.0
# osascript gets this much longer than AppleScript's own `with timeout`, so the script's
# timeout (error -1712) normally fires first and the process exits cleanly.
OSASCRIPT_GRACE = 15.0

# The file path and the timeout arrive as arguments (`argv`), never in this text
# (invariant 5): a name with quotes, backslashes or newlines cannot change the script.
# `skip check duplicates` keeps Photos from opening a dialog that would block the import.
APPLESCRIPT_LINES = (
    "on run argv",
    "set imagePath to item 1 of argv",
    "set waitSeconds to (item 2 of argv) as integer",
    "set imageFile to POSIX file imagePath",
    "with timeout of waitSeconds seconds",
    'tell application "Photos"',
    "set newItems to import {imageFile} skip check duplicates true",
    "end tell",
    "end timeout",
    "if newItems is missing value or (count of newItems) is 0 then "
    'error "Photos imported nothing from " & imagePath number 1001',
    "return id of item 1 of newItems",
    "end run",
)
AUTOMATION_FIX = (
    "allow it in System Settings > Privacy & Security > Automation "
    "(the program running moonshot > Photos)"
)
PHOTOS_SETTINGS_FIX = (
    "in Photos > Settings > iCloud turn on iCloud Photos and choose Download Originals "
    "to this Mac (not Optimize Mac Storage); in System Settings > General > Login Items "
    "add Photos so it runs at login"
)

Importer = Callable[[Path, float], str]


class ImportTimedOut(TransientError):
    """Photos did not finish the import in time; it may still finish it later."""

    def __init__(self, message: str, asset_id: str | None = None):
        super().__init__(message)
        self.asset_id = asset_id


def asset_uuid(identifier: str) -> str:
    """`UUID/L0/001` (PhotoKit local identifier, AppleScript id) -> `UUID` (ZUUID)."""
    return identifier.strip().split("/", 1)[0]


def library_from_config(cfg) -> Path:
    """photos.library left at its default means the system library in ~/Pictures."""
    setting = cfg.photos.library
    if setting == DEFAULT_LIBRARY_SETTING:
        return Path(DEFAULT_LIBRARY).expanduser()
    path = Path(setting).expanduser()
    return path if path.is_absolute() else cfg.home / path


# -- AppleScript --------------------------------------------------------------------------
def run_osascript(path: Path, timeout: float, *, osascript: str = "osascript") -> str:
    """Run the import script with `path` as an argument; return the new asset's id."""
    argv = [osascript]
    for line in APPLESCRIPT_LINES:
        argv += ["-e", line]
    argv += [str(path), str(max(1, int(timeout)))]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + OSASCRIPT_GRACE, check=False
        )
    except subprocess.TimeoutExpired:
        raise ImportTimedOut(
            f"osascript did not return within {timeout + OSASCRIPT_GRACE:.0f} s"
        ) from None
    except FileNotFoundError:
        raise PortUnavailable(f"{osascript} not found: AppleScript import needs macOS") from None
    if proc.returncode == 0 and proc.stdout.strip():
        return asset_uuid(proc.stdout.strip().splitlines()[-1])
    err = (proc.stderr or proc.stdout or "").strip().splitlines()
    text = err[-1] if err else f"osascript exited {proc.returncode}"
    if "(-1712)" in text:
        raise ImportTimedOut(f"Photos did not finish importing {path.name} in {timeout:.0f} s")
    if "(-1743)" in text:
        raise PortUnavailable(f"not allowed to control Photos by AppleScript: {AUTOMATION_FIX}")
    if "(-600)" in text or "(-609)" in text or "locked" in text.lower() or "busy" in text.lower():
        raise TransientError(
            f"Photos is busy, locked or quit during the import ({text}); will retry"
        )
    raise TransientError(f"AppleScript import of {path.name} failed: {text}")


def applescript_import(path: Path, timeout: float) -> str:
    platform.require_macos("importing into Photos with AppleScript")
    return run_osascript(path, timeout)


# -- PhotoKit -------------------------------------------------------------------------------
def photokit_import(path: Path, timeout: float) -> str:
    """One PHAssetCreationRequest, waited for at most `timeout` seconds. osxphotos'
    photokit module has no import call, so this uses PhotoKit through pyobjc directly."""
    platform.require_macos("importing into Photos with PhotoKit")
    try:
        import Foundation  # macOS only, imported when used
        import Photos
    except ImportError:
        raise PortUnavailable(
            "PhotoKit import needs pyobjc-framework-Photos: pip install pyobjc-framework-Photos"
        ) from None
    add_only = 1  # PHAccessLevelAddOnly
    status = Photos.PHPhotoLibrary.authorizationStatusForAccessLevel_(add_only)
    if status != Photos.PHAuthorizationStatusAuthorized:
        asked = threading.Event()
        Photos.PHPhotoLibrary.requestAuthorizationForAccessLevel_handler_(
            add_only, lambda _status: asked.set()
        )
        asked.wait(min(timeout, 60.0))
        status = Photos.PHPhotoLibrary.authorizationStatusForAccessLevel_(add_only)
        if status != Photos.PHAuthorizationStatusAuthorized:
            raise PortUnavailable(
                "no permission to add to Photos: allow it in System Settings > Privacy & "
                "Security > Photos, or set photos.import_method = applescript"
            )
    done = threading.Event()
    result: dict[str, Any] = {}

    def changes() -> None:
        request = Photos.PHAssetCreationRequest.creationRequestForAsset()
        options = Photos.PHAssetResourceCreationOptions.alloc().init()
        options.setOriginalFilename_(path.name)
        url = Foundation.NSURL.fileURLWithPath_(str(path))
        request.addResourceWithType_fileURL_options_(Photos.PHAssetResourceTypePhoto, url, options)
        result["id"] = str(request.placeholderForCreatedAsset().localIdentifier())

    def completed(success, error) -> None:
        result["ok"] = bool(success)
        result["error"] = str(error) if error is not None else ""
        done.set()

    Photos.PHPhotoLibrary.sharedPhotoLibrary().performChanges_completionHandler_(changes, completed)
    if not done.wait(timeout):
        raise ImportTimedOut(
            f"PhotoKit did not finish importing {path.name} in {timeout:.0f} s",
            asset_uuid(result["id"]) if result.get("id") else None,
        )
    if not result.get("ok") or not result.get("id"):
        text = result.get("error") or "no asset created"
        raise TransientError(f"PhotoKit import of {path.name} failed: {text}")
    return asset_uuid(result["id"])


IMPORTERS: dict[str, Importer] = {"photokit": photokit_import, "applescript": applescript_import}


# -- the adapter ------------------------------------------------------------------------------
class MacPhotosLibrary:
    """PhotosLibrary port for macOS Photos. Reads work on any OS (tests use real
    Photos.sqlite files on Linux); importing needs macOS."""

    kind = "macos"

    def __init__(
        self,
        library: str | os.PathLike,
        *,
        import_method: str = "photokit",
        import_timeout: float = 60.0,
        require_icloud: bool = False,
        settle_timeout: float | None = None,
        importer: Importer | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 0.25,
    ):
        if importer is None and import_method not in IMPORTERS:
            raise PortUnavailable(
                f"photos.import_method = {import_method!r}: expected photokit or applescript"
            )
        self.library = library_root(library)
        self.db = PhotosDB(self.library)
        self.import_method = import_method
        self.import_timeout = import_timeout
        self.require_icloud = require_icloud
        # How long to keep looking for a timed-out import before the caller may retry.
        self.settle_timeout = import_timeout if settle_timeout is None else settle_timeout
        self._importer = importer or IMPORTERS[import_method]
        self._clock = clock
        self._sleep = sleep
        self._poll = poll
        self._last_error: str | None = None

    @classmethod
    def from_config(cls, cfg) -> MacPhotosLibrary:
        try:
            platform.require_macos("photos.kind = macos (the macOS Photos library)")
        except PortUnavailable as exc:
            raise PortUnavailable(f"{exc}: set photos.kind = auto or folder") from None
        p = cfg.photos
        return cls(
            library_from_config(cfg),
            import_method=p.import_method,
            import_timeout=p.import_timeout,
            require_icloud=p.require_icloud,
        )

    # -- the port -----------------------------------------------------------------------------
    def import_file(self, path: Path) -> Asset:
        path = Path(path)
        if not path.is_file():
            raise TransientError(f"cannot import {path.name}: file not found")
        started = self._clock()
        try:
            asset_id = self._importer(path.resolve(), self.import_timeout)
        except ImportTimedOut as exc:
            # Photos goes on importing after we stop waiting: look for the asset (by the
            # id PhotoKit promised, else by name and time) before anyone retries, so a
            # slow import never becomes two assets.
            asset = self._wait_for(exc.asset_id, path.name, started, self.settle_timeout)
            if asset is not None:
                log.info("import of %s timed out but Photos has it: %s", path.name, asset.id)
                return asset
            self._last_error = str(exc)
            raise TransientError(
                f"{exc}; not in the library {self.settle_timeout:.0f} s later; will retry"
            ) from None
        except TransientError as exc:
            self._last_error = str(exc)
            raise
        asset = self._wait_for(asset_id, None, started, AFTER_IMPORT_SETTLE)
        self._last_error = None
        # Photos may write its database a moment after answering; confirm checks again.
        return asset or Asset(asset_uuid(asset_id), path.name, started, None)

    def _wait_for(
        self, asset_id: str | None, name: str | None, since: float, timeout: float
    ) -> Asset | None:
        deadline = self._clock() + timeout
        while True:
            try:
                asset = self.db.get(asset_id) if asset_id else None
                if asset is None and name:
                    found = self.db.find(name, added_after=since)
                    asset = found[0] if found else None
            except TransientError as exc:
                log.info("while looking for %s: %s", name or asset_id, exc)
                asset = None
            if asset is not None or self._clock() >= deadline:
                return asset
            self._sleep(self._poll)

    def find(self, original_filename: str, added_after: float | None = None) -> list[Asset]:
        return self.db.find(original_filename, added_after=added_after)

    def newest(self) -> Asset | None:
        return self.db.newest()

    def get(self, asset_id: str) -> Asset | None:
        return self.db.get(asset_id)

    def confirm(self, asset_id: str | None, original_filename: str, since: float) -> Confirmation:
        asset = self.db.get(asset_id) if asset_id else None
        if asset is None and original_filename:
            found = self.db.find(original_filename, added_after=since)
            asset = found[0] if found else None
        if asset is None:
            what = original_filename or asset_id or "the asset"
            return Confirmation(False, False, None, f"{what} is not in the Photos library yet")
        if not self.require_icloud or asset.in_cloud:
            return Confirmation(True, True, asset, "")
        if asset.in_cloud is False:
            detail = f"asset {asset.id} is not uploaded to iCloud Photos yet"
        else:
            detail = (
                f"asset {asset.id} has no iCloud Photos record yet "
                "(is iCloud Photos on in Photos > Settings > iCloud?)"
            )
        return Confirmation(True, False, asset, detail)

    # -- optional methods ------------------------------------------------------------------------
    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` as soon as Photos writes its database (Photos.sqlite or its -wal).
        The -shm is left out: every reader, this one included, writes to it."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        folder = self.library / "database"
        names = {"Photos.sqlite", "Photos.sqlite-wal"}

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.event_type not in ("modified", "created", "moved", "closed"):
                    return
                paths = [getattr(event, "src_path", ""), getattr(event, "dest_path", "")]
                if any(os.path.basename(os.fsdecode(p)) in names for p in paths if p):
                    wake()

        observer = Observer()
        try:
            observer.schedule(Handler(), str(folder), recursive=False)
            observer.start()
        except OSError as exc:
            log.warning("cannot watch %s (%s); re-checking on a timer instead", folder, exc)
            return lambda: None

        def stop() -> None:
            observer.stop()
            observer.join(timeout=5)

        return stop

    def checks(self) -> list[Check]:
        out: list[Check] = []
        lib = self.library
        if not os.path.lexists(lib):
            out.append(
                Check(
                    "photos library",
                    "fail",
                    f"no Photos library at {lib}",
                    "set photos.library in moonshot.toml to your .photoslibrary folder "
                    "(Photos > Settings > General shows where it is)",
                )
            )
        else:
            try:
                newest = self.db.newest()
                s = self.db.schema
                version = (
                    f"Photos {s.photos_version}" if s.photos_version else "Photos (unknown version)"
                )
                latest = (
                    f"newest asset {newest.original_filename} added {_iso(newest.date_added)}"
                    if newest
                    else "no assets yet"
                )
                out.append(
                    Check(
                        "photos library", "ok", f"{lib}: {version}, read {self.db.mode}; {latest}"
                    )
                )
            except PortUnavailable as exc:
                denied = "Full Disk Access" in str(exc)
                out.append(
                    Check(
                        "photos read access" if denied else "photos library",
                        "fail",
                        str(exc),
                        FDA_FIX if denied else "point photos.library at a Photos library",
                    )
                )
            except TransientError as exc:
                out.append(
                    Check(
                        "photos library",
                        "warn",
                        str(exc),
                        "quit Photos' upgrade or repair, then retry",
                    )
                )
        out.append(self._icloud_check())
        out.append(
            Check(
                "photos settings",
                "warn",
                "Optimize Mac Storage, Download Originals and Photos at login cannot be read; check them once by hand",
                PHOTOS_SETTINGS_FIX,
            )
        )
        out.append(self._import_check())
        return out

    def _icloud_check(self) -> Check:
        if not self.require_icloud:
            return Check("icloud photos", "ok", "not required (photos.require_icloud = false)")
        try:
            on = self.db.uses_icloud()
        except (PortUnavailable, TransientError) as exc:
            return Check("icloud photos", "fail", f"cannot tell: {exc}", PHOTOS_SETTINGS_FIX)
        if on:
            return Check("icloud photos", "ok", "the library has iCloud Photos records")
        return Check(
            "icloud photos",
            "fail",
            "photos.require_icloud is on but no asset has an iCloud Photos record",
            PHOTOS_SETTINGS_FIX,
        )

    def _import_check(self) -> Check:
        name = f"photos import ({self.import_method})"
        if not platform.is_macos():
            return Check(
                name, "fail", "importing into Photos needs macOS", "set photos.kind = folder"
            )
        if self.import_method == "applescript":
            if shutil.which("osascript"):
                return Check(name, "ok", f"osascript found; on first use {AUTOMATION_FIX}")
            return Check(name, "fail", "osascript not found", "use photos.import_method = photokit")
        try:
            import Photos  # noqa: F401
        except ImportError:
            return Check(
                name,
                "fail",
                "pyobjc-framework-Photos is not installed",
                "pip install pyobjc-framework-Photos",
            )
        return Check(name, "ok", "PhotoKit available; allow Photos access when macOS asks")

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "library": str(self.library),
            "import_method": self.import_method,
        }
        try:
            s = self.db.schema
            out.update(photos_version=s.photos_version, reader=self.db.mode)
        except (PortUnavailable, TransientError) as exc:
            out["error"] = str(exc)
        if self._last_error:
            out["last_import_error"] = self._last_error
        return out

    def close(self) -> None:
        self.db.close()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
