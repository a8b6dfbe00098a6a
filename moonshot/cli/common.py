"""Helpers every command group shares: the coin id type, opening the home's config and
store with one-line errors, and `output` (JSON or text), as sqlite-utils' cli has one
`output_rows`."""

from __future__ import annotations

import json
from typing import Any

import click

from moonshot import config as config_mod
from moonshot.errors import ConfigError, MoonshotError

# A coin id: SQLite's integer range (a larger number is a clear error, not a traceback).
COIN_ID = click.IntRange(1, 2**63 - 1)


def load_config(ctx: click.Context) -> config_mod.Config:
    try:
        return config_mod.load(ctx.obj.get("home") if ctx.obj else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def open_store(cfg: config_mod.Config, *, create: bool = False):
    """The home's database, checked against the home (invariant 7). Only commands that
    bring coins in (`add`, `ingest`) may start a fresh home; the others never create one."""
    from moonshot.home import open_store as open_home

    try:
        return open_home(cfg, create=create)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def output(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print `data` as JSON, or the given text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))
    elif text is not None:
        click.echo(text)


def coin_or_fail(store, coin_id: int):
    coin = store.get(coin_id)
    if coin is None:
        raise click.ClickException(f"no coin with id {coin_id}")
    return coin
