"""Stand-in executables for tests: small scripts put first on PATH that record their
arguments (one JSON list per line) and answer like the real macOS tools would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *args]) + "\\n")
plan = json.loads(open({plan!r}, encoding="utf-8").read())
step = plan.get(args[0] if args else "", {{}})
time.sleep(step.get("sleep", 0))
sys.stdout.write(step.get("stdout", ""))
sys.stderr.write(step.get("stderr", ""))
sys.exit(step.get("rc", 0))
"""


class StandIn:
    """`name` on PATH; `plan[subcommand]` = {rc, stdout, stderr, sleep}."""

    def __init__(self, bin_dir: Path, name: str):
        self.name = name
        self.log = bin_dir / f"{name}.calls"
        self.plan_path = bin_dir / f"{name}.plan.json"
        self.plan({})
        exe = bin_dir / name
        exe.write_text(
            SCRIPT.format(python=sys.executable, log=str(self.log), plan=str(self.plan_path))
        )
        exe.chmod(0o755)

    def plan(self, plan: dict) -> None:
        self.plan_path.write_text(json.dumps(plan))

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line)[1:] for line in self.log.read_text().splitlines()]

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)


def install(monkeypatch, tmp_path: Path, name: str) -> StandIn:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    standin = StandIn(bin_dir, name)
    import os

    if not os.environ.get("PATH", "").startswith(str(bin_dir)):
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return standin
