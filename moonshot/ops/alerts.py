"""Alerts (issue 16): a person is told when a coin needs them, the source is down or
refuses the key, a launch limit holds coins back, or the service died. Each event is a
row of the `alerts` table, recorded once per dedup key (a transition inserts its alert
in its own transaction, store.py); a thread of its own, never the pipeline's, delivers
it through apprise to every URL of `alerts.urls` and MOONSHOT_ALERT_URLS, retries with
backoff, keeps to `alerts.max_per_hour`, and marks it sent.

Delivery is at-least-once: a crash after a send and before its "sent" commit sends it
again, with the same `alert-id` line for a receiver to drop the repeat. Never logs,
prints or stores a URL: receivers are named by scheme and host (alert_urls.label)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moonshot import crash
from moonshot import machine as m
from moonshot.config import Config
from moonshot.errors import ConfigError, MoonshotError
from moonshot.ops import alert_events as ev
from moonshot.ops import alert_urls, health, logs
from moonshot.ops.screens import Refused, Screens
from moonshot.ports import Check
from moonshot.store import Store, iso

# Crash points of the sender (design.md, "Proving crash safety"):
# MOONSHOT_CRASH_AT=alert_<point>[:<n>] ends the process there.
ALERT_CRASH_POINTS = (
    "before_send",  # the alert is committed, nothing sent: it must still arrive
    "after_send",  # delivered, "sent" not committed: it arrives again, same alert-id
)
POLL_EVERY = 1.0  # the sender looks for due alerts this often
MONITOR_EVERY = 5.0  # launch limits and the daily summary are checked this often
DUE_BATCH = 1000
JOIN_MARGIN = 5.0  # beyond a receiver's timeouts, before a send is given up as hung
SENT_TIMES = "alerts_sent_times"  # meta: when the last hour's messages went out (JSON)
LOCK_FILE = ".alerts-send.lock"  # one sender at a time per home (service and watch)

log = logs.get()


def home_tag(cfg: Config) -> str:
    """Which Mac and home an alert comes from, in its alert-id."""
    host = socket.gethostname().split(".")[0] or "mac"
    return f"{host}:{hashlib.sha256(str(cfg.home).encode()).hexdigest()[:6]}"


# -- receivers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One apprise URL. `url` may hold a token: it is never logged, printed or stored."""

    index: int
    url: str = field(repr=False)

    @property
    def id(self) -> str:
        return alert_urls.fingerprint(self.url)

    @property
    def label(self) -> str:
        return f"#{self.index} {alert_urls.label(self.url)}"


def targets(cfg: Config) -> list[Target]:
    """alerts.urls (token-less, checked by config) then MOONSHOT_ALERT_URLS (secret)."""
    urls = list(cfg.alerts.urls) + alert_urls.split(cfg.secret(alert_urls.SECRET_NAME) or "")
    return [Target(i, u) for i, u in enumerate(dict.fromkeys(urls), 1)]


