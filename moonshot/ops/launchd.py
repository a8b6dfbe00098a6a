"""launchd agents for moonshot: render the plists with plistlib (the one source of truth;
launchd/ at the repo root holds the rendered reference files) and drive `launchctl`
in the user's GUI domain. Never puts a secret in a plist; never runs launchctl off macOS."""

from __future__ import annotations

import math
import os
import plistlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moonshot import platform
from moonshot.config import Config
from moonshot.errors import MoonshotError, PortUnavailable

# The single agent runs every stage; --split gives the plan's two agents.
SINGLE = (("com.moonshot.agent", "all"),)
SPLIT = (("com.moonshot.photosync", "sync"), ("com.moonshot.watcher", "launch"))
# Beside either layout: `moonshot watch` every alerts.watch_interval seconds, which
# alerts when the service is dead or hung and delivers the alerts a dead one left.
WATCH = "com.moonshot.watch"
SERVICE_LABELS = tuple(label for label, _ in SINGLE + SPLIT)
ALL_LABELS = (*SERVICE_LABELS, WATCH)

# A crash loop restarts at most every 30 s (launchd's default is 10 s).
THROTTLE_INTERVAL = 30
# launchd sends TERM, waits ExitTimeOut, then KILLs (style.md "TERM traps"): leave the
# service its whole stop_timeout plus a margin to commit and release its claims.
EXIT_MARGIN = 10
# /usr/bin holds `security` (Keychain secrets); Homebrew's folders come before the system's.
SYSTEM_PATH = ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Agent:
    label: str
    stages: str | None  # all | sync | launch: `moonshot run --stages`; None: the watch agent
    plist: dict[str, Any]

    @property
    def filename(self) -> str:
        return f"{self.label}.plist"

    def dumps(self) -> bytes:
        return plistlib.dumps(self.plist, fmt=plistlib.FMT_XML, sort_keys=True)


def exit_timeout(stop_timeout: float) -> int:
    return int(math.ceil(stop_timeout)) + EXIT_MARGIN


def render(cfg: Config, *, split: bool = False, python: str | None = None) -> list[Agent]:
    """The agents for this home: one (`com.moonshot.agent`) or, split, the sync agent
    and the launcher agent; then the watch agent. `python` is the interpreter launchd
    runs (absolute)."""
    python = os.path.abspath(python or sys.executable)
    home = str(cfg.home)
    path = ":".join(dict.fromkeys((os.path.dirname(python), *SYSTEM_PATH)))
    agents = []
    for label, stages in SPLIT if split else SINGLE:
        name = label.rsplit(".", 1)[-1]
        plist: dict[str, Any] = {
            "Label": label,
            "ProgramArguments": [
                python,
                "-m",
                "moonshot",
                "--home",
                home,
                "run",
                "--stages",
                stages,
            ],
            "WorkingDirectory": home,
            # Only what the service needs to find itself; secrets come from the Keychain
            # or the 0600 moonshot.env (moonshot/secrets.py), never from here.
            "EnvironmentVariables": {"PATH": path, "MOONSHOT_HOME": home, "PYTHONUNBUFFERED": "1"},
            "RunAtLoad": True,
            # Restart after a crash (non-zero exit or signal), not after a clean exit 0.
            "KeepAlive": {"SuccessfulExit": False},
            "ThrottleInterval": THROTTLE_INTERVAL,
            "ExitTimeOut": exit_timeout(cfg.service.stop_timeout),
            "StandardOutPath": str(cfg.logs_dir / f"launchd-{name}.out.log"),
            "StandardErrorPath": str(cfg.logs_dir / f"launchd-{name}.err.log"),
            # The GUI step and Photos need the logged-in user's session.
            "LimitLoadToSessionType": "Aqua",
            # Interactive: not throttled like a background job while driving the app.
            "ProcessType": "Interactive",
        }
        agents.append(Agent(label, stages, plist))
    agents.append(Agent(WATCH, None, _watch_plist(cfg, python, path)))
    return agents


def _watch_plist(cfg: Config, python: str, path: str) -> dict[str, Any]:
    home = str(cfg.home)
    return {
        "Label": WATCH,
        "ProgramArguments": [python, "-m", "moonshot", "--home", home, "watch"],
        "WorkingDirectory": home,
        "EnvironmentVariables": {"PATH": path, "MOONSHOT_HOME": home, "PYTHONUNBUFFERED": "1"},
        "RunAtLoad": True,
        # A short check, not a service: launchd starts it again after this many seconds.
        "StartInterval": int(cfg.alerts.watch_interval),
        "StandardOutPath": str(cfg.logs_dir / "launchd-watch.out.log"),
        "StandardErrorPath": str(cfg.logs_dir / "launchd-watch.err.log"),
        # macosx:// notifications and the Keychain need the logged-in user's session.
        "LimitLoadToSessionType": "Aqua",
        "ProcessType": "Background",
    }


