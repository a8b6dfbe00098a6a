"""The Supabase migration against the real PostgreSQL: idempotent on top of the bot's
table (and of the plan's own ALTERs), the columns, the pending index, the claim,
renew and release functions, the NOTIFY trigger, the grants; one source of truth."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from tests.supabase.standin import BASE_COINS_SQL, MIGRATION, apply_migration, insert_coin

pytest_plugins = ["tests.supabase.plugin"]
pytestmark = pytest.mark.postgres

PACKAGED = (
    Path(__file__).resolve().parents[2] / "moonshot" / "supabase" / "sql" / "moonshot_sync.sql"
)
# The phase 3 plan's ALTERs, as a project that followed the plan has already run them.
PLAN_SQL = """
ALTER TABLE coins ADD COLUMN image_url VARCHAR(500);
ALTER TABLE coins ADD COLUMN image_filename VARCHAR(255);
ALTER TABLE coins ADD COLUMN image_synced BOOLEAN DEFAULT FALSE;
ALTER TABLE coins ADD COLUMN image_sync_timestamp TIMESTAMP WITH TIME ZONE;
ALTER TABLE coins ADD COLUMN twitter_user VARCHAR(50);
ALTER TABLE coins ADD COLUMN tweet_id VARCHAR(50);
"""
EXPECTED = {
    "image_url": "character varying",
    "image_filename": "character varying",
    "image_synced": "boolean",
    "image_sync_timestamp": "timestamp with time zone",
    "twitter_user": "character varying",
    "tweet_id": "character varying",
    "claimed_by": "text",
    "claim_expires_at": "timestamp with time zone",
    "sync_state": "text",
    "launch_state": "text",
    "launched_at": "timestamp with time zone",
    "token_address": "text",
    "last_error": "text",
}


@pytest.fixture
def base_db(pg_database: str) -> str:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(BASE_COINS_SQL)
    return pg_database


def _columns(dsn: str) -> dict[str, tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'coins'"
        ).fetchall()
    return {name: (kind, nullable) for name, kind, nullable in rows}


def test_packaged_copy_is_the_migration():
    assert PACKAGED.read_bytes() == MIGRATION.read_bytes(), (
        "moonshot/supabase/sql/moonshot_sync.sql differs from supabase/migrations/: copy the migration over it"
    )


def test_cli_prints_the_migration():
    from moonshot.cli import cli

    result = CliRunner().invoke(cli, ["supabase", "sql"])
    assert result.exit_code == 0, result.output
    assert result.output == MIGRATION.read_text(encoding="utf-8")


def test_applies_twice_and_adds_columns_and_index(base_db):
    insert_coin_sql = "INSERT INTO coins (ticker, name) VALUES ('OLD', 'Old coin')"
    with psycopg.connect(base_db, autocommit=True) as conn:
        conn.execute(insert_coin_sql)
    apply_migration(base_db)
    apply_migration(base_db)
    cols = _columns(base_db)
    for name, kind in EXPECTED.items():
        assert cols.get(name, (None,))[0] == kind, f"{name}: {cols.get(name)}"
    assert cols["image_synced"][1] == "NO"
    with psycopg.connect(base_db) as conn:
        (indexdef,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'coins'"
            " AND indexname = 'coins_moonshot_pending_idx'"
        ).fetchone()
        assert "(created_at, id)" in indexdef
        assert "image_synced = false" in indexdef and "launch_state IS NULL" in indexdef
        old = conn.execute("SELECT image_synced FROM coins WHERE ticker = 'OLD'").fetchone()
        assert old == (False,)
        fns = {
            r[0]
            for r in conn.execute(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'moonshot\\_%'"
            ).fetchall()
        }
        assert {"moonshot_claim", "moonshot_renew", "moonshot_release"} <= fns
        (triggers,) = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'coins_moonshot_notify'"
        ).fetchone()
        assert triggers == 1


def test_applies_over_the_plans_nullable_columns(base_db):
    with psycopg.connect(base_db, autocommit=True) as conn:
        conn.execute(PLAN_SQL)
        conn.execute("INSERT INTO coins (ticker, name, image_synced) VALUES ('N', 'Null', NULL)")
    apply_migration(base_db)
    apply_migration(base_db)
    with psycopg.connect(base_db) as conn:
        assert conn.execute("SELECT image_synced FROM coins").fetchone() == (False,)
    assert _columns(base_db)["image_synced"] == ("boolean", "NO")


def _claim(dsn, worker, limit=20, lease=600):
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM moonshot_claim(%s, %s, %s)", (worker, limit, lease)
        ).fetchall()
    return sorted(r[0] for r in rows)


def test_claim_takes_only_pending_coins_oldest_first(coins_db):
    ready = insert_coin(coins_db, "READY", created_at="2020-01-02T00:00:00Z")
    older = insert_coin(coins_db, "OLDER", created_at="2020-01-01T00:00:00Z")
    insert_coin(coins_db, "NOIMG", image_url=None)
    insert_coin(coins_db, "SYNCED", image_synced=True)
    insert_coin(coins_db, "DONE", launch_state="launched")
    insert_coin(coins_db, "HELD", claimed_by="other", claim_expires_at="2999-01-01T00:00:00Z")
    expired = insert_coin(
        coins_db, "EXPIRED", claimed_by="other", claim_expires_at="2000-01-01T00:00:00Z"
    )
    with psycopg.connect(coins_db, autocommit=True) as conn:
        first = conn.execute("SELECT id FROM moonshot_claim('me', 1, 600)").fetchall()
    assert first == [(older,)]
    assert _claim(coins_db, "me") == sorted([ready, expired])
    assert _claim(coins_db, "me") == []


def test_ten_concurrent_claims_one_winner(coins_db):
    coin = insert_coin(coins_db, "ONE")
    barrier = threading.Barrier(10)
    won: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        with psycopg.connect(coins_db, autocommit=True) as conn:
            barrier.wait()
            won[name] = [
                r[0] for r in conn.execute("SELECT id FROM moonshot_claim(%s, 5, 600)", (name,))
            ]

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [name for name, ids in won.items() if ids]
    assert len(won) == 10 and len(winners) == 1 and won[winners[0]] == [coin]


def test_renew_and_release_touch_only_own_claims(coins_db):
    mine = insert_coin(coins_db, "MINE")
    theirs = insert_coin(coins_db, "THEIRS")
    synced = insert_coin(coins_db, "SYNCED")
    assert _claim(coins_db, "me", limit=1) == [mine]
    assert _claim(coins_db, "them", limit=1) == [theirs]
    assert _claim(coins_db, "me", limit=1) == [synced]
    with psycopg.connect(coins_db, autocommit=True) as conn:
        conn.execute("UPDATE coins SET image_synced = true WHERE id = %s", (synced,))
        ids = [str(mine), str(theirs), str(synced)]
        renewed = conn.execute("SELECT moonshot_renew('me', %s, 60)", (ids,)).fetchone()[0]
        assert sorted(renewed) == sorted([str(mine), str(synced)])
        released = conn.execute("SELECT moonshot_release('me', %s)", (ids,)).fetchone()[0]
        assert released == [str(mine)]
        rows = dict(conn.execute("SELECT id, claimed_by FROM coins").fetchall())
    assert rows == {mine: None, theirs: "them", synced: "me"}


def test_insert_notifies_listeners(coins_db):
    with psycopg.connect(coins_db, autocommit=True) as listener:
        listener.execute("LISTEN moonshot_coins")
        coin = insert_coin(coins_db, "PING")
        insert_coin(coins_db, "NOIMG", image_url=None)
        got = [n.payload for n in listener.notifies(timeout=2.0, stop_after=1)]
        more = [n.payload for n in listener.notifies(timeout=0.3)]
    assert got == [str(coin)] and more == []


def test_only_service_role_may_claim(base_db):
    with psycopg.connect(base_db, autocommit=True) as conn:
        for role in ("anon", "authenticated", "service_role"):
            conn.execute(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}')"
                f" THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
            )
    apply_migration(base_db)
    with psycopg.connect(base_db) as conn:
        fn = "public.moonshot_claim(text, integer, integer)"
        can = {
            role: conn.execute(
                "SELECT has_function_privilege(%s, %s, 'execute')", (role, fn)
            ).fetchone()[0]
            for role in ("anon", "authenticated", "service_role")
        }
    assert can == {"anon": False, "authenticated": False, "service_role": True}
