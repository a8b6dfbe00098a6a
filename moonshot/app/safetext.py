"""Text from tweets made safe to enter into the app: printable characters only (no
newline, tab, control or bidi code), trimmed to the app's UTF-8 byte limits on a
character boundary. Decides how text may be entered; never types anything itself."""

from __future__ import annotations

import unicodedata

NON_ASCII_METHODS = ("paste", "refuse")
ZWJ = "\u200d"  # joins emoji sequences; harmless, unlike the other format codes


class UnsafeText(ValueError):
    """The text cannot be entered safely with the configured method."""


def printable(text: str) -> str:
    """Drop control, format (bidi overrides, zero-width), surrogate, private-use and
    unassigned code points; every kind of whitespace becomes one plain space."""
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in ("Zs", "Zl", "Zp"):
            if out and out[-1] != " ":
                out.append(" ")
        elif cat[0] != "C" or ch == ZWJ:
            out.append(ch)
    return "".join(out).strip(" ")


def trim_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of whole code points that fits in max_bytes of UTF-8."""
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    # errors="ignore" drops only the partial code point cut at the end.
    return data[:max_bytes].decode("utf-8", errors="ignore")


def field(text: str, max_bytes: int, what: str) -> str:
    """The printable text trimmed to the limit, without a dangling joiner or space;
    UnsafeText when nothing printable is left."""
    out = trim_utf8(printable(text), max_bytes).rstrip(" " + ZWJ)
    if not out:
        raise UnsafeText(f"{what} {text[:40]!r} has no printable character to enter")
    return out


def is_key_typable(text: str) -> bool:
    """Only printable ASCII has a key on every keyboard layout pyautogui drives."""
    return all(" " <= ch <= "~" for ch in text)


def entry_method(text: str, non_ascii: str, what: str) -> str:
    """Returns "keys" for printable ASCII, else the flow's method for other text: "paste",
    or UnsafeText naming why ("refuse": paste is not delivered through iPhone Mirroring)."""
    if non_ascii not in NON_ASCII_METHODS:
        raise ValueError(f"non_ascii = {non_ascii!r}: expected paste or refuse")
    if is_key_typable(text):
        return "keys"
    if non_ascii == "paste":
        return "paste"
    raise UnsafeText(
        f"{what} {text!r} is not plain ASCII and this flow refuses non-ASCII text"
        " (flow.non_ascii = refuse: paste is not delivered through iPhone Mirroring);"
        " edit the coin or set non_ascii = paste for a native app window"
    )
