"""Process states as the supervisor uses them: shared_state's enum plus one table.

The enum and supervisord's transition table live in ``shared_state.states`` (the
database's CHECK constraint lists the same names). The supervisor adds one edge the
store's table lacks: EXITED -> FATAL, for a child that reaches RUNNING every time and
then crashes (a crash loop that never passes through BACKOFF). ``store_needs_force``
tells ``change_state`` to pass ``force=True`` for that edge.
"""

from __future__ import annotations

from enum import StrEnum

from shared_state.states import PROCESS_TRANSITIONS, ProcessState

__all__ = [
    "ACTIVE_STATES",
    "SUPERVISOR_TRANSITIONS",
    "ExitKind",
    "ProcessState",
    "allowed",
    "store_needs_force",
]

#: The store's table plus EXITED -> FATAL (a crash loop after RUNNING, see module doc).
SUPERVISOR_TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    **PROCESS_TRANSITIONS,
    ProcessState.EXITED: PROCESS_TRANSITIONS[ProcessState.EXITED] | {ProcessState.FATAL},
}

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
    return old == new or new in SUPERVISOR_TRANSITIONS[old]


def store_needs_force(old: ProcessState, new: ProcessState) -> bool:
    """Return True when the edge is ours but not in the store's table."""
    return old != new and new not in PROCESS_TRANSITIONS[old]
