"""The canonical spool file name `{twitter_user}_{TICKER}_{unix_ts}.jpg`: the only
place that formats, parses and validates it, and the one canonical form of a tweet id.
Nothing this module accepts can hold a path separator, `..`, a control character or a
newline (invariant 5)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from moonshot.errors import Rejected

USER_RE = re.compile(r"[A-Za-z0-9_]{1,15}")
TICKER_RE = re.compile(r"[A-Z0-9]{1,10}")
# The user part may itself contain underscores, the ticker may not: parse from the right.
NAME_RE = re.compile(
    r"(?P<user>[A-Za-z0-9_]{1,15})_(?P<ticker>[A-Z0-9]{1,10})_(?P<ts>[1-9][0-9]{0,11})\.jpg"
)
MAX_TS = 10**12 - 1  # 12 digits: far beyond year 9999 in seconds, keeps names short
# An X (Twitter) id is a positive 64-bit snowflake written in decimal: no sign, no
# leading zero, at most 19 digits. `042` and `42` would otherwise be two tweets (issue 15).
TWEET_ID_RE = re.compile(r"[1-9][0-9]{0,18}")
MAX_TWEET_ID = 2**63 - 1


@dataclass(frozen=True)
class SpoolName:
    twitter_user: str
    ticker: str
    unix_ts: int

    def __str__(self) -> str:
        return f"{self.twitter_user}_{self.ticker}_{self.unix_ts}.jpg"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def valid_user(user: object) -> str:
    if not isinstance(user, str) or not USER_RE.fullmatch(user):
        raise Rejected(f"invalid twitter user {_show(user)}: expected 1-15 of A-Z a-z 0-9 _")
    return user


def valid_ticker(ticker: object) -> str:
    """Upper-cases, then validates. Leading `$` (a cashtag) and surrounding spaces are
    not silently dropped: the caller (tweet parser) decides what a ticker is."""
    if not isinstance(ticker, str):
        raise Rejected(f"invalid ticker {_show(ticker)}: expected 1-10 of A-Z 0-9")
    # str.upper() maps some non-ASCII letters to ASCII ones (e.g. 'ı' -> 'I'): check first.
    if not ticker.isascii() or not TICKER_RE.fullmatch(ticker.upper()):
        raise Rejected(f"invalid ticker {_show(ticker)}: expected 1-10 of A-Z 0-9")
    return ticker.upper()


def valid_ts(ts: object) -> int:
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts <= MAX_TS:
        raise Rejected(f"invalid timestamp {_show(ts)}: expected a positive integer")
    return ts


def valid_tweet_id(tweet_id: object) -> str:
    """The one canonical text of a tweet id (an int from JSON, or its decimal text),
    or Rejected: ids are compared in this form everywhere (CLI, ingest, Supabase)."""
    if isinstance(tweet_id, int) and not isinstance(tweet_id, bool):
        text = str(tweet_id)
    elif isinstance(tweet_id, str):
        text = tweet_id
    else:
        text = None
    if text is None or not TWEET_ID_RE.fullmatch(text) or int(text) > MAX_TWEET_ID:
        raise Rejected(
            f"invalid tweet id {_show(tweet_id)}: expected an X id, 1-19 decimal digits"
            " without a leading zero"
        )
    return text


def format_name(twitter_user: str, ticker: str, unix_ts: int) -> str:
    """The canonical file name, or Rejected naming the bad part."""
    return str(SpoolName(valid_user(twitter_user), valid_ticker(ticker), valid_ts(unix_ts)))


def parse_name(filename: str) -> SpoolName | None:
    """The parts of a canonical name, or None for any other name (left alone)."""
    m = NAME_RE.fullmatch(filename) if isinstance(filename, str) else None
    if not m:
        return None
    return SpoolName(m["user"], m["ticker"], int(m["ts"]))
