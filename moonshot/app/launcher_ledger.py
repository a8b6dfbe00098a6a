"""The ledger launcher: the irreversible step appends one JSON line per launch to
`launches.jsonl` and fsyncs it. Used on Linux, in tests and for dry operation."""

from __future__ import annotations

import json
import time
from pathlib import Path

from moonshot.errors import TransientError
from moonshot.fsutil import append_durable
from moonshot.ports import Coin, LaunchResult


class LedgerLauncher:
    kind = "ledger"

    def __init__(self, path: Path):
        self.path = Path(path)

    def prepare(self, coin: Coin, image: Path) -> None:
        if not image.exists():
            raise TransientError(f"spooled image {image.name} is missing")

    def launch(self, coin: Coin) -> LaunchResult:
        entry = {
            "coin_id": coin.id,
            "ticker": coin.ticker,
            "name": coin.name,
            "twitter_user": coin.twitter_user,
            "image_filename": coin.image_filename,
            "photos_asset_id": coin.photos_asset_id,
            "at": time.time(),
        }
        append_durable(self.path, json.dumps(entry, sort_keys=True, ensure_ascii=False))
        return LaunchResult(token_address=None, detail={"ledger": str(self.path.name)})

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [
            json.loads(line)
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