class _Lines(logging.Handler):
    """apprise's log lines, kept per thread for the one `deliver` running there."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_thread: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        lines = self.by_thread.get(record.thread or 0)
        if lines is not None:
            lines.append(record.getMessage())


_LINES = _Lines()


def _quiet_apprise() -> None:
    # apprise logs through the root logger, whose last-resort handler writes WARNING
    # lines to stderr (launchd's .err.log): keep them to ourselves, for `_why` only.
    from apprise.logger import logger as plugins_logger

    # Both: the logger apprise's plugins hold, and the one the name gives now (a logging
    # reset elsewhere in the process can make them two objects).
    for lg in {plugins_logger, logging.getLogger("apprise")}:
        if _LINES not in lg.handlers:
            lg.addHandler(_LINES)
        lg.propagate = False


def _plugin(target: Target, timeout: float):
    """apprise's plugin for one URL, with our timeouts unless the URL sets its own
    (`cto`, `rto`); ConfigError, naming the label only, if apprise cannot use it."""
    import apprise

    _quiet_apprise()
    url = target.url.strip()
    extra = "&".join(f"{k}={timeout:g}" for k in ("cto", "rto") if f"{k}=" not in url)
    if extra:
        url += ("&" if "?" in url else "?") + extra
    asset = apprise.AppriseAsset(app_id="moonshot", secure_logging=True)
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        raise ConfigError(
            f"alert URL {target.label}: apprise cannot use it here (unknown scheme, a typo,"
            " or a service this system lacks); fix or remove it"
        )
    return plugin


def _why(lines: list[str]) -> str:
    """A failed send's reason from apprise's log lines, in our own words: never their
    text, which may name a chat or a masked part of a token."""
    for line in lines:
        code = re.search(r"error=(\d{3})", line)
        if code:
            return f"HTTP {code[1]}"
    text = " ".join(lines).lower()
    if "timed out" in text or "timeout" in text:
        return "timed out"
    if "connection" in text:
        return "connection failed"
    return "not delivered"


def deliver(
    target: Target,
    title: str,
    body: str,
    notify_type: str,
    timeout: float,
    attach: str | None = None,
) -> tuple[bool, str]:
    """Send one message to one receiver: (delivered, why not). The plugin runs in a
    daemon thread of ours (not apprise's pool, whose threads the interpreter waits for
    at exit) that is waited for at most 2 x timeout + JOIN_MARGIN: a receiver that never
    answers, or a call that hangs, holds nobody, not even the process's exit."""
    out: list[tuple[bool, str]] = []

    def work() -> None:
        lines: list[str] = []
        _LINES.by_thread[threading.get_ident()] = lines
        try:
            import apprise

            plugin = _plugin(target, timeout)
            files = apprise.AppriseAttachment(attach) if attach else None
            ok = plugin.notify(body=body, title=title, notify_type=notify_type, attach=files)
            out.append((True, "") if ok else (False, _why(lines)))
        except ConfigError:
            out.append((False, "apprise cannot use this URL here"))
        except Exception as exc:  # noqa: BLE001 - any failure is a failed delivery
            out.append((False, f"error {type(exc).__name__}"))
        finally:
            _LINES.by_thread.pop(threading.get_ident(), None)

    worker = threading.Thread(target=work, name=f"moonshot-alert-{target.index}", daemon=True)
    worker.start()
    worker.join(2 * timeout + JOIN_MARGIN)
    return out[0] if out else (False, f"no answer within {2 * timeout + JOIN_MARGIN:.0f} s")


