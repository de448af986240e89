"""Process states as the supervisor uses them: shared_state's enum and its one table.

The enum and supervisord's transition table live in ``shared_state.states`` (the
database's CHECK constraint lists the same names); the supervisor adds the kinds of exit.
"""

from __future__ import annotations

from enum import StrEnum

from shared_state.states import PROCESS_TRANSITIONS, ProcessState

__all__ = [
    "ACTIVE_STATES",
    "ExitKind",
    "ProcessState",
    "allowed",
]

#: States in which an OS process may exist for the child.
ACTIVE_STATES: frozenset[ProcessState] = frozenset(
    {ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING}
)


class ExitKind(StrEnum):
    """supervisord's three kinds of exit."""

    REQUESTED = "requested"  # we asked it to stop
    EARLY = "early"  # it died before reaching RUNNING (before ready + startsecs): BACKOFF
    AFTER_RUNNING = "after_running"  # it exited after RUNNING: the restart policy decides


def allowed(old: ProcessState, new: ProcessState) -> bool:
    """Return whether the supervisor may move a child from ``old`` to ``new``."""
    return old == new or new in PROCESS_TRANSITIONS[old]
