"""The ledger launcher: the irreversible step appends one JSON line per launch to
`launches.jsonl` and fsyncs it. Used on Linux, in tests and for dry operation."""

from __future__ import annotations

import json
import time
from pathlib import Path

from moonshot.errors import NeedsReview, TransientError
from moonshot.fsutil import append_durable, read_jsonl
from moonshot.ports import Coin, LaunchResult


class LedgerLauncher:
    kind = "ledger"

    def __init__(self, path: Path):
        self.path = Path(path)

    def prepare(self, coin: Coin, image: Path) -> None:
        """Before `launching`: the image is there, and the ledger has not launched this
        coin already (the app's own memory: a database older than the ledger, restored
        with its markers, must still not launch a coin twice)."""
        if not image.exists():
            raise TransientError(f"spooled image {image.name} is missing")
        for entry in self.entries():
            if not self._same_coin(entry, coin):
                continue
            when = entry.get("at")
            at = (
                time.strftime(" at %Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
                if isinstance(when, int | float)
                else ""
            )
            # A launch the database does not remember: for a person (needs_review), who
            # can settle it `--launched`; never failed and retried into the same wall.
            raise NeedsReview(
                f"{self.path.name} already records the launch of coin {entry.get('coin_id')}"
                f" ({entry.get('twitter_user')}/{entry.get('ticker')}, {entry.get('name')!r}){at}:"
                " not launched again; moonshot.db is older than the ledger (restored from a"
                f" backup?). If it is this coin: moonshot resolve {coin.id} --launched"
            )

    @staticmethod
    def _same_coin(entry: dict, coin: Coin) -> bool:
        """A ledger line is this coin's when it names its id and ticker, or its tweet (a
        coin queued again under another id after a restore). Not by its text and image
        alone: two tweets may ask for the same token, and each is a coin of its own."""
        if entry.get("coin_id") == coin.id and entry.get("ticker") == coin.ticker:
            return True
        return bool(coin.tweet_id) and entry.get("tweet_id") == coin.tweet_id

    def launch(self, coin: Coin) -> LaunchResult:
        entry = {
            "coin_id": coin.id,
            "ticker": coin.ticker,
            "name": coin.name,
            "twitter_user": coin.twitter_user,
            "image_filename": coin.image_filename,
            "image_sha256": coin.image_sha256,
            "tweet_id": coin.tweet_id,
            "photos_asset_id": coin.photos_asset_id,
            "at": time.time(),
        }
        append_durable(self.path, json.dumps(entry, sort_keys=True, ensure_ascii=False))
        return LaunchResult(token_address=None, detail={"ledger": str(self.path.name)})

    def entries(self) -> list[dict]:
        """Each line that parses (a torn last line after a power cut is skipped)."""
        return read_jsonl(self.path)