def deliver_all(
    receivers: list[Target], title: str, body: str, notify_type: str, timeout: float, attach=None
) -> dict[str, tuple[bool, str]]:
    """`deliver` to every receiver at once: a slow one does not hold the others."""
    results: dict[str, tuple[bool, str]] = {}
    threads = [
        threading.Thread(
            target=lambda t=t: results.__setitem__(
                t.id, deliver(t, title, body, notify_type, timeout, attach)
            ),
            daemon=True,
        )
        for t in receivers
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def checks(cfg: Config) -> list[Check]:
    """For `moonshot doctor`: each receiver (by label), or a warning that there is none."""
    found = targets(cfg)
    if not found:
        return [
            Check(
                "alerts",
                "warn",
                "no alert URL: nobody is told when a coin needs a person",
                f"set alerts.urls (macosx://) or {alert_urls.SECRET_NAME}, then `moonshot alerts test`",
            )
        ]
    out = []
    for t in found:
        try:
            _plugin(t, cfg.alerts.timeout)
            out.append(
                Check(f"alert {t.label}", "ok", "apprise can use it; `moonshot alerts test`")
            )
        except ConfigError as exc:
            out.append(Check(f"alert {t.label}", "fail", str(exc), "fix or remove the URL"))
    return out


def check_targets(cfg: Config) -> list[Target]:
    """The receivers, each one loadable by apprise (ConfigError naming the one that is not)."""
    found = targets(cfg)
    for t in found:
        _plugin(t, cfg.alerts.timeout)
    return found


def send_test(cfg: Config) -> list[dict[str, Any]]:
    """`moonshot alerts test`: one test message to every receiver; per receiver, by label."""
    found = targets(cfg)
    if not found:
        return []
    title = "moonshot: test alert"
    body = (
        f"A test from `moonshot alerts test` on {home_tag(cfg)}: alerts from {cfg.home}"
        " reach you here."
    )
    results = deliver_all(found, title, body, "info", cfg.alerts.timeout)
    return [
        {"receiver": t.label, "delivered": results[t.id][0], "error": results[t.id][1] or None}
        for t in found
    ]


# -- the sender -----------------------------------------------------------------------------
class Sender:
    """One delivery round at a time (`round(now)`): expire, take what is due, keep to the
    rate limit, deliver, commit. Uses the store it is given from one thread only."""

    def __init__(self, cfg: Config, store: Store, receivers: list[Target]):
        self.cfg = cfg
        self.store = store
        self.receivers = receivers
        self.home_tag = home_tag(cfg)
        # Belt and braces: no piece of a secret URL ever reaches a message or the table.
        self._secret_pieces = [
            p
            for t in receivers
            if alert_urls.secret_reason(t.url)
            for p in alert_urls.secret_pieces(t.url)
        ]

    @contextlib.contextmanager
    def _lock(self, wait: float) -> Iterator[bool]:
        """flock, held only for a round: the service's sender and `moonshot watch` never
        send the same alert at once. Released by the kernel if the process dies."""
        fd = os.open(self.cfg.home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.2)
            yield True
        finally:
            os.close(fd)

    def _sent_times(self, now: float) -> list[float]:
        try:
            times = json.loads(self.store.meta_get(SENT_TIMES) or "[]")
        except ValueError:
            times = []
        return [t for t in times if isinstance(t, int | float) and now - 3600 < t <= now]

    def round(self, now: float | None = None, wait: float = 0.0) -> dict[str, int]:
        """Deliver what is due; {"messages", "sent", "failed", "waiting"}."""
        now = time.time() if now is None else now
        out = {"messages": 0, "sent": 0, "failed": 0, "waiting": 0}
        if not self.receivers:
            return out
        with self._lock(wait) as mine:
            if not mine:
                return out
            due = self.store.alerts_due(now, DUE_BATCH)  # a read: most rounds stop here
            too_old = iso(now - self.cfg.alerts.max_age)
            if any(a["created_at"] < too_old for a in due):
                self.store.alerts_expire(now - self.cfg.alerts.max_age)
                due = [a for a in due if a["created_at"] >= too_old]
            if not due:
                return out
            window = self._sent_times(now)
            budget = self.cfg.alerts.max_per_hour - len(window)
            if budget <= 0:
                out["waiting"] = len(due)
                return out
            groups = [[a] for a in due[: budget - 1]] if len(due) > budget else [[a] for a in due]
            if len(due) > budget:
                groups.append(due[budget - 1 :])
            for group in groups:
                sent = self._send(group, now)
                window.append(now)
                out["messages"] += 1
                out["sent"] += sent
                out["failed"] += len(group) - sent
            self.store.meta_set(SENT_TIMES, json.dumps(window))
        return out

    def _text(self, group: list[dict[str, Any]]) -> tuple[str, str, str]:
        home = str(self.cfg.home)
        if len(group) == 1:
            title, body, kind = ev.message(group[0], home, self.home_tag)
        else:
            why = (
                f"{len(group)} alerts at once (alerts.max_per_hour ="
                f" {self.cfg.alerts.max_per_hour} reached), oldest first:"
            )
            title, body, kind = ev.combined(group, home, self.home_tag, why)
        scrub = alert_urls.scrub
        return scrub(title, self._secret_pieces), scrub(body, self._secret_pieces), kind

    @contextlib.contextmanager
    def _attachment(self, alert: dict[str, Any]) -> Iterator[str | None]:
        """The screenshot named in the alert, read as the dashboard reads it (only a
        launcher PNG in logs/screens, no symlink or hard link: moonshot.env linked there
        is never sent), handed to apprise as a private copy outside the home."""
        path = alert.get("attachment")
        if not path or Path(path).parent != self.cfg.logs_dir / "screens":
            yield None
            return
        try:
            data = Screens(self.cfg.home.resolve()).read(Path(path).name)
        except (Refused, OSError) as exc:
            log.warning("alert %s: screenshot not attached: %s", alert["key"], exc)
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="moonshot-alert-") as tmp:
            copy = Path(tmp) / Path(path).name
            copy.write_bytes(data)
            yield str(copy)

    def _send(self, group: list[dict[str, Any]], now: float) -> int:
        """One message for the group to every receiver that lacks one of its alerts;
        then one commit per alert. Returns how many alerts are now sent to all."""
        current = {t.id for t in self.receivers}
        missing = [t for t in self.receivers if any(t.id not in a["delivered"] for a in group)]
        title, body, kind = self._text(group)
        single = group[0] if len(group) == 1 else {}
        with self._attachment(single) as attach:
            crash.point("before_send", ALERT_CRASH_POINTS, "alert_")
            results = deliver_all(missing, title, body, kind, self.cfg.alerts.timeout, attach)
            crash.point("after_send", ALERT_CRASH_POINTS, "alert_")
        ok = {tid for tid, (good, _) in results.items() if good}
        errors = [f"{t.label}: {results[t.id][1]}" for t in missing if t.id not in ok]
        sent = 0
        for a in group:
            delivered = sorted(set(a["delivered"]) | ok)
            if current <= set(delivered):
                self.store.alert_progress(a["id"], delivered, sent=True, now=now)
                sent += 1
                log.info("alert %s sent", a["key"], extra={"coin": a["coin_id"] or "-"})
                continue
            delay = min(self.cfg.alerts.retry_base * 2 ** a["attempts"], self.cfg.alerts.retry_max)
            delay *= random.uniform(0.8, 1.2)  # jitter: receivers that failed together
            error = alert_urls.scrub("; ".join(errors), self._secret_pieces)
            self.store.alert_progress(
                a["id"], delivered, sent=False, error=error, next_try=now + delay
            )
            log.warning(
                "alert %s not delivered (%s); next try in %.0f s",
                a["key"],
                error,
                delay,
                extra={"coin": a["coin_id"] or "-"},
            )
        return sent


