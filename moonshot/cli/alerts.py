"""`moonshot alerts test|list` and `moonshot watch`: thin, each calls one function of
moonshot.ops.alerts and prints. A receiver is shown by scheme and host only."""

from __future__ import annotations

import sys

import click

from moonshot.cli.common import load_config, open_store, output
from moonshot.errors import MoonshotError

RET_OK = 0
RET_FAILED = 1  # alerts test: a receiver did not get it; watch: the service is not running
RET_CONFIG = 2


@click.group()
def alerts() -> None:
    """Alerts through apprise: send a test message, list what was sent."""


@alerts.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def test(ctx: click.Context, as_json: bool) -> None:
    """Send one test message to every alert URL; say per URL whether it was delivered."""
    from moonshot.ops.alerts import send_test

    cfg = load_config(ctx)
    results = send_test(cfg)
    if not results:
        raise click.ClickException(
            "no alert URL: set alerts.urls in moonshot.toml (macosx://, json://...) or"
            " MOONSHOT_ALERT_URLS (Keychain or moonshot.env) for URLs with a token"
        )
    text = "\n".join(
        f"{r['receiver']}: " + ("delivered" if r["delivered"] else f"NOT delivered ({r['error']})")
        for r in results
    )
    output(results, as_json, text)
    if not all(r["delivered"] for r in results):
        sys.exit(RET_FAILED)


@alerts.command("list")
@click.option("--pending", is_flag=True, help="Only alerts not delivered yet.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=50,
    show_default=True,
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def list_(ctx: click.Context, pending: bool, limit: int, as_json: bool) -> None:
    """Alerts recorded in moonshot.db, newest first: event, coin, status, last error."""
    store = open_store(load_config(ctx))
    rows = store.alerts(status="pending" if pending else None, limit=limit)
    lines = [
        f"{r['created_at']}  {r['status']:<8} {r['event']:<14} "
        + (f"coin {r['coin_id']} {r['ticker']} " if r["coin_id"] is not None else "")
        + f"[{r['key']}]"
        + (
            f" attempts {r['attempts']}: {r['last_error']}"
            if r["status"] != "sent" and r["attempts"]
            else ""
        )
        for r in rows
    ]
    output(rows, as_json, "\n".join(lines) or "no alerts")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def watch(ctx: click.Context, as_json: bool) -> None:
    """Alert when the service is dead or hung (its heartbeat is stale), then deliver the
    alerts that wait. Run every few minutes by the launchd agent com.moonshot.watch."""
    from moonshot.ops.alerts import watch as run_watch

    cfg = load_config(ctx)
    store = open_store(cfg)
    try:
        report = run_watch(cfg, store)
    except MoonshotError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(RET_CONFIG)
    lines = [f"{stage}: {s['state']} ({s['detail']})" for stage, s in report["services"].items()]
    lines += [f"alert raised: {key}" for key in report["raised"]]
    r = report["round"]
    lines.append(
        f"alerts: {r['sent']} sent, {report['pending']} waiting"
        + ("" if report["receivers"] else " (no alert URL configured)")
    )
    output(report, as_json, "\n".join(lines or ["no service has run in this home"]))
    sys.exit(RET_OK if report["healthy"] else RET_FAILED)


commands = [alerts, watch]
