"""Health of a home, for `moonshot status`: is the service alive (its heartbeat in the
state db's meta table), can the source and the Photos library be reached, how long is each
queue, when were the last sync and launch. Read-only: never creates a library or claims a coin."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from moonshot import adapters
from moonshot import machine as m
from moonshot.config import Config
from moonshot.store import Store

WAITING = tuple(s for s in m.STATES if s not in m.TERMINAL and s not in m.VISIBLE)
# Service states; only `running` is alive.
RUNNING, STOPPED, NEVER, DEAD, HUNG = "running", "stopped", "never started", "dead", "hung"
# Heartbeat key suffix of each `run --stages` value (service.py writes them).
STAGE_SUFFIX = {"all": "", "sync": ":sync", "launch": ":launch"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def service_state(store: Store, now: float, stale: float, stage: str = "all") -> dict[str, Any]:
    """From the heartbeat the service writes each tick (`heartbeat_at`, `heartbeat_pid`,
    suffixed per split stage; `heartbeat_at` = 0 after a clean stop) and `last_progress_at`."""
    suffix = STAGE_SUFFIX[stage]
    beat = _float(store.meta_get("heartbeat_at" + suffix))
    pid_text = store.meta_get("heartbeat_pid" + suffix)
    pid = int(pid_text) if pid_text and pid_text.isdigit() else None
    progress = _float(store.meta_get("last_progress_at"))
    out: dict[str, Any] = {
        "alive": False,
        "pid": pid,
        "heartbeat_age_s": round(now - beat, 1) if beat else None,
        "last_progress_age_s": round(now - progress, 1) if progress else None,
    }
    if beat is None:
        out["state"], out["detail"] = NEVER, "no heartbeat yet"
    elif beat == 0:
        out["state"], out["detail"] = STOPPED, "stopped cleanly"
    elif pid is not None and not pid_alive(pid):
        out["state"] = DEAD
        out["detail"] = f"process {pid} is gone without a clean stop (crash or kill)"
    elif now - beat > stale:
        out["state"] = HUNG if pid is not None else DEAD
        out["detail"] = (
            f"no heartbeat for {now - beat:.0f} s (health.heartbeat_stale = {stale:g} s)"
        )
    else:
        out["state"], out["detail"] = RUNNING, f"heartbeat {now - beat:.0f} s ago"
        out["alive"] = True
    return out


def services(store: Store, now: float, stale: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the service as a whole, each stage's state). With the split agents (`launchd
    install --split`) the whole is alive only when both the sync and launch agents are."""
    each = {stage: service_state(store, now, stale, stage) for stage in STAGE_SUFFIX}
    split_seen = any(each[s]["state"] != NEVER for s in ("sync", "launch"))
    if each["all"]["alive"] or not split_seen:
        return each["all"], each
    parts = [each["sync"], each["launch"]]
    down = [
        f"{stage}: {each[stage]['state']}"
        for stage in ("sync", "launch")
        if not each[stage]["alive"]
    ]
    whole = dict(parts[0] if not parts[0]["alive"] else parts[1])
    whole["alive"] = not down
    whole["state"] = RUNNING if not down else next(p["state"] for p in parts if not p["alive"])
    whole["detail"] = (
        "sync and launch agents running" if not down else "split agents: " + ", ".join(down)
    )
    return whole, each


def _port_checks(port: Any) -> tuple[list[str], dict[str, Any]]:
    """An adapter's optional checks() (fail lines) and health() (shown as is)."""
    fails: list[str] = []
    info: dict[str, Any] = {}
    checks = getattr(port, "checks", None)
    if checks is not None:
        for c in checks():
            if c.status == "fail":
                fails.append(f"{c.name}: {c.message}" + (f"; {c.fix}" if c.fix else ""))
    health = getattr(port, "health", None)
    if health is not None:
        info = dict(health())
    return fails, info


def _close(port: Any) -> None:
    close = getattr(port, "close", None)
    if close is not None:
        close()


def _probe(
    out: dict[str, Any], build, label: str, unavailable: str, check_failed: str
) -> dict[str, Any]:
    """Build a port, collect its checks() failures and health() into `out`, close it."""
    try:
        port = build()
    except Exception as exc:  # noqa: BLE001 - any failure to open it is the finding
        out["problems"].append(f"{unavailable}: {exc}")
        return out
    try:
        fails, info = _port_checks(port)
        out["problems"].extend(f"{label}: {f}" for f in fails)
        out.update({k: v for k, v in info.items() if k not in out})
    except Exception as exc:  # noqa: BLE001
        out["problems"].append(f"{check_failed}: {exc}")
    finally:
        _close(port)
    return out


def library_state(cfg: Config, store: Store) -> dict[str, Any]:
    kind = cfg.photos_kind
    out: dict[str, Any] = {"kind": kind, "ok": True, "problems": []}
    if kind == "folder":
        path = cfg.library_path
        out["path"] = str(path)
        db = path / "library.db"
        if not db.is_file():
            # The service creates the folder library on first use: missing is a problem
            # only once something was imported or the service has run.
            used = (
                any(store.meta_get("heartbeat_at" + x) is not None for x in STAGE_SUFFIX.values())
                or store.db.execute(
                    "SELECT 1 FROM coins WHERE photos_asset_id IS NOT NULL LIMIT 1"
                ).fetchone()
            )
            if used:
                out["problems"].append(
                    f"Photos library missing: {path} (mounted? photos.library in moonshot.toml)"
                )
            else:
                out["detail"] = "not created yet; the service creates it"
            return out
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                out["assets"] = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            out["problems"].append(
                f"Photos library unreadable: {db} ({exc}); check its permissions"
            )
        return out
    return _probe(
        out,
        lambda: adapters.build_library(cfg),
        "Photos library",
        "Photos library unavailable",
        "Photos library check failed",
    )


def source_state(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": cfg.source.kind, "ok": True, "problems": []}
    if cfg.source.kind == "local":
        out["detail"] = "embedded queue in moonshot.db"
        return out
    label = f"source {cfg.source.kind}"
    return _probe(out, lambda: adapters.build_source(cfg), label, label, f"{label}: check failed")


def assess(
    cfg: Config, store: Store, *, now: float | None = None, probe: bool = True
) -> dict[str, Any]:
    """Everything `status` adds to the counts; `healthy` is False when the service is not
    running (never started, stopped, dead or hung), or the library or the source cannot
    be used. `probe=False` skips the source and library (no network, no Photos)."""
    now = time.time() if now is None else now
    counts = store.counts()
    service, each = services(store, now, cfg.health.heartbeat_stale)
    problems: list[str] = []
    if not service["alive"]:
        hint = (
            "moonshot launchd status; logs/moonshot.log"
            if service["state"] in (DEAD, HUNG)
            else "moonshot run, or moonshot launchd install"
        )
        problems.append(
            f"service is not running ({service['state']}: {service['detail']}); see {hint}"
        )
    report: dict[str, Any] = {
        "service": service,
        "services": {k: v["state"] for k, v in each.items() if v["state"] != NEVER},
        "queue": {s: counts.get(s, 0) for s in WAITING},
        "last_sync_at": store.last_transition_at(m.CONFIRMED),
        "last_launch_at": store.last_transition_at(m.LAUNCHED),
    }
    if probe:
        report["source"] = source_state(cfg)
        report["library"] = library_state(cfg, store)
        for part in ("source", "library"):
            report[part]["ok"] = not report[part]["problems"]
            problems.extend(report[part]["problems"])
    report["problems"] = problems
    report["healthy"] = not problems
    return report
