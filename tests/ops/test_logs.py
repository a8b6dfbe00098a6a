"""The one rotating log file of an unattended service: readable lines with the coin id
on each, `run --log-format json` writing JSON lines, rotation at log.max_bytes keeping
log.backups files, and no secret from the environment in any line."""

from __future__ import annotations

import json

from tests.conftest import make_image, run_cli

SECRET = "sk-never-in-a-log-line-123"


def add(home, tmp_path, n):
    for i in range(n):
        img = make_image(tmp_path / f"c{i}.jpg", color=(i * 30 % 256, 80, 80), fmt="JPEG")
        proc = run_cli(
            home, "add", "--ticker", f"LOG{i}", "--name", f"Log {i}", "--image", str(img)
        )
        assert proc.returncode == 0, proc.stderr


def test_text_lines_carry_the_coin_id(home, tmp_path):
    add(home, tmp_path, 2)
    proc = run_cli(home, "run", "--once", env={"SUPABASE_SERVICE_ROLE_KEY": SECRET})
    assert proc.returncode == 0, proc.stderr
    lines = (home / "logs" / "moonshot.log").read_text().splitlines()
    assert lines and all(" coin=" in line for line in lines)
    for coin in (1, 2):
        assert any(f"coin={coin} " in line and "launched" in line for line in lines)
    assert SECRET not in (home / "logs" / "moonshot.log").read_text() + proc.stderr


def test_json_log_format(home, tmp_path):
    add(home, tmp_path, 1)
    proc = run_cli(home, "run", "--once", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (home / "logs" / "moonshot.log").read_text().splitlines()]
    assert records and all({"at", "level", "coin", "msg"} <= set(r) for r in records)
    assert any(r["coin"] == 1 and "launched" in r["msg"] for r in records)


def test_log_rotates_and_keeps_backups(home, tmp_path):
    add(home, tmp_path, 6)
    env = {"MOONSHOT_LOG_MAX_BYTES": "1500", "MOONSHOT_LOG_BACKUPS": "2"}
    assert run_cli(home, "run", "--once", env=env).returncode == 0
    names = sorted(p.name for p in (home / "logs").iterdir() if p.name.startswith("moonshot.log"))
    assert names == ["moonshot.log", "moonshot.log.1", "moonshot.log.2"]
    for name in names:
        assert (home / "logs" / name).stat().st_size <= 1500 + 400  # one line may cross the mark
