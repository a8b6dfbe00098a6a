"""Polling X API v2 (recent search or mentions) for new tweets: bearer token from the
environment, never logged; `since_id` and the rate-limit window persisted in the state
database, so a restart neither misses nor repeats a tweet nor hammers a closed window."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from moonshot.config import Config, secret
from moonshot.errors import ConfigError, MoonshotError, TransientError

log = logging.getLogger("moonshot.xapi")

TOKEN_ENV = "X_BEARER_TOKEN"
MAX_PAGES = 50  # one poll never walks more than this many pages (5,000 tweets)
DEFAULT_WAIT = 60.0  # a 429 without x-rate-limit-reset: wait this long
PARAMS = {
    "tweet.fields": "created_at,author_id,attachments,entities,referenced_tweets",
    "expansions": "author_id,attachments.media_keys",
    "media.fields": "url,preview_image_url,type",
    "user.fields": "username,public_metrics,profile_image_url",
}


class RateLimited(MoonshotError):
    """X says no more requests until `until` (unix seconds)."""

    def __init__(self, until: float):
        super().__init__(f"X API rate limit: next request allowed at {_stamp(until)}")
        self.until = until


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Poll:
    """One poll: the pages X returned, newest first, and whether they are all the
    tweets newer than the cursor (only then may the cursor move past them)."""

    pages: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    rate_limited_until: float | None = None
    requests: int = 0


class XApi:
    def __init__(self, cfg: Config, store, token: str, client: httpx.Client | None = None):
        self.cfg, self.store = cfg.ingest, store
        self._token = token
        self.client = client or httpx.Client(timeout=self.cfg.x_timeout)
        if self.cfg.x_mode == "search" and not self.cfg.x_query.strip():
            raise ConfigError(
                "ingest.x_query is empty: set the recent-search query (ingest.x_mode = search)"
            )
        if self.cfg.x_mode == "mentions" and not self.cfg.x_user_id.strip().isdigit():
            raise ConfigError(
                "ingest.x_user_id must be the numeric id of the account whose mentions to poll"
            )

    @classmethod
    def from_config(cls, cfg: Config, store) -> XApi:
        token = secret(TOKEN_ENV)
        if not token:
            raise ConfigError(f"{TOKEN_ENV} is not set: export the X API bearer token to poll X")
        return cls(cfg, store, token)

    def __repr__(self) -> str:  # never the token
        return f"XApi(mode={self.cfg.x_mode!r}, base={self.cfg.x_api_base!r})"

    # -- persisted state ---------------------------------------------------------------
    @property
    def cursor_key(self) -> str:
        what = self.cfg.x_query if self.cfg.x_mode == "search" else self.cfg.x_user_id
        return f"x_api.since_id:{self.cfg.x_mode}:{what.strip()}"

    def cursor(self) -> str | None:
        return self.store.meta_get(self.cursor_key)

    def advance(self, tweet_id: str) -> None:
        """Move the cursor forward to `tweet_id`; never backward."""
        old = self.cursor()
        if old is None or int(tweet_id) > int(old):
            self.store.meta_set(self.cursor_key, tweet_id)

    def blocked_until(self) -> float:
        return float(self.store.meta_get("x_api.blocked_until") or 0)

    # -- requests ----------------------------------------------------------------------
    def _url(self) -> str:
        base = self.cfg.x_api_base.rstrip("/")
        if self.cfg.x_mode == "search":
            return f"{base}/2/tweets/search/recent"
        return f"{base}/2/users/{self.cfg.x_user_id.strip()}/mentions"

    def _params(self, since_id: str | None, token: str | None, now: float) -> dict[str, Any]:
        low = 10 if self.cfg.x_mode == "search" else 5
        params: dict[str, Any] = dict(
            PARAMS, max_results=max(low, min(100, self.cfg.x_max_results))
        )
        if self.cfg.x_mode == "search":
            params["query"] = self.cfg.x_query
        if since_id:
            params["since_id"] = since_id
        else:
            params["start_time"] = _stamp(now - self.cfg.x_first_lookback)
        if token:
            params["next_token" if self.cfg.x_mode == "search" else "pagination_token"] = token
        return params

    def _note_rate(self, resp: httpx.Response, now: float) -> float | None:
        """Persist a closed window: remaining 0 (or a 429) means wait for the reset."""
        remaining = resp.headers.get("x-rate-limit-remaining")
        reset = resp.headers.get("x-rate-limit-reset")
        closed = resp.status_code == 429 or (remaining is not None and remaining.strip() == "0")
        if not closed:
            return None
        until = float(reset) if reset and reset.strip().isdigit() else now + DEFAULT_WAIT
        until = max(until, now + 1.0)
        self.store.meta_set("x_api.blocked_until", repr(until))
        log.warning("X API rate limit reached; next request at %s", _stamp(until))
        return until

    def fetch(self, now: float | None = None) -> Poll:
        """Every page of tweets newer than the cursor, unless the rate limit or an
        error stops it first (then `complete` is False)."""
        now = time.time() if now is None else now
        poll = Poll()
        until = self.blocked_until()
        if until > now:
            poll.rate_limited_until = until
            return poll
        since_id, token = self.cursor(), None
        for _ in range(MAX_PAGES):
            params = self._params(since_id, token, now)
            try:
                resp = self.client.get(
                    self._url(), params=params, headers={"Authorization": f"Bearer {self._token}"}
                )
            except httpx.HTTPError as exc:
                raise TransientError(f"X API request failed: {type(exc).__name__}") from None
            poll.requests += 1
            until = self._note_rate(resp, now)
            if resp.status_code == 429:
                poll.rate_limited_until = until
                return poll
            if resp.status_code in (401, 403):
                raise ConfigError(
                    f"X API refused the request (HTTP {resp.status_code}): check {TOKEN_ENV} and the app's access level"
                )
            if resp.status_code >= 500:
                raise TransientError(f"X API answered HTTP {resp.status_code}")
            if resp.status_code != 200:
                title = _error_title(resp, self._token)
                raise ConfigError(f"X API answered HTTP {resp.status_code}: {title}")
            try:
                page = resp.json()
            except ValueError:
                raise TransientError("X API answered with something that is not JSON") from None
            if not isinstance(page, dict):
                raise TransientError("X API answered with JSON that is not an object")
            poll.pages.append(page)
            token = (page.get("meta") or {}).get("next_token")
            if not token:
                poll.complete = True
                return poll
            if until is not None:  # the window closed on this page: finish next time
                poll.rate_limited_until = until
                return poll
        log.warning("X API poll stopped after %d pages; the rest comes next poll", MAX_PAGES)
        return poll


def _error_title(resp: httpx.Response, secret: str) -> str:
    """The error's title, one line; the token is blanked first (a server may echo it)."""
    try:
        body = resp.json()
    except ValueError:
        return "no JSON body"
    if isinstance(body, dict):
        title = (
            body.get("title")
            or body.get("detail")
            or (body.get("errors") or [{}])[0].get("message")
        )
        if isinstance(title, str):
            return " ".join(title.replace(secret, "***").split())[:120]
    return "no error title"