# -- events the service sees, not transitions -------------------------------------------------
def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


LIMITS = (("max_per_hour", 3600.0, "hour"), ("max_per_day", 86400.0, "day"))


def launch_limits(cfg: Config, store: Store, now: float) -> None:
    """One alert per episode of coins held back by a launch limit: it opens when the
    limit is reached with a coin waiting, and closes once no coin waits (so a queue that
    drains at the limit's pace is one alert, not one per freed slot)."""
    if cfg.launch.mode == "off":
        return
    waiting = store.count_in([m.CONFIRMED])
    for name, window, unit in LIMITS:
        limit = getattr(cfg.launch, name)
        if limit <= 0:
            continue
        meta_key = f"alert_launch_limit:{name}"
        since = _float(store.meta_get(meta_key))
        launched = store.transitions_since(m.LAUNCHING, iso(now - window))
        if launched >= limit and waiting and since is None:
            reason = (
                f"{launched} launches in the last {unit} (launch.{name} = {limit});"
                f" {waiting} coin(s) wait in confirmed"
            )
            alert = ev.row(ev.LAUNCH_LIMIT, f"launch_limit:{name}:{now:.0f}", reason=reason)
            store.record_alert(alert, now=now, meta={meta_key: repr(now)})
        elif since is not None and not waiting:
            store.meta_set(meta_key, "")


