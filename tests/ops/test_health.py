"""Health: the service's state from its heartbeat (running, stopped, never started,
dead, hung), the library and source checks, queues and last sync/launch; unhealthy when
the heartbeat is stale, the process is gone, or the library is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from moonshot import adapters
from moonshot import machine as m
from moonshot.errors import ConfigError
from moonshot.ops import health
from moonshot.photos.library_folder import FolderLibrary
from moonshot.ports import Check, IncomingCoin

NOW = 1_800_000_000.0


def beat(store, at, pid):
    store.meta_set("heartbeat_at", repr(at))
    store.meta_set("heartbeat_pid", str(pid))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_fresh_home_never_started(cfg, store):
    report = health.assess(cfg, store, now=NOW)
    assert report["service"]["state"] == health.NEVER
    assert report["healthy"] is False
    assert report["problems"] == [
        "service is not running (never started: no heartbeat yet);"
        " see moonshot run, or moonshot launchd install"
    ]
    assert report["library"]["detail"].startswith("not created yet")
    assert report["queue"] == dict.fromkeys(health.WAITING, 0)
    assert set(health.WAITING) == {m.FETCHED, m.SPOOLED, m.IMPORTED, m.CONFIRMED, m.LAUNCHING}


def test_running_with_fresh_heartbeat(cfg, store):
    FolderLibrary(cfg.library_path).close()
    beat(store, NOW - 2, os.getpid())
    store.meta_set("last_progress_at", repr(NOW - 30))
    report = health.assess(cfg, store, now=NOW)
    service = report["service"]
    assert service["state"] == health.RUNNING and service["pid"] == os.getpid()
    assert service["alive"] is True
    assert service["heartbeat_age_s"] == 2.0 and service["last_progress_age_s"] == 30.0
    assert report["healthy"] is True and report["problems"] == []
    assert report["library"]["assets"] == 0


def test_stale_heartbeat_is_unhealthy(cfg, store):
    FolderLibrary(cfg.library_path).close()
    beat(store, NOW - cfg.health.heartbeat_stale - 1, os.getpid())
    report = health.assess(cfg, store, now=NOW)
    assert report["service"]["state"] == health.HUNG
    assert report["healthy"] is False
    assert report["service"]["alive"] is False
    assert report["problems"][0].startswith("service is not running (hung: no heartbeat for 121 s")


def test_gone_process_is_dead_even_with_fresh_heartbeat(cfg, store):
    FolderLibrary(cfg.library_path).close()
    pid = dead_pid()
    beat(store, NOW - 1, pid)
    report = health.assess(cfg, store, now=NOW)
    assert report["service"]["state"] == health.DEAD
    assert f"process {pid} is gone" in report["problems"][0]
    assert report["healthy"] is False


def test_clean_stop_is_told_from_a_crash(cfg, store):
    FolderLibrary(cfg.library_path).close()
    beat(store, 0, dead_pid())  # the service writes heartbeat_at = 0 when it stops cleanly
    report = health.assess(cfg, store, now=NOW)
    assert report["service"]["state"] == health.STOPPED
    assert report["healthy"] is False
    assert "(stopped: stopped cleanly)" in report["problems"][0]


def split_beats(store, sync_pid, launch_pid):
    for stage, pid in (("sync", sync_pid), ("launch", launch_pid)):
        store.meta_set(f"heartbeat_at:{stage}", repr(NOW - 1))
        store.meta_set(f"heartbeat_pid:{stage}", str(pid))


def test_split_agents_alive_only_when_both_are(cfg, store):
    FolderLibrary(cfg.library_path).close()
    split_beats(store, os.getpid(), os.getpid())
    report = health.assess(cfg, store, now=NOW)
    assert report["service"]["alive"] is True and report["healthy"] is True
    assert report["services"] == {"sync": health.RUNNING, "launch": health.RUNNING}
    split_beats(store, os.getpid(), dead_pid())
    report = health.assess(cfg, store, now=NOW)
    assert report["service"]["alive"] is False
    assert report["service"]["state"] == health.DEAD
    assert report["service"]["detail"] == "split agents: launch: dead"
    assert report["healthy"] is False


def test_library_missing_after_use_is_unhealthy(cfg, store):
    beat(store, NOW - 1, os.getpid())
    report = health.assess(cfg, store, now=NOW)
    assert report["library"]["ok"] is False
    assert report["healthy"] is False
    assert report["problems"] == [
        f"Photos library missing: {cfg.library_path} (mounted? photos.library in moonshot.toml)"
    ]
    assert not cfg.library_path.exists()  # status never creates it


def test_library_unreadable_is_unhealthy(cfg, store):
    cfg.library_path.mkdir(parents=True)
    (cfg.library_path / "library.db").write_bytes(b"this is not sqlite" * 100)
    beat(store, NOW - 1, os.getpid())
    report = health.assess(cfg, store, now=NOW)
    assert report["healthy"] is False
    assert report["problems"][0].startswith("Photos library unreadable")


def test_queue_and_last_sync_and_launch(cfg, store):
    FolderLibrary(cfg.library_path).close()
    ids = []
    for i, ticker in enumerate(["A", "B", "C"]):
        coin_id, _ = store.add_coin(
            IncomingCoin("local", ticker, ticker, ticker, "x.jpg"), twitter_user="u", now=NOW + i
        )
        ids.append(coin_id)
    for trigger in ["spool", "import_photo", "confirm", "start_launch", "finish_launch"]:
        store.fire(store.get(ids[0]), trigger, now=NOW + 10)
    for trigger in ["spool", "import_photo", "confirm"]:
        store.fire(store.get(ids[1]), trigger, now=NOW + 20)
    report = health.assess(cfg, store, now=NOW + 30)
    assert report["queue"] == {
        m.FETCHED: 1,
        m.SPOOLED: 0,
        m.IMPORTED: 0,
        m.CONFIRMED: 1,
        m.LAUNCHING: 0,
    }
    assert report["last_sync_at"] == "2027-01-15T08:00:20.000000Z"
    assert report["last_launch_at"] == "2027-01-15T08:00:10.000000Z"


def test_source_auth_problem_is_unhealthy(cfg, store, monkeypatch):
    cfg.source.kind = "supabase"

    def no_key(_cfg):
        raise ConfigError("SUPABASE_SERVICE_ROLE_KEY is not set; store it in the Keychain")

    monkeypatch.setattr(adapters, "build_source", no_key)
    FolderLibrary(cfg.library_path).close()
    beat(store, NOW - 1, os.getpid())
    report = health.assess(cfg, store, now=NOW)
    assert report["source"]["ok"] is False
    assert report["problems"] == [
        "source supabase: SUPABASE_SERVICE_ROLE_KEY is not set; store it in the Keychain"
    ]


class FakeRemote:
    """A source adapter answering the optional checks()/health() methods of ports.py."""

    kind = "supabase"

    def __init__(self, status):
        self.status = status
        self.closed = False

    def checks(self):
        return [
            Check(
                "connection", self.status, "HTTP 401 from PostgREST", "check the service role key"
            )
        ]

    def health(self):
        return {"latency_ms": 12}

    def close(self):
        self.closed = True


@pytest.mark.parametrize("status", ["ok", "fail"])
def test_source_checks_decide(cfg, store, monkeypatch, status):
    cfg.source.kind = "supabase"
    remote = FakeRemote(status)
    monkeypatch.setattr(adapters, "build_source", lambda _cfg: remote)
    FolderLibrary(cfg.library_path).close()
    beat(store, NOW - 1, os.getpid())
    report = health.assess(cfg, store, now=NOW)
    assert report["source"]["latency_ms"] == 12
    assert remote.closed
    assert report["healthy"] is (status == "ok")
    if status == "fail":
        assert report["problems"] == [
            "source supabase: connection: HTTP 401 from PostgREST; check the service role key"
        ]


def test_probe_false_skips_source_and_library(cfg, store, monkeypatch):
    monkeypatch.setattr(adapters, "build_source", lambda _cfg: pytest.fail("probed"))
    cfg.source.kind = "supabase"
    report = health.assess(cfg, store, now=NOW, probe=False)
    assert "source" not in report and "library" not in report
