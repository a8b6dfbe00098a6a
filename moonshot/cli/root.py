"""The command line: thin click commands that open the home, call one method and
print. Output goes through `output`; errors become one line and a non-zero exit."""

from __future__ import annotations

import importlib
import json
import sys
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import click
import cloup
from cloup.constraints import If, IsSet, accept_none, require_one

from moonshot import __version__, naming
from moonshot import machine as m
from moonshot.app.safetext import ZWJ
from moonshot.cli.common import COIN_ID, coin_or_fail, load_config, open_store, output
from moonshot.errors import MoonshotError, Rejected, StaleState
from moonshot.ops import logs
from moonshot.ports import IncomingCoin

# Modules that add command groups; each defines `commands: list[click.Command]`.
COMMAND_MODULES: tuple[str, ...] = (
    "moonshot.cli.photos",
    "moonshot.cli.supabase",
    "moonshot.cli.launchd",
    "moonshot.cli.cleanup",
    "moonshot.cli.flow",
    "moonshot.cli.ingest",
    "moonshot.cli.dashboard",
    "moonshot.cli.alerts",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="MOONSHOT_HOME",
    help="Home folder (moonshot.toml, moonshot.db, spool/, logs/). Default: the current folder.",
)
@click.version_option(version=__version__, prog_name="moonshot")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """moonshot: coins from a source to launched tokens, through spool/ and Photos."""
    if home is not None and not home.strip():
        raise click.BadParameter("is empty; give a folder (or leave it out)", param_hint="--home")
    ctx.obj = {"home": home}


@cli.command()
@click.option(
    "--once",
    is_flag=True,
    help="Process until nothing is left that time could move, then exit 0 (README: exit codes).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log line format (default: log.format).",
)
@click.option(
    "--stages",
    type=click.Choice(["all", "sync", "launch"]),
    default="all",
    show_default=True,
    help="sync: fetch, spool, import, confirm; launch: the launcher only (launchd --split).",
)
@click.pass_context
def run(ctx: click.Context, once: bool, log_format: str | None, stages: str) -> None:
    """Run the service: fetch, spool, import, confirm and launch coins."""
    from moonshot.service import RET_CONFIG, Service

    cfg = load_config(ctx)
    cfg.ensure_dirs()
    logs.setup(cfg, log_format)
    try:
        service = Service(cfg, stages=stages)
        service.lock()  # another run on this home: the home is unusable now, one line
    except MoonshotError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(RET_CONFIG)
    except OSError as exc:  # e.g. the library folder cannot be created
        click.echo(f"Error: {exc}; check the path and its permissions", err=True)
        sys.exit(RET_CONFIG)
    service.install_signals()
    code = service.run(once=once)
    if service.exit_line:
        click.echo(service.exit_line, err=True)
    sys.exit(code)


