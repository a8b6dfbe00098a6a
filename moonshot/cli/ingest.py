"""`moonshot ingest` (tweets from files or from X API v2 into coins) and
`moonshot decisions` (what the policy decided and why). Thin: parse, call
moonshot.twitter.ingest, print; the bearer token is read from the environment only."""

from __future__ import annotations

import json
import signal
import sys
import time

import click
import cloup
from cloup.constraints import mutually_exclusive

from moonshot.errors import MoonshotError

MAX_JSON_BYTES = 50_000_000  # a tweet file is kilobytes; /dev/zero must not fill memory


def _read_json(path: str):
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_JSON_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise click.ClickException(
                f"{path}: more than {MAX_JSON_BYTES} bytes; not a tweet file (split it)"
            )
        return json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise click.ClickException(f"{path}: no such file") from None
    except IsADirectoryError:
        raise click.ClickException(f"{path}: is a folder, not a JSON file") from None
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: not valid JSON ({exc})") from None


def _wait_line(until: float) -> str:
    return f"no request before {time.strftime('%H:%M:%S', time.gmtime(until))} UTC"


def _show(outcomes, as_json: bool) -> None:
    from moonshot.cli.common import output

    if as_json:
        output([o.as_dict() for o in outcomes], True)
    else:
        for o in outcomes:
            click.echo(o.line())


@click.command(short_help="Turn tweets (JSON files or X API v2) into coins.")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--x-api", "x_api", is_flag=True, help="Poll X API v2 (ingest.x_mode) with X_BEARER_TOKEN."
)
@click.option(
    "--follow", is_flag=True, help="With --x-api: keep polling every ingest.x_poll_interval."
)
@click.option(
    "--reconsider", is_flag=True, help="Decide refused tweets again (e.g. after a policy change)."
)
@click.option("--sql", "print_sql", is_flag=True, help="Print the SQL Supabase ingest needs; exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
@click.pass_context
def ingest(ctx, files, x_api: bool, follow: bool, reconsider: bool, print_sql: bool, as_json: bool):
    """Turn tweets into coins: FILES are X API v2 JSON (one tweet, a list, or a
    response with data/includes; - reads stdin). Each tweet is parsed, judged by
    [policy] and recorded once; the same tweet twice makes one coin."""
    from moonshot.cli.common import load_config, open_store
    from moonshot.twitter.ingest import Ingestor, follow_x, poll_x

    if print_sql:
        from moonshot.supabase.ingest_target import sql_text

        click.echo(sql_text(), nl=False)
        return
    if not files and not x_api:
        raise click.UsageError("give FILE.json (or -) or --x-api")
    if follow and not x_api:
        raise click.UsageError("--follow needs --x-api")
    cfg = load_config(ctx)
    store = open_store(cfg, create=True)
    try:
        ingestor = Ingestor.from_config(cfg, store)
        # pending coins first (poll_x does this itself before each poll)
        outcomes = [] if x_api else ingestor.complete_pending()
        for path in files:
            outcomes += ingestor.ingest(_read_json(path), f"file:{path}", reconsider=reconsider)
        _show(outcomes, as_json)
        if not x_api:
            return
        from moonshot.twitter.xapi import XApi

        api = XApi.from_config(cfg, store)
        if not follow:
            outcomes, poll = poll_x(ingestor, api)
            _show(outcomes, as_json)
            if poll.rate_limited_until:
                click.echo(f"X API rate limit: {_wait_line(poll.rate_limited_until)}", err=True)
            return
        stop: list[bool] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.append(True))  # only a flag (style.md)
        follow_x(
            ingestor,
            api,
            cfg.ingest.x_poll_interval,
            stopped=lambda: bool(stop),
            report=lambda outcomes: _show(outcomes, as_json),
            warn=lambda line: click.echo(line, err=True),
        )
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


@cloup.command(short_help="What the tweet policy decided, with reasons.")
@cloup.option("--refused", is_flag=True, help="Only refusals.")
@cloup.option("--accepted", is_flag=True, help="Only acceptances.")
@cloup.constraint(mutually_exclusive, ["refused", "accepted"])
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def decisions(ctx: click.Context, refused: bool, accepted: bool, limit: int, as_json: bool) -> None:
    """What the tweet policy decided, newest first, each with its reason."""
    from moonshot.cli.common import load_config, open_store, output

    which = "refused" if refused else "accepted" if accepted else None

    cfg = load_config(ctx)
    store = open_store(cfg)
    rows = store.decisions(decision=which, limit=limit)
    if as_json:
        output(rows, True)
        return
    for r in rows:
        what = f" ${r['ticker']} {r['name']!r} by @{r['twitter_user']}" if r["ticker"] else ""
        coin = f" -> {r['coin_ref']}" if r["coin_ref"] else ""
        click.echo(f"{r['at']}  tweet {r['tweet_id']} {r['decision']}{what}{coin}: {r['reason']}")


commands = [ingest, decisions]
