"""`moonshot doctor`: checks every configured part and says what to fix. Each check
is independent; a failing one never hides the others. Reads only, prints no secret."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from moonshot import adapters, config, secrets
from moonshot.errors import HomeError, MoonshotError
from moonshot.home import is_fresh, open_store
from moonshot.ops import alerts
from moonshot.ports import Check
from moonshot.store import SCHEMA_VERSION


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
        return True
    except OSError:
        return False


def _database_check(cfg) -> Check:
    if is_fresh(cfg):
        return Check("database", "ok", f"no {cfg.db_path.name} yet: `moonshot run` starts it")
    try:
        store = open_store(cfg, create=False)
    except HomeError as exc:  # invariant 7: the message says how to recover
        return Check("database", "fail", str(exc))
    except Exception as exc:  # noqa: BLE001 - report, don't crash
        return Check("database", "fail", f"{cfg.db_path}: {exc}", "check the file's permissions")
    try:
        version = store.db.execute("PRAGMA user_version").fetchone()[0]
        ok = store.integrity_ok()
    finally:
        store.close()
    return Check(
        "database",
        "ok" if ok else "fail",
        f"{cfg.db_path.name} schema {version}/{SCHEMA_VERSION}, integrity {'ok' if ok else 'FAILED'}",
        "" if ok else "stop the service and restore moonshot.db from a backup",
    )


def _adapter_checks(name: str, build) -> list[Check]:
    try:
        port = build()
    except MoonshotError as exc:
        return [
            Check(name, "fail", str(exc), "fix the configuration, or choose the embedded adapter")
        ]
    except Exception as exc:  # noqa: BLE001 - e.g. an unwritable library folder: a finding
        return [
            Check(
                name, "fail", f"{type(exc).__name__}: {exc}", "check the path and its permissions"
            )
        ]
    if port is None:
        return [Check(name, "ok", "off (sync-only: coins stop at confirmed)")]
    out = [Check(name, "ok", f"{getattr(port, 'kind', type(port).__name__)} adapter ready")]
    checks = getattr(port, "checks", None)
    if checks is not None:
        try:
            out.extend(checks())
        except MoonshotError as exc:
            out.append(Check(name, "fail", str(exc)))
    return out


def run_checks(home: str | None) -> list[Check]:
    try:
        cfg = config.load(home)
    except MoonshotError as exc:
        return [
            Check(
                "config", "fail", str(exc), "edit moonshot.toml or the MOONSHOT_* variable it names"
            )
        ]
    out = [
        Check(
            "config",
            "ok",
            f"home {cfg.home}"
            + (" with moonshot.toml" if (cfg.home / "moonshot.toml").exists() else " (defaults)"),
        )
    ]
    for label, path in (("home", cfg.home), ("spool", cfg.spool_dir), ("logs", cfg.logs_dir)):
        if _writable(path):
            out.append(Check(label, "ok", f"{path} is writable"))
        else:
            out.append(Check(label, "fail", f"{path} is not writable", f"chown or chmod {path}"))
    out.append(_database_check(cfg))
    # Secrets (issue 6): where each comes from (never its value), and moonshot.env's mode.
    required = (
        ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY") if cfg.source.kind == "supabase" else ()
    )
    out.extend(secrets.checks(cfg.home, required=required))
    out.extend(alerts.checks(cfg))
    out.extend(_adapter_checks("source", lambda: adapters.build_source(cfg)))
    library_holder: dict = {}

    def build_library():
        library_holder["lib"] = adapters.build_library(cfg)
        return library_holder["lib"]

    out.extend(_adapter_checks("photos", build_library))
    if "lib" in library_holder:
        out.extend(
            _adapter_checks("launcher", lambda: adapters.build_launcher(cfg, library_holder["lib"]))
        )
    if os.name == "posix" and os.geteuid() == 0 and cfg.photos_kind == "macos":
        out.append(
            Check(
                "user",
                "warn",
                "running as root",
                "run as the logged-in user (Photos and the GUI need it)",
            )
        )
    return out
