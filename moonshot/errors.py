"""The one small exception tree of moonshot. Every message is one line that names
the thing and the fix; none may contain a secret."""


class MoonshotError(Exception):
    """Base of every error moonshot raises on purpose."""


class ConfigError(MoonshotError):
    """The configuration (moonshot.toml or MOONSHOT_* variables) is invalid."""


class Rejected(MoonshotError):
    """Permanent problem with a coin's own input: it goes to `rejected` with this reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransientError(MoonshotError):
    """Worth retrying later (network, 5xx, library locked); counts one attempt."""


class PortUnavailable(MoonshotError):
    """A port's real adapter cannot work here (missing platform, package or permission)."""


class NeedsReview(MoonshotError):
    """The outcome of an irreversible step is unclear: a person must decide."""


class StaleState(MoonshotError):
    """The coin was moved by someone else (CLI or another process) since it was read."""


class HomeError(MoonshotError):
    """The home's memory cannot be used as it is (invariant 7): moonshot.db missing or
    empty over evidence of an earlier life, another home's, older than the evidence,
    damaged, or deleted while running. Nothing may start; the message says how to recover."""


class HomeTrouble(MoonshotError):
    """The home cannot be written for now (moonshot.db locked by another program, a full
    disk): the service pauses and retries; a command says so in one line."""
