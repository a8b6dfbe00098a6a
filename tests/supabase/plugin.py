"""Reusable pytest fixtures for anything that talks to Supabase: a throwaway database on
the local PostgreSQL with the bot's `coins` table and the moonshot migration, and the
PostgREST/Storage stand-in in front of it. Load with
`pytest_plugins = ["tests.supabase.plugin"]`; helpers live in tests/supabase/standin.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import missing_service
from tests.supabase.standin import BASE_COINS_SQL, PG_ADMIN_DSN, Standin, apply_migration


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test session; dropped at the end."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means no server here
        missing_service(f"PostgreSQL not reachable at {PG_ADMIN_DSN!r}: {str(exc).splitlines()[0]}")
    name = f"moonshot_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = dict(p.split("=", 1) for p in PG_ADMIN_DSN.split())
    base["dbname"] = name
    try:
        yield " ".join(f"{k}={v}" for k, v in base.items())
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def coins_db(pg_database: str) -> str:
    """The bot's `coins` table, empty, with the moonshot migration applied; its DSN."""
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(BASE_COINS_SQL)
    apply_migration(pg_database)
    return pg_database


@pytest.fixture(scope="session")
def _standin_server(pg_database: str) -> Iterator[Standin]:
    server = Standin(pg_database).start()
    yield server
    server.stop()


@pytest.fixture
def standin(_standin_server: Standin, coins_db: str) -> Iterator[Standin]:
    """The running stand-in over a fresh `coins` table; faults, log and storage reset."""
    _standin_server.reset()
    yield _standin_server
    _standin_server.reset()
