"""`moonshot dashboard`: datasette over the home's moonshot.db, read-only, for a person to
look at. Every connection is `mode=ro` (not `immutable=1`: the service keeps writing
in WAL mode and the pages must show its commits); the metadata and canned queries ship
in dashboard.yaml. Never writes, migrates or creates moonshot.db, and creates no file
in the home (SQLite's own -wal and -shm aside). Datasette is an optional extra."""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import ipaddress
import logging
import re
import shlex
import socket
import sqlite3
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from moonshot import home
from moonshot.config import Config
from moonshot.errors import MoonshotError

INSTALL = "pip install 'moonshot[dashboard]'"
# What the [dashboard] extra installs: (module, distribution), each checked at start.
REQUIRED = (
    ("datasette", "datasette"),
    ("datasette_dashboards", "datasette-dashboards"),
    ("uvicorn", "uvicorn"),
    ("yaml", "PyYAML"),
)
DATABASE = "moonshot"  # the name (and URL path) of moonshot.db in datasette
SCREENS = "screens"  # logs/screens, served read-only at /screens/ (moonshot.ops.screens)
LOGGER = "moonshot.dashboard"
# datasette's time limit is a progress handler, which SQLite calls every 1000 steps of
# a statement at a jump, never inside one call of a built-in function: instr() of a
# 1 MB string ran 8-44 s past the 1 s limit, holding its read snapshot, so the
# service's WAL checkpoints copied nothing. ReadOnlyDatabase interrupts at the limit
# (at the next jump) and when the client goes away; what one call costs, and so what
# a row of calls without a jump costs, is bounded here (sqlite3 setlimit): instr() is
# quadratic in its strings' length, LIKE and GLOB are length times pattern, and a row
# holds at most a statement's worth of calls. With these, the worst row found (270
# GLOBs of a 10,000-byte string, 64-byte patterns) takes 0.9 s here, instr() at the
# bound 0.7 ms. moonshot's own values (reasons, JSON details, URLs) are a few hundred
# bytes, far from 10,000 (tests/ops/test_dashboard_hostile.py checks a real home); a
# longer one makes its page a 400 that says so.
MAX_VALUE_BYTES = 10_000  # any string, blob or row (SQLITE_LIMIT_LENGTH)
MAX_PATTERN_BYTES = 64  # a LIKE or GLOB pattern (SQLite's default 50,000: an 11 s GLOB)
MAX_SQL_BYTES = 4_000  # a statement; the longest canned query (stage_latency) is 1,204
# Unfinished requests (a client that keeps its connection open) get this long after
# Ctrl-C or TERM; then the dashboard exits anyway.
SHUTDOWN_GRACE_S = 5
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
    yaml = _require("yaml", "PyYAML")
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


def _missing(module: str, dist: str) -> DashboardError:
    return DashboardError(f"the dashboard needs {dist} ({module} is not installed): {INSTALL}")


