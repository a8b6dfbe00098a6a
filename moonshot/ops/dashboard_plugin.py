"""The datasette side of `moonshot dashboard` (imported only when datasette is installed):
a Database whose every connection, the "write" one included, is SQLite `mode=ro` with
`query_only` and bounded values, and moonshot's plugin hooks (the `:_moonshot_home`
magic parameter, links to a coin's history, its launcher screenshots served from
logs/screens, the request guard, one-line errors). Never writes."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from datasette import Response, hookimpl
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm
from datasette.utils import sqlite3
from datasette.utils.asgi import Base400
from datasette.views.base import DatasetteError
from markupsafe import Markup, escape

from moonshot import machine as m
from moonshot.ops.dashboard import (
    DATABASE,
    LOGGER,
    MAX_SQL_BYTES,
    MAX_VALUE_BYTES,
    SCREENS,
    connect_ro,
    loopback_host_header,
    shell_home,
)
from moonshot.ops.screens import Refused, Screens

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
        conn = connect_ro(self.path, sqlite3)
        self._all_file_connections.append(conn)
        return conn

    async def execute_fn(self, fn):
        """fn on a read connection, interrupted at datasette's time limit (checked at
        the statement's next jump, not every 1000 steps as its progress handler) and at
        once when the request is cancelled because its client went away (the guard in
        asgi_wrapper); a query still queued for a thread then never runs. Either way its
        read snapshot ends and the service's checkpoint can reset the WAL."""
        lock = threading.Lock()
        state: dict[str, Any] = {}

        def stop() -> None:
            with lock:  # never interrupts a connection that has moved on to another query
                state["stopped"] = True
                if "conn" in state:
                    state["conn"].interrupt()

        def guarded(conn):
            with lock:
                if state.get("stopped"):
                    raise sqlite3.OperationalError("interrupted")
                state["conn"] = conn
            timer = threading.Timer(self.ds.sql_time_limit_ms / 1000, stop)
            timer.daemon = True
            timer.start()
            try:
                return fn(conn)
            finally:
                timer.cancel()
                with lock:
                    state.pop("conn", None)

        try:
            return await super().execute_fn(guarded)
        except asyncio.CancelledError:
            stop()
            raise


# datasette's own exception handler prints a rich traceback with every local to the
# terminal for each error, a 404 or a 400 included (and then fails itself, outside an
# except block: the 500s of GET /-/insert and friends); `handle_exception` below
# replaces it.
DATASETTE_HANDLER = "datasette.handle_exception"


def keep_only(allowed: frozenset[str]) -> tuple[str, ...]:
    """Block every installed datasette plugin whose distribution is not allowed, then
    load the allowed ones: a blocked one is never imported (when datasette.plugins was
    imported without them, see dashboard.import_datasette) or is unregistered (when it
    was already loaded). Registers moonshot's own. Returns the distributions blocked."""
    skipped = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        for ep in dist.entry_points:
            if ep.group == "datasette" and name not in allowed:
                pm.set_blocked(ep.name)  # unregisters it too, if it was loaded
                skipped.add(dist.metadata["Name"])
    pm.load_setuptools_entrypoints("datasette")
    pm.set_blocked(DATASETTE_HANDLER)
    if not pm.is_registered(sys.modules[__name__]):
        pm.register(sys.modules[__name__], name=PLUGIN_NAME)
    return tuple(sorted(skipped))


def make_datasette(
    db_path: Path,
    name: str,
    *,
    metadata: dict[str, Any],
    settings: dict[str, Any],
) -> Datasette:
    ds = Datasette(
        files=[],
        metadata=metadata,
        settings=settings,
        template_dir=str(TEMPLATES),
    )
    ds.remove_database("_memory")  # added when no file is given; nothing to show there
    ds.add_database(ReadOnlyDatabase(ds, path=str(db_path), is_mutable=True), name=name)
    return ds


READ_METHODS = frozenset({"GET", "HEAD"})
log = logging.getLogger(LOGGER)


