"""The dashboard's pieces in-process: the shipped metadata describes every table and
column of the real schema and refuses write queries; a missing datasette, database or
port is one line; and the read-only database (datasette's own client) refuses every
write, a write canned query from a plugin included, while it sees the service's commits,
holds no lock the service needs and lets the WAL checkpoint."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sqlite3
import sys
import time

import pytest
from click.testing import CliRunner
from datasette import hookimpl  # the [dashboard] extra, part of [test]
from datasette.plugins import pm

from moonshot.cli import cli
from moonshot.ops import dashboard as dash
from moonshot.ports import IncomingCoin
from moonshot.store import Store

QUERIES = (
    "needs_review",
    "failed",
    "waiting",
    "launches_per_day",
    "launches_per_hour",
    "stage_latency",
    "refused_tweets",
    "coin_history",
)


def add(store: Store, ticker: str, now: float | None = None) -> int:
    coin_id, _ = store.add_coin(
        IncomingCoin("local", f"t:{ticker}", ticker, f"Coin {ticker}", "/x.png", "alice"),
        twitter_user="alice",
        now=now,
    )
    return coin_id


def schema(db_path) -> dict[str, list[str]]:
    db = sqlite3.connect(db_path)
    try:
        tables = [
            r[0]
            for r in db.execute(
                "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'"
            )
        ]
        return {t: [r[1] for r in db.execute(f"pragma table_info({t})")] for t in tables}
    finally:
        db.close()


def test_every_table_and_column_of_the_real_schema_is_described(store):
    tables = dash.metadata()["databases"][dash.DATABASE]["tables"]
    real = schema(store.path)
    assert {"coins", "transitions", "decisions", "outbox"} <= set(real)
    for table, columns in real.items():
        assert table in tables, f"table {table} has no description in dashboard.yaml"
        assert tables[table].get("description"), table
        described = tables[table].get("columns") or {}
        missing = [c for c in columns if not (described.get(c) or "").strip()]
        assert not missing, f"{table}: columns without a description: {missing}"
        stale = set(described) - set(columns)
        assert not stale, f"{table}: dashboard.yaml describes columns that do not exist: {stale}"
        for facet in tables[table].get("facets", []):
            assert facet in columns, (table, facet)
        for column in tables[table].get("units", {}):
            assert column in columns, (table, column)


def test_the_canned_queries_are_there_described_and_read_only():
    meta = dash.metadata()
    queries = meta["databases"][dash.DATABASE]["queries"]
    assert set(QUERIES) <= set(queries)
    for name, q in queries.items():
        assert q.get("description"), name
        assert not q.get("write"), name
        assert q["sql"].lstrip().lower().startswith(("select", "with")), name
    charts = meta["plugins"]["datasette-dashboards"]["moonshot"]["charts"]
    # The plots draw the canned queries themselves (YAML anchors), not copies.
    assert charts["launches_per_hour"]["query"] == queries["launches_per_hour"]["sql"]
    assert charts["stage_latency"]["query"] == queries["stage_latency"]["sql"]
    facets = meta["databases"][dash.DATABASE]["tables"]["coins"]["facets"]
    assert {"state", "source", "twitter_user"} <= set(facets)


def test_a_write_canned_query_in_the_metadata_is_refused():
    meta = {
        "databases": {"moonshot": {"queries": {"fix": {"sql": "delete from coins", "write": True}}}}
    }
    with pytest.raises(dash.DashboardError, match="fix has write: true"):
        dash.checked(meta)


def run(ctx_home, *args, **kw):
    return CliRunner().invoke(cli, ["--home", str(ctx_home), "dashboard", *args], **kw)


def test_without_datasette_the_command_names_the_install_line(home, store, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasette", None)  # import datasette -> ImportError
    result = run(home)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: the dashboard needs datasette (datasette is not installed): {dash.INSTALL}"
    ]


def test_a_home_without_a_database_is_one_line_and_stays_empty(home):
    result = run(home)
    assert result.exit_code == 1
    assert "no moonshot.db in" in result.output and "never does" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(home.iterdir()) == []  # no moonshot.db, spool/ or logs/ made


def test_a_database_that_is_not_one_is_one_line(home):
    (home / "moonshot.db").write_bytes(b"this is not SQLite, " * 400)
    before = (home / "moonshot.db").read_bytes()
    result = run(home)
    assert result.exit_code == 1
    assert "cannot be read as a SQLite database" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (home / "moonshot.db").read_bytes() == before


def test_a_taken_port_is_one_line(home, store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run(home, "--port", str(port))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; pick another --port"
    )


def test_a_host_off_loopback_says_there_is_no_authentication(home, store, monkeypatch):
    served = []
    monkeypatch.setattr(dash, "bind", lambda host, port: None)
    monkeypatch.setattr(dash, "serve", lambda site, sock: served.append(site.url))
    off = run(home, "--host", "192.0.2.7", "--port", "8123")
    assert off.exit_code == 0, off.output
    assert "no authentication" in off.output
    assert served == ["http://192.0.2.7:8123/"]
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        on = run(home, "--host", host)
        assert on.exit_code == 0 and "authentication" not in on.output, (host, on.output)
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert run(home, "--open", "--port", "8124").exit_code == 0
    assert opened == ["http://127.0.0.1:8124/"]
    assert served[1:] == [
        "http://127.0.0.1:8001/",
        "http://localhost:8001/",
        "http://[::1]:8001/",
        "http://127.0.0.2:8001/",
        "http://127.0.0.1:8124/",
    ]


def test_is_loopback():
    assert dash.is_loopback("127.0.0.1") and dash.is_loopback("::1")
    assert dash.is_loopback("localhost") and dash.is_loopback("127.9.9.9")
    assert not dash.is_loopback("0.0.0.0") and not dash.is_loopback("192.168.1.2")
    assert not dash.is_loopback("::") and not dash.is_loopback("example.com")


# -- the read-only database, through datasette's own client ---------------------------


class WritingPlugin:
    """What an installed plugin could do: add a write canned query."""

    __name__ = "WritingPlugin"

    @hookimpl
    def canned_queries(self, datasette, database):
        return {"break_it": {"sql": "update coins set state = 'launched'", "write": True}}


@pytest.fixture
def site(cfg, store):
    pm.register(WritingPlugin(), name="writing-plugin")
    try:
        yield dash.build(cfg, "127.0.0.1", 8001)
    finally:
        pm.unregister(name="writing-plugin")


def test_every_write_is_refused_by_the_server_and_by_sqlite(site, cfg, store):
    coin = add(store, "SAFE")
    store.close()
    before = cfg.db_path.read_bytes()
    ds = site.datasette

    async def go():
        post = await ds.client.post("/moonshot/break_it", data={"x": "1"})
        post_sql = await ds.client.post("/moonshot", data={"sql": "delete from coins"})
        get_sql = await ds.client.get("/moonshot.json?sql=delete+from+coins")
        db = ds.get_database("moonshot")
        with pytest.raises(Exception, match="readonly"):
            await db.execute_write("update coins set state = 'launched'")
        with pytest.raises(Exception, match="readonly|query_only"):
            await db.execute_write_fn(lambda conn: conn.execute("delete from transitions"))
        rows = (await db.execute("select id, state from coins")).rows
        return post, post_sql, get_sql, [tuple(r) for r in rows]

    post, post_sql, get_sql, rows = asyncio.run(go())
    assert post.status_code == 405 and post_sql.status_code == 405
    assert "read-only" in post.json()["error"]
    assert get_sql.status_code == 400 and "SELECT" in get_sql.json()["error"]
    assert rows == [(coin, "fetched")]
    assert cfg.db_path.read_bytes() == before


def test_the_service_commits_show_up_and_are_never_blocked(site, cfg, store):
    """mode=ro, not immutable: a row committed after the dashboard started is seen; a
    dashboard read in the middle of a statement blocks no write (WAL), and once it is
    done the service's checkpoint empties the WAL."""
    add(store, "ONE")
    ds = site.datasette
    db = ds.get_database("moonshot")

    def tickers():
        async def go():
            return [r[0] for r in (await db.execute("select ticker from coins order by id")).rows]

        return asyncio.run(go())

    assert tickers() == ["ONE"]
    add(store, "TWO")  # committed by the service after the dashboard started
    assert tickers() == ["ONE", "TWO"]

    # A dashboard connection with a statement half read: a read transaction is open.
    reader = db.connect()
    cursor = reader.execute("select ticker from coins")
    assert cursor.fetchone() == ("ONE",)
    writer = sqlite3.connect(cfg.db_path, timeout=0)  # SQLITE_BUSY at once on any lock
    writer.execute("begin immediate")
    writer.execute("update coins set name = 'changed' where ticker = 'ONE'")
    writer.execute("commit")
    # While that snapshot is open the WAL cannot be reset ...
    assert writer.execute("pragma wal_checkpoint(truncate)").fetchone()[0] == 1
    cursor.fetchall()  # ... the statement ends, the read transaction with it
    assert writer.execute("pragma wal_checkpoint(truncate)").fetchone() == (0, 0, 0)
    assert cfg.db_path.with_name("moonshot.db-wal").stat().st_size == 0
    assert reader.execute("select name from coins where ticker = 'ONE'").fetchone() == ("changed",)
    writer.close()


