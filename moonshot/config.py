"""Configuration: defaults that work on a fresh machine, then `moonshot.toml` in the
home folder, then `MOONSHOT_<SECTION>_<KEY>` variables. Secrets are never read from
moonshot.toml (see `secret`: environment, Keychain, 0600 moonshot.env), and never printed."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moonshot import platform
from moonshot.errors import ConfigError
from moonshot.ops import alert_urls


@dataclass
class SourceConfig:
    kind: str = "local"  # local | supabase
    default_twitter_user: str = "moonshot"
    poll_interval: float = 30.0
    batch: int = 20  # at most this many coins per claim request
    lease_seconds: int = 600  # a Supabase claim lasts this long unless renewed
    # Claim only enough to keep this many coins waiting before the import gate (issue
    # 16): the rest stay in the source for other Macs.
    lookahead: int = 3


@dataclass
class SpoolConfig:
    download_timeout: float = 30.0  # the whole download: connect and every read
    download_attempts: int = 3  # fast tries, backoff_base apart, before the waits double
    backoff_base: float = 2.0  # seconds between the fast tries
    backoff_max: float = 300.0  # the longest wait between two tries
    download_workers: int = 4  # downloads at once, off the pipeline's thread
    max_bytes: int = 25_000_000
    max_pixels: int = 50_000_000
    max_side: int = 0  # 0: keep the size; else shrink so the longest side fits
    jpeg_quality: int = 90
    settle_seconds: float = 0.1  # a dropped file must stay unchanged this long
    allowed_hosts: list[str] = field(default_factory=list)  # empty: any host


@dataclass
class PhotosConfig:
    kind: str = "auto"  # auto | folder | macos
    library: str = "library"  # folder library, relative to home; or a .photoslibrary path
    import_method: str = "photokit"  # photokit | applescript (macos)
    import_timeout: float = 60.0
    import_attempts: int = 3  # fast tries of a busy or locked library
    confirm_timeout: float = 120.0
    require_icloud: bool = False
    icloud_timeout: float = 600.0


@dataclass
class LaunchConfig:
    mode: str = "ledger"  # off | ledger | app
    superseded_max: int = 3
    require_approval: bool = False
    retry_backoff: float = 30.0
    prepare_attempts: int = 3  # fast tries of the launcher's reversible preparation
    max_per_hour: int = 0  # 0: no limit
    max_per_day: int = 0
    min_gap_seconds: float = 0.0
    allow_users: list[str] = field(default_factory=list)
    deny_users: list[str] = field(default_factory=list)
    name_max_bytes: int = 32
    ticker_max_bytes: int = 10
    flow: str = ""  # path of the flow TOML; empty: home's flow.toml, else the packaged one


@dataclass
class ServiceConfig:
    idle_sleep_min: float = 0.05
    idle_sleep_max: float = 2.0
    stop_timeout: float = 20.0
    # A transient error is retried until this long after the coin's first one at a stage.
    retry_window: float = 3600.0
    # `run --once` waits this long without progress for a source, a report or a retry.
    once_patience: float = 60.0


@dataclass
class LogConfig:
    level: str = "INFO"
    format: str = "text"  # text | json
    max_bytes: int = 5_000_000
    backups: int = 5


@dataclass
class CleanupConfig:
    keep_days: float = 7.0  # launched coins' files stay this long in spool/done/
    interval: float = 3600.0  # seconds between the service's clean-up runs; 0: never


@dataclass
class HealthConfig:
    heartbeat_stale: float = 120.0  # no heartbeat this long: the service counts as hung


@dataclass
class AlertsConfig:
    # apprise URLs without a token (macosx://, json://localhost/...); a URL with a token
    # (tgram://, discord://, slack://, ...) is a secret: MOONSHOT_ALERT_URLS (secrets.py).
    urls: list[str] = field(default_factory=list)
    source_down_after: float = 900.0  # the source unreachable this long: an alert
    max_per_hour: int = 20  # messages; beyond it, waiting alerts go out as one message
    timeout: float = 30.0  # seconds a receiver may take (connect, then each read)
    retry_base: float = 10.0  # first wait after a failed delivery; doubles each time
    retry_max: float = 1800.0
    max_age: float = 86400.0  # an alert not delivered by then is given up (expired)
    daily_summary: str = ""  # "HH:MM" local time; empty: no daily summary
    watch_interval: int = 300  # seconds between `moonshot watch` runs (its launchd agent)


@dataclass
class Config:
    home: Path
    source: SourceConfig = field(default_factory=SourceConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    photos: PhotosConfig = field(default_factory=PhotosConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    ingest: IngestConfig = field(default_factory=lambda: IngestConfig())
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig())

    @property
    def db_path(self) -> Path:
        return self.home / "moonshot.db"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def done_dir(self) -> Path:
        """Where launched coins' files go (cleanup), and files of coins that moved on."""
        return self.spool_dir / "done"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def ledger_path(self) -> Path:
        return self.home / "launches.jsonl"

    @property
    def library_path(self) -> Path:
        path = Path(self.photos.library).expanduser()  # "~/..." and absolute paths stand as given
        return path if path.is_absolute() else self.home / path

    @property
    def photos_kind(self) -> str:
        if self.photos.kind != "auto":
            return self.photos.kind
        return "macos" if platform.is_macos() else "folder"

    def secret(self, name: str) -> str | None:
        """`secret(name)` for this home: environment, Keychain, then <home>/moonshot.env."""
        return secret(name, home=self.home)

    def ensure_dirs(self) -> None:
        for d in (self.home, self.spool_dir, self.logs_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create {d}: {exc.strerror}; check --home and its permissions"
                ) from None


