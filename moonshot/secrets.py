"""Secrets (the Supabase key and friends): from the environment, else the login Keychain
(`security find-generic-password -s moonshot -a NAME -w`, macOS), else `<home>/moonshot.env`
(KEY=VALUE lines, mode 0600). A value is returned, never logged, printed or put in an error."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

from moonshot import platform
from moonshot.ports import Check

NAMES = (
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_DB_URL",
    "X_BEARER_TOKEN",
    "MOONSHOT_ALERT_URLS",  # apprise URLs with a token (moonshot/ops/alerts.py)
)
KEYCHAIN_SERVICE = "moonshot"
ENV_FILE = "moonshot.env"
SECURITY_NOT_FOUND = 44  # `security`: the item could not be found in the keychain
KEYCHAIN_TIMEOUT = 10.0  # a locked keychain may wait for a dialog nobody answers

log = logging.getLogger(__name__)


def env_file(home: Path) -> Path:
    return Path(home) / ENV_FILE


def from_keychain(name: str) -> str | None:
    """The login Keychain's generic password (service `moonshot`, account `name`)."""
    if not platform.is_macos():
        return None
    exe = shutil.which("security")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "find-generic-password", "-s", KEYCHAIN_SERVICE, "-a", name, "-w"],
            capture_output=True,
            text=True,
            timeout=KEYCHAIN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        log.warning("keychain: reading %s timed out (locked keychain?); trying %s", name, ENV_FILE)
        return None
    if proc.returncode == 0:
        return proc.stdout.rstrip("\n") or None
    if proc.returncode != SECURITY_NOT_FOUND:
        # stderr names the keychain problem; it never holds the secret itself.
        log.warning(
            "keychain: reading %s failed (%s): %s", name, proc.returncode, proc.stderr.strip()[:200]
        )
    return None


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines, `#` comments and a leading `export ` are allowed;
    a value may be wrapped in single or double quotes."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def from_env_file(name: str, home: Path) -> str | None:
    path = env_file(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: cannot read (%s); fix its owner or mode (chmod 600)", path, exc.strerror)
        return None
    return parse_env_file(text).get(name) or None


def get(name: str, *, home: Path, env: Mapping[str, str] | None = None) -> str | None:
    """The secret `name` from the first place that has it, or None."""
    return where(name, home=home, env=env)[1]


def where(
    name: str, *, home: Path, env: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """(origin, value): origin is environment, keychain or the env file's path."""
    env = os.environ if env is None else env
    if env.get(name):
        return "environment", env[name]
    value = from_keychain(name)
    if value:
        return "keychain", value
    value = from_env_file(name, home)
    if value:
        return str(env_file(home)), value
    return None, None


def file_exposed(home: Path) -> bool:
    """True when moonshot.env exists and its group or others may read or write it."""
    try:
        mode = env_file(home).stat().st_mode
    except FileNotFoundError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def checks(
    home: Path, required: tuple[str, ...] = (), env: Mapping[str, str] | None = None
) -> list[Check]:
    """For `moonshot doctor`: the env file's mode, and where each secret comes from."""
    out = []
    path = env_file(home)
    if file_exposed(home):
        mode = stat.S_IMODE(path.stat().st_mode)
        out.append(
            Check(
                "secrets file",
                "warn",
                f"{path} is mode {mode:o}: readable by others",
                f"chmod 600 {path}",
            )
        )
    elif path.exists():
        out.append(Check("secrets file", "ok", f"{path} is private (mode 600)"))
    for name in NAMES:
        origin, _ = where(name, home=home, env=env)
        if origin:
            out.append(Check(f"secret {name}", "ok", f"from {origin}"))
        elif name in required:
            out.append(
                Check(
                    f"secret {name}",
                    "fail",
                    f"{name} is not set",
                    f"security add-generic-password -U -s {KEYCHAIN_SERVICE} -a {name} -w"
                    f"  (or a {name}=... line in {path}, chmod 600)",
                )
            )
    return out
