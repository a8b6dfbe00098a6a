"""`moonshot ingest` into the embedded source: a fixture tweet reaches `launched` through
`moonshot run --once` with its own image, ticker and name, and ingesting it again
changes nothing; decisions, pending coins and refusals are recorded and shown."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from moonshot import config
from moonshot.cli import cli
from moonshot.errors import TransientError
from moonshot.naming import parse_name
from moonshot.store import Store
from moonshot.twitter.ingest import Ingestor, LocalTarget
from moonshot.twitter.policy import Policy
from moonshot.twitter.tweets import ParseRules, split_payload
from tests.twitter.helpers import ImageServer, jpeg

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tweets"
MOON_COLOR = (200, 30, 160)


def moonshot(home: Path, *args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, ["--home", str(home), *args], env=env, catch_exceptions=False)
    return result


def snapshot(home: Path) -> dict:
    db = sqlite3.connect(home / "moonshot.db")
    try:
        return {
            t: db.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
            for t in ("coins", "transitions", "decisions")
        }
    finally:
        db.close()


def photo_fixture(tmp_path: Path, base: str) -> Path:
    """photo.json with its media URL pointing at the local image server."""
    data = json.loads((FIXTURES / "photo.json").read_text("utf-8"))
    data["includes"]["media"][0]["url"] = f"{base}/media/GcMoonCat01.jpg"
    path = tmp_path / "tweet.json"
    path.write_text(json.dumps(data), "utf-8")
    return path


def test_a_tweet_reaches_launched_with_its_own_image_ticker_and_name(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text('[ingest]\nimage_hosts = ["127.0.0.1"]\n')
    with ImageServer({"/media/GcMoonCat01.jpg": jpeg(MOON_COLOR)}) as images:
        tweet_file = photo_fixture(tmp_path, images.base)
        r = moonshot(home, "ingest", str(tweet_file), "--json")
        assert r.exit_code == 0, r.output
        (out,) = json.loads(r.output)
        assert out["status"] == "accepted" and out["coin_ref"] == "coin 1"

        r = moonshot(home, "run", "--once")
        assert r.exit_code == 0, r.output
        assert images.hits == ["/media/GcMoonCat01.jpg"]

    hist = json.loads(moonshot(home, "history", "1", "--json").output)
    coin = hist["coin"]
    assert coin["state"] == "launched"
    assert (coin["ticker"], coin["name"], coin["twitter_user"], coin["tweet_id"]) == (
        "MOON",
        "Moon Cat",
        "alice_trades",
        "1858401234567890001",
    )
    first = hist["transitions"][0]
    assert first["trigger"] == "ingest" and first["detail"]["tweet_id"] == "1858401234567890001"
    assert "accepted" in first["detail"]["decision"]

    (launch,) = [json.loads(line) for line in (home / "launches.jsonl").read_text().splitlines()]
    assert (launch["ticker"], launch["name"], launch["coin_id"]) == ("MOON", "Moon Cat", 1)
    spool_name = parse_name(launch["image_filename"])  # the core names it at spool time
    assert (spool_name.twitter_user, spool_name.ticker) == ("alice_trades", "MOON")
    # its own image: the spooled file is the served picture, re-encoded
    spooled = home / "spool" / launch["image_filename"]
    with Image.open(spooled) as im:
        assert im.size == (64, 48)
        assert all(
            abs(a - b) <= 6
            for a, b in zip(im.convert("RGB").getpixel((32, 24)), MOON_COLOR, strict=True)
        )

    before = snapshot(home)
    ledger = (home / "launches.jsonl").read_text()
    r = moonshot(home, "ingest", str(tweet_file))
    assert r.exit_code == 0 and "duplicate" in r.output
    assert moonshot(home, "run", "--once").exit_code == 0
    assert snapshot(home) == before
    assert (home / "launches.jsonl").read_text() == ledger


def test_duplicates_in_one_file_make_one_coin(tmp_path):
    r = moonshot(tmp_path, "ingest", str(FIXTURES / "duplicates.json"), "--json")
    assert [o["status"] for o in json.loads(r.output)] == ["accepted", "duplicate"]
    store = Store(tmp_path / "moonshot.db")
    assert store.counts()["fetched"] == 1
    coin = store.get(1)
    assert (coin.source, coin.source_ref, coin.image_url) == (
        "local",
        "tweet:1858406000000000001",
        "https://pbs.twimg.com/media/Twin.jpg",
    )


def test_refusals_are_recorded_and_shown_and_can_be_reconsidered(tmp_path):
    (tmp_path / "moonshot.toml").write_text('[policy]\ndeny_authors = ["bob"]\n')
    r = moonshot(tmp_path, "ingest", str(FIXTURES / "quote.json"), str(FIXTURES / "no_media.json"))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == 5 and all(": " in line for line in lines)
    refused = json.loads(moonshot(tmp_path, "decisions", "--refused", "--json").output)
    reasons = {d["tweet_id"]: d["reason"] for d in refused}
    assert "deny_authors" in reasons["1858404000000000010"]
    assert "no ticker" in reasons["1858404100000000011"]
    assert "retweet" in reasons["1858404200000000012"]
    assert "no image" in reasons["1858402000000000002"]
    assert Store(tmp_path / "moonshot.db").counts()["fetched"] == 0

    status = json.loads(moonshot(tmp_path, "status", "--json").output)
    assert status["tweets"]["refused"] == 5 and status["tweets"]["accepted"] == 0
    assert "deny_authors" in moonshot(tmp_path, "status").output

    # Same files again: nothing new is decided.
    again = json.loads(
        moonshot(tmp_path, "ingest", str(FIXTURES / "no_media.json"), "--json").output
    )
    assert again[0]["status"] == "duplicate"
    (tmp_path / "moonshot.toml").write_text("[ingest]\nprofile_image_fallback = true\n")
    again = json.loads(
        moonshot(
            tmp_path, "ingest", str(FIXTURES / "no_media.json"), "--reconsider", "--json"
        ).output
    )
    assert again[0]["status"] == "accepted"
    assert Store(tmp_path / "moonshot.db").get(1).image_url.endswith("u6qfBBkF_400x400.jpg")


class FlakyTarget:
    """A target that fails the first `failures` times, as an outage or a crash would."""

    kind = "flaky"

    def __init__(self, store: Store, failures: int):
        self.inner, self.failures = LocalTarget(store), failures

    def create(self, decision):
        if self.failures:
            self.failures -= 1
            raise TransientError("target unreachable")
        return self.inner.create(decision)


def test_an_accepted_tweet_whose_coin_failed_is_finished_later(tmp_path):
    store = Store(tmp_path / "moonshot.db")
    payload = json.loads((FIXTURES / "photo.json").read_text())
    flaky = Ingestor(store, FlakyTarget(store, 1), Policy(config.PolicyConfig()), ParseRules())
    (out,) = flaky.ingest(payload, "test")
    assert out.status == "pending" and "next ingest retries" in out.reason
    assert store.counts()["fetched"] == 0 and store.decision_counts()["pending"] == 1
    (done,) = flaky.complete_pending()
    assert done.status == "accepted" and done.coin_ref == "coin 1"
    assert flaky.ingest(payload, "test")[0].status == "duplicate"
    assert store.counts()["fetched"] == 1 and store.decision_counts()["pending"] == 0


def test_a_crash_between_decision_and_coin_is_finished_by_the_next_ingest(tmp_path):
    store = Store(tmp_path / "moonshot.db")
    payload = json.loads((FIXTURES / "photo.json").read_text())

    class Crash(BaseException):
        pass

    class Dying(LocalTarget):
        def create(self, decision):
            raise Crash

    with pytest.raises(Crash):
        Ingestor(store, Dying(store), Policy(config.PolicyConfig()), ParseRules()).ingest(
            payload, "t"
        )
    assert store.decision("1858401234567890001")["completed_at"] is None
    r = moonshot(tmp_path, "ingest", str(FIXTURES / "photo.json"), "--json")
    outcomes = json.loads(r.output)
    assert [o["status"] for o in outcomes] == [
        "accepted",
        "duplicate",
    ]  # pending finished, then the file
    assert Store(tmp_path / "moonshot.db").counts()["fetched"] == 1


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "ingest", str(bad)])
    assert (
        r.exit_code == 1
        and "not valid JSON" in r.output
        and len(r.output.strip().splitlines()) == 1
    )
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "ingest"])
    assert r.exit_code == 2
    (tmp_path / "moonshot.toml").write_text('[ingest]\nticker_pattern = "ticker: [A-Z]+"\n')
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "ingest", str(FIXTURES / "photo.json")])
    assert r.exit_code == 1 and "one capturing group" in r.output


def test_stdin_and_a_list_of_tweets(tmp_path):
    items = list(split_payload(json.loads((FIXTURES / "video.json").read_text())))
    tweets_with_includes = [dict(i.tweet, includes=i.includes) for i in items]
    r = CliRunner().invoke(
        cli,
        ["--home", str(tmp_path), "ingest", "-", "--json"],
        input=json.dumps(tweets_with_includes),
    )
    assert [o["ticker"] for o in json.loads(r.output)] == ["RDOG", "GIFY", "MIXD"]
    assert Store(tmp_path / "moonshot.db").counts()["fetched"] == 3


def test_two_ingests_of_the_same_tweet_at_once_make_one_coin(tmp_path):
    Store(tmp_path / "moonshot.db").close()
    payload = json.loads((FIXTURES / "photo.json").read_text())
    barrier, statuses = threading.Barrier(4), []

    def worker():
        store = Store(tmp_path / "moonshot.db")
        ingestor = Ingestor(store, LocalTarget(store), Policy(config.PolicyConfig()), ParseRules())
        barrier.wait()
        statuses.extend(o.status for o in ingestor.ingest(payload, "race"))
        store.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = Store(tmp_path / "moonshot.db")
    assert len(statuses) == 4 and set(statuses) <= {"accepted", "duplicate"}
    assert store.counts()["fetched"] == 1 and len(store.decisions()) == 1
    assert len(store.history(1)) == 1
