"""`moonshot supabase ...`: print the migration for the SQL editor, list the claims this
home holds, and hand claims back. Thin: each command calls one SupabaseSource method;
the key is never printed."""

from __future__ import annotations

from importlib import resources

import click

from moonshot import machine as m
from moonshot.errors import MoonshotError

MIGRATION_RESOURCE = "moonshot_sync.sql"


def migration_sql() -> str:
    """The migration as shipped in the package (a copy of supabase/migrations/, kept
    identical by tests/supabase/test_migration.py)."""
    return (
        resources.files("moonshot.supabase")
        .joinpath("sql", MIGRATION_RESOURCE)
        .read_text(encoding="utf-8")
    )


def _source(ctx: click.Context):
    from moonshot.cli.common import load_config
    from moonshot.supabase.source_supabase import SupabaseSource

    try:
        return SupabaseSource.from_config(load_config(ctx))
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def supabase() -> None:
    """The Supabase source: migration, claims."""


@supabase.command("sql")
def sql_command() -> None:
    """Print the migration to paste into the Supabase SQL editor (idempotent)."""
    click.echo(migration_sql(), nl=False)


@supabase.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@click.pass_context
def claims(ctx: click.Context, as_json: bool) -> None:
    """Coins this home's service holds in Supabase and that have no outcome yet."""
    from moonshot.cli.common import output

    source = _source(ctx)
    try:
        rows = source.claims()
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        source.close()
    lines = [f"worker {source.worker}: {len(rows)} claim(s)"]
    lines += [
        f"{r['id']:>8}  {r.get('ticker') or '':<10}  {r.get('sync_state') or 'claimed':<12}"
        f"  lease until {r.get('claim_expires_at')}"
        for r in rows
    ]
    output({"worker": source.worker, "claims": rows}, as_json, "\n".join(lines))


@supabase.command()
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def release(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Give back claims of coins not started yet (REFS: Supabase coin ids), e.g. before
    retiring this Mac, so another service can take them. This home withdraws them, so it
    never launches them too; the service must be stopped first."""
    from moonshot import home
    from moonshot.cli.common import load_config, open_store
    from moonshot.pipeline import withdraw

    cfg = load_config(ctx)
    # Issue 15: a running service has these coins in hand and would go on with them
    # (its lease is still good in its memory) while another Mac launches them too.
    pid = home.running_pid(cfg)
    if pid:
        raise click.ClickException(
            f"moonshot run (pid {pid}) has this home's coins in hand: stop it first"
            " (moonshot launchd uninstall), then release"
        )
    store = None if home.is_fresh(cfg) else open_store(cfg)
    local = {ref: store.coin_by_ref("supabase", ref) if store else None for ref in refs}
    started = {ref: c for ref, c in local.items() if c and c.state not in (*RELEASABLE, m.REJECTED)}
    source = _source(ctx)
    try:
        done = source.release([r for r in refs if r not in started])
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        source.close()
    for ref in done:
        coin = local.get(ref)
        if store and coin and coin.state in RELEASABLE:
            withdraw(cfg, store, coin, "its claim was released to another service", by="release")
            store.drop_reports(coin.id)  # a late report would claim it back
    kept = sorted(set(refs) - set(done))
    click.echo(f"released {len(done)} claim(s): {', '.join(done) or '-'}")
    for ref, coin in sorted(started.items()):
        click.echo(
            f"kept {ref}: coin {coin.id} is {coin.state} here, past the point of handing over"
        )
    rest = [r for r in kept if r not in started]
    if rest:
        click.echo(f"kept {', '.join(rest)}: not held by this home, or already synced or finished")


# A coin may be handed to another service only before its photo is imported here.
RELEASABLE = (m.FETCHED, m.SPOOLED, m.FAILED)


commands = [supabase]
