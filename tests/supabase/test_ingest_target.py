"""`moonshot ingest` into Supabase, against the PostgREST/Storage stand-in and the real
PostgreSQL behind it: image uploaded under the canonical name, one row per tweet, a
crash between upload and insert leaves no orphan row and no second coin on retry."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image

from moonshot.cli import cli
from moonshot.store import Store
from moonshot.supabase.ingest_target import sql_text
from moonshot.twitter.ingest import INGEST_CRASH_POINTS
from tests.supabase.standin import fetch_coins
from tests.twitter.helpers import ImageServer, jpeg

pytest_plugins = ["tests.supabase.plugin"]
pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tweets"
BUCKET = "coin-images"
COLOR = (20, 180, 90)
TWEET_ID = "1858401234567890001"
CANONICAL = "alice_trades_MOON_1731918600.jpg"  # user, ticker, the tweet's created_at


@pytest.fixture
def sb(standin, tmp_path):
    """The stand-in with the ingest SQL applied and a public bucket; an image server;
    a home whose source is Supabase; the env a real run would have."""
    with psycopg.connect(standin.dsn, autocommit=True) as conn:
        conn.execute(sql_text())
    with standin.lock:
        standin.buckets[BUCKET] = {"id": BUCKET, "name": BUCKET, "public": True}
    with ImageServer({"/media/moon.jpg": jpeg(COLOR, (80, 60))}) as images:
        data = json.loads((FIXTURES / "photo.json").read_text("utf-8"))
        data["includes"]["media"][0]["url"] = f"{images.base}/media/moon.jpg"
        tweet = tmp_path / "tweet.json"
        tweet.write_text(json.dumps(data))
        home = tmp_path / "home"
        home.mkdir()
        env = {
            "SUPABASE_URL": standin.url,
            "SUPABASE_SERVICE_ROLE_KEY": standin.key,
            "MOONSHOT_SOURCE_KIND": "supabase",
            "MOONSHOT_INGEST_IMAGE_HOSTS": "127.0.0.1",
        }
        yield standin, images, home, tweet, env


def ingest(home, tweet, env, *extra):
    return CliRunner().invoke(
        cli, ["--home", str(home), "ingest", str(tweet), "--json", *extra], env=env
    )


def objects(standin):
    with standin.lock:
        return {k: v for k, v in standin.objects.items() if k[0] == BUCKET}


def test_ingest_uploads_then_inserts_one_coin_and_again_changes_nothing(sb):
    standin, images, home, tweet, env = sb
    r = ingest(home, tweet, env)
    assert r.exit_code == 0, r.output
    (out,) = json.loads(r.output)
    (row,) = fetch_coins(standin.dsn)
    assert out["status"] == "accepted" and out["coin_ref"] == f"supabase coin {row['id']}"
    assert (row["ticker"], row["name"], row["twitter_user"], row["tweet_id"]) == (
        "MOON",
        "Moon Cat",
        "alice_trades",
        TWEET_ID,
    )
    assert row["image_url"] == f"{standin.url}/storage/v1/object/public/{BUCKET}/{CANONICAL}"
    assert row["image_synced"] is False and row["launch_state"] is None  # pending for the service
    (key,) = objects(standin)
    assert key == (BUCKET, CANONICAL)
    data, ctype = objects(standin)[key]
    assert ctype == "image/jpeg"
    with Image.open(io.BytesIO(data)) as im:  # the tweet's own picture, re-encoded
        assert im.format == "JPEG" and im.size == (80, 60)
        assert all(abs(a - b) <= 6 for a, b in zip(im.getpixel((40, 30)), COLOR, strict=True))
    assert Store(home / "moonshot.db").counts()["fetched"] == 0  # nothing in the embedded source

    storage_calls = len(standin.recorded("/storage"))
    r = ingest(home, tweet, env)
    assert json.loads(r.output)[0]["status"] == "duplicate"
    assert fetch_coins(standin.dsn) == [row]
    assert len(standin.recorded("/storage")) == storage_calls
    assert images.hits == ["/media/moon.jpg"]


class Died(BaseException):
    """What os._exit does to the process, without ending the test run."""


def check_after_crash(standin, home, point):
    rows = fetch_coins(standin.dsn)
    if point == "ingest_after_decision_commit":
        assert rows == [] and objects(standin) == {}
    elif point == "ingest_after_upload":
        assert rows == [] and list(objects(standin)) == [(BUCKET, CANONICAL)]  # image, no row
    else:
        assert len(rows) == 1
    assert Store(home / "moonshot.db").decision(TWEET_ID)["completed_at"] is None


def check_one_coin(standin):
    (row,) = fetch_coins(standin.dsn)
    assert row["tweet_id"] == TWEET_ID and row["image_url"].endswith(CANONICAL)
    assert list(objects(standin)) == [(BUCKET, CANONICAL)]


@pytest.mark.parametrize("point", [f"ingest_{p}" for p in INGEST_CRASH_POINTS])
def test_a_crash_leaves_no_orphan_row_and_the_retry_makes_one_coin(sb, point, monkeypatch):
    standin, images, home, tweet, env = sb

    def die(code):
        raise Died(code)

    monkeypatch.setattr(os, "_exit", die)
    with pytest.raises(Died):
        CliRunner().invoke(
            cli,
            ["--home", str(home), "ingest", str(tweet)],
            env={**env, "MOONSHOT_CRASH_AT": point},
        )
    check_after_crash(standin, home, point)
    r = ingest(home, tweet, env)
    assert [o["status"] for o in json.loads(r.output)] == ["accepted", "duplicate"]
    check_one_coin(standin)


def test_a_real_kill_between_upload_and_insert(sb):
    """The same with the real CLI in a subprocess ended by os._exit (design.md)."""
    standin, images, home, tweet, env = sb
    point = "ingest_after_upload"
    crashed = subprocess.run(
        [sys.executable, "-m", "moonshot", "--home", str(home), "ingest", str(tweet)],
        env={**os.environ, **env, "MOONSHOT_CRASH_AT": point},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 86, crashed.stderr
    check_after_crash(standin, home, point)
    r = ingest(home, tweet, env)
    assert [o["status"] for o in json.loads(r.output)] == ["accepted", "duplicate"]
    check_one_coin(standin)


def test_an_outage_leaves_the_coin_pending_until_the_next_ingest(sb):
    standin, images, home, tweet, env = sb
    standin.faults.outage()
    r = ingest(home, tweet, env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["status"] == "pending"
    standin.faults.clear()
    assert fetch_coins(standin.dsn) == []
    r = ingest(home, tweet, env)
    assert [o["status"] for o in json.loads(r.output)] == ["accepted", "duplicate"]
    assert len(fetch_coins(standin.dsn)) == 1


def test_setup_problems_are_one_line_with_the_fix(sb):
    standin, images, home, tweet, env = sb
    with standin.lock:
        standin.buckets.clear()
    r = ingest(home, tweet, env)
    assert r.exit_code == 1 and "bucket 'coin-images' does not exist" in r.output
    assert len(r.output.strip().splitlines()) == 1 and standin.key not in r.output
    with standin.lock:
        standin.buckets[BUCKET] = {"id": BUCKET, "name": BUCKET, "public": True}
    with psycopg.connect(standin.dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX coins_tweet_id_key")
    r = ingest(home, tweet, env)
    assert r.exit_code == 1 and "moonshot ingest --sql" in r.output
    assert fetch_coins(standin.dsn) == []  # the upload happened, no row: retried below
    with psycopg.connect(standin.dsn, autocommit=True) as conn:
        conn.execute(sql_text())
    r = ingest(home, tweet, env)
    assert [o["status"] for o in json.loads(r.output)] == ["accepted", "duplicate"]
    assert len(fetch_coins(standin.dsn)) == 1


def test_the_service_takes_the_ingested_coin_to_launched(sb):
    standin, images, home, tweet, env = sb
    assert ingest(home, tweet, env).exit_code == 0
    r = CliRunner().invoke(cli, ["--home", str(home), "run", "--once"], env=env)
    assert r.exit_code == 0, r.output
    store = Store(home / "moonshot.db")
    (coin,) = store.coins_in(["launched"])
    assert (coin.source, coin.ticker, coin.name, coin.tweet_id) == (
        "supabase",
        "MOON",
        "Moon Cat",
        TWEET_ID,
    )
    (launch,) = [json.loads(line) for line in (home / "launches.jsonl").read_text().splitlines()]
    assert (launch["ticker"], launch["name"]) == ("MOON", "Moon Cat")
    (row,) = fetch_coins(standin.dsn)
    assert row["launch_state"] == "launched"


def test_storage_errors_are_classed(sb):
    """Storage answers errors as HTTP 400 with the real status in the body: a 503 there
    leaves the coin pending, a 413 refuses it (the decision says why)."""
    standin, images, home, tweet, env = sb
    busy = {"statusCode": "503", "error": "ServiceUnavailable", "message": "try later"}
    standin.faults.add("status", path=f"/storage/v1/object/{BUCKET}", status=400, body=busy)
    r = ingest(home, tweet, env)
    assert json.loads(r.output)[0]["status"] == "pending"
    big = {
        "statusCode": "413",
        "error": "Payload too large",
        "message": "The object exceeded the maximum allowed size",
    }
    standin.faults.add("status", path=f"/storage/v1/object/{BUCKET}", status=400, body=big)
    r = ingest(home, tweet, env)
    pending, again = json.loads(r.output)  # the pending coin is retried first, then the file
    assert pending["status"] == "refused" and "HTTP 413" in pending["reason"]
    assert again["status"] == "duplicate" and "already refused" in again["reason"]
    assert fetch_coins(standin.dsn) == [] and objects(standin) == {}
    assert "HTTP 413" in Store(home / "moonshot.db").decision(TWEET_ID)["reason"]


def test_a_storage_error_echoing_the_key_never_shows_it(sb):
    """Review finding: a Storage error whose message echoes the request headers printed
    the service-role key and stored it in the decision's reason."""
    standin, images, home, tweet, env = sb
    key = env["SUPABASE_SERVICE_ROLE_KEY"]
    echo = {"statusCode": "413", "error": "Payload too large", "message": f"apikey={key} rejected"}
    standin.faults.add("status", path=f"/storage/v1/object/{BUCKET}", status=400, body=echo)
    r = ingest(home, tweet, env)
    (outcome,) = json.loads(r.output)
    assert outcome["status"] == "refused" and "HTTP 413" in outcome["reason"]
    assert "***" in outcome["reason"]
    assert key not in r.output
    assert key not in Store(home / "moonshot.db").decision(TWEET_ID)["reason"]
