"""The embedded source: the queue is the `coins` table itself, fed by `moonshot add`
(and by manual drops). Nothing to poll, nothing to report back."""

from __future__ import annotations

from typing import Any

from moonshot.ports import IncomingCoin


class LocalSource:
    kind = "local"

    def poll(self, now: float, limit: int) -> list[IncomingCoin]:
        return []

    def report(self, coin_ref: str, event: str, fields: dict[str, Any]) -> None:
        return None

    def keepalive(self, coin_refs: list[str], now: float) -> None:
        return None

    def close(self) -> None:
        return None
