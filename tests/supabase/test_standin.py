"""The stand-in answers as PostgREST v12 and Supabase Storage do, through supabase-py
itself, so tests built on it (issues 3 and 8) exercise the real client's requests:
insert and upsert, filters, order, ranges and the 1000-row cap, the error bodies."""

from __future__ import annotations

import httpx
import pytest
from postgrest import APIError

from tests.supabase.standin import Standin

pytest_plugins = ["tests.supabase.plugin"]
pytestmark = pytest.mark.postgres


def connect(standin: Standin, key: str):
    from supabase import ClientOptions, create_client

    options = ClientOptions(httpx_client=httpx.Client(timeout=10), postgrest_client_retry=False)
    return create_client(standin.url, key, options=options)


@pytest.fixture
def client(standin: Standin):
    made = connect(standin, standin.key)
    yield made
    made.options.httpx_client.close()


def test_insert_upsert_select(client):
    rows = client.table("coins").insert([{"ticker": "A", "name": "a", "tweet_id": "1"}]).execute()
    assert rows.data[0]["id"] > 0 and rows.data[0]["image_synced"] is False
    coin_id = rows.data[0]["id"]
    client.table("coins").upsert({"id": coin_id, "ticker": "A", "name": "renamed"}).execute()
    got = client.table("coins").select("id,name").eq("id", coin_id).execute()
    assert got.data == [{"id": coin_id, "name": "renamed"}]
    kept = (
        client.table("coins")
        .upsert({"id": coin_id, "ticker": "A", "name": "again"}, ignore_duplicates=True)
        .execute()
    )
    assert kept.data == []


def test_filters_order_range_count_and_the_row_cap(client):
    client.table("coins").insert(
        [{"ticker": f"T{i}", "name": f"n{i}", "tweet_id": str(i)} for i in range(1005)]
    ).execute()
    page = (
        client.table("coins")
        .select("ticker", count="exact")
        .gte("id", 3)
        .lt("id", 8)
        .neq("ticker", "T4")
        .order("id", desc=True)
        .range(0, 1)
        .execute()
    )
    assert [r["ticker"] for r in page.data] == ["T6", "T5"] and page.count == 4
    assert len(client.table("coins").select("id").execute().data) == 1000
    picked = client.table("coins").select("ticker").in_("tweet_id", ["2", "9"]).execute()
    assert sorted(r["ticker"] for r in picked.data) == ["T2", "T9"]
    assert client.table("coins").select("id").is_("image_url", "null").limit(3).execute().data


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.table("nope").select("*").execute(), "42P01"),
        (lambda c: c.table("coins").select("nope").execute(), "42703"),
        (lambda c: c.table("coins").update({"nope": 1}).eq("id", 1).execute(), "PGRST204"),
        (lambda c: c.table("coins").select("*").eq("id", "abc").execute(), "22P02"),
        (lambda c: c.rpc("nope", {"a": 1}).execute(), "PGRST202"),
        (lambda c: c.table("coins").insert({"name": "no ticker"}).execute(), "23502"),
    ],
    ids=["42P01", "42703", "PGRST204", "22P02", "PGRST202", "23502"],
)
def test_error_bodies_carry_postgrest_codes(client, call, code):
    with pytest.raises(APIError) as info:
        call(client)
    assert info.value.code == code and info.value.message


def test_a_wrong_key_is_a_401(standin):
    bad = connect(standin, "nope")
    with pytest.raises(APIError, match="Invalid API key"):
        bad.table("coins").select("*").execute()
