"""The Source contract, for every adapter that runs without an account."""

from __future__ import annotations

import pytest

from moonshot.ports import Source

pytest_plugins = ["tests.supabase.plugin"]


def local(request, tmp_path):
    from moonshot.supabase.source_local import LocalSource

    return LocalSource()


def supabase(request, tmp_path):
    from moonshot.supabase.source_supabase import SupabaseSource

    standin = request.getfixturevalue("standin")  # PostgREST stand-in over PostgreSQL
    return SupabaseSource(standin.url, standin.key, worker="contract")


@pytest.fixture(
    params=[
        pytest.param(local, id="local"),
        pytest.param(supabase, id="supabase", marks=pytest.mark.postgres),
    ]
)
def source(request, tmp_path):
    made = request.param(request, tmp_path)
    yield made
    made.close()


def test_is_a_source(source):
    assert isinstance(source, Source)


def test_poll_report_keepalive_close(source):
    assert isinstance(source.poll(0.0, 10), list)
    source.report("ref", "launched", {"token_address": None})
    source.keepalive([], 0.0)
    source.close()
