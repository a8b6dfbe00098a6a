"""The tweet parser against fixtures written from the X API v2 payload shapes, and
property tests: no text yields a ticker or user that moonshot.naming refuses, and a
ticker is always what a person reads in the tweet."""

from __future__ import annotations

import contextlib
import json
import re
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moonshot import naming
from moonshot.errors import Rejected
from moonshot.twitter import tweets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tweets"
RULES = tweets.ParseRules()


def load(name: str) -> list[tweets.TweetIn]:
    return list(tweets.split_payload(json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))))


def by_id(name: str) -> dict[str, tweets.TweetIn]:
    return {item.tweet_id: item for item in load(name)}


def expected_cases():
    for name in ("cashtags_odd", "lookalike_cashtags"):
        for item in load(name):
            yield pytest.param(item, item.tweet["_expect"], id=f"{name}-{item.tweet_id[-2:]}")


@pytest.mark.parametrize("item,expect", list(expected_cases()))
def test_fixture_expectations(item, expect):
    if "refused" in expect:
        with pytest.raises(Rejected) as exc:
            tweets.parse(item, RULES)
        assert expect["refused"] in exc.value.reason
        assert "\n" not in exc.value.reason
    else:
        parsed = tweets.parse(item, RULES)
        assert parsed.ticker == expect["ticker"]
        if "name" in expect:
            assert parsed.name == expect["name"]


def test_photo_tweet():
    (item,) = load("photo")
    p = tweets.parse(item, RULES)
    assert (p.tweet_id, p.twitter_user, p.ticker, p.name) == (
        "1858401234567890001",
        "alice_trades",
        "MOON",
        "Moon Cat",
    )
    assert (p.image_url, p.image_kind) == ("https://pbs.twimg.com/media/GcMoonCat01.jpg", "photo")
    assert p.followers == 5120
    assert p.unix_ts == 1731918600  # 2024-11-18T08:30:00Z
    assert (
        naming.format_name(p.twitter_user, p.ticker, p.unix_ts)
        == "alice_trades_MOON_1731918600.jpg"
    )


def test_video_and_gif_use_the_preview_and_a_photo_beats_a_video():
    items = by_id("video")
    video = tweets.parse(items["1858403000000000003"], RULES)
    assert video.image_kind == "video"
    assert video.image_url.endswith("/pu/img/RdogThumb.jpg")
    gif = tweets.parse(items["1858403100000000004"], RULES)
    assert (gif.image_kind, gif.image_url) == (
        "animated_gif",
        "https://pbs.twimg.com/tweet_video_thumb/GifyFrog.jpg",
    )
    mixed = tweets.parse(items["1858403200000000005"], RULES)
    assert (mixed.image_kind, mixed.image_url) == (
        "photo",
        "https://pbs.twimg.com/media/MixdPhoto.jpg",
    )


def test_no_media_is_refused_unless_the_profile_image_is_configured():
    (item,) = load("no_media")
    with pytest.raises(Rejected, match="no image.*profile_image_fallback is off"):
        tweets.parse(item, RULES)
    p = tweets.parse(item, tweets.ParseRules(profile_image_fallback=True))
    assert p.image_kind == "profile"
    # the 48x48 `_normal` variant is swapped for the 400x400 one
    assert (
        p.image_url
        == "https://pbs.twimg.com/profile_images/1488548719062654976/u6qfBBkF_400x400.jpg"
    )
    assert p.name == "PEPE"  # nothing else on the ticker's line: the README's rule gives the ticker


def test_quote_reply_and_retweet():
    items = by_id("quote")
    quote = tweets.parse(items["1858404000000000010"], RULES)
    assert (quote.ticker, quote.name, quote.image_url) == (
        "QUOT",
        "Quote Coin",
        "https://pbs.twimg.com/media/QuotOwn.jpg",
    )
    # A quote without its own cashtag does not borrow the quoted tweet's $ORIG or image.
    with pytest.raises(Rejected, match="no ticker"):
        tweets.parse(items["1858404100000000011"], RULES)
    with pytest.raises(Rejected, match="retweet"):
        tweets.parse(items["1858404200000000012"], RULES)
    reply = tweets.parse(items["1858404300000000013"], RULES)
    assert (reply.ticker, reply.name) == ("REPL", "Reply Coin")


