"""The supervisor uses the store's one transition table (supervisord's states)."""

from __future__ import annotations

from shared_state.states import PROCESS_TRANSITIONS
from supervision.states import ProcessState, allowed


def test_supervisor_allows_exactly_the_store_edges() -> None:
    for old in ProcessState:
        for new in ProcessState:
            assert allowed(old, new) == (old == new or new in PROCESS_TRANSITIONS[old])


def test_crash_loop_after_running_can_end_in_fatal() -> None:
    assert allowed(ProcessState.EXITED, ProcessState.FATAL)


def test_running_cannot_jump_to_backoff_or_fatal() -> None:
    assert not allowed(ProcessState.RUNNING, ProcessState.BACKOFF)
    assert not allowed(ProcessState.RUNNING, ProcessState.FATAL)
    assert allowed(ProcessState.RUNNING, ProcessState.RUNNING)


def test_the_enum_is_shared_state_s_not_a_copy() -> None:
    from shared_state import ProcessState as StoreState

    assert ProcessState is StoreState
