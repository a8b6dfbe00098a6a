"""Safe text for the app's fields: printable only, trimmed to UTF-8 byte limits on a
character boundary, typed by keys only when every character has a key."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moonshot.app import safetext

texts = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=80)
limits = st.integers(min_value=1, max_value=40)


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(texts, limits)
def test_field_fits_the_limit_and_holds_only_printable_characters(text, limit):
    try:
        out = safetext.field(text, limit, "name")
    except safetext.UnsafeText:
        # refused only when nothing printable fits in the limit
        assert safetext.trim_utf8(safetext.printable(text), limit).rstrip(" \u200d") == ""
        return
    assert 0 < len(out.encode("utf-8")) <= limit
    assert out == out.strip(" ")
    for ch in out:
        assert ch not in "\n\r\t\x0b\x0c\x1b\x7f"
        assert unicodedata.category(ch)[0] != "C" or ch == "\u200d"
    # a prefix of the cleaned text: trimming never invents or reorders characters
    assert safetext.printable(text).startswith(out)


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80), st.integers(0, 40)
)
def test_trim_is_the_longest_whole_character_prefix(text, limit):
    out = safetext.trim_utf8(text, limit)
    assert text.startswith(out)
    assert len(out.encode("utf-8")) <= limit
    if out != text:
        assert len((out + text[len(out)]).encode("utf-8")) > limit


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)
)
def test_printable_ascii_is_typed_by_keys(text):
    assert safetext.entry_method(text, "refuse", "name") == "keys"
    assert safetext.is_key_typable(text)


@settings(deadline=None)  # a loaded CI machine must not make these flaky
@given(st.text(min_size=1, max_size=20).filter(lambda t: not t.isascii()))
def test_non_ascii_is_pasted_or_refused_never_typed(text):
    assert safetext.entry_method(text, "paste", "name") == "paste"
    with pytest.raises(safetext.UnsafeText, match="iPhone Mirroring"):
        safetext.entry_method(text, "refuse", "name")


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        ("Doge\nCoin\t!", 32, "Doge Coin !"),
        ("  spaced   out  ", 32, "spaced out"),
        ("evil\u202etxt.exe", 32, "eviltxt.exe"),  # bidi override dropped
        ("zero\u200bwidth", 32, "zerowidth"),
        ("\U0001f680" * 3, 10, "\U0001f680\U0001f680"),  # 4 bytes each: two fit in 10
        ("Café Moon", 4, "Caf"),  # é is 2 bytes: cut before it, not inside it
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10, "ABCDEFGHIJ"),
    ],
)
def test_examples(raw, limit, expected):
    assert safetext.field(raw, limit, "name") == expected


def test_nothing_printable_is_refused_with_the_reason():
    with pytest.raises(safetext.UnsafeText, match="no printable character"):
        safetext.field("\n\t\x00\u202e", 32, "name")
