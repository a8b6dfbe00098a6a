"""A smoke test against a real Supabase project, run only when SUPABASE_URL and
SUPABASE_SERVICE_ROLE_KEY are set (skipped otherwise, in CI too: CI has no account).
Read-only on purpose: it never claims or writes a coin of a live project."""

from __future__ import annotations

import os

import pytest

from moonshot.supabase.source_supabase import (
    COIN_SELECT,
    MIGRATION_COLUMNS,
    SCHEMA_VERSION,
    SupabaseSource,
    worker_id,
)

pytestmark = pytest.mark.skipif(
    not (os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_SERVICE_ROLE_KEY")),
    reason="live Supabase test: set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to run it",
)


@pytest.fixture
def live(tmp_path):
    src = SupabaseSource(
        os.environ["SUPABASE_URL"],
        os.environ["SUPABASE_SERVICE_ROLE_KEY"],
        worker=worker_id(tmp_path),
        db_url=os.environ.get("SUPABASE_DB_URL"),
    )
    yield src
    src.close()


def test_doctor_checks_pass(live):
    checks = {c.name: c for c in live.checks()}
    failed = {n: c.message for n, c in checks.items() if c.status == "fail"}
    assert not failed
    assert checks["supabase migration"].message == f"schema version {SCHEMA_VERSION}"


def test_pending_query_and_columns_answer(live):
    reply = (
        live.client.table("coins")
        .select(COIN_SELECT + "," + ",".join(MIGRATION_COLUMNS))
        .eq("image_synced", "false")
        .is_("launch_state", "null")
        .order("created_at")
        .limit(5)
        .execute()
    )
    assert isinstance(reply.data, list) and len(reply.data) <= 5
    assert live.claims() == []  # a fresh worker id holds nothing
    assert os.environ["SUPABASE_SERVICE_ROLE_KEY"] not in repr(live)
