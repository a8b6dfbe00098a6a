"""The state machine: declared once, no implicit transitions, and a commit that
fails stops the transition."""

import pytest

from moonshot import machine as m
from moonshot.errors import StaleState


def test_states_are_the_design_states():
    assert m.STATES == [
        "fetched",
        "spooled",
        "imported",
        "confirmed",
        "launching",
        "launched",
        "failed",
        "rejected",
        "needs_review",
    ]


def test_no_auto_transitions():
    model = m.CoinModel(1, m.FETCHED, lambda *a: None)
    m.MACHINE.add_model(model, initial=m.FETCHED)
    try:
        assert not hasattr(model, "to_launched")
    finally:
        m.MACHINE.remove_model(model)


def test_terminal_states_have_no_way_out():
    for state in m.TERMINAL:
        assert m.triggers_from(state) == []


def test_launching_never_returns_to_confirmed():
    dests = {
        t.dest for ev in m.MACHINE.events.values() for t in ev.transitions.get(m.LAUNCHING, [])
    }
    assert dests == {m.LAUNCHED, m.NEEDS_REVIEW}


def test_rejected_only_from_before_the_library():
    sources = {t.source for t in m.MACHINE.events["reject"].transitions.values() for t in t}
    assert sources == {m.FETCHED, m.SPOOLED}


def test_failed_commit_stops_the_transition():
    def boom(*args):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        m.fire(1, m.FETCHED, "spool", boom)


def test_retry_goes_back_where_it_failed():
    log = []
    for origin in m.RETRYABLE:
        assert m.fire(1, m.FAILED, "retry", lambda *a: log.append(a), failed_from=origin) == origin


def test_unknown_move_is_stale_state():
    with pytest.raises(StaleState):
        m.fire(1, m.LAUNCHED, "spool", lambda *a: None)
