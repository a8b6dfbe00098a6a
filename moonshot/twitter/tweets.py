"""The tweet parser: an X API v2 tweet (with its `includes`) becomes a ticker, a name,
an author and an image URL, or a refusal with its reason. Pure: no I/O, no clock.
Nothing it returns can be refused later by moonshot.naming (invariant 5)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from moonshot import naming
from moonshot.errors import Rejected

# Characters that read as a dollar sign but are not U+0024 (a person sees "$MOON").
DOLLAR_LOOKALIKES = "\uff04\ufe69\U0001f4b2"  # fullwidth, small, heavy dollar sign
# A token starting with one of these is a ticker attempt, even if the character is
# invisible (a zero-width space after the `$`) or a mark: it is checked, not skipped.
LEADS = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Cf"})
TICKER_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]{0,9}")
TRAILING_PUNCT = ".,!?;:)]}>'\"…"
# A `$` starts a cashtag only at the start of the text, after whitespace or after an
# opening bracket or quote: "US$5", "a$b" and "/$MOON" in a URL are not cashtags.
CASHTAG_LEAD = re.compile(r"(?:^|(?<=[\s(\[{<'\"]))\$")
URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)
MENTION_RE = re.compile(r"(?<![\w@])@\w{1,15}")
HASHTAG_RE = re.compile(r"(?<![\w#])#\w+")
RUN_RE = re.compile(r"\S*")
TOKEN_WINDOW = 64
MAX_TEXT = 25_000  # X's longest post; longer input is not a tweet
TWITTER_EPOCH_MS = 1288834974657  # snowflake ids: (id >> 22) + epoch = creation ms


@dataclass(frozen=True)
class ParseRules:
    """What `[ingest]` configures for the parser (see README "Tweets to coins")."""

    ticker_pattern: str = ""  # a regex with one group, e.g. r"(?i)ticker:\s*(\S+)"
    name_pattern: str = ""  # a regex with one group, e.g. r"(?im)^name:\s*(.+)$"
    profile_image_fallback: bool = False
    name_max_bytes: int = 32
    image_hosts: tuple[str, ...] = ()  # empty: any host


@dataclass(frozen=True)
class ParsedTweet:
    tweet_id: str
    twitter_user: str
    ticker: str
    name: str
    image_url: str
    image_kind: str  # photo | video | animated_gif | profile
    unix_ts: int
    author_id: str | None = None
    followers: int | None = None


@dataclass(frozen=True)
class TweetIn:
    """One tweet with the `includes` of the response it came in."""

    tweet: dict[str, Any]
    includes: dict[str, Any]

    @property
    def tweet_id(self) -> str | None:
        """The id in its one canonical form (naming.valid_tweet_id), None if it is no
        X id: `042` is not tweet 42 (issue 15)."""
        tid = self.tweet.get("id") if isinstance(self.tweet, dict) else None
        try:
            return naming.valid_tweet_id(tid)
        except Rejected:
            return None


def split_payload(payload: Any) -> Iterator[TweetIn]:
    """Tweets in a file or an API answer: one tweet, a list of tweets, or a response
    `{"data": tweet-or-list, "includes": {...}}` (or a list of such responses). A bare
    tweet may carry its own `includes` key."""
    if isinstance(payload, list):
        for item in payload:
            yield from split_payload(item)
        return
    if not isinstance(payload, dict):
        raise Rejected(f"not a tweet or X API response: a JSON {type(payload).__name__}")
    if "data" in payload:
        includes = payload.get("includes") if isinstance(payload.get("includes"), dict) else {}
        data = payload["data"]
        for tweet in data if isinstance(data, list) else [data]:
            yield TweetIn(tweet if isinstance(tweet, dict) else {}, includes)
        return
    includes = payload.get("includes") if isinstance(payload.get("includes"), dict) else {}
    yield TweetIn(payload, includes)


def _char_name(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')}"


def _token_at(text: str, start: int) -> str:
    """The whole run of non-space characters from `start`, trailing punctuation
    removed: what a person reads as one word, whatever a regex matched inside it."""
    # Only a short window is read: a word longer than that is no ticker whatever it
    # holds, and scanning every `$` to the end of a 25,000-character run is quadratic.
    window = min(len(text), start + TOKEN_WINDOW)
    token = RUN_RE.match(text, start, window).group()
    return token if len(token) == TOKEN_WINDOW else token.rstrip(TRAILING_PUNCT)


def _shown(token: str) -> str:
    return repr(token if len(token) <= 20 else token[:20] + "…")


def _check_token(token: str, shown: str) -> str | None:
    """The ticker in `token`; None when the token is not meant as one (a price such as
    $100, an emoji); Rejected when what we would launch could differ from what a person
    reads (a Cyrillic or fullwidth letter, a zero-width space inside)."""
    if not token or not (token[0].isalnum() or unicodedata.category(token[0]) in LEADS):
        return None
    for ch in "" if token.isascii() else token:
        if not ch.isascii():
            look = unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Cf"
            why = "refused as a look-alike" if look else "not a plain ticker"
            raise Rejected(f"ticker {shown} contains {_char_name(ch)}: {why}")
    if token[0].isdigit():
        return None
    if not TICKER_TOKEN.fullmatch(token):
        raise Rejected(
            f"ticker {shown} is not 1-10 ASCII letters and digits starting with a letter"
        )
    return naming.valid_ticker(token)


def find_ticker(text: str, rules: ParseRules) -> tuple[str, int, int]:
    """(ticker, start, end of where it was written): the configured pattern's group if
    the pattern matches, else the one cashtag of the text."""
    if rules.ticker_pattern:
        m = re.search(rules.ticker_pattern, text)
        if m and m.lastindex and m.start(1) >= 0:
            token = _token_at(text, m.start(1))
            ticker = _check_token(token, _shown(token))
            if ticker:
                return ticker, m.start(), max(m.end(), m.start(1) + len(token))
    for ch in DOLLAR_LOOKALIKES:
        for m in re.finditer(re.escape(ch), text):
            token = _token_at(text, m.end())
            if token and unicodedata.category(token[0]) in LEADS:
                raise Rejected(
                    f"cashtag {_shown(ch + token)} uses {_char_name(ch)}, not $: refused as a look-alike"
                )
    found: dict[str, tuple[int, int]] = {}
    for m in CASHTAG_LEAD.finditer(text):
        token = _token_at(text, m.end())
        ticker = _check_token(token, _shown("$" + token))
        if ticker:
            found.setdefault(ticker, (m.start(), m.end() + len(token)))
    if not found:
        raise Rejected(
            "no ticker: no $CASHTAG"
            + (" and no match for ingest.ticker_pattern" if rules.ticker_pattern else "")
        )
    if len(found) > 1:
        raise Rejected(
            f"several cashtags ({', '.join('$' + t for t in found)}): say which one with a single cashtag"
        )
    ticker, (start, end) = next(iter(found.items()))
    return ticker, start, end


def clean_text(text: str) -> str:
    """Text safe to show and paste: NFC, no control, format (zero-width, bidi override),
    private-use or unassigned characters, whitespace collapsed to single spaces."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in ("Zl", "Zp"):
            out.append(" ")
        elif cat[0] == "C":
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def trim_bytes(text: str, max_bytes: int) -> str:
    """Cut on a character boundary so the UTF-8 form fits `max_bytes`."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore").rstrip()


NAME_STRIP = " -–—:|,.;()[]{}<>\"'"


def _unescape(text: str) -> str:
    """X API v2 sends `&`, `<` and `>` in a tweet's text as HTML entities."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _name_part(part: str) -> str:
    part = _unescape(part)
    part = URL_RE.sub(" ", part)
    part = MENTION_RE.sub(" ", part)
    part = HASHTAG_RE.sub(" ", part)
    part = re.sub(r"(?:^|(?<=[\s(\[{<'\"]))\$\S+", " ", part)
    return clean_text(part).strip(NAME_STRIP)


