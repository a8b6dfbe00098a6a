"""The datasette side of `moonshot dashboard` (imported only when datasette is installed):
a Database whose every connection, the "write" one included, is SQLite `mode=ro` with
`query_only`, and moonshot's plugin hooks (the `:_moonshot_home` magic parameter, links
to a coin's history and to its launcher screenshots in logs/screens). Never writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from datasette import hookimpl
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm
from datasette.utils import sqlite3
from markupsafe import Markup, escape

from moonshot import machine as m
from moonshot.ops.dashboard import DATABASE, SCREENS, ro_uri, shell_home

PLUGIN_NAME = "moonshot"
SHOTS_SHOWN = 3  # newest screenshots linked per coin
ATTENTION_SHOWN = 50  # coins in needs_review or failed listed on the front page
TEMPLATES = Path(__file__).with_name("dashboard_templates")


class ReadOnlyDatabase(Database):
    """mode=ro for reads and writes alike: datasette opens its write connection without
    it (write canned queries, plugins that write), so a write here fails in SQLite
    itself with "attempt to write a readonly database". Not immutable=1, which would
    tell SQLite the file never changes and hide the service's commits (WAL)."""

    def connect(self, write: bool = False):
        conn = sqlite3.connect(ro_uri(self.path), uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        self._all_file_connections.append(conn)
        return conn


def keep_only(allowed: frozenset[str]) -> tuple[str, ...]:
    """Unregister every installed datasette plugin whose distribution is not allowed;
    register moonshot's own. Returns the names switched off."""
    skipped = []
    for plugin, dist in pm.list_plugin_distinfo():
        name = dist.project_name.lower().replace("_", "-")
        if name not in allowed:
            pm.unregister(plugin)
            skipped.append(dist.project_name)
    if not pm.is_registered(sys.modules[__name__]):
        pm.register(sys.modules[__name__], name=PLUGIN_NAME)
    return tuple(sorted(skipped))


def make_datasette(
    db_path: Path,
    name: str,
    *,
    metadata: dict[str, Any],
    settings: dict[str, Any],
    static_mounts: list[tuple[str, str]],
) -> Datasette:
    ds = Datasette(
        files=[],
        metadata=metadata,
        settings=settings,
        static_mounts=static_mounts,
        template_dir=str(TEMPLATES),
    )
    ds.remove_database("_memory")  # added when no file is given; nothing to show there
    ds.add_database(ReadOnlyDatabase(ds, path=str(db_path), is_mutable=True), name=name)
    return ds


READ_METHODS = frozenset({"GET", "HEAD"})


@hookimpl
def asgi_wrapper(datasette):
    """Only GET and HEAD reach datasette: a POST (write SQL, a write canned query, a
    plugin's form) is answered 405 here, before any SQL (and before datasette 0.65.5's
    500 for a POST to a read-only canned query)."""

    def wrap(app):
        async def read_only(scope, receive, send):
            if scope["type"] == "http" and scope["method"] not in READ_METHODS:
                body = b'{"ok": false, "error": "the moonshot dashboard is read-only"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 405,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"allow", b"GET, HEAD"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return read_only

    return wrap


def _config(datasette: Datasette) -> dict[str, Any]:
    return datasette.plugin_config(PLUGIN_NAME) or {}


@hookimpl
def register_magic_parameters(datasette):
    def moonshot(key: str, request) -> str:
        if key == "home":
            return shell_home(_config(datasette).get("home", "."))
        raise KeyError(key)

    return [(PLUGIN_NAME, moonshot)]


@hookimpl
def extra_template_vars(template, datasette):
    if template != "index.html":
        return None

    async def overview() -> dict[str, Any]:
        db = datasette.get_database(DATABASE)
        counts = dict.fromkeys(m.STATES, 0)
        counts.update((await db.execute("select state, count(*) from coins group by state")).rows)
        attention = await db.execute(
            "select id, ticker, name, state, last_error from coins"
            " where state in ('needs_review', 'failed')"
            " order by state = 'failed', updated_at, id limit ?",
            [ATTENTION_SHOWN],
        )
        last = await db.execute(
            "select max(at) from transitions where to_state = 'launched'"
            " and from_state != 'launched'"
        )
        return {
            "moonshot": {
                "database": DATABASE,
                "home": shell_home(_config(datasette).get("home", ".")),
                "counts": list(counts.items()),
                "attention": [dict(r) for r in attention.rows],
                "last_launch": last.first()[0],
            }
        }

    return overview


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if database != DATABASE or table is not None:
        return None
    # The canned queries' commands, to be pasted as they are.
    if isinstance(value, str) and value.startswith("moonshot --home "):
        return Markup(f"<code>{escape(value)}</code>")
    # Columns of the canned queries (table is None there) that hold a coin id.
    if not isinstance(value, int):
        return None
    if column == "history":
        url = datasette.urls.query(DATABASE, "coin_history") + f"?id={value}"
        return Markup(f'<a href="{escape(url)}">history of {value}</a>')
    if column == "screenshots":
        return _screens_cell(datasette, value)
    return None


def _screens_cell(datasette: Datasette, coin_id: int) -> Markup:
    """The launcher names its screenshots {stamp}-coin{id}-{step}.png (app/runner.py)."""
    folder = Path(_config(datasette).get("screens", ""))
    try:
        shots = sorted(p.name for p in folder.glob(f"*-coin{coin_id}-*.png") if p.is_file())
    except OSError:
        shots = []
    if not shots:
        return Markup("<em>none saved</em>")
    links = []
    for shot in shots[-SHOTS_SHOWN:]:
        url = escape(datasette.urls.path(f"/{SCREENS}/{quote(shot)}"))
        links.append(
            f'<a href="{url}"><img src="{url}" alt="{escape(shot)}" loading="lazy"'
            ' style="max-width: 12em; display: block"></a>'
        )
    more = (
        f"<br>{len(shots) - SHOTS_SHOWN} older in logs/{SCREENS}"
        if len(shots) > SHOTS_SHOWN
        else ""
    )
    return Markup("".join(links) + more)
