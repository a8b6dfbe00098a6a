"""Text that cog writes into README.md: the real `--help` of every command and the
configuration defaults, so the documentation is generated from the code."""

from __future__ import annotations

import dataclasses

import click
from click.testing import CliRunner


def _walk(group: click.Group, prefix: list[str]):
    for name in sorted(group.commands):
        cmd = group.commands[name]
        yield [*prefix, name], cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, [*prefix, name])


def commands() -> list[list[str]]:
    from moonshot.cli import cli

    return [path for path, _ in _walk(cli, [])]


def all_help() -> str:
    from moonshot.cli import cli

    runner = CliRunner()
    out = []
    for path in [[], *commands()]:
        result = runner.invoke(cli, [*path, "--help"], prog_name="moonshot", env={"COLUMNS": "100"})
        title = " ".join(["moonshot", *path])
        out.append(f"### `{title}`\n\n```\n{result.output.rstrip()}\n```\n\n")
    return "".join(out)


def config_defaults() -> str:
    from moonshot.config import SECTIONS, Config

    cfg = Config(home=None)  # type: ignore[arg-type]
    lines = ["```toml"]
    for section in SECTIONS:
        lines.append(f"[{section}]")
        for f in dataclasses.fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = f'"{value}"'
            elif isinstance(value, list):
                text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
            else:
                text = repr(value)
            lines.append(f"{f.name} = {text}")
        lines.append("")
    lines[-1] = "```"
    return "\n".join(lines) + "\n"


def flow_file(path: str) -> str:
    """A flow file of the tests, verbatim, as README shows it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return "```toml\n" + (root / path).read_text(encoding="utf-8").rstrip() + "\n```\n"