def agents_dir() -> Path:
    return Path.home() / "Library" / "LaunchAgents"


def domain() -> str:
    return f"gui/{os.getuid()}"


def _require_macos() -> None:
    if not platform.is_macos():
        raise PortUnavailable(
            f"launchd agents need macOS; this is {sys.platform} (use `moonshot launchd print` to see the plist)"
        )


def _launchctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("launchctl")
    if exe is None:
        raise PortUnavailable("launchctl not found on PATH; run this from a macOS login session")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise MoonshotError(
            f"launchctl {' '.join(args)} failed ({proc.returncode}): {why[-1] if why else 'no output'}"
        )
    return proc


def installed_labels() -> list[str]:
    return [label for label in ALL_LABELS if (agents_dir() / f"{label}.plist").exists()]


def _bootout(label: str) -> None:
    # Not loaded is fine: bootout is how we make sure it is not.
    _launchctl("bootout", f"{domain()}/{label}", check=False)


def _check_interpreter(plist: dict[str, Any]) -> None:
    """launchd would restart a broken ProgramArguments every ThrottleInterval, silently:
    run the interpreter once as launchd will (same folder, same environment) first."""
    python = plist["ProgramArguments"][0]
    env = {**plist["EnvironmentVariables"], "HOME": str(Path.home())}
    try:
        proc = subprocess.run(
            [python, "-c", "import moonshot"],
            cwd=plist["WorkingDirectory"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:
        raise MoonshotError(
            f"{python} cannot run ({exc.strerror}); pass --python /abs/path/to/python"
        ) from None
    if proc.returncode != 0:
        raise MoonshotError(
            f"{python} cannot import moonshot; pass --python with the interpreter moonshot is installed in"
        )


def install(cfg: Config, *, split: bool = False, python: str | None = None) -> list[Path]:
    """Write the plists to ~/Library/LaunchAgents and bootstrap them; the other layout's
    agents are booted out and removed so two services never run the same home."""
    _require_macos()
    agents = render(cfg, split=split, python=python)
    cfg.ensure_dirs()
    _check_interpreter(agents[0].plist)
    target = agents_dir()
    target.mkdir(parents=True, exist_ok=True)
    wanted = {a.label for a in agents}
    for label in installed_labels():
        _bootout(label)
        if label not in wanted:
            (target / f"{label}.plist").unlink(missing_ok=True)
    paths = []
    for agent in agents:
        path = target / agent.filename
        part = path.with_name(path.name + ".part")
        part.write_bytes(agent.dumps())
        part.chmod(0o644)
        os.replace(part, path)
        _launchctl("bootstrap", domain(), str(path))
        paths.append(path)
    return paths


def uninstall() -> list[str]:
    """Boot out and remove every moonshot agent; the running service gets TERM."""
    _require_macos()
    removed = []
    for label in ALL_LABELS:
        path = agents_dir() / f"{label}.plist"
        if path.exists():
            _bootout(label)
            path.unlink()
            removed.append(label)
    return removed


def restart() -> list[str]:
    """kickstart -k: TERM the running service (graceful) and start it again."""
    _require_macos()
    labels = [label for label in installed_labels() if label in SERVICE_LABELS]
    if not labels:
        raise MoonshotError("no moonshot agent is installed; run `moonshot launchd install`")
    for label in labels:
        _launchctl("kickstart", "-k", f"{domain()}/{label}")
    return labels


_FIELD = re.compile(r"^\s*(state|pid|last exit code|runs)\s*=\s*(.+?)\s*$")


def status() -> list[dict[str, Any]]:
    """One entry per installed agent: loaded, state, pid, last exit code, from `launchctl
    print`; `ok`: a service agent is running, the watch agent (between runs) is loaded."""
    _require_macos()
    out = []
    for label in installed_labels():
        proc = _launchctl("print", f"{domain()}/{label}", check=False)
        entry: dict[str, Any] = {"label": label, "loaded": proc.returncode == 0}
        # The service's own fields come first; nested blocks repeat some names.
        for line in proc.stdout.splitlines() if proc.returncode == 0 else ():
            m = _FIELD.match(line)
            if m:
                entry.setdefault(m[1].replace(" ", "_"), m[2])
        entry.setdefault("state", "not loaded" if proc.returncode else "unknown")
        entry["ok"] = entry["loaded"] if label == WATCH else entry["state"] == "running"
        out.append(entry)
    return out
