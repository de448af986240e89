"""Frozen snapshots the store returns (and the few value types it accepts).

Every datetime here is aware and in UTC (the store keeps UTC; convert for display).
Quantities are whole shares; prices and money are floats in dollars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared_state.states import (
    ClaimRefusal,
    CommandKind,
    CommandStatus,
    ExitReason,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PhaseStatus,
    PositionState,
    ProcessState,
    WatchlistSource,
)


@dataclass(frozen=True)
class ActivePosition:
    """A symbol the bot holds or is entering/exiting (one row per symbol at most)."""

    id: int
    symbol: str
    state: PositionState
    trading_date: date
    source: str  # who created it: the claiming process ('day_trader', ...) or 'adopted'
    is_recovery: bool
    quantity: int  # requested while ENTRY_PENDING; shares held once OPEN
    entry_price: float | None
    target_price: float | None
    stop_price: float | None
    entry_order_ref: str | None
    exit_order_ref: str | None
    exit_reason: ExitReason | None  # the reason of the pending exit
    sold_quantity: int  # sold by partial exits so far
    realized_pnl: float  # net P&L of those partial exits
    commissions: float  # commissions of those partial exits
    opened_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of ``claim_for_entry``: a position and its order intent, or a refusal."""

    refusal: ClaimRefusal | None
    position: ActivePosition | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None

    @property
    def is_recovery(self) -> bool:
        return self.position is not None and self.position.is_recovery


@dataclass(frozen=True)
class ExitTicket:
    """The right to sell a position: handed to exactly one caller of ``begin_exit``."""

    position: ActivePosition  # as it is now, EXIT_PENDING
    order_ref: str
    quantity: int
    limit_price: float | None
    reason: ExitReason

    @property
    def symbol(self) -> str:
        return self.position.symbol

    @property
    def position_id(self) -> int:
        return self.position.id


@dataclass(frozen=True)
class ClosedPosition:
    """A finished round trip."""

    id: int
    position_id: int
    trading_date: date
    symbol: str
    source: str
    entry_price: float
    exit_price: float
    quantity: int  # all shares of the round trip (partial exits included)
    exit_reason: ExitReason
    pnl: float  # net of commissions, partial exits included
    commissions: float
    reentry_allowed: bool
    is_recovery: bool
    entry_order_ref: str | None
    exit_order_ref: str | None
    opened_at: datetime
    closed_at: datetime


@dataclass(frozen=True)
class Order:
    order_ref: str
    symbol: str
    side: OrderSide
    purpose: OrderPurpose
    quantity: int
    limit_price: float | None
    status: OrderStatus
    broker_order_id: int | None
    perm_id: int | None
    filled_quantity: int
    avg_fill_price: float | None
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Fill:
    exec_id: str
    order_ref: str | None
    symbol: str
    side: OrderSide
    quantity: int
    price: float
    commission: float | None  # IBKR reports it separately, after the execution
    time: datetime


@dataclass(frozen=True)
class DailyState:
    trading_date: date
    starting_capital: float | None
    realized_pnl: float  # closed round trips plus partial exits of open positions
    trades_count: int  # closed round trips
    daily_target_reached: bool
    halted: bool
    halt_reason: str | None


@dataclass(frozen=True)
class WatchlistItem:
    """One watchlist row; also the input type of ``replace_watchlist``."""

    symbol: str
    rank: int
    score: float
    reason: str
    source: WatchlistSource
    gap_pct: float | None = None
    validated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseRun:
    trading_date: date
    phase: str
    status: PhaseStatus
    started_at: datetime
    ended_at: datetime | None
    detail: str | None


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: ProcessState
    pid: int | None
    since: datetime
    restarts: int
    last_heartbeat: datetime | None
    last_error: str | None
    ready: bool
    detail: dict[str, Any]


@dataclass(frozen=True)
class Command:
    id: int
    kind: CommandKind
    symbol: str | None
    status: CommandStatus
    created_at: datetime
    taken_by: str | None
    taken_at: datetime | None
    finished_at: datetime | None
    result: str | None


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    process: str
    kind: str
    symbol: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class BusyStats:
    """Per-process count of "database is locked" errors the store met."""

    retries: int  # locked errors that were retried (and then succeeded or not)
    busy_errors: int  # units of work given up with ``StoreBusyError``
