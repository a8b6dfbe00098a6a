"""The documentation is generated from the code and cannot drift: README's command
help and config defaults, and statemachine.md's diagram (cog --check), plus every
command and state documented where a user looks for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moonshot import machine
from tests.conftest import ROOT, cli_env
from tests.docs_help import commands


@pytest.mark.parametrize("doc", ["README.md", "statemachine.md"])
def test_generated_sections_are_current(doc):
    proc = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", doc],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{doc} is stale; run `cog -r {doc}`: {proc.stdout}{proc.stderr}"


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [" ".join(p) for p in commands() if f"### `moonshot {' '.join(p)}`" not in readme]
    assert not missing, f"undocumented commands: {missing}"


def test_every_state_and_trigger_is_explained():
    doc = (ROOT / "statemachine.md").read_text()
    for state in machine.STATES:
        assert f"| `{state}` |" in doc, state
    for trigger in machine.MACHINE.events:
        assert f"`{trigger}`" in doc, trigger


def test_crash_points_are_all_used_by_the_pipeline():
    from moonshot.crash import CRASH_POINTS

    source = (ROOT / "moonshot" / "pipeline.py").read_text()
    used = {p for p in CRASH_POINTS if f'crash.point("{p}")' in source}
    assert used == set(CRASH_POINTS)


@pytest.mark.parametrize("doc", ["README.md", "statemachine.md"])
def test_every_path_the_docs_name_exists(doc):
    import re

    text = (ROOT / doc).read_text()
    paths = set(re.findall(r"`((?:moonshot|tests|bench|launchd|supabase)/[\w./-]+)`", text))
    paths |= set(re.findall(r"\]\(((?:moonshot|tests)/[\w./-]+)\)", text))
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert paths and not missing, f"{doc} names files that do not exist: {missing}"


def test_every_module_of_a_package_is_in_the_readme_layout():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Where the code is") : readme.index("## Commands")]
    missing = [
        f"{p.parent.name}/{p.stem}"
        for p in sorted((ROOT / "moonshot").rglob("*.py"))
        if p.stem not in ("__init__", "__main__") and f"`{p.stem}`" not in layout
    ]
    assert not missing, f"README's 'Where the code is' does not name: {missing}"
