"""`moonshot launchd ...`: print, install, uninstall, restart and inspect the launchd
agents. Thin: each command calls one function of moonshot.ops.launchd and prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from moonshot import config
from moonshot.errors import MoonshotError, PortUnavailable
from moonshot.ops import launchd as agents

RET_OK = 0
RET_NOT_RUNNING = 1  # status: an agent is not loaded or not running
RET_REFUSED = 3  # not macOS: nothing was changed


def _cfg(ctx: click.Context) -> config.Config:
    try:
        return config.load((ctx.obj or {}).get("home"))
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _guard(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except PortUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(RET_REFUSED)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


python_option = click.option(
    "--python",
    "python",
    type=click.Path(dir_okay=False),
    help="Interpreter launchd runs (absolute). Default: this one.",
)
split_option = click.option(
    "--split",
    is_flag=True,
    help="Two agents: com.moonshot.photosync (sync) and com.moonshot.watcher (launch).",
)


@click.group()
def launchd() -> None:
    """Run moonshot as a launchd agent (macOS): print, install, status, restart, uninstall."""


@launchd.command("print")
@split_option
@python_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <label>.plist files into this folder instead of printing.",
)
@click.pass_context
def print_(ctx: click.Context, split: bool, python: str | None, out: Path | None) -> None:
    """The rendered plist(s), on any system."""
    rendered = agents.render(_cfg(ctx), split=split, python=python)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for agent in rendered:
            (out / agent.filename).write_bytes(agent.dumps())
            click.echo(str(out / agent.filename))
        return
    for agent in rendered:
        if len(rendered) > 1:  # like `head` on several files: a header before each one
            click.echo(f"==> {agent.filename} <==")
        click.echo(agent.dumps().decode("utf-8"), nl=False)


@launchd.command()
@split_option
@python_option
@click.pass_context
def install(ctx: click.Context, split: bool, python: str | None) -> None:
    """Write ~/Library/LaunchAgents/<label>.plist for the service and com.moonshot.watch,
    and bootstrap them in gui/<uid>."""
    for path in _guard(agents.install, _cfg(ctx), split=split, python=python):
        click.echo(f"installed {path}")


@launchd.command()
def uninstall() -> None:
    """Boot out every moonshot agent (the service stops gracefully) and remove its plist."""
    removed = _guard(agents.uninstall)
    click.echo(
        "\n".join(f"removed {label}" for label in removed) or "no moonshot agent was installed"
    )


@launchd.command()
def restart() -> None:
    """kickstart -k: stop the running service gracefully and start it again."""
    for label in _guard(agents.restart):
        click.echo(f"restarted {label}")


@launchd.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def status(as_json: bool) -> None:
    """Each installed agent: loaded, state, pid, last exit code. Exit 1 unless the service
    runs (and the watch agent is loaded)."""
    entries = _guard(agents.status)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    elif not entries:
        click.echo("no moonshot agent is installed; run `moonshot launchd install`")
    for e in [] if as_json else entries:
        extra = "".join(f" {k}={e[k]}" for k in ("pid", "last_exit_code", "runs") if k in e)
        click.echo(f"{e['label']}: {e['state']}{extra}")
    ok = bool(entries) and all(e["ok"] for e in entries)
    sys.exit(RET_OK if ok else RET_NOT_RUNNING)


commands = [launchd]
