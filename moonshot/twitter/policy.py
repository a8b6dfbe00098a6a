"""Which parsed tweets may become coins: allow and deny lists of authors, a minimum
follower count, deny words for tickers and names, hourly limits per author and in all.
Decides only; the store records every decision with its reason (table `decisions`)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from moonshot.config import PolicyConfig
from moonshot.twitter.tweets import ParsedTweet

HOUR = 3600.0

# Letters of other scripts that read as Latin ones, so that a deny word cannot be
# dodged with a Cyrillic "ѕсаm". NFKC already folds fullwidth and styled letters.
CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d",
        "ԛ": "q", "ԝ": "w", "ӏ": "l", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k",
        "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ζ": "z", "η": "n",
        "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str


def fold(text: str) -> str:
    """Lower-case letters only, look-alikes and digit spellings mapped to Latin."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(CONFUSABLES)
    return "".join(ch for ch in text if ch.isalpha())


def _users(names: list[str]) -> set[str]:
    return {n.strip().lstrip("@").casefold() for n in names if n.strip()}


class Policy:
    def __init__(self, cfg: PolicyConfig):
        self.cfg = cfg
        self.allow = _users(cfg.allow_authors)
        self.deny = _users(cfg.deny_authors)
        self.words = [(w.strip(), fold(w)) for w in cfg.deny_words if fold(w)]

    def judge(self, tweet: ParsedTweet) -> Verdict:
        """The checks that need nothing but the tweet (limits come in `limit`)."""
        user = tweet.twitter_user.casefold()
        if user in self.deny:
            return Verdict(False, f"author @{tweet.twitter_user} is on policy.deny_authors")
        if self.allow and user not in self.allow:
            return Verdict(False, f"author @{tweet.twitter_user} is not on policy.allow_authors")
        if self.cfg.min_followers > 0:
            if tweet.followers is None:
                return Verdict(
                    False,
                    "follower count unknown (request user.fields=public_metrics); policy.min_followers is set",
                )
            if tweet.followers < self.cfg.min_followers:
                return Verdict(
                    False,
                    f"author has {tweet.followers} followers, policy.min_followers is {self.cfg.min_followers}",
                )
        for shown, word in self.words:
            for what, value in (("ticker", tweet.ticker), ("name", tweet.name)):
                if word in fold(value):
                    return Verdict(False, f"{what} contains the denied word {shown!r}")
        return Verdict(True, "accepted: passed author, follower and word checks")

    def limit(
        self, tweet: ParsedTweet, now: float
    ) -> Callable[[Callable[..., int]], str | None] | None:
        """The hourly limits, checked by the store inside the transaction that records
        the decision; None when no limit is configured."""
        per_author, overall = self.cfg.per_author_per_hour, self.cfg.global_per_hour
        if per_author <= 0 and overall <= 0:
            return None

        def check(count: Callable[..., int]) -> str | None:
            since = now - HOUR
            if overall > 0 and count(since) >= overall:
                return f"global limit reached: {overall} coins in the last hour (policy.global_per_hour)"
            if per_author > 0 and count(since, tweet.twitter_user) >= per_author:
                return f"@{tweet.twitter_user} reached {per_author} coins in the last hour (policy.per_author_per_hour)"
            return None

        return check
