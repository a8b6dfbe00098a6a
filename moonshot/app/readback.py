"""What the app shows, compared with what the flow typed (design.md invariant 6): one
rule table, explicit and tested; a `Verdict` whose reason is one line. Never reads the
screen itself (`ocr` does) and never accepts what it cannot confirm.

| the app shows (typed `MOON`, `Moon Coin`)   | verdict                                             |
|---------------------------------------------|-----------------------------------------------------|
| `$MOON`, `MOON`, `$moon`                    | accepted: a leading `$`, another case (whole text)  |
|                                             | for the ticker only                                 |
| `MOON COIN`, `moon coin` for the name       | refused: the name's case is the name's (a letter    |
|                                             | whose small form looks like its capital, c o s u v  |
|                                             | w x z, is a class: CONFUSABLE)                      |
| `$M00N`, `Moon C0in`                        | accepted: OCR confusables compared as one class,    |
|                                             | see CONFUSABLE; the length stays exact              |
| `Moon` / `Coin` on two lines                | accepted: lines joined with a space, or with none   |
| `MoonCoin`, `Mo on Coin`                    | accepted: compared with spaces removed as well      |
| `Prefilled Co…` (`...`) for `Prefilled Coin`| accepted when at least MIN_SHOWN characters (spaces |
|                                             | not counted) match the start of the name            |
| `Moën` for `Moen`, `Moen` for `Moën`        | accepted: a Latin letter with accents is compared   |
|                                             | as a class with its base letter (the recogniser's   |
|                                             | alphabet has é, è, ü, ä but not ë, ñ, ö)            |
| `MOONXX`, `Moon CoinOld`, `XXMOON`          | refused: text left over                             |
| `MON`, `Moon Coi`                           | refused: a character dropped                        |
| `$Moon Coin` as the ticker                  | refused: the other field's text                     |
| `MQON`                                      | refused: a character outside its class              |
| `Prefil…`                                   | refused: too little shown to mean something         |
| any line read with confidence < minimum     | refused: "could not read ... with confidence ..."   |
| a name holding an emoji, symbol or mark     | refused: OCR cannot confirm it (UNCONFIRMABLE)      |
| nothing read                                | refused                                             |

Why classes plus an exact length: what goes wrong in practice is text left over, a
character dropped, or text typed into the other field; all change the characters or the
length. A key never turns `0` into `O`, but a font may draw them alike (design.md).

What OCR cannot confirm: a truncated name proves only the part shown (left-over text
after the cut is invisible); spaces (compared with and without); the accents of Latin
letters. Where those matter, read the field back exactly with `compare_field`
(select all + copy)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from moonshot.app.ocr import Reading

# Characters the recogniser reads as one another (case-sensitive). Measured with
# bench/ocr.py --confusion (1600 random tickers and names, DejaVu Sans, Sans Bold, Serif,
# Mono, Condensed, 11-20 px, 1x and 2x, four colour themes): O/0/o and I/l/1 most, then
# the letters whose small form has the capital's shape. S/5 and B/8 were not confused
# here but are in other fonts (design.md), so they stay. Seen once or twice and left
# out (a refusal, not a wrong launch): Q as 0, J as I, l as L, I as i.
CONFUSABLE = ("O0o", "Il1", "S5s", "B8", "Cc", "Jj", "Uu", "Vv", "Ww", "Xx", "Zz")
# Shown characters (spaces not counted) a truncated name must have to be accepted.
MIN_SHOWN = 8
# Ellipsis forms at the end of a truncated name: the character, or dots as OCR reads it.
_ELLIPSIS = re.compile(r"\s*(?:…|\.{2,})\s*$")
_CLASS = {ch: cls[0] for cls in CONFUSABLE for ch in cls}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # one line: what was expected, what was read, why it differs


def _base(ch: str) -> str:
    """A Latin letter without its accents (`ë` -> `e`), else the character itself."""
    if ch.isascii():
        return ch
    stripped = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return stripped if len(stripped) == 1 and stripped.isascii() and stripped.isalpha() else ch


def _key(ch: str) -> str:
    b = _base(ch)
    return _CLASS.get(b, b)


def fold(text: str) -> str:
    """Text as OCR may render it, for finding it inside a longer line: no spaces, one
    case, each look-alike class one character."""
    return "".join(_key(ch) for ch in _nospace(_nfc(text)).upper())


def unconfirmable(text: str) -> list[str]:
    """Characters OCR cannot confirm: symbols (emoji), marks and format codes outside
    ASCII. Letters of any script and digits are read (and must then read exactly)."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch.isascii() or ch.isspace():
            continue
        if unicodedata.category(ch)[0] in "SMC":
            out.append(ch)
    return out


def _show(text: str, limit: int = 48) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _first_difference(expected: str, shown: str, *, classes: bool = True) -> str | None:
    """None when `shown` is `expected` (under the classes), else why it is not."""
    if len(shown) != len(expected):
        n = len(shown) - len(expected)
        return f"{abs(n)} character{'s' if abs(n) != 1 else ''} too {'many' if n > 0 else 'few'}"
    for i, (e, s) in enumerate(zip(expected, shown, strict=True)):
        if e != s and not (classes and _key(e) == _key(s)):
            return f"character {i + 1} is {s!r}, not {e!r}"
    return None


def _renderings(expected: str, cases: bool) -> list[str]:
    """The whole text as typed, and with `cases` in capitals and in small letters."""
    if not cases:
        return [expected]
    return list(dict.fromkeys([expected, expected.upper(), expected.lower()]))


def _nospace(text: str) -> str:
    return "".join(text.split())


