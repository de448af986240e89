"""The adapter's connection lifecycle: states, the transition table, and the one changer.

```
DISCONNECTED -> CONNECTING -> SYNCING -> READY <-> PAUSED (1100 / 1101, 1102)
                    |            |         |         |
                    +------------+---------+---------+--> BACKOFF -> CONNECTING ...
                                                           BACKOFF -> FATAL (gave up)
any state -> DISCONNECTED (closed by its owner)
```

READY means connected, the client library's initial sync done *and* the adapter's
own reconciliation snapshot taken. PAUSED means the socket is up but TWS lost its
upstream connection (1100): no new entries until 1101/1102.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ConnState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    SYNCING = "SYNCING"
    READY = "READY"
    PAUSED = "PAUSED"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"


_D, _C, _S, _R, _P, _B, _F = (
    ConnState.DISCONNECTED,
    ConnState.CONNECTING,
    ConnState.SYNCING,
    ConnState.READY,
    ConnState.PAUSED,
    ConnState.BACKOFF,
    ConnState.FATAL,
)

#: state -> states it may move to. Any other pair is a bug and raises.
TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    _D: frozenset({_C}),
    _C: frozenset({_S, _B, _F, _D}),
    _S: frozenset({_R, _B, _F, _D}),
    _R: frozenset({_P, _B, _D}),
    _P: frozenset({_R, _B, _D}),
    _B: frozenset({_C, _F, _D}),
    _F: frozenset({_D}),
}

del _D, _C, _S, _R, _P, _B, _F


class IllegalTransition(RuntimeError):
    """A state change the transition table does not allow."""


@dataclass(frozen=True)
class StateChange:
    """One transition, as the state callback receives it."""

    old: ConnState
    new: ConnState
    reason: str
    time: datetime  # market time (the injected clock)


class ConnectionStateMachine:
    """Holds the current state; ``change`` is the only way to move it."""

    def __init__(
        self, on_change: Callable[[StateChange], None], now: Callable[[], datetime]
    ) -> None:
        self._state = ConnState.DISCONNECTED
        self._on_change = on_change
        self._now = now

    @property
    def state(self) -> ConnState:
        return self._state

    def change(self, new: ConnState, reason: str) -> StateChange | None:
        """Move to ``new`` and emit the change; None when already there. Raise when illegal."""
        old = self._state
        if new == old:
            return None
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"connection state {old} -> {new} is not allowed ({reason})")
        self._state = new
        event = StateChange(old, new, reason, self._now())
        self._on_change(event)
        return event