def test_configured_patterns():
    item = by_id("cashtags_odd")["1858405000000000012"]
    rules = tweets.ParseRules(
        ticker_pattern=r"(?im)^ticker:\s*\$?(\S+)", name_pattern=r"(?im)^name:\s*(.+)$"
    )
    p = tweets.parse(item, rules)
    assert (p.ticker, p.name) == ("WAGMI", "We All Gonna Make It")
    (no_media,) = load("no_media")
    p = tweets.parse(
        no_media,
        tweets.ParseRules(name_pattern=r"(?im)^name:\s*(.+)$", profile_image_fallback=True),
    )
    assert p.name == "Pepe Classic"


def test_pattern_ticker_is_the_whole_word_a_person_reads():
    rules = tweets.ParseRules(ticker_pattern=r"ticker:\s*([A-Z]+)")
    with pytest.raises(Rejected, match="GREEK CAPITAL LETTER NU"):
        tweets.find_ticker("ticker: MOO\u039d", rules)
    assert tweets.find_ticker("ticker: MOON, more", rules)[0] == "MOON"


def test_refusals_name_the_missing_part():
    (item,) = load("photo")
    no_users = tweets.TweetIn(item.tweet, {"media": item.includes["media"]})
    with pytest.raises(Rejected, match="author unknown"):
        tweets.parse(no_users, RULES)
    no_media = tweets.TweetIn(item.tweet, {"users": item.includes["users"]})
    with pytest.raises(Rejected, match="not in includes.media"):
        tweets.parse(no_media, RULES)
    bad_user = json.loads(json.dumps(item.includes))
    bad_user["users"][0]["username"] = "../etc/passwd"
    with pytest.raises(Rejected, match="invalid twitter user"):
        tweets.parse(tweets.TweetIn(item.tweet, bad_user), RULES)
    bad_url = json.loads(json.dumps(item.includes))
    bad_url["media"][0]["url"] = "file:///etc/passwd"
    with pytest.raises(Rejected, match="not http"):
        tweets.parse(tweets.TweetIn(item.tweet, bad_url), RULES)
    with pytest.raises(Rejected, match="no numeric id"):
        tweets.parse(tweets.TweetIn({**item.tweet, "id": "12ab"}, item.includes), RULES)


def test_image_hosts_are_checked():
    (item,) = load("photo")
    assert tweets.parse(item, tweets.ParseRules(image_hosts=("twimg.com",))).image_url.startswith(
        "https://pbs.twimg.com/"
    )
    with pytest.raises(
        Rejected, match=r"photo host pbs.twimg.com is not allowed \(ingest.image_hosts\)"
    ):
        tweets.parse(item, tweets.ParseRules(image_hosts=("127.0.0.1",)))
    local = json.loads(json.dumps(item.includes))
    local["media"][0]["url"] = "http://169.254.169.254/latest/meta-data"
    with pytest.raises(Rejected, match="169.254.169.254 is not allowed"):
        tweets.parse(
            tweets.TweetIn(item.tweet, local), tweets.ParseRules(image_hosts=("twimg.com",))
        )


def test_time_falls_back_to_the_snowflake_id():
    (item,) = load("photo")
    snowflake = ((1731918600_123 - tweets.TWITTER_EPOCH_MS) << 22) | 0b1011  # ms, then worker bits
    tweet = {k: v for k, v in item.tweet.items() if k != "created_at"} | {"id": str(snowflake)}
    p = tweets.parse(tweets.TweetIn(tweet, item.includes), RULES)
    assert p.unix_ts == 1731918600


def test_name_is_cleaned_and_cut_on_a_character_boundary():
    text = "$MOON \u202eevil\u200b name\x07 with \U0001f680\U0001f680\U0001f680\U0001f680 rockets galore"
    name = tweets.find_name(text, (0, 5), "MOON", RULES)
    assert name.startswith("evil name with")
    assert len(name.encode("utf-8")) <= 32
    assert all(unicodedata.category(ch)[0] != "C" for ch in name)
    name.encode("utf-8").decode("utf-8")  # no split character


def _parse_seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):  # the best of three: least disturbed by other load
        started = time.perf_counter()
        with contextlib.suppress(Rejected):
            tweets.parse(_item(text, "alice"), RULES)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("unit", ["($", "(\uff04", " $A", "$\u041c(", "$"])