def _same(expected: str, shown: str, *, with_spaces: bool = True, cases: bool = True) -> str | None:
    """None when `shown` reads as a rendering of `expected` (in another case only with
    `cases`: the ticker): with its spaces (runs collapsed) when `with_spaces`, or with
    every space removed; else why it does not."""
    pairs = []
    for r in _renderings(expected, cases):
        if with_spaces:
            pairs.append((" ".join(r.split()), " ".join(shown.split())))
        pairs.append((_nospace(r), _nospace(shown)))
    if any(_first_difference(e, s) is None for e, s in pairs):
        return None
    return _first_difference(_nospace(expected), _nospace(shown))


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _low_confidence(what: str, readings: list[Reading], minimum: float) -> Verdict | None:
    for r in readings:
        if r.confidence < minimum:
            return Verdict(
                False,
                f"could not read the {what} with confidence {r.confidence:.2f} < {minimum:.2f}"
                f" (read {_show(r.text)})",
            )
    return None


def _refuse_unconfirmable(what: str, expected: str) -> Verdict | None:
    bad = unconfirmable(expected)
    if not bad:
        return None
    names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in dict.fromkeys(bad))
    return Verdict(
        False,
        f"the {what} {_show(expected)} holds {names}, which OCR cannot confirm on screen;"
        " edit the coin or read the field back exactly",
    )


def compare_ticker(
    expected: str, reading: Reading, *, min_confidence: float, dollar: bool | None = None
) -> Verdict:
    """The ticker box as read against the ticker typed. `dollar`: None when a leading
    `$` may or may not be shown (only a `$` read as `$` is dropped); True when the app
    always shows one (then its first character may read as `$`, `S`, `s` or `5`, as a
    small `$` does, and must be there); False when it never does."""
    expected = _nfc(expected)
    refused = _refuse_unconfirmable("ticker", expected)
    if refused:
        return refused
    low = _low_confidence("ticker", [reading], min_confidence)
    if low:
        return low
    shown = _nospace(_nfc(reading.text))
    said = f"read {_show(reading.text)} ({reading.confidence:.2f}), expected {_show(expected)}"
    if not shown:
        return Verdict(False, f"ticker: nothing read, expected {_show(expected)}")
    if dollar is True:
        if shown[0] not in "$Ss5":
            return Verdict(False, f"ticker: {said}: no '$' before the ticker")
        shown = shown[1:]
    elif dollar is None and shown.startswith("$"):
        shown = shown[1:]
    why = _same(expected, shown, with_spaces=False)
    if why:
        if (
            dollar is None
            and shown[:1] in ("S", "s", "5")
            and _same(expected, shown[1:], with_spaces=False) is None
        ):
            why += (
                " (a small '$' reads as 'S': if the app always shows '$' before the"
                " ticker, set dollar = true on this read_text step)"
            )
        return Verdict(False, f"ticker: {said}: {why}")
    return Verdict(True, f"ticker {_show(expected)} shown as {_show(reading.text)}")


def compare_name(expected: str, readings: list[Reading], *, min_confidence: float) -> Verdict:
    """The name box's lines (top to bottom) against the name typed: joined with a space
    and with none; a trailing ellipsis makes the shown part a prefix (MIN_SHOWN)."""
    expected = _nfc(expected)
    refused = _refuse_unconfirmable("name", expected)
    if refused:
        return refused
    low = _low_confidence("name", readings, min_confidence)
    if low:
        return low
    lines = [_nfc(r.text).strip() for r in readings if r.text.strip()]
    if not lines:
        return Verdict(False, f"name: nothing read, expected {_show(expected)}")
    joined = " ".join(lines)
    said = f"read {_show(joined)}, expected {_show(expected)}"
    # Wrapped mid-word: the lines run on with no space between them.
    candidates = [joined, "".join(lines)] if len(lines) > 1 else [joined]
    why = None
    for shown in candidates:
        diff = _same(expected, shown, with_spaces=True, cases=False)
        if diff is None:
            return Verdict(True, f"name {_show(expected)} shown as {_show(joined)}")
        why = why or diff
    cut = _ELLIPSIS.search(joined)
    if cut is None:
        return Verdict(False, f"name: {said}: {why}")
    prefix = _nospace(joined[: cut.start()])
    whole = _nospace(expected)
    if len(prefix) < MIN_SHOWN:
        return Verdict(
            False,
            f"name: {said}: truncated to {len(prefix)} characters, fewer than {MIN_SHOWN}"
            " to confirm it",
        )
    if len(prefix) >= len(whole):
        return Verdict(False, f"name: {said}: truncated, yet longer than the name")
    why = _same(whole[: len(prefix)], prefix, with_spaces=False, cases=False)
    if why:
        return Verdict(False, f"name: {said}: the shown start differs, {why}")
    return Verdict(
        True,
        f"name {_show(expected)} shown truncated as {_show(joined)}"
        f" ({len(prefix)} of {len(whole)} characters confirmed)",
    )


def compare_field(expected: str, actual: str) -> Verdict:
    """A field read back exactly (select all + copy): equal after Unicode NFC, one
    trailing line break (clipboard tools add one) dropped; nothing else is forgiven."""
    expected, actual = _nfc(expected), _nfc(actual)
    if actual.endswith("\r\n"):
        actual = actual[:-2]
    elif actual.endswith("\n"):
        actual = actual[:-1]
    why = _first_difference(expected, actual, classes=False)
    if why is None:
        return Verdict(True, f"field holds {_show(expected)}")
    return Verdict(False, f"field holds {_show(actual)}, expected {_show(expected)}: {why}")
