"""The tweet policy: author lists, followers, deny words (look-alikes included) and the
hourly limits, which the store checks in the transaction that records the decision."""

from __future__ import annotations

import threading

import pytest

from moonshot.config import PolicyConfig
from moonshot.store import Store
from moonshot.twitter.policy import Policy, fold
from moonshot.twitter.tweets import ParsedTweet

NOW = 1_750_000_000.0


def tweet(user="alice", ticker="MOON", name="Moon Cat", followers=100, tid="1") -> ParsedTweet:
    return ParsedTweet(
        tid,
        user,
        ticker,
        name,
        "https://pbs.twimg.com/media/x.jpg",
        "photo",
        1,
        followers=followers,
    )


def judge(tw: ParsedTweet, **cfg):
    return Policy(PolicyConfig(**cfg)).judge(tw)


def test_everyone_passes_an_empty_policy():
    v = judge(tweet())
    assert v.accepted and "accepted" in v.reason


def test_author_lists_ignore_case_and_at_sign():
    assert not judge(tweet(user="Alice"), deny_authors=["@alice"]).accepted
    assert "deny_authors" in judge(tweet(user="Alice"), deny_authors=["@alice"]).reason
    assert judge(tweet(user="ALICE"), allow_authors=["alice", "bob"]).accepted
    v = judge(tweet(user="carol"), allow_authors=["alice", "bob"])
    assert not v.accepted and "allow_authors" in v.reason
    # deny wins over allow
    assert not judge(tweet(user="bob"), allow_authors=["bob"], deny_authors=["bob"]).accepted


def test_min_followers_fails_closed_when_unknown():
    assert judge(tweet(followers=500), min_followers=500).accepted
    v = judge(tweet(followers=499), min_followers=500)
    assert not v.accepted and "499 followers" in v.reason
    v = judge(tweet(followers=None), min_followers=1)
    assert not v.accepted and "unknown" in v.reason
    assert judge(tweet(followers=None)).accepted  # no minimum configured: not needed


@pytest.mark.parametrize(
    "ticker,name,denied",
    [
        ("SCAM", "Fine", True),
        ("MOON", "Total Scam Coin", True),
        ("MOON", "total s c a m", True),  # spaces and punctuation do not split a word
        ("MOON", "\u0455\u0441\u0430m coin", True),  # Cyrillic look-alikes
        ("SC4M", "Fine", True),  # digit spellings
        ("MOON", "\uff33\uff23\uff21\uff2d", True),  # fullwidth
        ("MOON", "Scampi Dinner", True),  # substring match: conservative, documented
        ("MOON", "Moon Cat", False),
    ],
)
def test_deny_words(ticker, name, denied):
    v = judge(tweet(ticker=ticker, name=name), deny_words=["scam", " "])
    assert v.accepted is not denied
    if denied:
        assert "'scam'" in v.reason


def test_fold():
    assert fold("Ru\u0261 P\u00fcll") == "ru\u0261p\u00fcll"  # letters kept, spaces gone
    assert fold("\u0280UG") != "rug"  # only the listed look-alikes are mapped


def decide(store: Store, policy: Policy, tw: ParsedTweet, now: float):
    v = policy.judge(tw)
    row = {
        "tweet_id": tw.tweet_id,
        "twitter_user": tw.twitter_user,
        "ticker": tw.ticker,
        "decision": "accepted" if v.accepted else "refused",
        "reason": v.reason,
    }
    return store.decide(row, policy.limit(tw, now) if v.accepted else None, now=now)[0]


def test_hourly_limits_per_author_and_global(tmp_path):
    store = Store(tmp_path / "moonshot.db")
    policy = Policy(PolicyConfig(per_author_per_hour=2, global_per_hour=3))
    d = [decide(store, policy, tweet(user="alice", tid=str(i)), NOW + i) for i in range(3)]
    assert [x["decision"] for x in d] == ["accepted", "accepted", "refused"]
    assert "@alice reached 2" in d[2]["reason"]
    assert decide(store, policy, tweet(user="Bob", tid="10"), NOW + 10)["decision"] == "accepted"
    g = decide(store, policy, tweet(user="carol", tid="11"), NOW + 11)
    assert g["decision"] == "refused" and "global limit" in g["reason"]
    # an hour after the first two, alice may again
    later = decide(store, policy, tweet(user="alice", tid="12"), NOW + 3600.5)
    assert later["decision"] == "accepted"
    # every decision is a row with its reason
    rows = store.decisions(limit=100)
    assert len(rows) == 6 and all(r["reason"] for r in rows)
    assert store.decision_counts() == {"accepted": 4, "refused": 2, "pending": 4}


def test_a_decision_is_made_once_per_tweet(tmp_path):
    store = Store(tmp_path / "moonshot.db")
    policy = Policy(PolicyConfig(deny_words=["moon"]))
    first = decide(store, policy, tweet(tid="7"), NOW)
    again = decide(store, Policy(PolicyConfig()), tweet(tid="7"), NOW + 5)
    assert first == again and first["decision"] == "refused"
    assert store.forget_refusal("7")
    assert decide(store, Policy(PolicyConfig()), tweet(tid="7"), NOW + 6)["decision"] == "accepted"


def test_concurrent_ingests_cannot_both_pass_a_limit(tmp_path):
    path = tmp_path / "moonshot.db"
    Store(path).close()
    policy = Policy(PolicyConfig(global_per_hour=1))
    results, barrier = [], threading.Barrier(8)

    def worker(i):
        store = Store(path)
        barrier.wait()
        results.append(
            decide(store, policy, tweet(user=f"u{i}", tid=str(100 + i)), NOW)["decision"]
        )
        store.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["accepted"] + ["refused"] * 7