def daily_summary(cfg: Config, store: Store, now: float) -> bool:
    """Once a day after alerts.daily_summary (local time): what happened, what waits."""
    at = cfg.alerts.daily_summary
    if not at:
        return False
    local = time.localtime(now)
    hour, minute = (int(x) for x in at.split(":"))
    if (local.tm_hour, local.tm_min) < (hour, minute):
        return False
    key = f"daily_summary:{time.strftime('%Y-%m-%d', local)}"
    if store.db.execute("SELECT 1 FROM alerts WHERE key = ?", (key,)).fetchone():
        return False
    counts = store.counts()
    waiting = ", ".join(
        f"{s} {n}" for s, n in counts.items() if n and s not in m.TERMINAL and s not in m.VISIBLE
    )
    attention = store.coins_in([m.NEEDS_REVIEW, m.FAILED], order="id", limit=10)
    parts = [
        f"launched in 24 h: {store.transitions_since(m.LAUNCHED, iso(now - 86400))}",
        f"rejected in 24 h: {store.transitions_since(m.REJECTED, iso(now - 86400))}",
        f"needs_review {counts[m.NEEDS_REVIEW]}, failed {counts[m.FAILED]}",
        f"waiting: {waiting or 'none'}",
        f"reports to the source waiting: {store.outbox_pending()}",
        f"alerts not delivered: {store.alerts_pending()}",
    ]
    if attention:
        parts.append(
            "for a person: " + ", ".join(f"coin {c.id} {c.ticker} {c.state}" for c in attention)
        )
    alert = ev.row(ev.DAILY_SUMMARY, key, reason="; ".join(parts))
    return store.record_alert(alert, now=now)


def _is_auth(exc: Exception) -> bool:
    from moonshot.supabase.source_supabase import SupabaseAuthError

    return isinstance(exc, SupabaseAuthError)


