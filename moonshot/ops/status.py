"""What `moonshot status` reports: counts per state, the oldest waiting coin, the last
success of each stage, whether the service is alive (its heartbeat), what waits for a
person, files in spool/ that are not the service's or were refused, and database trouble
(locked by another program, a full disk) that pauses the service. Reads only."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from moonshot import machine as m
from moonshot.config import Config
from moonshot.fsutil import PART
from moonshot.gate import LaunchGate
from moonshot.naming import parse_name
from moonshot.ops import alerts, health
from moonshot.store import Store


def _age(stamp: str | None, now: float) -> float | None:
    if not stamp:
        return None
    ts = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return round(now - ts, 1)


def service_state(store: Store, now: float, stale: float = 120.0) -> dict[str, Any]:
    """alive, state (running, stopped, never started, dead, hung), pid, heartbeat age."""
    return health.service_state(store, now, stale)


def unknown_spool_files(cfg: Config) -> list[str]:
    if not cfg.spool_dir.exists():
        return []
    return sorted(
        e.name
        for e in os.scandir(cfg.spool_dir)
        if e.is_file()
        and not e.name.startswith(".")
        and not e.name.endswith(PART)
        and parse_name(e.name) is None
    )


def _twin_note(store: Store, coin, why: str) -> str:
    """A coin awaiting approval that has the user and ticker of another coin (a file of it
    dropped again, renamed or copied under another time): the advice must not read as
    "approve it" alone, or the same coin launches twice (issue 15, attacker pass)."""
    if not why.startswith("awaits approval"):
        return why
    twin = store.twin(coin, tuple(m.STATES))  # any: a renamed or copied file of a live coin too
    if twin is None:
        return why
    return (
        f"awaits approval, but @{coin.twitter_user} ${coin.ticker} was coin {twin.id}"
        f" ({twin.state}): if it is the same coin, moonshot withdraw {coin.id}; if it is a"
        f" new one, moonshot approve {coin.id}"
    )


def collect(
    cfg: Config, store: Store, now: float | None = None, probe: bool = True
) -> dict[str, Any]:
    now = time.time() if now is None else now
    counts = store.counts()
    waiting = [s for s in m.STATES if s not in m.TERMINAL and s not in m.VISIBLE]
    # Coins whose claim went back to the source at a clean stop are not waiting here.
    oldest = store.coins_in(waiting, order="created_at, id", limit=1, released=False)
    last = {
        s: store.last_transition_at(s) for s in (m.SPOOLED, m.IMPORTED, m.CONFIRMED, m.LAUNCHED)
    }
    attention = [
        {"id": c.id, "state": c.state, "ticker": c.ticker, "reason": c.last_error}
        for c in store.coins_in([m.NEEDS_REVIEW, m.FAILED], order="id", limit=50)
    ]
    gate = LaunchGate(cfg, store)
    held, retrying = [], []

    def waits(c) -> dict:
        return {
            "id": c.id,
            "ticker": c.ticker,
            "state": c.state,
            "attempts": c.attempts,
            "retry_in_s": round(max(c.not_before - now, 0.0), 1),
            "reason": c.last_error,
        }

    for c in store.coins_in([m.CONFIRMED], order="id", limit=50):
        why = gate.blocker(c, now, cfg.launch.mode != "off")
        if why:
            held.append({"id": c.id, "ticker": c.ticker, "reason": _twin_note(store, c, why)})
        elif c.last_error:  # the launcher refused or failed before the spend: it retries
            retrying.append(waits(c))
    # A transient error before the launch (a download, an import, Photos): the coin waits
    # for its retry, with the error (outside attack: status said nothing during an outage).
    for c in store.coins_in(
        [m.FETCHED, m.SPOOLED, m.IMPORTED], order="id", limit=50, released=False
    ):
        if c.last_error and (c.attempts or c.not_before > now):
            retrying.append(waits(c))
    # Service, source, library, queues (issue 6): `probe` reaches the source and Photos.
    h = health.assess(cfg, store, now=now, probe=probe)
    service = h["service"]
    problems = list(h["problems"])
    # Issue 15: database trouble pauses the service; say why. What this process sees
    # now, and what the service recorded when it paused (a full disk elsewhere).
    blocked = store.write_blocked()
    if blocked is not None:
        problems.insert(0, f"{blocked}; the service pauses until then")
    for stage, suffix in health.STAGE_SUFFIX.items():
        why = store.meta_get("paused" + suffix)
        if why and service["alive"]:
            problems.insert(0, f"service paused{'' if stage == 'all' else f' ({stage})'}: {why}")
    refused = {
        name: why for name, why in store.refused_drops().items() if (cfg.spool_dir / name).is_file()
    }
    report: dict[str, Any] = {
        "home": str(cfg.home),
        "counts": counts,
        "total": sum(counts.values()),
        "oldest_waiting": (
            {
                "id": oldest[0].id,
                "state": oldest[0].state,
                "ticker": oldest[0].ticker,
                "created_at": oldest[0].created_at,
                "age_s": _age(oldest[0].created_at, now),
            }
            if oldest
            else None
        ),
        "last_success": {s: {"at": at, "age_s": _age(at, now)} for s, at in last.items()},
        "service": service,
        "services": h["services"],
        "source": h.get("source"),
        "library": h.get("library"),
        "queue": h["queue"],
        "last_sync_at": h["last_sync_at"],
        "last_launch_at": h["last_launch_at"],
        "attention": attention,
        "held": held,
        "retrying": retrying,
        "outbox_pending": store.outbox_pending(),
        "alerts": undelivered_alerts(cfg, store),
        "unknown_spool_files": unknown_spool_files(cfg),
        "refused_drops": refused,
        "launch_mode": cfg.launch.mode,
        "tweets": tweet_decisions(store, now),
        "problems": problems,
    }
    report["healthy"] = not problems
    return report


def render(r: dict[str, Any]) -> str:
    lines = [f"home: {r['home']}"]
    svc = r["service"]
    if svc["alive"]:
        lines.append(
            f"service: alive (pid {svc['pid']}, heartbeat {svc['heartbeat_age_s']} s ago"
            + (
                f", last progress {svc['last_progress_age_s']} s ago)"
                if svc["last_progress_age_s"] is not None
                else ")"
            )
        )
    else:
        lines.append(f"service: NOT RUNNING ({svc['state']}: {svc['detail']})")
    if len(r["services"]) > 1:
        lines.append("agents: " + ", ".join(f"{k} {v}" for k, v in r["services"].items()))
    for part in ("source", "library"):
        info = r.get(part)
        if info:
            where = info.get("path") or info.get("detail") or ""
            state = "ok" if info["ok"] else "PROBLEM"
            lines.append(f"{part}: {info['kind']} {state}" + (f" ({where})" if where else ""))
    lines.append("queue: " + ", ".join(f"{s} {n}" for s, n in r["queue"].items()))
    lines.append(
        "coins: " + ", ".join(f"{s} {n}" for s, n in r["counts"].items()) + f" (total {r['total']})"
    )
    if r["oldest_waiting"]:
        o = r["oldest_waiting"]
        lines.append(
            f"oldest waiting: coin {o['id']} {o['ticker']} in {o['state']} for {o['age_s']} s"
        )
    for state, info in r["last_success"].items():
        if info["at"]:
            lines.append(f"last {state}: {info['at']} ({info['age_s']} s ago)")
    for a in r["attention"]:
        lines.append(f"attention: coin {a['id']} {a['ticker']} {a['state']}: {a['reason']}")
    for h in r.get("held", []):
        lines.append(f"held in confirmed: coin {h['id']} {h['ticker']}: {h['reason']}")
    for w in r.get("retrying", []):
        lines.append(
            f"retrying: coin {w['id']} {w['ticker']} (attempt {w['attempts']},"
            f" retry in {w['retry_in_s']:g} s): {w['reason']}"
        )
    if r["outbox_pending"]:
        lines.append(f"reports waiting for the source: {r['outbox_pending']}")
    waiting = r.get("alerts") or {}
    if waiting.get("pending") and not waiting["receivers"]:
        lines.append(
            f"alerts: no alert URL configured; {waiting['pending']} event(s) told to nobody"
            " (moonshot alerts list; README: Alerts)"
        )
    elif waiting.get("pending"):
        lines.append(
            f"alerts not delivered yet: {waiting['pending']}, oldest {waiting['oldest_at']}"
            + (f" (last error: {waiting['last_error']})" if waiting["last_error"] else "")
            + "; moonshot alerts list --pending"
        )
    for name in r["unknown_spool_files"]:
        lines.append(
            f"spool/{name}: not a canonical name ({{twitter_user}}_{{TICKER}}_{{unix_ts}}.jpg), left alone"
        )
    for name, why in r.get("refused_drops", {}).items():
        lines.append(f"spool/{name}: not taken: {why}")
    t = r.get("tweets") or {}
    if t.get("accepted") or t.get("refused") or t.get("pending"):
        lines.append(
            f"tweets (24 h): accepted {t['accepted']}, refused {t['refused']}; coins pending {t['pending']}"
        )
        for d in t["last_refused"]:
            lines.append(f"refused: tweet {d['tweet_id']} at {d['at']}: {d['reason']}")
    for p in r["problems"]:
        lines.append(f"PROBLEM: {p}")
    lines.append("healthy" if r["healthy"] else "UNHEALTHY")
    return "\n".join(lines)


def tweet_decisions(store: Store, now: float) -> dict[str, Any]:
    """Issue 8: what the tweet policy decided in the last 24 hours, and the last refusals."""
    counts = store.decision_counts(since=now - 86400)
    last = [
        {"tweet_id": d["tweet_id"], "at": d["at"], "reason": d["reason"]}
        for d in store.decisions(decision="refused", limit=3)
    ]
    return {**counts, "last_refused": last}


def undelivered_alerts(cfg: Config, store: Store) -> dict[str, Any]:
    """Issue 16: alerts not delivered yet, and to how many receivers they could go."""
    pending, oldest, error = store.db.execute(
        "SELECT count(*), min(created_at), (SELECT last_error FROM alerts WHERE status = 'pending'"
        " AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1) FROM alerts WHERE status = 'pending'"
    ).fetchone()
    receivers = len(alerts.targets(cfg))
    return {"pending": pending, "oldest_at": oldest, "last_error": error, "receivers": receivers}
