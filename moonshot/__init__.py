"""moonshot: a filesystem-spooled, SQLite-persisted state machine that turns coin
records into launched tokens. See statemachine.md and README.md."""

__version__ = "0.1.0"