def find_name(text: str, span: tuple[int, int], ticker: str, rules: ParseRules) -> str:
    """The configured pattern's group; else the README's rule: the rest of the ticker's
    line after it, else the part of that line before it (URLs, @mentions, #hashtags and
    other cashtags removed); else the ticker. Cleaned and cut to name_max_bytes."""
    raw = ""
    if rules.name_pattern:
        m = re.search(rules.name_pattern, text)
        if m and m.lastindex and m.group(1):
            raw = clean_text(_unescape(m.group(1)))
    if not raw:
        start, end = span
        line_start = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
        line_end = min(
            (i for i in (text.find("\n", end), text.find("\r", end)) if i >= 0), default=len(text)
        )
        raw = _name_part(text[end:line_end]) or _name_part(text[line_start:start])
    name = trim_bytes(clean_text(raw), rules.name_max_bytes).strip()
    return name or ticker


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _media_by_key(includes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    media = includes.get("media") if isinstance(includes.get("media"), list) else []
    return {
        m["media_key"]: m
        for m in media
        if isinstance(m, dict) and isinstance(m.get("media_key"), str)
    }


def _check_url(url: Any, what: str, hosts: tuple[str, ...] = ()) -> str:
    if not isinstance(url, str) or any(
        ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in url
    ):
        raise Rejected(f"{what} URL is missing or holds spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Rejected(f"{what} URL is not http(s): {url[:60]!r}")
    host = parts.hostname.lower()
    if hosts and not any(host == h.lower() or host.endswith("." + h.lower()) for h in hosts):
        raise Rejected(f"{what} host {host} is not allowed (ingest.image_hosts)")
    return url


def find_image(
    tweet: dict[str, Any], includes: dict[str, Any], user: dict[str, Any] | None, rules: ParseRules
) -> tuple[str, str]:
    """(image URL, kind): the first attached photo; without a photo, the preview image
    of the first video or GIF; without media, the author's profile image if configured."""
    keys = _dict(tweet.get("attachments")).get("media_keys") or []
    media = _media_by_key(includes)
    keys = keys if isinstance(keys, list) else []
    missing = [k for k in keys if not isinstance(k, str) or k not in media]
    if missing:  # we cannot tell whether the missing one was the first photo
        raise Rejected(
            f"media {str(missing[0])[:40]!r} is not in includes.media: request expansions=attachments.media_keys"
        )
    found = [media[k] for k in keys]
    for item in found:
        if item.get("type") == "photo":
            return _check_url(item.get("url"), "photo", rules.image_hosts), "photo"
    for item in found:
        if item.get("type") in ("video", "animated_gif"):
            kind = item["type"]
            return _check_url(
                item.get("preview_image_url"), f"{kind} preview", rules.image_hosts
            ), kind
    if rules.profile_image_fallback and user and user.get("profile_image_url"):
        # X serves a 48x48 `_normal` variant by default; `_400x400` is the same image larger.
        url = re.sub(r"_normal(\.\w+)$", r"_400x400\1", str(user["profile_image_url"]))
        return _check_url(url, "profile image", rules.image_hosts), "profile"
    if rules.profile_image_fallback:
        raise Rejected("no image: no media and no profile_image_url for the author")
    raise Rejected(
        "no image: the tweet has no photo, video or GIF (ingest.profile_image_fallback is off)"
    )


def tweet_time(tweet: dict[str, Any], tweet_id: str) -> int:
    """Unix seconds of the tweet: created_at, else decoded from the snowflake id."""
    created = tweet.get("created_at")
    if isinstance(created, str):
        try:
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
            if when.tzinfo is None:  # X sends UTC; a bare time is read as UTC, not local
                when = when.replace(tzinfo=UTC)
            return max(1, int(when.timestamp()))
        except (ValueError, OverflowError, OSError):
            raise Rejected(f"created_at {created[:40]!r} is not an ISO 8601 time") from None
    return max(1, ((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) // 1000)


def author_of(tweet: dict[str, Any], includes: dict[str, Any]) -> dict[str, Any] | None:
    users = includes.get("users") if isinstance(includes.get("users"), list) else []
    author_id = tweet.get("author_id")
    for u in users:
        if isinstance(u, dict) and author_id is not None and str(u.get("id")) == str(author_id):
            return u
    return None


def parse(item: TweetIn, rules: ParseRules) -> ParsedTweet:
    """The coin a tweet asks for, or Rejected(reason)."""
    tweet, includes = item.tweet, item.includes
    tweet_id = item.tweet_id
    if tweet_id is None:
        raise Rejected("tweet has no numeric id")
    text = tweet.get("text")
    if not isinstance(text, str):
        raise Rejected("tweet has no text")
    if len(text) > MAX_TEXT:
        raise Rejected(f"text is {len(text)} characters, longer than any post ({MAX_TEXT})")
    refs = tweet.get("referenced_tweets")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("type") == "retweeted":
            raise Rejected("a retweet: only original tweets, replies and quotes make coins")
    user = author_of(tweet, includes)
    if user is None:
        raise Rejected(
            "author unknown: request expansions=author_id so includes.users has the author"
        )
    twitter_user = naming.valid_user(user.get("username"))
    followers = _dict(user.get("public_metrics")).get("followers_count")
    ticker, start, end = find_ticker(text, rules)
    name = find_name(text, (start, end), ticker, rules)
    image_url, kind = find_image(tweet, includes, user, rules)
    ts = tweet_time(tweet, tweet_id)
    naming.format_name(twitter_user, ticker, ts)  # the spool name must be valid now, not later
    return ParsedTweet(
        tweet_id=tweet_id,
        twitter_user=twitter_user,
        ticker=ticker,
        name=name,
        image_url=image_url,
        image_kind=kind,
        unix_ts=ts,
        author_id=str(tweet.get("author_id")),
        followers=followers
        if isinstance(followers, int) and not isinstance(followers, bool)
        else None,
    )
