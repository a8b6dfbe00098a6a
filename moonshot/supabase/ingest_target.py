"""An accepted tweet's coin on Supabase: download the image, re-encode it, upload it to
the Storage bucket under its canonical name, then insert the coin row (unique tweet_id).
Upload before insert, both idempotent: no row without its image, no second coin on retry."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import httpx

from moonshot import images, naming
from moonshot.config import Config
from moonshot.errors import ConfigError, Rejected, TransientError

log = logging.getLogger("moonshot.ingest.supabase")

TABLE = "coins"
SQL_FILE = "ingest_tweets.sql"  # the unique index on coins.tweet_id that upsert needs
SQL_FIX = (
    "apply `moonshot ingest --sql` in the Supabase SQL editor (a unique index on coins.tweet_id)"
)


def sql_text() -> str:
    return (
        resources.files("moonshot.supabase").joinpath("sql", SQL_FILE).read_text(encoding="utf-8")
    )


class SupabaseTarget:
    kind = "supabase"

    def __init__(self, source: Any, cfg: Config, crash: Any = None):
        self.source = source  # a SupabaseSource: its client, and its error classification
        self.cfg = cfg
        self.bucket = cfg.ingest.bucket
        self.crash = crash or (lambda name: None)

    @classmethod
    def from_config(cls, cfg: Config, crash: Any = None) -> SupabaseTarget:
        from moonshot.supabase.source_supabase import SupabaseSource

        return cls(SupabaseSource.from_config(cfg), cfg, crash)

    def __repr__(self) -> str:
        return f"SupabaseTarget(bucket={self.bucket!r}, source={self.source!r})"

    def create(self, decision: dict[str, Any]) -> str:
        tweet_id = decision["tweet_id"]
        found = self._find(tweet_id)
        if found is not None:  # inserted before a crash or by an earlier run
            return f"supabase coin {found}"
        unix_ts = int((decision.get("detail") or {}).get("unix_ts") or 0)
        filename = naming.format_name(decision["twitter_user"], decision["ticker"], unix_ts)
        spool = self.cfg.spool
        data = images.download(
            decision["image_url"],
            timeout=spool.download_timeout,
            max_bytes=spool.max_bytes,
            allowed_hosts=self.cfg.ingest.image_hosts,  # redirects are checked too
        )
        jpeg = images.reencode(data, max_pixels=spool.max_pixels, quality=spool.jpeg_quality)
        url = self._upload(filename, jpeg)
        self.crash("after_upload")
        row = {
            "ticker": decision["ticker"],
            "name": decision["name"],
            "image_url": url,
            "twitter_user": decision["twitter_user"],
            "tweet_id": tweet_id,
        }
        # ON CONFLICT (tweet_id) DO NOTHING: a retry never changes or doubles the row.
        self._call(
            "insert coin",
            lambda: (
                self.source.client.table(TABLE)
                .upsert(row, on_conflict="tweet_id", ignore_duplicates=True, returning="minimal")
                .execute()
            ),
        )
        self.crash("after_insert")
        found = self._find(tweet_id)
        if found is None:
            raise TransientError(
                f"Supabase coin for tweet {tweet_id} not found right after its insert"
            )
        log.info(
            "tweet %s: coin %s on Supabase, image %s/%s", tweet_id, found, self.bucket, filename
        )
        return f"supabase coin {found}"

    def _call(self, what: str, fn):
        try:
            return self.source._call(what, fn)
        except Rejected as exc:
            if "42P10" in str(exc) or "no unique or exclusion constraint" in str(exc):
                raise ConfigError(
                    f"Supabase {what}: coins.tweet_id is not unique; {SQL_FIX}"
                ) from None
            raise

    def _find(self, tweet_id: str) -> int | None:
        reply = self._call(
            "find coin",
            lambda: (
                self.source.client.table(TABLE)
                .select("id")
                .eq("tweet_id", tweet_id)
                .order("id")
                .limit(1)
                .execute()
            ),
        )
        rows = reply.data or []
        return rows[0]["id"] if rows else None

    def _upload(self, filename: str, jpeg: bytes) -> str:
        from storage3.exceptions import StorageApiError

        store = self.source.client.storage.from_(self.bucket)
        try:
            # x-upsert: a retry after a crash overwrites the same name with the same bytes
            store.upload(filename, jpeg, {"content-type": "image/jpeg", "upsert": "true"})
        except StorageApiError as exc:
            status = int(exc.status) if str(exc.status).isdigit() else 0
            # A server may echo the request (its headers hold the key): scrub first.
            message = " ".join(self.source.scrub(str(exc.message)).split())[:120]
            if status >= 500 or status in (408, 429):
                raise TransientError(
                    f"Supabase Storage upload: HTTP {status} {message}; will retry"
                ) from None
            if status == 404 and "bucket" in message.lower():
                raise ConfigError(
                    f"Supabase Storage bucket {self.bucket!r} does not exist: create it (public) or set ingest.bucket"
                ) from None
            if status in (401, 403):
                raise ConfigError(
                    f"Supabase Storage refused the upload (HTTP {status}): use the service_role key"
                ) from None
            # any other 4xx is this image's problem (too large, a bad name): no coin
            raise Rejected(f"Supabase Storage refused the image: HTTP {status} {message}") from None
        except httpx.HTTPError as exc:  # transport errors surface as they are
            raise TransientError(
                f"Supabase Storage upload failed: {type(exc).__name__}; will retry"
            ) from None
        return store.get_public_url(filename)
