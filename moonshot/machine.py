"""The coin state machine of design.md, declared once with `transitions`.

One module-level Machine (model=None, auto_transitions=False) serves every coin: the
coin in hand is added, triggered and removed. The commit to SQLite happens in
`before_state_change`, so a failed commit stops the transition; no callback here
does any other I/O (side effects after a state change cannot be rolled back)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import Machine, MachineError

from moonshot.errors import StaleState

FETCHED, SPOOLED, IMPORTED, CONFIRMED = "fetched", "spooled", "imported", "confirmed"
LAUNCHING, LAUNCHED = "launching", "launched"
FAILED, REJECTED, NEEDS_REVIEW = "failed", "rejected", "needs_review"

STATES = [
    FETCHED,
    SPOOLED,
    IMPORTED,
    CONFIRMED,
    LAUNCHING,
    LAUNCHED,
    FAILED,
    REJECTED,
    NEEDS_REVIEW,
]
TERMINAL = frozenset({LAUNCHED, REJECTED})
VISIBLE = frozenset({FAILED, NEEDS_REVIEW})  # waiting for a person, with a reason
RETRYABLE = (FETCHED, SPOOLED, IMPORTED, CONFIRMED)  # states `failed` can be retried from
ACTIVE_PHOTO = (IMPORTED, CONFIRMED, LAUNCHING)  # import gate: at most one coin here
# `moonshot withdraw`: a person's decision, before the launch has started (design.md).
WITHDRAWABLE = (*RETRYABLE, FAILED)
# Commits after which the coin leaves evidence outside moonshot.db (a file in spool/, a
# launch), and a person's decisions that an older copy of the database must not undo
# (a withdrawal, which the service would otherwise launch; a settled review): the home's
# markers count them, so a database older than them is noticed (invariant 7, home.py).
LEAVES_EVIDENCE = frozenset(
    {
        "spool",
        "drop",
        "start_launch",
        "withdraw",
        "resolve_withdrawn",
        "resolve_launched",
        "resolve_not_launched",
    }
)

# (trigger, source(s), dest, conditions). dest "=" is reflexive: recorded, state kept.
TRANSITIONS: list[dict[str, Any]] = [
    dict(trigger="attempt", source=list(RETRYABLE), dest="="),
    dict(trigger="defer", source=list(RETRYABLE), dest="="),
    dict(trigger="spool", source=FETCHED, dest=SPOOLED),
    dict(trigger="drop", source=[FETCHED, FAILED], dest=SPOOLED),
    dict(trigger="import_photo", source=SPOOLED, dest=IMPORTED),
    dict(trigger="confirm", source=IMPORTED, dest=CONFIRMED),
    dict(trigger="approve", source=list(RETRYABLE), dest="="),
    # A clean stop hands unstarted claims back to a shared source; it may hand them again.
    dict(trigger="release", source=FETCHED, dest="="),
    dict(trigger="reclaim", source=FETCHED, dest="="),
    dict(trigger="supersede", source=CONFIRMED, dest=SPOOLED),
    dict(trigger="start_launch", source=CONFIRMED, dest=LAUNCHING),
    dict(trigger="finish_launch", source=LAUNCHING, dest=LAUNCHED),
    dict(trigger="review", source=LAUNCHING, dest=NEEDS_REVIEW),
    dict(trigger="fail", source=list(RETRYABLE), dest=FAILED),
    dict(trigger="reject", source=[FETCHED, SPOOLED], dest=REJECTED),
    *[
        dict(trigger="retry", source=FAILED, dest=state, conditions=f"retry_to_{state}")
        for state in RETRYABLE
    ],
    dict(trigger="resolve_launched", source=NEEDS_REVIEW, dest=LAUNCHED),
    dict(trigger="resolve_not_launched", source=NEEDS_REVIEW, dest=CONFIRMED),
    # No token was created and it must never be (`resolve --withdraw`): needs_review
    # cannot be withdrawn, and `--not-launched` first would let the service launch it.
    dict(trigger="resolve_withdrawn", source=NEEDS_REVIEW, dest=REJECTED),
    dict(trigger="withdraw", source=list(WITHDRAWABLE), dest=REJECTED),
    # `moonshot recover`: moonshot.db was lost or restored from an older copy, so any
    # coin not settled may have moved on, even launched, since: a person decides.
    # (A coin in `launching` takes `review`, as at any start-up: invariant 1.)
    dict(trigger="recover", source=list(WITHDRAWABLE), dest=NEEDS_REVIEW),
]


class CoinModel:
    """The coin in hand while one transition runs. `commit` is the store's writer:
    commit(coin_id, from_state, to_state, trigger, detail, changes) -> None."""

    def __init__(
        self, coin_id: int, state: str, commit: Callable[..., None], failed_from: str | None = None
    ):
        self.coin_id = coin_id
        self.state = state
        self._commit = commit
        self.failed_from = failed_from

    def __getattr__(self, name: str) -> Any:
        # retry_to_<state>: a failed coin goes back to the state it failed from.
        if name.startswith("retry_to_"):
            target = name.removeprefix("retry_to_")
            return lambda event=None: (self.failed_from or FETCHED) == target
        raise AttributeError(name)


def _commit_before_change(event) -> None:
    model: CoinModel = event.model
    dest = event.transition.dest
    to_state = model.state if dest in (None, "=") else dest
    model._commit(
        model.coin_id,
        model.state,
        to_state,
        event.event.name,
        event.kwargs.get("detail") or {},
        event.kwargs.get("changes") or {},
    )


# The one declaration, shared by the working machine and the diagram.
DECLARATION: dict[str, Any] = dict(
    model=None, states=STATES, transitions=TRANSITIONS, initial=FETCHED, auto_transitions=False
)
MACHINE = Machine(**DECLARATION, send_event=True, before_state_change=[_commit_before_change])


def fire(
    coin_id: int,
    state: str,
    trigger: str,
    commit: Callable[..., None],
    *,
    failed_from: str | None = None,
    detail: dict | None = None,
    changes: dict | None = None,
) -> str:
    """Run one transition for a coin and return its new state. The commit runs inside
    the transition; StaleState when the trigger is not allowed from `state`."""
    model = CoinModel(coin_id, state, commit, failed_from)
    MACHINE.add_model(model, initial=state)
    try:
        if not model.trigger(trigger, detail=detail, changes=changes):
            raise StaleState(f"coin {coin_id}: {trigger} is not allowed from {state}")
        return model.state
    except MachineError:
        raise StaleState(f"coin {coin_id}: {trigger} is not allowed from {state}") from None
    finally:
        MACHINE.remove_model(model)


def allowed(state: str, trigger: str) -> bool:
    return any(t.source == state for t in MACHINE.events[trigger].transitions.get(state, []))


def triggers_from(state: str) -> list[str]:
    return sorted(MACHINE.get_triggers(state))


def mermaid() -> str:
    """The state diagram as Mermaid source, generated from TRANSITIONS (statemachine.md)."""
    from transitions.extensions import GraphMachine

    graph = GraphMachine(**DECLARATION, graph_engine="mermaid", show_conditions=True)

    class _M:
        pass

    model = _M()
    graph.add_model(model)
    source = model.get_graph().draw(None)
    # Drop the styling of the "current state" (meaningless here, and `Class` lines
    # don't render on every Mermaid viewer) and trailing blanks.
    keep = [
        ln.rstrip()
        for ln in source.splitlines()
        if not ln.strip().startswith(("classDef ", "Class "))
    ]
    return "\n".join(ln for ln in keep if ln) + "\n"
