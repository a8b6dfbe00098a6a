"""`moonshot cleanup [--dry-run]`: launched coins' spool files to spool/done/, and files
there older than `cleanup.keep_days` deleted. Thin: calls moonshot.ops.cleanup.run and prints."""

from __future__ import annotations

import json

import click

from moonshot import config
from moonshot.errors import MoonshotError


@click.command()
@click.option(
    "--dry-run", is_flag=True, help="Say what would be moved and deleted; change nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@click.pass_context
def cleanup(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Move launched coins' images to spool/done/ and delete old ones there."""
    from moonshot.home import open_store
    from moonshot.ops import cleanup as spool_cleanup  # sqlite-utils: only when this runs

    try:
        cfg = config.load((ctx.obj or {}).get("home"))
        store = open_store(cfg, create=False)
        try:
            result = spool_cleanup.run(cfg, store, dry_run=dry_run)
        finally:
            store.close()
    except (MoonshotError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    verb = "would " if dry_run else ""
    for name in result.moved:
        click.echo(f"{verb}move spool/{name} -> spool/done/{name}")
    for name in result.deleted:
        click.echo(f"{verb}delete spool/done/{name}")
    days = f"{cfg.cleanup.keep_days:g}"
    click.echo(f"{len(result.moved)} moved, {len(result.deleted)} deleted (keep_days = {days})")


commands = [cleanup]
