"""What the shared database says at the start of a pass, read in one go (in a thread).

The trader never keeps a transaction open: each read is its own short transaction, and
the whole set is taken once per pass, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from day_trader.entries import PendingEntry, read_pending
from shared_state import (
    ActivePosition,
    ClosedPosition,
    DailyState,
    Store,
    WatchlistItem,
)

#: ``active_positions.source`` of positions the exit manager adopted from the broker.
ADOPTED = "adopted"


@dataclass(frozen=True)
class Book:
    """The day's watchlist, positions, closes, flags, and this process's pending entries."""

    watchlist: tuple[WatchlistItem, ...]
    active: tuple[ActivePosition, ...]
    closed_today: tuple[ClosedPosition, ...]
    daily: DailyState | None
    exit_manager_heartbeat: datetime | None
    pending: tuple[PendingEntry, ...]

    def active_symbols(self) -> set[str]:
        """Return the symbols with an active row (held, entering or exiting)."""
        return {p.symbol for p in self.active}

    def exits_today(self, symbol: str) -> tuple[str, ...]:
        """Return the exit reasons of ``symbol``'s round trips closed today, oldest first."""
        return tuple(c.exit_reason.value for c in self.closed_today if c.symbol == symbol)

    def trades_today(self, day: date) -> int:
        """Return today's entries: active and closed rows of the day, adopted ones excluded."""
        active = sum(1 for p in self.active if p.trading_date == day and p.source != ADOPTED)
        closed = sum(1 for c in self.closed_today if c.source != ADOPTED)
        return active + closed

    @property
    def halted(self) -> bool:
        return self.daily is not None and self.daily.halted

    @property
    def daily_target_reached(self) -> bool:
        return self.daily is not None and self.daily.daily_target_reached


def read_book(store: Store, day: date, prefix: str) -> Book:
    """Return the state of ``day`` (blocking: run it with ``asyncio.to_thread``)."""
    watchlist = store.watchlist(day, validated_only=True)
    exit_manager = store.process("exit_manager")
    return Book(
        watchlist=tuple(watchlist),
        active=tuple(store.active_positions()),
        closed_today=tuple(store.closed_today(day)),
        daily=store.daily_state(day),
        exit_manager_heartbeat=None if exit_manager is None else exit_manager.last_heartbeat,
        pending=tuple(read_pending(store, prefix)),
    )
