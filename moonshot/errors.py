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