# -- the service's handle -------------------------------------------------------------------
class Alerts:
    """What the service holds: the source hooks (called on the pipeline's thread, one
    write per change of episode), the restart check, and the sender thread."""

    EPISODES = {"auth": "alert_source_auth_since", "down": "alert_source_down_since"}

    def __init__(
        self,
        cfg: Config,
        store: Store,
        stage: str = "all",
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.store = store
        self.stage = stage
        self.clock = clock
        self.receivers = check_targets(cfg)
        self._since = {k: _float(store.meta_get(v)) for k, v in self.EPISODES.items()}
        self._raised: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- start-up and stop ------------------------------------------------------------------
    def on_start(self, now: float) -> None:
        """The last run of this stage did not stop cleanly (its heartbeat is not 0): a
        crash, a kill or a power cut. Then start the sender."""
        suffix = health.STAGE_SUFFIX[self.stage]
        beat = self.store.meta_get("heartbeat_at" + suffix)
        if beat not in (None, "0"):
            pid = self.store.meta_get("heartbeat_pid" + suffix) or "?"
            ago = now - (_float(beat) or now)
            who = "service" if self.stage == "all" else f"{self.stage} service"
            reason = (
                f"the last {who} (pid {pid}) ended without a clean stop; its last heartbeat"
                f" was {ago:.0f} s before this start"
            )
            key = f"restarted:{self.stage}:{beat}"
            self.store.record_alert(ev.row(ev.RESTARTED, key, reason=reason), now=now)
        if self.receivers and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="moonshot-alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ask the sender for a last round and wait for it at most `timeout` seconds;
        what it could not send is in the table for the next start or `moonshot watch`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        store = Store(self.cfg.db_path)
        sender = Sender(self.cfg, store, self.receivers)
        next_monitor = 0.0
        try:
            while True:
                last = self._stop.is_set()
                now = self.clock()
                try:
                    if now >= next_monitor:
                        next_monitor = now + MONITOR_EVERY
                        if self.stage in ("all", "launch"):
                            launch_limits(self.cfg, store, now)
                        daily_summary(self.cfg, store, now)
                    sender.round(now)
                except MoonshotError as exc:
                    log.warning("alerts: %s", exc)
                except Exception as exc:  # noqa: BLE001 - the sender must outlive a bad round
                    log.error("alerts: round failed: %s", type(exc).__name__)
                if last:  # that was the round asked for by stop()
                    break
                self._stop.wait(POLL_EVERY)
        finally:
            store.close()

    # -- the source hooks (service._poll_source) ----------------------------------------------
    def source_failed(self, exc: Exception, now: float) -> None:
        kind = "auth" if _is_auth(exc) else "down"
        since = self._since[kind]
        if since is None:
            since = self._since[kind] = now
            self.store.meta_set(self.EPISODES[kind], repr(now))
        if kind == "down" and now - since < self.cfg.alerts.source_down_after:
            return
        event = ev.SOURCE_AUTH if kind == "auth" else ev.SOURCE_DOWN
        key = f"{event}:{since:.0f}"
        if key in self._raised:
            return
        self._raised.add(key)
        reason = str(exc) if kind == "auth" else f"no answer for {now - since:.0f} s: {exc}"
        self.store.record_alert(ev.row(event, key, reason=reason), now=now)

    def source_conflict(self, reason: str, refs: list[str], now: float) -> None:
        """Rows under reused ids: once per row (the key), at the first sight."""
        key = f"{ev.SOURCE_CONFLICT}:{','.join(sorted(refs))}"
        if key in self._raised:
            return
        self._raised.add(key)
        self.store.record_alert(ev.row(ev.SOURCE_CONFLICT, key, reason=reason), now=now)

    def source_ok(self, now: float) -> None:
        if self._since["auth"] is None and self._since["down"] is None:
            return  # the common case: no write
        raised = [k for k in self._raised if k.startswith((ev.SOURCE_AUTH, ev.SOURCE_DOWN))]
        meta = {key: "" for key in self.EPISODES.values()}
        if raised:
            since = min(s for s in self._since.values() if s is not None)
            reason = f"the source answers again after {now - since:.0f} s"
            alert = ev.row(ev.SOURCE_BACK, f"{ev.SOURCE_BACK}:{since:.0f}", reason=reason)
            self.store.record_alert(alert, now=now, meta=meta)
        else:
            self.store.meta_set_many(meta)
        self._since = dict.fromkeys(self._since)
        self._raised.clear()


# -- `moonshot watch` -------------------------------------------------------------------------
def watch(cfg: Config, store: Store, now: float | None = None) -> dict[str, Any]:
    """Run every few minutes by its own launchd agent: a dead or hung service is an alert
    (once per stale heartbeat); then deliver what waits, since a dead service's sender
    is dead too."""
    now = time.time() if now is None else now
    _, each = health.services(store, now, cfg.health.heartbeat_stale)
    report: dict[str, Any] = {"services": {}, "raised": []}
    for stage, state in each.items():
        if state["state"] == health.NEVER:
            continue
        report["services"][stage] = {"state": state["state"], "detail": state["detail"]}
        if state["state"] in (health.DEAD, health.HUNG):
            beat = store.meta_get("heartbeat_at" + health.STAGE_SUFFIX[stage])
            who = "the service" if stage == "all" else f"the {stage} service"
            key = f"service_down:{stage}:{beat}"
            reason = f"{who} is {state['state']}: {state['detail']}"
            if store.record_alert(ev.row(ev.SERVICE_DOWN, key, reason=reason), now=now):
                report["raised"].append(key)
    if daily_summary(cfg, store, now):
        report["raised"].append("daily_summary")
    receivers = check_targets(cfg)
    report["receivers"] = len(receivers)
    # The service's sender may hold the lock for a round: wait for it, then go.
    report["round"] = Sender(cfg, store, receivers).round(
        now, wait=2 * cfg.alerts.timeout + JOIN_MARGIN
    )
    report["pending"] = store.alerts_pending()
    report["healthy"] = all(s["state"] == health.RUNNING for s in report["services"].values())
    return report
