"""What a person is told: the alert events, the dedup key of each, the command that
settles it, and the message text. Pure functions (the store calls `for_transition`
inside the transition's own transaction): no I/O, no apprise, and no secret, since the
text is built from the coin's ticker, state and reason only (never its tweet-made name)."""

from __future__ import annotations

import re
from typing import Any

NEEDS_REVIEW = "needs_review"
FAILED = "failed"
REJECTED = "rejected"
SOURCE_AUTH = "source_auth"
SOURCE_DOWN = "source_down"
SOURCE_BACK = "source_back"
SOURCE_CONFLICT = "source_conflict"
LAUNCH_LIMIT = "launch_limit"
SERVICE_DOWN = "service_down"
RESTARTED = "restarted"
DAILY_SUMMARY = "daily_summary"

# event: (apprise notify type, what it means): README's table and the dashboard's.
EVENTS: dict[str, tuple[str, str]] = {
    NEEDS_REVIEW: ("failure", "a coin went to needs_review: the launch may have happened"),
    FAILED: ("failure", "a coin went to failed: its step gave up"),
    REJECTED: ("failure", "a coin was rejected: its input or its image cannot make a token"),
    SOURCE_AUTH: ("failure", "the source refused the key (401/403)"),
    SOURCE_DOWN: ("warning", "the source has been unreachable for alerts.source_down_after"),
    SOURCE_BACK: ("success", "the source answers again after a source_down or source_auth"),
    SOURCE_CONFLICT: ("failure", "the source hands rows under ids this home knows as other coins"),
    LAUNCH_LIMIT: ("warning", "launch.max_per_hour or launch.max_per_day holds coins back"),
    SERVICE_DOWN: ("failure", "`moonshot watch` found the service dead or hung"),
    RESTARTED: ("warning", "the service started after a crash or a kill"),
    DAILY_SUMMARY: ("info", "once a day at alerts.daily_summary: counts and what waits"),
}
# Transitions that alert, by the state they enter; `rejected` only by the service's own
# rejection (trigger `reject`): a withdrawal is a person's decision, told to nobody.
ON_ENTER = (NEEDS_REVIEW, FAILED, REJECTED)
REJECT_TRIGGER = "reject"
REASON_MAX = 500
# A failed flow step names its screenshot in the reason ("...; screenshot /x/logs/screens/y.png").
_SCREENSHOT = re.compile(r"screenshot (\S+\.png)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str | None, limit: int = REASON_MAX) -> str:
    """One line of at most `limit` characters, no control or bidi characters."""
    text = _CONTROL.sub(" ", text or "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def command(event: str, coin_id: int | None = None, elsewhere: bool = False) -> str:
    """What a person runs to settle it. A coin that failed because another home holds
    its claim (the source says so) is launched there: it is withdrawn here, never retried."""
    if event == FAILED and elsewhere:
        return (
            f"nothing to fix: another moonshot home took this coin and launches it there;"
            f" never retry it here: `moonshot withdraw {coin_id} --reason 'launched elsewhere'`"
        )
    return {
        NEEDS_REVIEW: f"check the Moonshot app, then `moonshot resolve {coin_id} --launched`"
        f" or `moonshot resolve {coin_id} --not-launched`",
        FAILED: f"`moonshot history {coin_id}` shows why; fix the cause, then `moonshot retry {coin_id}`",
        REJECTED: f"nothing launches it: `moonshot history {coin_id}` shows why; fix the tweet, the"
        " image or the image host's access, then add it again as a new coin",
        SOURCE_AUTH: "fix SUPABASE_SERVICE_ROLE_KEY (Keychain or moonshot.env), then `moonshot doctor`",
        SOURCE_DOWN: "`moonshot status`; the service keeps trying by itself",
        SOURCE_BACK: "nothing: the service goes on by itself",
        SOURCE_CONFLICT: "the source's ids start again: point the home at its own source,"
        " or start a new home for this source (`moonshot status`)",
        LAUNCH_LIMIT: "coins wait in confirmed until the limit allows (`moonshot status`);"
        " raise launch.max_per_hour or launch.max_per_day to launch more",
        SERVICE_DOWN: "`moonshot launchd status` and logs/moonshot.log; `moonshot launchd restart`",
        RESTARTED: "`moonshot status`; logs/launchd-*.err.log and logs/moonshot.log say why it died",
        DAILY_SUMMARY: "`moonshot status`",
    }[event]


def row(
    event: str,
    key: str,
    *,
    reason: str = "",
    coin_id: int | None = None,
    ticker: str | None = None,
    state: str | None = None,
    attachment: str | None = None,
    elsewhere: bool = False,
) -> dict[str, Any]:
    """An `alerts` table row (store.py adds the times and the delivery columns)."""
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event}")
    return {
        "key": key,
        "event": event,
        "coin_id": coin_id,
        "ticker": ticker,
        "state": state,
        "reason": clean(reason),
        "command": command(event, coin_id, elsewhere),
        "attachment": attachment,
    }


def for_transition(
    coin_id: int,
    ticker: str,
    to_state: str,
    reason: str | None,
    transition_id: int,
    elsewhere: bool = False,
    trigger: str = "",
) -> dict[str, Any] | None:
    """The alert a transition into `to_state` raises, or None. The key names the
    transition, so the same event is recorded once and a receiver can drop a repeat.
    `elsewhere`: the coin failed because another home holds its claim."""
    if to_state not in ON_ENTER or (to_state == REJECTED and trigger != REJECT_TRIGGER):
        return None
    shot = _SCREENSHOT.search(reason or "")
    return row(
        to_state,
        f"{to_state}:{coin_id}:{transition_id}",
        reason=reason or "",
        coin_id=coin_id,
        ticker=ticker,
        state=to_state,
        attachment=shot[1] if shot and to_state == NEEDS_REVIEW else None,
        elsewhere=elsewhere,
    )


def _headline(a: dict[str, Any]) -> str:
    event = a["event"]
    if a.get("coin_id") is not None:
        what = {NEEDS_REVIEW: "needs review", FAILED: "failed", REJECTED: "rejected"}.get(
            event, event
        )
        return f"coin {a['coin_id']} {a.get('ticker') or ''} {what}".replace("  ", " ")
    return {
        SOURCE_AUTH: "the source refused the key",
        SOURCE_DOWN: "the source is unreachable",
        SOURCE_BACK: "the source answers again",
        LAUNCH_LIMIT: "launch limit reached",
        SERVICE_DOWN: "the service is down",
        RESTARTED: "the service restarted after a crash",
        DAILY_SUMMARY: "daily summary",
    }[event]


def message(a: dict[str, Any], home: str, home_tag: str) -> tuple[str, str, str]:
    """(title, body, notify type) of one alert row. The last line is the dedup id."""
    lines = []
    if a.get("coin_id") is not None:
        lines.append(f"coin {a['coin_id']} {a.get('ticker') or ''}: now {a.get('state')}")
    if a.get("reason"):
        lines.append(a["reason"] if a["event"] == DAILY_SUMMARY else f"reason: {a['reason']}")
    lines.append(f"do: {a['command']}")
    lines.append(f"home: {home}")
    lines.append(f"alert-id: {home_tag}/{a['key']}")
    return f"moonshot: {_headline(a)}", "\n".join(lines), EVENTS[a["event"]][0]


def combined(alerts: list[dict[str, Any]], home: str, home_tag: str, why: str):
    """One message for several alerts (the rate limit was reached): a line per alert,
    each with its own dedup id."""
    worst = "failure" if any(EVENTS[a["event"]][0] == "failure" for a in alerts) else "warning"
    lines = [why]
    for a in alerts[:20]:
        lines.append(f"- {_headline(a)}: {a.get('reason') or ''} [alert-id: {home_tag}/{a['key']}]")
    if len(alerts) > 20:
        lines.append(f"... and {len(alerts) - 20} more: `moonshot alerts list`")
    lines.append(f"home: {home}")
    return f"moonshot: {len(alerts)} alerts", "\n".join(lines), worst