def test_other_datasette_plugins_are_switched_off(cfg, store):
    from moonshot.ops import dashboard_plugin

    skipped = dashboard_plugin.keep_only(frozenset())  # nothing allowed
    try:
        names = {getattr(p, "__name__", "") for p in pm.get_plugins()}
        assert "datasette_dashboards" not in names
        assert "moonshot.ops.dashboard_plugin" in names
        assert "datasette-dashboards" in {s.lower() for s in skipped}
    finally:
        pm.load_setuptools_entrypoints("datasette")  # put them back for the other tests


def test_stage_latency_counts_the_moves_of_the_last_7_days(site, store):
    """A move of today counts from the coin's previous state change, however old; a move
    of 8 days ago does not count."""
    old = time.time() - 8 * 86400
    stale = add(store, "OLD", now=old)
    store.commit_transition(stale, "fetched", "spooled", "spool", {}, {}, now=old + 10)
    slow = add(store, "SLOW", now=old)
    store.commit_transition(slow, "fetched", "spooled", "spool", {}, {})

    async def go():
        return (
            await site.datasette.client.get("/moonshot/stage_latency.json?_shape=objects")
        ).json()

    (row,) = asyncio.run(go())["rows"]
    assert (row["stage"], row["moves"]) == ("fetched -> spooled", 1)
    assert row["p50_s"] == row["p95_s"] == pytest.approx(8 * 86400, abs=60)


def test_a_home_with_spaces_and_uri_characters(tmp_path):
    """The file URI is quoted, and the commands shown quote the home for a shell."""
    from moonshot import config as config_mod

    home = tmp_path / "my home #1?mode=rw&x=%41"
    home.mkdir()
    store = Store(home / "moonshot.db")
    coin = add(store, "ODD")
    store.fire(store.get(coin), "attempt", attempts=1)
    store.close()
    site = dash.build(config_mod.load(home))

    async def go():
        return (await site.datasette.client.get("/moonshot/waiting.json?_shape=objects")).json()

    waiting = asyncio.run(go())["rows"]
    assert [r["ticker"] for r in waiting] == ["ODD"]
    assert dash.shell_home(home) == shlex.quote(str(home)) and "'" in dash.shell_home(home)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        site.datasette.get_database("moonshot").connect(write=True).execute("delete from meta")
