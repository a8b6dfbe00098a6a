"""The state database: the audit contract of design.md, durability settings,
append-only audit, stale-state protection, migrations, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest

from moonshot import machine as m
from moonshot.errors import MoonshotError, StaleState
from moonshot.ports import IncomingCoin
from moonshot.store import SCHEMA_VERSION, Store

DESIGN_COIN_COLUMNS = {
    "state",
    "ticker",
    "name",
    "twitter_user",
    "tweet_id",
    "image_url",
    "image_filename",
    "attempts",
    "last_error",
    "photos_asset_id",
    "token_address",
    "created_at",
    "updated_at",
}
DESIGN_TRANSITION_COLUMNS = {"coin_id", "from_state", "to_state", "trigger", "at", "detail"}


def coin(store, ref="r1", source="local"):
    cid, _ = store.add_coin(
        IncomingCoin(source, ref, "MOON", "Moon", "http://x/a.jpg", "bob"), twitter_user="bob"
    )
    return store.get(cid)


def test_tables_have_the_design_columns(tmp_path):
    store = Store(tmp_path / "m.db")
    assert set(store.db["coins"].columns_dict) >= DESIGN_COIN_COLUMNS
    assert set(store.db["transitions"].columns_dict) >= DESIGN_TRANSITION_COLUMNS
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_durability_settings(tmp_path):
    store = Store(tmp_path / "m.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_transition_and_audit_row_commit_together(tmp_path):
    store = Store(tmp_path / "m.db")
    c = coin(store)
    assert store.fire(c, "spool", detail={"file": "f.jpg"}, image_filename="f.jpg") == m.SPOOLED
    other = sqlite3.connect(tmp_path / "m.db")  # another connection sees both at once
    assert other.execute("SELECT state, image_filename FROM coins").fetchone() == (
        "spooled",
        "f.jpg",
    )
    rows = other.execute(
        "SELECT from_state, to_state, trigger FROM transitions ORDER BY id"
    ).fetchall()
    assert rows == [(None, "fetched", "add"), ("fetched", "spooled", "spool")]


def test_a_long_reason_is_cut_where_every_reader_can_show_it(tmp_path):
    """A server's whole error page in an exception: last_error and the audit's reason are
    cut to MAX_REASON (the dashboard refuses a value over 10,000 bytes, status would print
    pages), marked with an ellipsis; a short reason is kept whole."""
    from moonshot import store as store_mod

    store = Store(tmp_path / "m.db")
    c = coin(store)
    page = "<html>" + "x" * 50_000
    store.fire(c, "spool", detail={"file": "f.jpg"}, image_filename="f.jpg")
    c = store.get(c.id)
    store.fire(c, "fail", detail={"reason": page}, last_error=page)
    row = store.get(c.id)
    assert len(row.last_error) == store_mod.MAX_REASON and row.last_error.endswith("\u2026")
    assert row.last_error.startswith("<html>xxx")
    (detail,) = (
        sqlite3.connect(tmp_path / "m.db")
        .execute("SELECT detail FROM transitions WHERE trigger = 'fail'")
        .fetchone()
    )
    assert len(json.loads(detail)["reason"]) == store_mod.MAX_REASON
    store.set_fields(c.id, last_error=page)
    assert len(store.get(c.id).last_error) == store_mod.MAX_REASON
    store.set_fields(c.id, last_error="short")
    assert store.get(c.id).last_error == "short"


def test_audit_is_append_only(tmp_path):
    store = Store(tmp_path / "m.db")
    coin(store)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("UPDATE transitions SET trigger = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("DELETE FROM transitions")


def test_stale_state_is_refused(tmp_path):
    store = Store(tmp_path / "m.db")
    c = coin(store)
    store.fire(c, "spool")
    with pytest.raises(StaleState):
        store.fire(c, "spool")  # `c` is the old snapshot: still says fetched
    assert [h["trigger"] for h in store.history(c.id)] == ["add", "spool"]


def test_disallowed_transition_changes_nothing(tmp_path):
    store = Store(tmp_path / "m.db")
    c = coin(store)
    with pytest.raises(StaleState):
        store.fire(c, "finish_launch")
    assert store.get(c.id).state == m.FETCHED and len(store.history(c.id)) == 1


def test_same_source_ref_is_one_coin(tmp_path):
    store = Store(tmp_path / "m.db")
    a, b = coin(store, "same"), coin(store, "same")
    assert a.id == b.id and store.counts()[m.FETCHED] == 1


def test_remote_coins_fill_the_outbox_in_order(tmp_path):
    store = Store(tmp_path / "m.db")
    c = coin(store, source="supabase")
    store.fire(c, "spool", image_filename="bob_MOON_1.jpg")
    due = store.outbox_due(now=1e12)
    assert [e["event"] for e in due] == ["fetched"]  # one entry per coin, oldest first
    store.outbox_done(due[0]["id"])
    (nxt,) = store.outbox_due(now=1e12)
    assert nxt["event"] == "spooled" and nxt["fields"]["image_filename"] == "bob_MOON_1.jpg"
    local = coin(store, ref="loc")
    store.fire(local, "spool")
    assert all(e["coin_id"] != local.id for e in store.outbox_due(now=1e12))


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "m.db"
    Store(path).db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(MoonshotError, match="newer than this moonshot"):
        Store(path)


def _writer(path, ref_prefix, n):
    store = Store(path)
    for i in range(n):
        c = store.get(
            store.add_coin(
                IncomingCoin("local", f"{ref_prefix}{i}", "W", "W", "u", "u"), twitter_user="u"
            )[0]
        )
        store.fire(c, "attempt", attempts=1)
        store.fire(store.get(c.id), "spool")


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "m.db"
    Store(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 60)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(path)
    assert store.counts()[m.SPOOLED] == 120
    assert store.db.execute("SELECT count(*) FROM transitions").fetchone()[0] == 360
    assert store.integrity_ok()
