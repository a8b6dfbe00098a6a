"""The command line: thin click commands that open the home, call one method and
print. Output goes through `output`; errors become one line and a non-zero exit."""

from __future__ import annotations

import importlib

import click

# Modules that add command groups; each defines `commands: list[click.Command]`.
COMMAND_MODULES: tuple[str, ...] = (
    "moonshot.cli_launchd",
    "moonshot.cli_cleanup",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="MOONSHOT_HOME",
              help="Home folder (moonshot.toml, moonshot.db, spool/, logs/). Default: current folder.")
@click.version_option(package_name="moonshot")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """moonshot: coins from a source to launched tokens, through spool/ and Photos."""
    ctx.obj = {"home": home}


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="moonshot")