SECTIONS = [f.name for f in dataclasses.fields(Config) if f.name != "home"]
CHOICES = {
    ("source", "kind"): ("local", "supabase"),
    ("photos", "kind"): ("auto", "folder", "macos"),
    ("photos", "import_method"): ("photokit", "applescript"),
    ("launch", "mode"): ("off", "ledger", "app"),
    ("log", "format"): ("text", "json"),
    ("log", "level"): ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}


# What each declared type of a key accepts (issue 15: checked by type, never truncated
# nor turned into text: `2.9` is no int, `["a"]` no path). A key of another type is a
# programming error, caught by tests/test_config.py for every key of SECTIONS.
KINDS = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "str": "a text",
    "list[str]": "a list of texts",
}
INT_TEXT = re.compile(r"[+-]?[0-9]+")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@functools.cache
def _fields(section: str) -> dict[str, Any]:
    """The keys of a section and their declared types (dataclass annotations)."""
    cls = type(getattr(Config(home=Path(".")), section))
    return {f.name: f.type for f in dataclasses.fields(cls)}


def kind_of(section: str, key: str) -> str:
    """The declared type of `section.key`, one of KINDS."""
    declared = _fields(section)[key]
    kind = declared if isinstance(declared, str) else getattr(declared, "__name__", "")
    if kind not in KINDS:
        raise TypeError(f"{section}.{key}: type {declared!r} has no config check (config.KINDS)")
    return kind


def _from_toml(kind: str, value: Any) -> Any:
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        raise ValueError(value)
    return float(value) if kind == "float" else list(value) if kind == "list[str]" else value


def _from_env(kind: str, text: str) -> Any:
    if kind == "bool":
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(text)
        return word in TRUE_WORDS
    if kind == "int":
        if not INT_TEXT.fullmatch(text.strip()):
            raise ValueError(text)
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "list[str]":
        return [v.strip() for v in text.split(",") if v.strip()]
    return text


def _coerce(section: str, key: str, value: Any, origin: str, from_env: bool) -> Any:
    kind = kind_of(section, key)
    try:
        return _from_env(kind, value) if from_env else _from_toml(kind, value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: {section}.{key} must be {KINDS[kind]}, got {value!r}"
        ) from None


