"""The command line (click), thin: each command parses, calls one library method and
prints. `root` holds the group and the coin commands, `common` the helpers every group
shares, and one module per command group (flow, photos, supabase, launchd, ingest,
cleanup, dashboard). Nothing here decides a transition or touches a port's internals."""

from moonshot.cli.root import cli, main

__all__ = ["cli", "main"]
