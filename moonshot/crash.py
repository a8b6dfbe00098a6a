"""Named crash points for the crash-safety tests (design.md, "Proving crash safety").
With MOONSHOT_CRASH_AT=<point>[:<n>] set, the n-th (default first) pass through that
point ends the process at once with os._exit, as a power cut or kill -9 would."""

from __future__ import annotations

import os

# Every point between a commit and a side effect. pipeline.py calls each of them; a
# test checks that this list and the calls in the pipeline agree.
CRASH_POINTS = (
    "after_attempt_commit",  # an attempt is counted, its side effect not started
    "after_spool_rename",  # the JPEG is in spool/, `spooled` not committed
    "after_spool_commit",
    "after_import",  # the asset is in the library, `imported` not committed
    "after_import_commit",
    "after_confirm_commit",
    "after_launching_commit",  # `launching` is durable, the irreversible step not started
    "after_irreversible",  # the token exists, `launched` not committed
    "after_launched_commit",
)
CRASH_EXIT = 86
_hits: dict[str, int] = {}


def point(name: str, known: tuple[str, ...] = CRASH_POINTS, prefix: str = "") -> None:
    """`known` and `prefix`: another family of points with its own list (the alert
    sender's, MOONSHOT_CRASH_AT=alert_<point>)."""
    spec = os.environ.get("MOONSHOT_CRASH_AT")
    if not spec:
        return
    if name not in known:
        raise ValueError(f"unknown crash point {prefix}{name}")
    name = prefix + name
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os._exit(CRASH_EXIT)
