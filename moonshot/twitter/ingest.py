"""Tweets to coins: parse, judge by policy, record the decision, then create the coin
in the target (Supabase, or the embedded source). The decision is committed before the
coin is created, and an accepted tweet without its coin is finished on the next run."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from moonshot import crash
from moonshot.config import Config
from moonshot.errors import ConfigError, Rejected, TransientError
from moonshot.ports import IncomingCoin
from moonshot.store import Store
from moonshot.twitter import tweets
from moonshot.twitter.policy import Policy

log = logging.getLogger("moonshot.ingest")

# Crash points of ingest (design.md, "Proving crash safety"), with the same switch as
# moonshot.crash: MOONSHOT_CRASH_AT=ingest_<point>[:<n>] ends the process there.
INGEST_CRASH_POINTS = ("after_decision_commit", "after_upload", "after_insert")


def crash_point(name: str) -> None:
    if name not in INGEST_CRASH_POINTS:
        raise ValueError(f"unknown ingest crash point {name}")
    spec = os.environ.get("MOONSHOT_CRASH_AT", "")
    target, _, count = spec.partition(":")
    if target != f"ingest_{name}":
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] >= int(count or 1):
        os._exit(crash.CRASH_EXIT)


_crash_hits: dict[str, int] = {}


class Target(Protocol):
    """Where an accepted tweet's coin is created; `create` must be idempotent per tweet."""

    kind: str

    def create(self, decision: dict[str, Any]) -> str:
        """Create (or find) the coin of an accepted decision; returns its reference."""


@dataclass(frozen=True)
class Outcome:
    tweet_id: str | None
    status: str  # accepted | refused | duplicate | pending | invalid
    reason: str
    coin_ref: str | None = None
    twitter_user: str | None = None
    ticker: str | None = None
    name: str | None = None

    def line(self) -> str:
        what = f"tweet {self.tweet_id or '?'} {self.status}"
        if self.ticker:
            what += f" ${self.ticker} {self.name!r} by @{self.twitter_user}"
        if self.coin_ref:
            what += f" -> {self.coin_ref}"
        return f"{what}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalTarget:
    """The embedded source: the coin goes into the state database in `fetched`, with
    the media URL as its image (the spooler downloads http(s) URLs)."""

    kind = "local"

    def __init__(self, store: Store):
        self.store = store

    def create(self, decision: dict[str, Any]) -> str:
        incoming = IncomingCoin(
            source="local",
            source_ref=f"tweet:{decision['tweet_id']}",
            ticker=decision["ticker"],
            name=decision["name"],
            image_url=decision["image_url"],
            twitter_user=decision["twitter_user"],
            tweet_id=decision["tweet_id"],
        )
        detail = {
            "tweet_id": decision["tweet_id"],
            "decision": decision["reason"],
            "origin": decision["origin"],
        }
        coin_id, _ = self.store.add_coin(
            incoming, twitter_user=decision["twitter_user"], trigger="ingest", detail=detail
        )
        return f"coin {coin_id}"


def target_kind(cfg: Config) -> str:
    if cfg.ingest.target != "auto":
        return cfg.ingest.target
    return "supabase" if cfg.source.kind == "supabase" else "local"


def build_target(cfg: Config, store: Store) -> Target:
    kind = target_kind(cfg)
    if kind == "local":
        return LocalTarget(store)
    if kind == "supabase":
        from moonshot.supabase.ingest_target import SupabaseTarget

        return SupabaseTarget.from_config(cfg, crash=crash_point)
    raise ConfigError(f"ingest.target = {kind!r}: expected auto, local or supabase")


def parse_rules(cfg: Config) -> tweets.ParseRules:
    return tweets.ParseRules(
        ticker_pattern=cfg.ingest.ticker_pattern,
        name_pattern=cfg.ingest.name_pattern,
        profile_image_fallback=cfg.ingest.profile_image_fallback,
        name_max_bytes=cfg.launch.name_max_bytes,
        image_hosts=tuple(cfg.ingest.image_hosts),
    )


