"""The three ports of design.md as small Protocols, and the plain data that crosses
them. Each port has one real adapter and one embedded adapter under adapters/;
nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class IncomingCoin:
    """A coin as a source hands it over. `source_ref` is unique within the source."""

    source: str
    source_ref: str
    ticker: str
    name: str
    image_url: str
    twitter_user: str | None = None
    tweet_id: str | None = None


@dataclass(frozen=True)
class Coin:
    """One row of the `coins` table, as the stages see it."""

    id: int
    state: str
    source: str
    source_ref: str | None
    ticker: str
    name: str
    twitter_user: str
    tweet_id: str | None
    image_url: str
    image_filename: str | None
    attempts: int
    last_error: str | None
    photos_asset_id: str | None
    token_address: str | None
    created_at: str
    updated_at: str
    approved: bool = False
    not_before: float = 0.0
    import_started: float | None = None
    supersede_count: int = 0
    failed_from: str | None = None
    image_sha256: str | None = None  # of the JPEG the coin spooled (issue 15)
    retry_since: float | None = None  # first transient failure at this stage
    released: bool = False  # the source claim was handed back (a clean stop)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Coin:
        names = cls.__dataclass_fields__
        values = {k: row[k] for k in names if k in row}
        values["approved"] = bool(values.get("approved") or 0)
        values["released"] = bool(values.get("released") or 0)
        values["not_before"] = float(values.get("not_before") or 0.0)
        values["supersede_count"] = int(values.get("supersede_count") or 0)
        values["attempts"] = int(values.get("attempts") or 0)
        return cls(**values)


@dataclass(frozen=True)
class Asset:
    """A photo in a library: what `find`, `newest` and `import_file` answer."""

    id: str
    original_filename: str
    date_added: float  # unix seconds, UTC
    in_cloud: bool | None = None  # None: not an iCloud library or state unknown


@dataclass(frozen=True)
class Confirmation:
    """What `confirm` found: `present` in the library, and `ready` once every
    configured condition (e.g. uploaded to iCloud) holds; `detail` says what is missing."""

    present: bool
    ready: bool
    asset: Asset | None = None
    detail: str = ""


@dataclass(frozen=True)
class LaunchResult:
    token_address: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One line of `moonshot doctor`: status is ok, warn or fail; `fix` says what to do."""

    name: str
    status: str
    message: str
    fix: str = ""


# Optional adapter methods, looked up with getattr by the service and the CLI:
#   watch(wake: Callable[[], None]) -> Callable[[], None]
#       call `wake` as soon as something changed (Photos wrote, NOTIFY arrived);
#       returns a function that stops watching.
#   checks() -> list[Check]            for `moonshot doctor`
#   health() -> dict[str, Any]         shown by `moonshot status` (JSON-safe, no secret)
#   close() -> None                    release resources on shutdown


@runtime_checkable
class Source(Protocol):
    """Where coins come from and where their progress is reported back."""

    kind: str

    def poll(self, now: float, limit: int) -> list[IncomingCoin]:
        """New coins to hand over, oldest first; may raise TransientError."""

    def report(self, coin_ref: str, event: str, fields: dict[str, Any]) -> None:
        """Deliver one outbox entry; raise TransientError to have it retried later."""

    def keepalive(self, coin_refs: list[str], now: float) -> None:
        """Renew whatever claims the source holds for these coins."""

    def close(self) -> None:
        """Release claims and connections (clean shutdown)."""


@runtime_checkable
class PhotosLibrary(Protocol):
    """A photo library: the macOS Photos library, or the embedded folder library."""

    kind: str

    def import_file(self, path: Path) -> Asset:
        """Import one file as a new asset; TransientError when the library is busy."""

    def find(self, original_filename: str, added_after: float | None = None) -> list[Asset]:
        """Assets with this original file name (added after the time, if given), newest first."""

    def newest(self) -> Asset | None:
        """The asset with the latest date added."""

    def confirm(self, asset_id: str | None, original_filename: str, since: float) -> Confirmation:
        """Is the imported asset there (and uploaded, when required)?"""


@runtime_checkable
class Launcher(Protocol):
    """Creates the token. `prepare` is reversible; `launch` spends money and is called
    only after `launching` is committed (invariant 1)."""

    kind: str

    def prepare(self, coin: Coin, image: Path) -> None:
        """Everything before the irreversible step; raise TransientError to retry later."""

    def launch(self, coin: Coin) -> LaunchResult:
        """The irreversible step and its outcome; raise NeedsReview when unclear."""
