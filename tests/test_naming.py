"""The canonical spool name: round trip, and nothing accepted can escape spool/."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonshot.errors import Rejected
from moonshot.naming import format_name, parse_name, valid_ticker, valid_user

users = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=15)
tickers = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=10)
stamps = st.integers(min_value=1, max_value=10**12 - 1)


@given(users, tickers, stamps)
def test_format_parse_round_trip(user, ticker, ts):
    name = format_name(user, ticker, ts)
    parsed = parse_name(name)
    assert parsed is not None
    assert (parsed.twitter_user, parsed.ticker, parsed.unix_ts) == (user, ticker, ts)
    assert str(parsed) == name


@given(
    users, st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=10), stamps
)
def test_ticker_is_upper_cased(user, ticker, ts):
    assert parse_name(format_name(user, ticker, ts)).ticker == ticker.upper()


def _safe(name: str) -> bool:
    return (
        "/" not in name
        and "\\" not in name
        and ".." not in name
        and not any(ord(c) < 32 or ord(c) == 127 for c in name)
        and "\n" not in name
        and name.isascii()
    )


@given(st.text(), st.text(), st.integers())
def test_nothing_accepted_is_unsafe(user, ticker, ts):
    try:
        name = format_name(user, ticker, ts)
    except Rejected:
        return
    assert _safe(name)


@given(st.text(max_size=60))
def test_nothing_parsed_is_unsafe(text):
    parsed = parse_name(text)
    if parsed is not None:
        assert _safe(text)
        assert _safe(parsed.twitter_user) and _safe(parsed.ticker)


@pytest.mark.parametrize(
    "user, ticker, ts, part",
    [
        ("../etc", "MOON", 1, "user"),
        ("bob", "../x", 1, "ticker"),
        ("bob", "MO/ON", 1, "ticker"),
        ("bob", "MOON\n", 1, "ticker"),
        ("bob", "MOONMOONMOON", 1, "ticker"),
        ("a" * 16, "MOON", 1, "user"),
        ("", "MOON", 1, "user"),
        ("bob", "", 1, "ticker"),
        ("bob", "ＭＯＯＮ", 1, "ticker"),  # fullwidth look-alikes
        ("bob", "MOıN", 1, "ticker"),  # dotless i upper-cases to ASCII I: refused first
        ("bob", "MOON", 0, "timestamp"),
        ("bob", "MOON", -5, "timestamp"),
        ("bob", "MOON", True, "timestamp"),
        ("b\x00b", "MOON", 1, "user"),
    ],
)
def test_refusals_name_the_part(user, ticker, ts, part):
    with pytest.raises(Rejected, match=part):
        format_name(user, ticker, ts)


@pytest.mark.parametrize(
    "name",
    [
        "bob_MOON_123.JPG",
        "bob_moon_123.jpg",
        "bob_MOON_0123.jpg",
        "bob_MOON_.jpg",
        ".._MOON_1.jpg",
        "bob_MOON_1.jpg.part",
        "x/bob_MOON_1.jpg",
        "bob_MOON_1.jpeg",
        "notes.txt",
        "bob_MO-ON_1.jpg",
    ],
)
def test_other_names_are_not_canonical(name):
    assert parse_name(name) is None


def test_user_with_underscores_parses_from_the_right():
    parsed = parse_name("elon_musk_MOON_1735501234.jpg")
    assert (parsed.twitter_user, parsed.ticker, parsed.unix_ts) == ("elon_musk", "MOON", 1735501234)


def test_validators_return_clean_values():
    assert valid_ticker("moon") == "MOON"
    assert valid_user("elonmusk") == "elonmusk"