async def _refuse(send, status: int, error: str, headers=()) -> None:
    body = json.dumps({"ok": False, "error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host(scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"host":
            return value.decode("latin-1")
    return None


@hookimpl
def asgi_wrapper(datasette):
    """What reaches datasette: HTTP GET and HEAD, and, when the dashboard listens on
    loopback, only with a Host header that names loopback. A POST (write SQL, a write
    canned query, a plugin's form) is 405 here, before any SQL; a page of an attacker's
    site whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name as
    Host and gets 421; a websocket is closed before it opens (datasette has none)."""
    loopback_only = _config(datasette).get("loopback_only", True)

    def wrap(app):
        async def guard(scope, receive, send):
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
                return
            if scope["type"] != "http":  # lifespan: datasette's start-up
                await app(scope, receive, send)
                return
            host = _host(scope)
            if loopback_only and host is not None and not loopback_host_header(host):
                await _refuse(
                    send,
                    421,
                    "this dashboard answers only to 127.0.0.1, localhost or [::1]",
                )
                return
            if scope["method"] not in READ_METHODS:
                await _refuse(
                    send, 405, "the moonshot dashboard is read-only", [(b"allow", b"GET, HEAD")]
                )
                return
            await _until_disconnect(app, scope, receive, send)

        return guard

    return wrap


async def _until_disconnect(app, scope, receive, send) -> None:
    """Run the request; cancel it when the client hangs up before the response is
    complete (uvicorn does not: the query would run on for nobody)."""
    inbox: asyncio.Queue = asyncio.Queue()
    complete = asyncio.Event()

    async def sent(message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            complete.set()  # before: uvicorn answers receive() with a disconnect once it is sent
        await send(message)

    task = asyncio.ensure_future(app(scope, inbox.get, sent))

    async def listen() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not complete.is_set():
                    task.cancel()
                await inbox.put(message)
                return
            await inbox.put(message)

    listener = asyncio.ensure_future(listen())
    try:
        await task
    except asyncio.CancelledError:
        if not listener.done():  # cancelled from outside (shutdown), not by a hang-up
            raise
    finally:
        listener.cancel()


@hookimpl
def handle_exception(datasette, request, exception):
    """datasette's answer to an error (its JSON or its error page), with one line in the
    terminal for a server error instead of its tracebacks with locals (see
    DATASETTE_HANDLER). datasette 0.65 raises DatasetteError with its default status 500
    only for a request it refuses (_sort=no_such_column, a bad _through): a 400, as is a
    value or statement over the bounds of connect_ro (sqlite3.DataError)."""

    async def inner():
        title, info = None, {}
        if isinstance(exception, Base400):
            status, message = exception.status, exception.args[0]
        elif isinstance(exception, sqlite3.DataError):  # SQLITE_TOOBIG: a bound of connect_ro
            status = 400
            message = (
                f"{exception}: the dashboard reads values of up to {MAX_VALUE_BYTES:,} bytes"
                f" and statements of up to {MAX_SQL_BYTES:,}; read this one with sqlite3"
            )
        elif isinstance(exception, DatasetteError):
            status = 400 if exception.status == 500 else exception.status
            info, message, title = dict(exception.error_dict), exception.message, exception.title
            if exception.message_is_html:
                message = Markup(message)
        else:
            status, message = 500, str(exception)
            log.error("500 for %s: %s: %s", request.path, type(exception).__name__, exception)
        info.update({"ok": False, "error": message, "status": status, "title": title})
        if request.path.endswith(".json"):
            return Response.json(info, status=status)
        template = datasette.jinja_env.select_template([f"{status}.html", "error.html"])
        context = dict(
            info,
            urls=datasette.urls,
            app_css_hash=datasette.app_css_hash(),
            menu_links=lambda: [],
        )
        return Response.html(await template.render_async(context), status=status)

    return inner


@hookimpl
def register_routes(datasette):
    """logs/screens at /screens/NAME (the name URL-quoted), one file at a time, checked
    by Screens at each request; anything refused is a plain 404."""

    async def screenshot(request):
        name = unquote(request.url_vars["name"])
        try:
            body = await asyncio.to_thread(_screens(datasette).read, name)
        except Refused:
            return Response.text("404: no such screenshot", status=404)
        return Response(
            body,
            content_type="image/png",
            headers={"x-content-type-options": "nosniff", "cache-control": "no-store"},
        )

    return [(rf"^/{SCREENS}/(?P<name>[^/]+)$", screenshot)]


def _config(datasette: Datasette) -> dict[str, Any]:
    return datasette.plugin_config(PLUGIN_NAME) or {}


def _screens(datasette: Datasette) -> Screens:
    return Screens(Path(_config(datasette)["home_real"]))


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
    """The coin's newest screenshots that the /screens/ route serves (no other file)."""
    shots = _screens(datasette).names(coin_id)
    if not shots:
        return Markup("<em>none saved</em>")
    links = []
    for shot in shots[-SHOTS_SHOWN:]:
        url = escape(datasette.urls.path(f"/{SCREENS}/{quote(shot, safe='')}"))
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
