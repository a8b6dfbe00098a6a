"""`moonshot dashboard`: datasette over moonshot.db, read-only, on loopback. Thin: builds
the site with moonshot.ops.dashboard and serves it until Ctrl-C."""

from __future__ import annotations

import webbrowser

import click

from moonshot.cli.common import load_config
from moonshot.errors import MoonshotError


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback serves the audit trail to the"
    " network without authentication.",
)
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
@click.pass_context
def dashboard(ctx: click.Context, host: str, port: int, open_browser: bool) -> None:
    """Browse the audit trail in datasette, read-only (needs moonshot[dashboard])."""
    from moonshot.ops import dashboard as dash

    cfg = load_config(ctx)
    try:
        site = dash.build(cfg, host, port)
        sock = dash.bind(host, port)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    if site.skipped_plugins:
        click.echo(
            "not loaded (the dashboard runs only its own plugins): "
            + ", ".join(site.skipped_plugins),
            err=True,
        )
    if not site.loopback:
        click.echo(
            f"warning: {host} is not loopback and the dashboard has no authentication:"
            " anyone who can reach it can read every coin, transition and tweet decision",
            err=True,
        )
    click.echo(f"moonshot dashboard (read-only) on {site.url}  (Ctrl-C stops it)")
    if open_browser:  # the socket already listens: the browser's request waits for it
        webbrowser.open(site.url)
    dash.serve(site, sock)
    click.echo("dashboard stopped")


commands = [dashboard]
