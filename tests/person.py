"""A person who follows `moonshot status` literally (issue 15): whatever `moonshot ...`
command status names as the way forward for a coin (withdraw, approve, retry it) they
run, in the order it names them, and README's advice for a failed coin (`moonshot retry
ID`), then run the service again, until nothing new is advised. And the count of launches
per coin the ledger launcher recorded, which must never be more than one."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path

from tests.conftest import run_cli

# Commands status may advise for a coin, as a person would type them, in its order.
ADVICE = re.compile(r"moonshot (withdraw|approve|retry) (\d+)")


def advice(home: Path) -> list[list[str]]:
    """The commands `moonshot status` names, in the order it names them."""
    proc = run_cli(home, "status")
    seen: list[list[str]] = []
    for match in ADVICE.finditer(proc.stdout + proc.stderr):
        cmd = shlex.split(match.group(0))[1:]
        if cmd not in seen:
            seen.append(cmd)
    for failed in re.finditer(r"attention: coin (\d+) \S+ failed", proc.stdout):
        cmd = ["retry", failed.group(1)]  # README, Troubleshooting: "a coin is failed"
        if cmd not in seen:
            seen.append(cmd)
    return seen


def follow_status(home: Path, env: dict | None = None, rounds: int = 4) -> list[list[str]]:
    """Run `moonshot run --once`, then every command status advises, until it advises
    nothing new; returns the commands run."""
    done: list[list[str]] = []
    last: list[list[str]] = []
    for _ in range(rounds):
        run_cli(home, "run", "--once", env=env)
        todo = advice(home)
        if not todo or todo == last:
            break
        for cmd in todo:
            run_cli(home, *cmd, env=env)
            done.append(cmd)
        last = todo
    return done


def launches(home: Path) -> list[dict]:
    path = home / "launches.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def launch_counts(home: Path) -> Counter:
    """Launches per coin as a person sees it: user and ticker (a coin id may differ)."""
    return Counter((e["twitter_user"], e["ticker"]) for e in launches(home))


def status_json(home: Path) -> dict:
    return json.loads(run_cli(home, "status", "--json").stdout)