@cli.command()
@click.option("--ticker", required=True, help="Token symbol: 1-10 of A-Z 0-9 (upper-cased).")
@click.option("--name", required=True, help="Token name (trimmed to the app's limit at launch).")
@click.option("--image", required=True, help="Image file path or http(s) URL.")
@click.option(
    "--twitter-user", default=None, help="Twitter user name (default: source.default_twitter_user)."
)
@click.option("--tweet-id", default=None, help="Tweet id; the same tweet id is queued once.")
@click.option(
    "--approved", is_flag=True, help="Mark approved for launch (when approval is required)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def add(ctx, ticker, name, image, twitter_user, tweet_id, approved, as_json) -> None:
    """Queue a coin in the embedded source and print its id."""
    cfg = load_config(ctx)
    user = twitter_user if twitter_user is not None else cfg.source.default_twitter_user
    try:
        ticker = naming.valid_ticker(ticker)
        naming.valid_user(user)
        name = _valid_name(name)
        image_ref = _image_ref(image)
        if tweet_id is not None:
            tweet_id = naming.valid_tweet_id(tweet_id)  # `042` is not a second tweet 42
    except Rejected as exc:
        raise click.ClickException(exc.reason) from None
    store = open_store(cfg, create=True)
    ref = f"tweet:{tweet_id}" if tweet_id else f"add:{uuid.uuid4()}"
    incoming = IncomingCoin("local", ref, ticker, name, image_ref, user, tweet_id)
    coin_id, created = store.add_coin(incoming, twitter_user=user, approved=approved)
    if as_json:
        output({"id": coin_id, "created": created}, True)
    else:
        click.echo(coin_id)
        if not created:
            click.echo(f"tweet {tweet_id} was already queued as coin {coin_id}", err=True)


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise Rejected("name is empty")
    for ch in name:
        # The zero-width joiner is part of an emoji (a family, a flag): the app gets it
        # pasted, as safetext.printable keeps it. Found from outside: such names were
        # refused as holding "a control character".
        if ch.isprintable() or ch == ZWJ:
            continue
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise Rejected("name contains a control character or line break")
        raise Rejected(f"name contains an invisible character (U+{ord(ch):04X})")
    if len(name) > 200:
        raise Rejected("name is longer than 200 characters")
    return name


def _image_ref(image: str) -> str:
    if "://" in image:
        from moonshot.images import check_url

        check_url(image, [])
        return image
    path = Path(image).expanduser()
    if path.is_dir():
        raise Rejected(f"image {image} is a folder, not an image file")
    if not path.is_file():
        raise Rejected(f"image file {image} does not exist")
    return str(path.resolve())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Counts per state, oldest waiting coin, last success, health."""
    from moonshot.home import is_fresh
    from moonshot.ops.status import collect, render
    from moonshot.store import Store

    cfg = load_config(ctx)
    # A fresh home reads as empty; status never creates one (issue 15).
    fresh = cfg.home.is_dir() and is_fresh(cfg)
    store = Store(":memory:") if fresh else open_store(cfg)
    report = collect(cfg, store)
    output(report, as_json, render(report))
    if not report["healthy"]:
        sys.exit(1)


@cli.command()
@click.argument("coin_id", type=COIN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def history(ctx: click.Context, coin_id: int, as_json: bool) -> None:
    """One coin and its transitions, oldest first."""
    cfg = load_config(ctx)
    store = open_store(cfg)
    coin = coin_or_fail(store, coin_id)
    rows = store.history(coin_id)
    if as_json:
        output({"coin": coin.__dict__, "transitions": rows}, True)
        return
    click.echo(
        f"coin {coin.id} {coin.ticker} {coin.name!r} @{coin.twitter_user} state={coin.state}"
        + (f" last_error={coin.last_error}" if coin.last_error else "")
    )
    for r in rows:
        detail = json.dumps(r["detail"], ensure_ascii=False, sort_keys=True) if r["detail"] else ""
        click.echo(
            f"{r['at']}  {r['from_state'] or '-':>12} -> {r['to_state']:<12} {r['trigger']:<20} {detail}"
        )


@cli.command()
@click.argument("coin_id", type=COIN_ID)
@click.pass_context
def retry(ctx: click.Context, coin_id: int) -> None:
    """Send a failed coin back to the state it failed from."""
    cfg = load_config(ctx)
    store = open_store(cfg)
    coin = coin_or_fail(store, coin_id)
    if coin.state != m.FAILED:
        raise click.ClickException(
            f"coin {coin_id} is {coin.state}, not failed; only failed coins can be retried"
        )
    changes: dict[str, Any] = {
        "attempts": 0,
        "not_before": 0.0,
        "last_error": None,
        "retry_since": None,  # a fresh retry window
    }
    if (coin.failed_from or m.FETCHED) in (m.IMPORTED, m.SPOOLED):
        changes["import_started"] = time.time() if coin.failed_from == m.IMPORTED else None
    if coin.failed_from == m.CONFIRMED:
        changes["supersede_count"] = 0
    try:
        new = store.fire(coin, "retry", detail={"by": "cli"}, **changes)
    except StaleState as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"coin {coin_id}: failed -> {new}")


@cloup.command()
@click.argument("coin_id", type=COIN_ID)
@cloup.option("--launched", is_flag=True, help="The token was created.")
@cloup.option("--not-launched", is_flag=True, help="No token was created; launch again.")
@cloup.option(
    "--withdraw", is_flag=True, help="No token was created, and none must be: reject the coin."
)
@cloup.option("--token-address", default=None, help="The token's Solana address, with --launched.")
@cloup.option("--reason", default=None, help="Why, with --withdraw.")
@cloup.constraint(require_one, ["launched", "not_launched", "withdraw"])
@cloup.constraint(If(~IsSet("launched"), then=accept_none), ["token_address"])
@cloup.constraint(If(~IsSet("withdraw"), then=accept_none), ["reason"])
@click.pass_context
def resolve(
    ctx: click.Context,
    coin_id: int,
    launched: bool,
    not_launched: bool,
    withdraw: bool,
    token_address: str | None,
    reason: str | None,
) -> None:
    """Settle a coin in needs_review: it was launched, or it was not."""
    if token_address is not None:
        from moonshot.app.flow import valid_address

        if valid_address(token_address) is None:
            raise click.BadParameter(
                "not a Solana address (base58, 32-44 characters, 32 bytes)",
                param_hint="--token-address",
            )
        token_address = token_address.strip()
    from moonshot.home import RECOVERED
    from moonshot.pipeline import withdraw as withdraw_coin

    cfg = load_config(ctx)
    store = open_store(cfg)
    coin = coin_or_fail(store, coin_id)
    if coin.state != m.NEEDS_REVIEW:
        raise click.ClickException(f"coin {coin_id} is {coin.state}, not needs_review")
    if not_launched and coin.source == RECOVERED:
        raise click.ClickException(
            f"coin {coin_id} was rebuilt by `moonshot recover` from evidence and is never"
            f" launched again from here: `moonshot resolve {coin_id} --launched` if the token"
            " exists, else --withdraw, and `moonshot add` the coin anew"
        )
    if withdraw and coin.source == RECOVERED and _ledger_launched(store, coin_id):
        raise click.ClickException(
            f"coin {coin_id} was rebuilt from a launch that {cfg.ledger_path.name} records: it"
            f" was launched. `moonshot resolve {coin_id} --launched`; adding it anew would"
            " launch it a second time"
        )
    clear = {"attempts": 0, "not_before": 0.0, "last_error": None, "retry_since": None}
    try:
        if launched:
            new = store.fire(
                coin, "resolve_launched", detail={"by": "cli"}, token_address=token_address, **clear
            )
        elif withdraw:
            new = withdraw_coin(
                cfg, store, coin, reason or "not launched; withdrawn at review", "resolve_withdrawn"
            )
        else:
            new = store.fire(coin, "resolve_not_launched", detail={"by": "cli"}, **clear)
    except StaleState as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"coin {coin_id}: needs_review -> {new}")


cli.add_command(resolve)


def _ledger_launched(store, coin_id: int) -> bool:
    """Whether `moonshot recover` rebuilt this coin from a ledger line (a proven launch)."""
    return any(
        t["trigger"] == "recovered" and t["detail"].get("ledger") for t in store.history(coin_id)
    )


# Why a coin in these states cannot be withdrawn, and what to do instead.
NOT_WITHDRAWABLE = {
    m.LAUNCHING: "is launching right now; wait for the outcome (moonshot status): if it ends in"
    " needs_review and no token was created, `moonshot resolve {id} --withdraw`",
    m.NEEDS_REVIEW: "may have been launched; check the app: if the token exists, `moonshot"
    " resolve {id} --launched`, if not, `moonshot resolve {id} --withdraw`",
    m.LAUNCHED: "is launched: its token exists and cannot be withdrawn from here",
    m.REJECTED: "is already rejected; it will never launch",
}


@cli.command()
@click.argument("coin_id", type=COIN_ID)
@click.option(
    "--reason", default="withdrawn by a person", show_default=True, help="Why; kept in its history."
)
@click.pass_context
def withdraw(ctx: click.Context, coin_id: int, reason: str) -> None:
    """Reject a coin that has not started launching (or failed): it never launches."""
    from moonshot.pipeline import withdraw as withdraw_coin

    cfg = load_config(ctx)
    store = open_store(cfg)
    coin = coin_or_fail(store, coin_id)
    if coin.state not in NOT_WITHDRAWABLE:
        try:
            new = withdraw_coin(cfg, store, coin, reason)
        except StaleState:  # the service moved it on meanwhile: say what it is now
            coin = coin_or_fail(store, coin_id)
        else:
            click.echo(f"coin {coin_id}: {coin.state} -> {new} ({reason})")
            return
    why = NOT_WITHDRAWABLE.get(coin.state, "moved on meanwhile; try again")
    raise click.ClickException(f"coin {coin_id} {why.format(id=coin_id)}")


@cli.command()
@click.argument("coin_id", type=COIN_ID)
@click.pass_context
def approve(ctx: click.Context, coin_id: int) -> None:
    """Approve a coin for launch (manual drops, or launch.require_approval)."""
    cfg = load_config(ctx)
    store = open_store(cfg)
    coin = coin_or_fail(store, coin_id)
    if coin.approved:
        click.echo(f"coin {coin_id} is already approved")
        return
    if coin.state not in m.RETRYABLE:
        raise click.ClickException(
            f"coin {coin_id} is {coin.state}; only coins before launching can be approved"
        )
    try:
        store.fire(coin, "approve", detail={"by": "cli"}, approved=1)
    except StaleState as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"coin {coin_id} approved")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def recover(ctx: click.Context, as_json: bool) -> None:
    """Rebuild moonshot.db from this home's evidence after it was lost or restored from an
    older copy: every coin that may have moved on goes to needs_review for a person."""
    from moonshot.home import recover as recover_home

    cfg = load_config(ctx)
    try:
        result = recover_home(cfg)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        output(result, True)
        return
    if result["nothing"]:
        click.echo(f"{cfg.db_path} is this home's and up to date: nothing to recover")
        return
    for c in result["reviewed"]:
        click.echo(f"coin {c['id']} {c['ticker']}: {c['was']} -> needs_review")
    for c in result["rebuilt"]:
        click.echo(f"coin {c['id']} {c['ticker']}: rebuilt from {c['file']} ({c['found_in']})")
    n = len(result["reviewed"]) + len(result["rebuilt"])
    click.echo(
        f"{n} coin(s) wait in needs_review: check each in the app, then moonshot resolve ID"
        " --launched | --not-launched | --withdraw (moonshot status lists them)"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check every configured part and say what to fix."""
    from moonshot.ops.doctor import run_checks

    checks = run_checks(ctx.obj.get("home"))
    if as_json:
        output([c.__dict__ for c in checks], True)
    else:
        for c in checks:
            click.echo(
                f"[{c.status:^4}] {c.name}: {c.message}"
                + (f"\n       fix: {c.fix}" if c.fix else "")
            )
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    import sqlite3

    try:
        cli(prog_name="moonshot")
    except MoonshotError as exc:  # a last resort: one line, non-zero
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except sqlite3.Error as exc:  # one the store did not name (store.explain names most)
        click.echo(f"Error: moonshot.db: {exc}", err=True)
        sys.exit(1)
