"""The launch gate: why a confirmed coin may not launch yet (launch mode, approval,
launch limits) and whether its twitter user is refused. Shared by the pipeline and
`moonshot status`; reads the config and the store only, never a port."""

from __future__ import annotations

from datetime import UTC, datetime

from moonshot import machine as m
from moonshot.config import Config
from moonshot.ports import Coin
from moonshot.store import Store, iso


class LaunchGate:
    def __init__(self, cfg: Config, store: Store):
        self.cfg = cfg
        self.store = store

    def blocker(self, coin: Coin, now: float, launching_enabled: bool) -> str | None:
        """Why this confirmed coin must wait for something other than time, or None."""
        if not launching_enabled:
            return "launch.mode is off (sync-only)"
        if self.user_refused(coin):
            return None  # no point waiting: the launch step fails it at once
        needs = self.cfg.launch.require_approval or coin.source == "manual"
        if needs and not coin.approved:
            return f"awaits approval: moonshot approve {coin.id}"
        wait = self.rate_wait(now)
        if wait > 0:
            return f"launch limits: next launch allowed in {wait:.0f} s"
        return None

    def rate_wait(self, now: float) -> float:
        lc = self.cfg.launch
        waits = [0.0]
        if lc.min_gap_seconds > 0:
            last = self.store.last_transition_at(m.LAUNCHING)
            if last:
                last_ts = (
                    datetime.strptime(last, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
                )
                waits.append(last_ts + lc.min_gap_seconds - now)
        for limit, window in ((lc.max_per_hour, 3600.0), (lc.max_per_day, 86400.0)):
            if limit > 0 and self.store.transitions_since(m.LAUNCHING, iso(now - window)) >= limit:
                waits.append(60.0)
        return max(waits)

    def user_refused(self, coin: Coin) -> str | None:
        lc = self.cfg.launch
        user = coin.twitter_user.lower()
        if user in {u.lower() for u in lc.deny_users}:
            return f"twitter user {coin.twitter_user} is on launch.deny_users"
        if lc.allow_users and user not in {u.lower() for u in lc.allow_users}:
            return f"twitter user {coin.twitter_user} is not on launch.allow_users"
        return None