# MOONSHOT_* variables that are not `MOONSHOT_<SECTION>_<KEY>` settings. Any other
# MOONSHOT_* name is refused with the nearest known one (`MOONSHOT_LANCH_MODE`).
OTHER_VARIABLES = {
    "MOONSHOT_HOME": "the home folder (--home)",
    "MOONSHOT_CACHE_DIR": "the folder of rebuildable caches",
    "MOONSHOT_CRASH_AT": "crash tests: die at a named crash point",
    "MOONSHOT_ALERT_URLS": "alert URLs that hold a token (a secret)",
}


def setting_names() -> dict[str, tuple[str, str]]:
    """Every `MOONSHOT_<SECTION>_<KEY>` name -> (section, key)."""
    return {
        f"MOONSHOT_{section.upper()}_{key.upper()}": (section, key)
        for section in SECTIONS
        for key in _fields(section)
    }


def _check_env_names(env: Mapping[str, str], settings: dict[str, tuple[str, str]]) -> None:
    known = sorted({*settings, *OTHER_VARIABLES})
    for name in sorted(n for n in env if n.startswith("MOONSHOT_") and n not in known):
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else " (README: Configuration)"
        section = next((s for s in SECTIONS if name.startswith(f"MOONSHOT_{s.upper()}_")), None)
        what = (
            f"unknown key {section}.{name[len(section) + 10 :].lower()}"
            if section
            else "unknown moonshot variable"
        )
        raise ConfigError(f"{name}: {what}{hint}")