def _require(module: str, dist: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(module, dist) from None


def check_installed() -> None:
    """The whole [dashboard] extra, without importing it (datasette-dashboards is a
    datasette plugin: keep_only imports it)."""
    for module, dist in REQUIRED:
        if importlib.util.find_spec(module) is None:
            raise _missing(module, dist)


def import_datasette() -> None:
    """Import datasette.plugins without importing any installed datasette plugin: 0.65
    loads every plugin's module when datasette.plugins is first imported, unless
    sys._called_from_test is set (its own test switch; 0.65 has no
    DATASETTE_LOAD_PLUGINS). dashboard_plugin.keep_only then loads the allowed ones."""
    if "datasette.plugins" in sys.modules:  # in-process tests: keep_only unregisters
        return
    switch = not hasattr(sys, "_called_from_test")
    if switch:
        sys._called_from_test = True
    try:
        importlib.import_module("datasette.plugins")
    finally:
        if switch:
            del sys._called_from_test


@dataclass(frozen=True)
class Site:
    """What `serve` runs: the datasette app and where it listens."""

    datasette: Any
    url: str
    loopback: bool
    skipped_plugins: tuple[str, ...]


def build(cfg: Config, host: str = "127.0.0.1", port: int = 8001) -> Site:
    """A Datasette over cfg.db_path, read-only. DashboardError when it cannot be built."""
    check_installed()
    db_path = cfg.db_path
    # What `moonshot status` checks before it opens the home's database, reading only:
    # no home yet, a lost, empty or foreign file, a newer schema, another home's.
    home.check_readonly(cfg)
    import_datasette()
    from moonshot.ops import dashboard_plugin

    loopback = is_loopback(host)
    meta = metadata()
    meta.setdefault("plugins", {})["moonshot"] = {
        "home": str(cfg.home),
        "home_real": str(cfg.home.resolve()),
        "loopback_only": loopback,
    }
    skipped = dashboard_plugin.keep_only(ALLOWED_PLUGINS)
    ds = dashboard_plugin.make_datasette(db_path, DATABASE, metadata=meta, settings=SETTINGS)
    shown = f"[{host}]" if ":" in host else host
    return Site(ds, f"http://{shown}:{port}/", loopback, skipped)


def ro_uri(db_path: Path | str) -> str:
    """SQLite's read-only URI for the file (quoted: a home may hold ? # % or spaces)."""
    return f"file:{quote(str(db_path))}?mode=ro"


def connect_ro(db_path: Path | str, module: Any = sqlite3) -> sqlite3.Connection:
    """A connection that can only read, with what a statement may hold bounded
    (MAX_VALUE_BYTES ...); `module` is the sqlite3 datasette uses. Every connection of
    the dashboard is one of these."""
    conn = module.connect(ro_uri(db_path), uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_PATTERN_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES)
    return conn


def loopback_address(address: str) -> bool:
    """An IP address (as getaddrinfo gives it) of this machine only: 127.0.0.0/8, ::1,
    and IPv4 loopback mapped into IPv6 (::ffff:127.0.0.1, which ip_address().is_loopback
    says is not)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _resolve(host: str, port: int, flags: int = 0):
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)[0]


def is_loopback(host: str) -> bool:
    """Whether `bind` listens on loopback only: decided on the address it binds (127.1,
    0x7f.1, localhost and ::ffff:127.0.0.1 are all 127.0.0.1), not on the spelling."""
    try:
        return loopback_address(_resolve(host, 0)[4][0])
    except (socket.gaierror, UnicodeError):
        return False


# A Host header: a name or an [IPv6] literal, and a port (RFC 9110 7.2), nothing else.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::[0-9]{1,5})?")


def loopback_host_header(value: str) -> bool:
    """A Host header that names this machine: localhost or a loopback address, any
    port. Never resolved: a name re-pointed at 127.0.0.1 (DNS rebinding) is refused."""
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    if match["name"] and match["name"].lower().rstrip(".") == "localhost":
        return True
    try:
        found = _resolve(match["v6"] or match["name"], 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return False
    return loopback_address(found[4][0])


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts so a taken port is one line."""
    try:
        family, kind, proto, _, addr = _resolve(host, port)
    except socket.gaierror as exc:
        raise DashboardError(f"--host {host}: {exc.strerror}; give an address or name") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise DashboardError(
            f"cannot listen on {host}:{port}: {exc.strerror}; {_fix(exc)}"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _fix(exc: OSError) -> str:
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's: give one of its own, or leave --host out"
    if exc.errno == errno.EACCES:
        return "ports below 1024 need root: pick another --port"
    return "pick another --port"


def serve(site: Site, sock: socket.socket) -> None:
    """Run until interrupted (Ctrl-C: uvicorn shuts down, then re-raises the signal)."""
    uvicorn = _require("uvicorn", "uvicorn")
    log = logging.getLogger(LOGGER)
    if not log.handlers:  # one line per server error, on stderr; no log file in the home
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s dashboard: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    config = uvicorn.Config(
        site.datasette.app(),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


def shell_home(home: Path | str) -> str:
    """The home folder as one shell word, for the commands the pages show."""
    return shlex.quote(str(home))