class Ingestor:
    def __init__(self, store: Store, target: Target, policy: Policy, rules: tweets.ParseRules):
        self.store, self.target, self.policy, self.rules = store, target, policy, rules

    @classmethod
    def from_config(cls, cfg: Config, store: Store) -> Ingestor:
        for pattern in ("ticker_pattern", "name_pattern"):
            _check_pattern(cfg, pattern)
        return cls(store, build_target(cfg, store), Policy(cfg.policy), parse_rules(cfg))

    def ingest(
        self, payload: Any, origin: str, *, reconsider: bool = False, now: float | None = None
    ) -> list[Outcome]:
        """Every tweet of a file or API answer, in order; one Outcome each."""
        try:
            items = list(tweets.split_payload(payload))
        except Rejected as exc:
            return [Outcome(None, "invalid", exc.reason)]
        return [self.ingest_one(item, origin, reconsider=reconsider, now=now) for item in items]

    def ingest_one(
        self,
        item: tweets.TweetIn,
        origin: str,
        *,
        reconsider: bool = False,
        now: float | None = None,
    ) -> Outcome:
        now = time.time() if now is None else now
        tweet_id = item.tweet_id
        if tweet_id is None:
            return Outcome(None, "invalid", "tweet has no numeric id: nothing to record it under")
        old = self.store.decision(tweet_id)
        if old is not None and old["decision"] == "refused" and reconsider:
            self.store.forget_refusal(tweet_id)
            old = None
        if old is not None:
            if old["decision"] == "accepted" and old["completed_at"] is None:
                return self._complete(old)
            return _outcome(old, "duplicate", f"already {old['decision']}: {old['reason']}")
        row: dict[str, Any] = {"tweet_id": tweet_id, "origin": origin}
        limit = None
        try:
            parsed = tweets.parse(item, self.rules)
        except Rejected as exc:
            row.update(decision="refused", reason=exc.reason)
        else:
            row.update(
                twitter_user=parsed.twitter_user,
                ticker=parsed.ticker,
                name=parsed.name,
                image_url=parsed.image_url,
                detail={
                    "unix_ts": parsed.unix_ts,
                    "image_kind": parsed.image_kind,
                    "followers": parsed.followers,
                },
            )
            verdict = self.policy.judge(parsed)
            row.update(
                decision="accepted" if verdict.accepted else "refused", reason=verdict.reason
            )
            if verdict.accepted:
                limit = self.policy.limit(parsed, now)
        decision, new = self.store.decide(row, limit, now=now)
        if not new:  # another ingest decided it meanwhile: theirs stands
            if decision["decision"] == "accepted" and decision["completed_at"] is None:
                return self._complete(decision)
            return _outcome(
                decision, "duplicate", f"already {decision['decision']}: {decision['reason']}"
            )
        log.info("tweet %s %s: %s", tweet_id, decision["decision"], decision["reason"])
        if decision["decision"] != "accepted":
            return _outcome(decision, "refused", decision["reason"])
        crash_point("after_decision_commit")
        return self._complete(decision)

    def complete_pending(self) -> list[Outcome]:
        """Finish accepted tweets whose coin a crash or an outage left uncreated."""
        return [self._complete(d) for d in self.store.pending_decisions()]

    def _complete(self, decision: dict[str, Any]) -> Outcome:
        try:
            coin_ref = self.target.create(decision)
        except TransientError as exc:
            log.warning("tweet %s accepted, coin not created yet: %s", decision["tweet_id"], exc)
            return _outcome(
                decision,
                "pending",
                f"accepted, coin not created yet ({exc}); the next ingest retries",
            )
        except Rejected as exc:
            # The image turned out unusable: no coin, and the decision now says why.
            reason = f"refused by {self.target.kind} after acceptance: {exc.reason}"
            log.warning("tweet %s %s", decision["tweet_id"], reason)
            self.store.overturn_decision(decision["tweet_id"], reason)
            return _outcome(decision, "refused", reason)
        self.store.complete_decision(decision["tweet_id"], coin_ref)
        return _outcome(decision, "accepted", decision["reason"], coin_ref)


def _outcome(d: dict[str, Any], status: str, reason: str, coin_ref: str | None = None) -> Outcome:
    return Outcome(
        d["tweet_id"],
        status,
        reason,
        coin_ref or d.get("coin_ref"),
        d.get("twitter_user"),
        d.get("ticker"),
        d.get("name"),
    )


def _check_pattern(cfg: Config, key: str) -> None:
    pattern = getattr(cfg.ingest, key)
    if not pattern:
        return
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"ingest.{key} is not a valid regular expression: {exc}") from None
    if compiled.groups < 1:
        raise ConfigError(
            f"ingest.{key} needs one capturing group (...) around the {key.split('_')[0]}"
        )


def poll_x(ingestor: Ingestor, api: Any, now: float | None = None) -> tuple[list[Outcome], Any]:
    """One X API poll: finish pending coins, fetch what is newer than the cursor,
    ingest it oldest first. The cursor moves past a tweet once its decision is
    committed, and only when the poll saw every newer tweet (no gap behind it)."""
    outcomes = ingestor.complete_pending()
    poll = api.fetch(now)
    seen: dict[str, tweets.TweetIn] = {}
    for page in poll.pages:
        if "data" not in page:  # an empty page: {"meta": {"result_count": 0}}
            continue
        for item in tweets.split_payload(page):
            if item.tweet_id is not None:
                seen.setdefault(item.tweet_id, item)
            else:
                outcomes.append(Outcome(None, "invalid", "tweet has no numeric id"))
    for tweet_id in sorted(seen, key=int):
        outcomes.append(ingestor.ingest_one(seen[tweet_id], "x-api", now=now))
        if poll.complete:
            api.advance(tweet_id)
    return outcomes, poll


def follow_x(
    ingestor: Ingestor,
    api: Any,
    interval: float,
    *,
    stopped: Callable[[], bool],
    report: Callable[[list[Outcome]], None],
    warn: Callable[[str], None],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until `stopped()`: every `interval` seconds, or when the rate-limit window
    opens again. A transient error (network, X 5xx) waits for the next poll; a
    configuration error (bad token) ends the loop by raising."""
    while not stopped():
        wake = clock() + interval
        try:
            outcomes, poll = poll_x(ingestor, api)
        except TransientError as exc:
            warn(f"X API poll failed, trying again in {interval:.0f}s: {exc}")
        else:
            report(outcomes)
            if poll.rate_limited_until:
                wake = max(wake, poll.rate_limited_until)
        while not stopped() and clock() < wake:
            sleep(min(0.5, max(0.0, wake - clock())))