def test_hostile_long_texts_are_parsed_in_linear_time(unit):
    """Four times the text may take about four times as long, not sixteen (the old
    quadratic scan). A ratio, not a wall-clock limit: it holds on a slow machine too."""
    text = (unit * (tweets.MAX_TEXT // len(unit) + 1))[: tweets.MAX_TEXT]
    quarter = text[: len(text) // 4]
    ratio = _parse_seconds(text) / max(_parse_seconds(quarter), 1e-4)
    assert ratio < 9, f"4x the text took {ratio:.1f}x as long"
    with pytest.raises(Rejected, match="longer than any post"):
        tweets.parse(_item(text + "x", "alice"), RULES)


def test_name_entities_and_naive_times():
    assert tweets.find_name("$CND Cats &amp; Dogs &lt;3", (0, 4), "CND", RULES) == "Cats & Dogs <3"
    (item,) = load("photo")
    naive = tweets.TweetIn({**item.tweet, "created_at": "2024-11-18T08:30:00"}, item.includes)
    assert tweets.parse(naive, RULES).unix_ts == 1731918600  # read as UTC
    bad = tweets.TweetIn({**item.tweet, "created_at": "yesterday"}, item.includes)
    with pytest.raises(Rejected, match="not an ISO 8601 time"):
        tweets.parse(bad, RULES)


def test_split_payload_shapes():
    (photo,) = load("photo")
    assert [i.tweet_id for i in tweets.split_payload([photo.tweet, photo.tweet])] == [
        photo.tweet_id
    ] * 2
    assert [i.tweet_id for i in load("duplicates")] == ["1858406000000000001"] * 2
    with pytest.raises(Rejected, match="not a tweet"):
        list(tweets.split_payload("just a string"))


# -- properties ------------------------------------------------------------------------
LOOKALIKES = "\u041c\u039d\u0405\u0410\u0415\u041e\u0420\u0421\uff2d\uff4f\u200b\u200d\u2060\u202e\u0301\U0001d40c"
TRICKY = "$$$ \n\t.,()MOONmoonPEPE0123_-:/\uff04\ufe69\U0001f4b2" + LOOKALIKES
texts = st.one_of(st.text(max_size=80), st.text(alphabet=TRICKY, max_size=40))
users = st.one_of(st.text(max_size=20), st.from_regex(r"[A-Za-z0-9_]{1,15}", fullmatch=True))


def _item(text: str, username: str) -> tweets.TweetIn:
    tweet = {
        "id": "1858401234567890001",
        "text": text,
        "author_id": "1",
        "attachments": {"media_keys": ["3_1"]},
    }
    includes = {
        "users": [{"id": "1", "username": username}],
        "media": [
            {"media_key": "3_1", "type": "photo", "url": "https://pbs.twimg.com/media/x.jpg"}
        ],
    }
    return tweets.TweetIn(tweet, includes)


@settings(max_examples=250, deadline=None)
@given(text=texts, username=users)
def test_no_text_makes_a_ticker_or_user_naming_refuses(text, username):
    try:
        p = tweets.parse(_item(text, username), RULES)
    except Rejected as exc:
        assert "\n" not in exc.reason and "\r" not in exc.reason
        return
    assert naming.valid_ticker(p.ticker) == p.ticker
    assert naming.valid_user(p.twitter_user) == p.twitter_user
    assert naming.parse_name(naming.format_name(p.twitter_user, p.ticker, p.unix_ts)) is not None
    assert p.name and len(p.name.encode("utf-8")) <= RULES.name_max_bytes
    assert all(unicodedata.category(ch)[0] != "C" for ch in p.name)  # no newline, no control key


@settings(max_examples=250, deadline=None)
@given(text=texts)
def test_the_ticker_is_what_a_person_reads(text):
    try:
        ticker, _, _ = tweets.find_ticker(text, RULES)
    except Rejected:
        return
    # "$" + exactly these letters, as a whole word: nothing glued on before or after.
    pattern = (
        r"(?:^|(?<=[\s(\[{<'\"]))\$"
        + ticker
        + r"(?=$|\s|["
        + re.escape(tweets.TRAILING_PUNCT)
        + r"]+(?:\s|$))"
    )
    assert re.search(pattern, text, re.IGNORECASE), (text, ticker)


@settings(max_examples=200, deadline=None)
@given(
    letters=st.from_regex(r"[A-Z]{2,8}", fullmatch=True),
    fake=st.sampled_from(LOOKALIKES),
    at=st.integers(min_value=0, max_value=8),
    before=st.sampled_from(["", "launch ", "gm\n", "("]),
    after=st.sampled_from(["", " Moon Coin", ". ok", "\nname: x"]),
)
def test_a_lookalike_inside_a_cashtag_is_refused(letters, fake, at, before, after):
    at = min(at, len(letters))
    text = f"{before}${letters[:at]}{fake}{letters[at:]}{after}"
    with pytest.raises(Rejected, match="look-alike"):
        tweets.find_ticker(text, RULES)
