"""`moonshot dashboard`: datasette over the home's moonshot.db, read-only, for a person to
look at. Every connection is `mode=ro` (not `immutable=1`: the service keeps writing
in WAL mode and the pages must show its commits); the metadata and canned queries ship
in dashboard.yaml. Never writes, migrates or creates moonshot.db, and creates no file
in the home (SQLite's own -wal and -shm aside). Datasette is an optional extra."""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import shlex
import socket
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from moonshot.config import Config
from moonshot.errors import MoonshotError

INSTALL = "pip install 'moonshot[dashboard]'"
DATABASE = "moonshot"  # the name (and URL path) of moonshot.db in datasette
SCREENS = "screens"  # logs/screens, served read-only at /screens/
# Plugins the dashboard runs with: its own (dashboard_plugin), datasette's defaults, the
# plotting plugin and what that one needs. Any other datasette plugin installed in the
# same environment is switched off here: nothing that could write or phone out runs.
ALLOWED_PLUGINS = frozenset(
    {"datasette-dashboards", "datasette-leaflet", "datasette-render-markdown"}
)
SETTINGS = {
    "allow_download": False,
    "default_cache_ttl": 0,  # the data changes under the pages: never cache them
}


class DashboardError(MoonshotError):
    """The dashboard cannot start (datasette missing, no database, port taken)."""


def metadata() -> dict[str, Any]:
    """The shipped datasette metadata (dashboard.yaml), checked: no query may write."""
    yaml = _require("yaml")
    text = resources.files("moonshot.ops").joinpath("dashboard.yaml").read_text("utf-8")
    return checked(yaml.safe_load(text))


def checked(meta: dict[str, Any]) -> dict[str, Any]:
    for db_name, db in (meta.get("databases") or {}).items():
        for name, query in (db.get("queries") or {}).items():
            if isinstance(query, dict) and query.get("write"):
                raise DashboardError(
                    f"canned query {db_name}/{name} has write: true; the dashboard is"
                    " read-only, remove it"
                )
    return meta


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DashboardError(
            f"the dashboard needs datasette ({module} is not installed): {INSTALL}"
        ) from None


@dataclass(frozen=True)
class Site:
    """What `serve` runs: the datasette app and where it listens."""

    datasette: Any
    url: str
    loopback: bool
    skipped_plugins: tuple[str, ...]


def build(cfg: Config, host: str = "127.0.0.1", port: int = 8001) -> Site:
    """A Datasette over cfg.db_path, read-only. DashboardError when it cannot be built."""
    _require("datasette")
    db_path = cfg.db_path
    if not db_path.is_file():
        raise DashboardError(
            f"no moonshot.db in {cfg.home}: nothing to show yet; `moonshot run` creates it"
            " (the dashboard never does)"
        )
    _readable(db_path)
    from moonshot.ops import dashboard_plugin

    meta = metadata()
    meta.setdefault("plugins", {})["moonshot"] = {
        "home": str(cfg.home),
        "screens": str(cfg.logs_dir / SCREENS),
    }
    skipped = dashboard_plugin.keep_only(ALLOWED_PLUGINS)
    ds = dashboard_plugin.make_datasette(
        db_path,
        DATABASE,
        metadata=meta,
        settings=SETTINGS,
        static_mounts=[(SCREENS, str(cfg.logs_dir / SCREENS))],
    )
    loopback = is_loopback(host)
    shown = f"[{host}]" if ":" in host else host
    return Site(ds, f"http://{shown}:{port}/", loopback, skipped)


def ro_uri(db_path: Path | str) -> str:
    """SQLite's read-only URI for the file (quoted: a home may hold ? # % or spaces)."""
    return f"file:{quote(str(db_path))}?mode=ro"


def _readable(db_path: Path) -> None:
    """One line at start for a file SQLite cannot read, not an error on every page."""
    try:
        conn = sqlite3.connect(ro_uri(db_path), uri=True)
        try:
            conn.execute("select count(*) from sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DashboardError(
            f"{db_path} cannot be read as a SQLite database ({exc}); is it the home's?"
        ) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts so a taken port is one line."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise DashboardError(f"--host {host}: {exc.strerror}; give an address or name") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise DashboardError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(site: Site, sock: socket.socket) -> None:
    """Run until interrupted (Ctrl-C: uvicorn shuts down, then re-raises the signal)."""
    uvicorn = _require("uvicorn")
    config = uvicorn.Config(site.datasette.app(), log_level="warning", lifespan="on")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


def shell_home(home: Path | str) -> str:
    """The home folder as one shell word, for the commands the pages show."""
    return shlex.quote(str(home))
