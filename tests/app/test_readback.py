"""The read-back rules (readback.py's table), one test per row, and properties over
random tickers and names: every rendering the app may show is accepted, every single
edit (insert, delete, substitute, left-over text, the other field's text) refused."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from moonshot.app.ocr import Reading
from moonshot.app.readback import (
    CONFUSABLE,
    MIN_SHOWN,
    _key,
    compare_field,
    compare_name,
    compare_ticker,
)

MIN = 0.8


def r(text: str, conf: float = 0.95) -> Reading:
    return Reading(text, conf)


def ticker_ok(expected, shown, **kw) -> bool:
    return compare_ticker(expected, r(shown), min_confidence=MIN, **kw).ok


def name_ok(expected, *lines) -> bool:
    return compare_name(expected, [r(line) for line in lines], min_confidence=MIN).ok


# -- the table, row by row ---------------------------------------------------------------
@pytest.mark.parametrize("shown", ["$MOON", "MOON", "$moon", "moon", "$ MOON", "$M00N", "$MO0N"])
def test_ticker_renderings_are_accepted(shown):
    assert ticker_ok("MOON", shown)


@pytest.mark.parametrize(
    "shown, why",
    [
        ("$MOONXX", "2 characters too many"),
        ("XXMOON", "2 characters too many"),
        ("$MON", "1 character too few"),
        ("$MQON", "character 2 is 'Q', not 'O'"),
        ("$Moon Coin", "too many"),
        ("", "nothing read"),
    ],
)
def test_ticker_differences_are_refused_with_the_reason(shown, why):
    verdict = compare_ticker("MOON", r(shown), min_confidence=MIN)
    assert not verdict.ok
    assert why in verdict.reason
    assert "\n" not in verdict.reason


def test_a_small_dollar_read_as_s_is_accepted_only_when_the_app_shows_one():
    assert not ticker_ok("MOON", "SMOON")  # could be a left-over S
    assert "set dollar = true" in compare_ticker("MOON", r("SMOON"), min_confidence=MIN).reason
    assert ticker_ok("MOON", "SMOON", dollar=True)
    assert ticker_ok("MOON", "$MOON", dollar=True)
    assert not ticker_ok("MOON", "MOON", dollar=True)  # the app shows '$': it must be there
    assert not ticker_ok("MOON", "$SMOON", dollar=True)  # a left-over S after the '$'
    assert not ticker_ok("MOON", "$MOON", dollar=False)
    assert ticker_ok("MOON", "MOON", dollar=False)


def test_low_confidence_is_refused_by_name():
    verdict = compare_ticker("MOON", r("$MOON", 0.41), min_confidence=0.8)
    assert not verdict.ok
    assert "could not read the ticker with confidence 0.41 < 0.80" in verdict.reason
    verdict = compare_name("Moon Coin", [r("Moon", 0.99), r("Coin", 0.5)], min_confidence=0.8)
    assert not verdict.ok and "confidence 0.50 < 0.80" in verdict.reason


@pytest.mark.parametrize(
    "lines",
    [
        ["Moon Coin"],
        ["MoonCoin"],  # OCR dropped the space
        ["Moon", "Coin"],  # wrapped at the space
        ["Moon C", "oin"],  # wrapped mid-word
        ["M00n C0in"],
    ],
)
def test_name_renderings_are_accepted(lines):
    assert name_ok("Moon Coin", *lines)


@pytest.mark.parametrize("shown", ["MOON COIN", "moon coin", "moon Coin", "UPPER CASE COIN"])
def test_a_name_in_another_case_is_refused(shown):
    """Found from outside: an app that upper-cased the name was accepted; the ticker may
    be shown in another case, the name may not (it is the token's name)."""
    assert not name_ok("Moon Coin" if "UPPER" not in shown else "Upper Case Coin", shown)


@pytest.mark.parametrize("ellipsis", ["…", "...", " …", ".."])
def test_a_truncated_name_is_a_prefix_long_enough_to_mean_something(ellipsis):
    name = "Prefilled Coin of the Moon"
    assert name_ok(name, "Prefilled Coin" + ellipsis)
    assert name_ok(name, "Prefilled Coin of", "the Mo" + ellipsis)  # wrapped and cut
    assert not name_ok(name, "Prefil" + ellipsis)  # 6 < MIN_SHOWN
    assert not name_ok(name, "Prefilled Cain" + ellipsis)
    assert not name_ok(name, "XXPrefilled Co" + ellipsis)  # left-over text before it
    verdict = compare_name(name, [r("Prefil" + ellipsis)], min_confidence=MIN)
    assert f"fewer than {MIN_SHOWN}" in verdict.reason


def test_a_truncation_longer_than_the_name_is_refused():
    assert not name_ok("Moon Coin Token", "Moon Coin TokenX…")


def test_a_name_that_ends_in_dots_is_read_as_itself():
    assert name_ok("Wait for it...", "Wait for it...")
    assert not name_ok("Wait for it...", "Wait for it...X")


@pytest.mark.parametrize(
    "lines, why",
    [
        (["Prefilled CoinOld"], "3 characters too many"),
        (["OldPrefilled Coin"], "3 characters too many"),
        (["Prefilled Coi"], "1 character too few"),
        (["Prefilled Cain"], "is 'a', not 'o'"),
        (["PREFX"], "too few"),  # the ticker typed into the name field
        ([], "nothing read"),
        ([""], "nothing read"),
    ],
)
def test_name_differences_are_refused_with_the_reason(lines, why):
    verdict = compare_name("Prefilled Coin", [r(x) for x in lines], min_confidence=MIN)
    assert not verdict.ok
    assert why in verdict.reason
    assert "\n" not in verdict.reason


def test_accents_compare_with_their_base_letter_and_nothing_else():
    # The recogniser's alphabet has é but not ë (it read 'Café Noël' as 'Café Noel').
    assert name_ok("Café Noël", "Café Noel")
    assert name_ok("Cafe Noel", "Café Noël")
    assert not name_ok("Café Noël", "Caf Noel")  # a dropped accented letter: shorter
    assert not name_ok("Café Noël", "Cafa Noel")


@pytest.mark.parametrize("name", ["Moon 🚀", "Rocket ❤", "I ♥ SOL", "Zero\u200bWidth"])
def test_what_ocr_cannot_confirm_is_refused_rather_than_guessed(name):
    shown = name  # even a reading that happens to be exact
    verdict = compare_name(name, [r(shown)], min_confidence=MIN)
    assert not verdict.ok
    assert "OCR cannot confirm" in verdict.reason


def test_other_scripts_must_read_exactly():
    assert name_ok("月球币", "月球币")
    assert not name_ok("Мун", "Mун")  # a Cyrillic М read as a Latin M is not confirmed


def test_compare_field_is_exact():
    assert compare_field("Moon Coin", "Moon Coin").ok
    assert compare_field("Moon Coin", "Moon Coin\n").ok  # the clipboard tool's newline
    assert compare_field("Café", "Cafe\u0301").ok  # the same text, NFC
    for actual in ("Moon CoinOld", "Moon Coi", "Moon C0in", "moon coin", "Moon Coin ", "MoonCoin"):
        verdict = compare_field("Moon Coin", actual)
        assert not verdict.ok, actual
        assert "expected 'Moon Coin'" in verdict.reason


# -- properties ------------------------------------------------------------------------------
TICKER_CHARS = string.ascii_uppercase + string.digits
NAME_CHARS = string.ascii_letters + string.digits + "-_!?&$#'"
tickers = st.text(TICKER_CHARS, min_size=1, max_size=10)
words = st.text(NAME_CHARS, min_size=1, max_size=8)
names = st.lists(words, min_size=1, max_size=4).map(" ".join).filter(lambda n: len(n) <= 32)


def confusable_variant(text: str, data) -> str:
    out = []
    for ch in text:
        cls = next((c for c in CONFUSABLE if ch in c), ch)
        out.append(data.draw(st.sampled_from(cls)))
    return "".join(out)


def non_confusable(ch: str):
    """A printable character OCR would not read as `ch` (another class, another letter)."""
    return st.sampled_from(NAME_CHARS).filter(
        lambda c: _key(c) != _key(ch) and c.lower() != ch.lower()
    )


@given(ticker=tickers, data=st.data())
def test_property_every_ticker_rendering_is_accepted(ticker, data):
    # The app draws it in some case; OCR then reads each character within its class.
    shown = confusable_variant(data.draw(st.sampled_from([ticker, ticker.lower()])), data)
    prefix = data.draw(st.sampled_from(["", "$"]))
    assert ticker_ok(ticker, prefix + shown)
    assert ticker_ok(ticker, data.draw(st.sampled_from("$Ss5")) + shown, dollar=True)


@given(ticker=tickers, data=st.data())
def test_property_every_single_ticker_edit_is_refused(ticker, data):
    i = data.draw(st.integers(0, len(ticker) - 1))
    edits = [
        ticker[:i] + data.draw(st.sampled_from(TICKER_CHARS)) + ticker[i:],  # inserted
        ticker[:i] + data.draw(non_confusable(ticker[i])) + ticker[i + 1 :],  # substituted
        ticker + data.draw(st.text(TICKER_CHARS, min_size=1, max_size=4)),  # left over
        data.draw(st.text(TICKER_CHARS, min_size=1, max_size=4)) + ticker,
    ]
    if len(ticker) > 1:
        edits.append(ticker[:i] + ticker[i + 1 :])  # dropped
    for shown in edits:
        for dollar in (None, True):
            assert not ticker_ok(ticker, "$" + shown, dollar=dollar), (ticker, shown)


@given(name=names, data=st.data())
def test_property_every_name_rendering_is_accepted(name, data):
    shown = confusable_variant(name, data)
    shown = data.draw(st.sampled_from([shown, shown.replace(" ", "")]))
    cut = data.draw(st.integers(1, max(1, len(shown) - 1)))
    lines = [shown[:cut], shown[cut:]] if len(shown) > 1 else [shown]  # wrapped anywhere
    assert name_ok(name, *[x for x in lines if x.strip()])
    compact = name.replace(" ", "")
    if len(compact) > MIN_SHOWN:
        keep = data.draw(st.integers(MIN_SHOWN, len(compact) - 1))
        # The shown start of the name with its spaces, cut after `keep` characters.
        seen, end = 0, 0
        while seen < keep:
            seen += shown[end] != " "
            end += 1
        ellipsis = data.draw(st.sampled_from(["…", "...", " …"]))
        assert name_ok(name, shown[:end] + ellipsis)


@given(name=names, data=st.data())
def test_property_every_single_name_edit_is_refused(name, data):
    i = data.draw(st.integers(0, len(name) - 1))
    assume(name[i] != " ")  # a space is the one character OCR cannot confirm
    left = data.draw(st.text(NAME_CHARS, min_size=1, max_size=5))
    edits = [
        name[:i] + data.draw(st.sampled_from(NAME_CHARS)) + name[i:],  # inserted
        name[:i] + data.draw(non_confusable(name[i])) + name[i + 1 :],  # substituted
        name + left,  # left over after it
        left + name,  # left over before it
        name + " " + left,
    ]
    if len(name.replace(" ", "")) > 1:
        edits.append(name[:i] + name[i + 1 :])  # dropped
    for shown in edits:
        assert not name_ok(name, shown), (name, shown)


@given(ticker=tickers, name=names)
def test_property_the_other_fields_text_is_refused(ticker, name):
    assume(not name_ok(name, ticker) and not ticker_ok(ticker, name))  # unless they read alike
    assert not ticker_ok(ticker, "$" + name)
    assert not ticker_ok(ticker, "$" + name, dollar=True)
    assert not name_ok(name, "$" + ticker)
    assert not name_ok(name, ticker + name)  # the ticker typed into the name field too


@given(ticker=tickers, conf=st.floats(0.0, MIN, exclude_max=True))
def test_property_low_confidence_is_always_refused(ticker, conf):
    verdict = compare_ticker(ticker, Reading("$" + ticker, conf), min_confidence=MIN)
    assert not verdict.ok and "confidence" in verdict.reason
