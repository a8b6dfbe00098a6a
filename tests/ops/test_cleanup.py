"""Spool clean-up: only launched coins' files move to spool/done/, files there are
deleted after cleanup.keep_days, --dry-run changes nothing, and the schedule honours
cleanup.interval."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from moonshot import machine as m
from moonshot.cli import cli
from moonshot.ops import cleanup
from moonshot.ports import IncomingCoin

NOW = 1_800_000_000.0
DAY = 86_400.0
PATH_TO = {
    m.FETCHED: [],
    m.SPOOLED: ["spool"],
    m.CONFIRMED: ["spool", "import_photo", "confirm"],
    m.LAUNCHED: ["spool", "import_photo", "confirm", "start_launch", "finish_launch"],
}


def make_coin(cfg, store, ticker: str, state: str, ts: int) -> str:
    """A coin driven through the real state machine to `state`, with its spool file."""
    name = f"alice_{ticker}_{ts}.jpg"
    coin_id, _ = store.add_coin(
        IncomingCoin(
            source="local",
            source_ref=ticker,
            ticker=ticker,
            name=ticker,
            image_url="x.jpg",
            twitter_user="alice",
            tweet_id=None,
        ),
        twitter_user="alice",
        now=NOW,
    )
    for trigger in PATH_TO[state]:
        changes = {"image_filename": name} if trigger == "spool" else {}
        store.fire(store.get(coin_id), trigger, now=NOW, **changes)
    assert store.get(coin_id).state == state
    (cfg.spool_dir / name).write_bytes(b"jpeg")
    return name


def age(path, days):
    t = NOW - days * DAY
    os.utime(path, (t, t))


def test_moves_only_launched_coins_files(cfg, store):
    launched = make_coin(cfg, store, "MOON", m.LAUNCHED, 1_700_000_001)
    confirmed = make_coin(cfg, store, "SUN", m.CONFIRMED, 1_700_000_002)
    spooled = make_coin(cfg, store, "STAR", m.SPOOLED, 1_700_000_003)
    (cfg.spool_dir / "bob_UNKNOWN_1700000004.jpg").write_bytes(b"drop")  # a manual drop
    (cfg.spool_dir / "holiday.jpg").write_bytes(b"other")
    result = cleanup.run(cfg, store, now=NOW)
    assert result.moved == [launched] and result.deleted == []
    done = cfg.spool_dir / "done"
    assert (done / launched).read_bytes() == b"jpeg"
    assert not (cfg.spool_dir / launched).exists()
    for name in (confirmed, spooled, "bob_UNKNOWN_1700000004.jpg", "holiday.jpg"):
        assert (cfg.spool_dir / name).exists()
    # The age in done/ counts from the move.
    assert (done / launched).stat().st_mtime == NOW
    assert cleanup.run(cfg, store, now=NOW).moved == []


def test_deletes_after_keep_days(cfg, store):
    cfg.cleanup.keep_days = 3
    done = cfg.spool_dir / "done"
    done.mkdir()
    old, young = done / "alice_OLD_1700000001.jpg", done / "alice_NEW_1700000002.jpg"
    other = done / "notes.txt"
    for p in (old, young, other):
        p.write_bytes(b"x")
    age(old, 3.01)
    age(young, 2.99)
    age(other, 30)
    result = cleanup.run(cfg, store, now=NOW)
    assert result.deleted == [old.name]
    assert not old.exists() and young.exists() and other.exists()


def test_dry_run_changes_nothing(cfg, store):
    launched = make_coin(cfg, store, "MOON", m.LAUNCHED, 1_700_000_001)
    done = cfg.spool_dir / "done"
    done.mkdir()
    old = done / "alice_OLD_1700000001.jpg"
    old.write_bytes(b"x")
    age(old, 30)
    result = cleanup.run(cfg, store, now=NOW, dry_run=True)
    assert (result.moved, result.deleted, result.dry_run) == ([launched], [old.name], True)
    assert (cfg.spool_dir / launched).exists() and old.exists()
    assert not (done / launched).exists()


def test_cli_cleanup(cfg, store, tmp_path):
    launched = make_coin(cfg, store, "MOON", m.LAUNCHED, 1_700_000_001)
    runner = CliRunner()
    home = str(cfg.home)
    result = runner.invoke(cli, ["--home", home, "cleanup", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"would move spool/{launched} -> spool/done/{launched}" in result.stdout
    assert (cfg.spool_dir / launched).exists()
    result = runner.invoke(cli, ["--home", home, "cleanup", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"moved": [launched], "deleted": [], "dry_run": False}
    assert (cfg.spool_dir / "done" / launched).exists()


def test_cli_keep_days_from_config(cfg, store):
    (cfg.home / "moonshot.toml").write_text("[cleanup]\nkeep_days = 0.5\n")
    done = cfg.spool_dir / "done"
    done.mkdir()
    f = done / "alice_OLD_1700000001.jpg"
    f.write_bytes(b"x")
    t = f.stat().st_mtime - 0.6 * DAY
    os.utime(f, (t, t))
    result = CliRunner().invoke(cli, ["--home", str(cfg.home), "cleanup"])
    assert result.exit_code == 0
    assert "1 deleted (keep_days = 0.5)" in result.stdout
    assert not f.exists()


def test_schedule_honours_interval(cfg, store):
    cfg.cleanup.interval = 600
    sched = cleanup.Schedule(cfg, store)
    first = make_coin(cfg, store, "ONE", m.LAUNCHED, 1_700_000_001)
    assert sched.maybe_run(NOW).moved == [first]
    second = make_coin(cfg, store, "TWO", m.LAUNCHED, 1_700_000_002)
    assert sched.maybe_run(NOW + 599) is None
    assert (cfg.spool_dir / second).exists()
    assert sched.maybe_run(NOW + 600).moved == [second]
    cfg.cleanup.interval = 0  # never
    third = make_coin(cfg, store, "THREE", m.LAUNCHED, 1_700_000_003)
    assert cleanup.Schedule(cfg, store).maybe_run(NOW) is None
    assert (cfg.spool_dir / third).exists()
