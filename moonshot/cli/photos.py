"""`moonshot photos newest|find`: what the service sees in a macOS Photos library (id,
original file name, date added, iCloud state). Thin: open the library read-only, ask one
question, print. Works on any OS, so a copied library can be inspected on Linux."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from moonshot.errors import MoonshotError
from moonshot.ports import Asset

ICLOUD_TEXT = {True: "uploaded", False: "not uploaded", None: "-"}


def _library(ctx: click.Context, library: str | None) -> Path:
    if library:
        return Path(library).expanduser()
    from moonshot import config
    from moonshot.photos.library_macos import library_from_config

    try:
        return library_from_config(config.load(ctx.obj.get("home") if ctx.obj else None))
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(asset: Asset) -> dict:
    return {
        "id": asset.id,
        "original_filename": asset.original_filename,
        "date_added": _iso(asset.date_added),
        "date_added_unix": asset.date_added,
        "in_cloud": asset.in_cloud,
    }


def _print(rows: list[dict], as_json: bool, data) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for r in rows:
        icloud = ICLOUD_TEXT[r["in_cloud"]]
        click.echo(f"{r['id']}  {r['date_added']}  icloud: {icloud:<12}  {r['original_filename']}")


def _ask(ctx: click.Context, library: str | None, question, *, name_index: bool = False):
    from moonshot.photos.name_index import NameIndex, index_path
    from moonshot.photos.photos_sqlite import PhotosDB

    path = _library(ctx, library)
    index = NameIndex(index_path(path)) if name_index else None
    try:
        with PhotosDB(path, name_index=index) as db:
            return question(db)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


library_option = click.option(
    "--library",
    type=click.Path(),
    help="A .photoslibrary folder. Default: photos.library, or ~/Pictures/Photos Library.photoslibrary.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print as JSON.")


@click.group()
def photos() -> None:
    """Look into the macOS Photos library, read-only."""


@photos.command()
@library_option
@json_option
@click.pass_context
def newest(ctx: click.Context, library: str | None, as_json: bool) -> None:
    """The asset with the latest date added (the one a picker shows first)."""
    asset = _ask(ctx, library, lambda db: db.newest())
    if asset is None:
        if as_json:
            click.echo("null")
        else:
            click.echo("the library has no assets")
        return
    row = _row(asset)
    _print([row], as_json, row)


@photos.command()
@click.argument("name")
@library_option
@click.option(
    "--no-index",
    is_flag=True,
    help="Scan Photos.sqlite instead of using the name index in the cache folder.",
)
@json_option
@click.pass_context
def find(ctx: click.Context, name: str, library: str | None, no_index: bool, as_json: bool) -> None:
    """Assets whose original file name is NAME, newest first.

    Photos has no index on the original file name, so moonshot keeps one of its own in
    the cache folder (MOONSHOT_CACHE_DIR, else ~/Library/Caches/moonshot on macOS and
    ~/.cache/moonshot on Linux): built on the first find, brought up to date on each,
    and checked against Photos for every hit. Deleting it is always safe."""
    assets = _ask(ctx, library, lambda db: db.find(name), name_index=not no_index)
    rows = [_row(a) for a in assets]
    if not rows and not as_json:
        click.echo(f"no asset named {name}")
        return
    _print(rows, as_json, rows)


commands = [photos]
