"""The supervisor's transition table: the store's table plus EXITED -> FATAL."""

from __future__ import annotations

from shared_state.states import PROCESS_TRANSITIONS
from supervision.states import SUPERVISOR_TRANSITIONS, ProcessState, allowed, store_needs_force


def test_supervisor_table_contains_every_store_edge() -> None:
    for old, targets in PROCESS_TRANSITIONS.items():
        assert targets <= SUPERVISOR_TRANSITIONS[old]


def test_only_the_crash_loop_after_running_edge_needs_force() -> None:
    forced = [
        (old, new)
        for old, targets in SUPERVISOR_TRANSITIONS.items()
        for new in targets
        if store_needs_force(old, new)
    ]
    assert forced == [(ProcessState.EXITED, ProcessState.FATAL)]


def test_running_cannot_jump_to_backoff_or_fatal() -> None:
    assert not allowed(ProcessState.RUNNING, ProcessState.BACKOFF)
    assert not allowed(ProcessState.RUNNING, ProcessState.FATAL)
    assert allowed(ProcessState.RUNNING, ProcessState.RUNNING)


def test_the_enum_is_shared_state_s_not_a_copy() -> None:
    from shared_state import ProcessState as StoreState

    assert ProcessState is StoreState