def _read_toml(path: Path) -> dict[str, Any]:
    """moonshot.toml, or {} when there is none. A file that is there but cannot be read
    (a dangling symlink, a folder, no permission) is an error: silently using the
    defaults would drop deny lists, limits and approval (issue 15)."""
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is a symlink to {os.readlink(path)}, which does not exist; fix the link or"
            " remove it"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a file; move it away") from None
    except OSError as exc:
        raise ConfigError(
            f"{path} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """--home, else MOONSHOT_HOME (an empty one counts as unset), else the current folder."""
    return Path(home or os.environ.get("MOONSHOT_HOME") or ".").expanduser().resolve()


def load(home: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Config:
    """Defaults, then moonshot.toml, then MOONSHOT_<SECTION>_<KEY>; ConfigError on anything unknown."""
    env = os.environ if env is None else env
    cfg = Config(home=resolve_home(home))
    path = cfg.home / "moonshot.toml"
    for section, values in _read_toml(path).items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}: {section} must be a table ([{section}] with its keys), got"
                f" {section} = {values!r}"
            )
        obj = getattr(cfg, section)
        for key, value in values.items():
            if not hasattr(obj, key):
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            setattr(obj, key, _coerce(section, key, value, str(path), from_env=False))
    settings = setting_names()
    _check_env_names(env, settings)
    for name, (section, key) in settings.items():
        if name in env:
            setattr(getattr(cfg, section), key, _coerce(section, key, env[name], name, True))
    cfg.log.level = cfg.log.level.upper()
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ConfigError(f"{section}.{key} = {value!r}: expected one of {', '.join(allowed)}")
    _check_ranges(cfg)
    _check_alerts(cfg, "MOONSHOT_ALERTS_URLS" if "MOONSHOT_ALERTS_URLS" in env else str(path))
    return cfg


def _check_alerts(cfg: Config, origin: str) -> None:
    """A URL with a token is a secret: refused here, with where it belongs."""
    for i, url in enumerate(cfg.alerts.urls, 1):
        why = alert_urls.secret_reason(url)
        if why:
            raise ConfigError(
                f"{origin}: alerts.urls #{i} ({alert_urls.label(url)}) {why}; put it in"
                f" {alert_urls.SECRET_NAME} (environment, Keychain or moonshot.env), not here"
            )
    summary = cfg.alerts.daily_summary
    if summary and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", summary):
        raise ConfigError(
            f"alerts.daily_summary = {summary!r}: expected HH:MM (local time), or empty for none"
        )


# Numbers below these make no sense (0 attempts, an empty batch); every other number
# must be finite and not negative (0 means "off" or "none" where the key says so).
MINIMUMS = {
    ("source", "batch"): 1,
    ("source", "poll_interval"): 0.1,
    ("source", "lookahead"): 1,
    ("spool", "download_workers"): 1,
    ("spool", "download_attempts"): 1,
    ("spool", "download_timeout"): 0.1,
    ("spool", "max_bytes"): 1,
    ("spool", "max_pixels"): 1,
    ("spool", "jpeg_quality"): 1,
    ("photos", "import_attempts"): 1,
    ("launch", "prepare_attempts"): 1,
    ("service", "idle_sleep_max"): 0.01,
    ("alerts", "max_per_hour"): 1,
    ("alerts", "timeout"): 0.1,
    ("alerts", "retry_base"): 0.01,
    ("alerts", "watch_interval"): 60,
}
MAXIMUMS = {("spool", "jpeg_quality"): 95}


def _check_ranges(cfg: Config) -> None:
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            low = MINIMUMS.get((section, f.name), 0)
            high = MAXIMUMS.get((section, f.name))
            if not math.isfinite(value) or value < low or (high is not None and value > high):
                bound = f"from {low} to {high}" if high is not None else f"at least {low}"
                raise ConfigError(f"{section}.{f.name} = {value!r}: expected a number {bound}")


def secret(
    name: str, env: dict[str, str] | None = None, home: str | os.PathLike | None = None
) -> str | None:
    """A secret from the environment, else the login Keychain, else `<home>/moonshot.env`
    (moonshot.secrets); callers must never log the value."""
    from moonshot import secrets

    return secrets.get(name, home=resolve_home(home), env=env)


def as_dict(cfg: Config) -> dict[str, Any]:
    """The effective configuration, for `doctor`; holds no secret by construction."""
    out: dict[str, Any] = {"home": str(cfg.home)}
    for section in SECTIONS:
        out[section] = dataclasses.asdict(getattr(cfg, section))
    return out


# -- issue 8: tweets to coins ([ingest] and [policy]; README "Tweets to coins") ---------
@dataclass
class IngestConfig:
    target: str = "auto"  # auto (supabase when source.kind is) | local | supabase
    ticker_pattern: str = ""  # regex with one group; else the one $CASHTAG
    name_pattern: str = ""  # regex with one group; else the README's name rule
    profile_image_fallback: bool = False
    # Hosts a tweet's image may come from (suffix match); empty: any host. X serves
    # media and profile images from pbs.twimg.com.
    image_hosts: list[str] = field(default_factory=lambda: ["twimg.com"])
    bucket: str = "coin-images"  # Supabase Storage bucket for uploaded images
    x_api_base: str = "https://api.x.com"
    x_mode: str = "search"  # search (recent search of x_query) | mentions (of x_user_id)
    x_query: str = ""
    x_user_id: str = ""
    x_max_results: int = 100
    x_first_lookback: float = 3600.0  # first poll without a cursor: this far back
    x_poll_interval: float = 60.0  # --follow: seconds between polls
    x_timeout: float = 20.0


@dataclass
class PolicyConfig:
    allow_authors: list[str] = field(default_factory=list)  # empty: everyone not denied
    deny_authors: list[str] = field(default_factory=list)
    min_followers: int = 0
    deny_words: list[str] = field(default_factory=list)  # in tickers and names
    per_author_per_hour: int = 0  # 0: no limit
    global_per_hour: int = 0


CHOICES[("ingest", "target")] = ("auto", "local", "supabase")
CHOICES[("ingest", "x_mode")] = ("search", "mentions")
