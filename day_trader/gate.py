"""May the day trader buy at all this pass? The gate's inputs, and its changes, once each.

The rules are ``sizing.entry_gate`` (pure): entries halted, daily target reached,
MAX_TRADES_PER_DAY used up, MAX_POSITIONS held, the exit manager's heartbeat stale, the
broker not ready (1100 connectivity lost, or disconnected), after the EOD cutoff,
outside the session. This module gathers the inputs:

- The exit manager's heartbeat age in *real* seconds. Heartbeat rows carry trading-clock
  times (virtual in sim mode), so, like the supervisor, the trader times the *changes*
  of the value on its own monotonic clock; the first value it sees is aged through the
  shared clock (``Clock.to_real_seconds``).
- Everything else from the pass's ``Book`` and the adapter.

``GateWatch`` turns the per-pass answer into transitions ("entries from allowed to
blocked: after_eod_cutoff"), so the log and the events table hear of a change once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime

from day_trader.book import Book
from day_trader.sizing import GateState
from market.clock import Clock

ALLOWED = "allowed"


class HeartbeatWatch:
    """The real age of another process's heartbeat, from the changes of its value."""

    def __init__(self, clock: Clock, mono: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._mono = mono
        self._value: datetime | None = None
        self._changed_at: float | None = None

    def age_s(self, value: datetime | None) -> float | None:
        """Return the real seconds since ``value`` last changed (None: no heartbeat ever)."""
        if value is None:
            return None
        now = self._mono()
        if value != self._value:
            if self._value is None:
                # First sight: how old it is can only come from the shared trading clock.
                market_age = max(0.0, (self.clock.now() - value).total_seconds())
                self._changed_at = now - self.clock.to_real_seconds(market_age)
            else:
                self._changed_at = now
            self._value = value
        assert self._changed_at is not None
        return max(0.0, now - self._changed_at)


def gate_state(
    book: Book, day: date, heartbeat_age_s: float | None, broker_ready: bool
) -> GateState:
    """Return the gate's inputs for this pass."""
    return GateState(
        entries_halted=book.halted,
        daily_target_reached=book.daily_target_reached,
        trades_today=book.trades_today(day),
        exit_manager_heartbeat_age_s=heartbeat_age_s,
        broker_connection_lost=not broker_ready,
        open_positions=len(book.active),
    )


class GateWatch:
    """The gate's last answer; ``update`` says when it changed."""

    def __init__(self) -> None:
        self.state: str | None = None  # ALLOWED, a refusal code, or None before the first pass

    def update(self, refusal: str | None) -> tuple[str | None, str] | None:
        """Take this pass's refusal (None: allowed); return (old, new) when it changed."""
        new = refusal or ALLOWED
        if new == self.state:
            return None
        old, self.state = self.state, new
        return old, new
