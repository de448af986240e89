"""The day's P&L guard: daily target and daily loss limit -> liquidate everything and halt.

Realized P&L comes from ``daily_state`` (closes and partial exits, net of commissions),
unrealized from the marks of the held rows; both against the day's starting capital
(NetLiquidation when the exit manager first saw the day). Once either limit is hit the
day is in *liquidation*: every position, including ones adopted later, is sold with that
reason until the day ends, and entries stay halted. The database remembers it
(``daily_target_reached`` / a ``loss_limit`` halt), so a restart resumes liquidating.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import date

from exit_manager.book import Book
from exit_manager.db_lane import DbLane
from exit_manager.journal import Journal
from exit_manager.ledger import unrealized_pnl
from exit_manager.marks import Mark
from exit_manager.rules import ExitParams, evaluate_daily
from market.clock import Clock
from shared_state import DailyState, ExitReason, Store

log = logging.getLogger("exit_manager.daily")

#: The halt reason each liquidation writes.
HALT_REASONS = {ExitReason.DAILY_TARGET: "daily_target", ExitReason.LOSS_LIMIT: "loss_limit"}


def mode_of(state: DailyState | None) -> ExitReason | None:
    """Return the liquidation the day's state says is under way (None: none)."""
    if state is None:
        return None
    if state.daily_target_reached:
        return ExitReason.DAILY_TARGET
    if state.halted and state.halt_reason == HALT_REASONS[ExitReason.LOSS_LIMIT]:
        return ExitReason.LOSS_LIMIT
    return None


def book_unrealized(book: Book, marks: Callable[[str], Mark | None]) -> tuple[float, list[str]]:
    """Return the unrealized P&L of every held row, and the symbols with no mark."""
    total, unmarked = 0.0, []
    for row in book.held():
        mark = marks(row.symbol)
        if mark is None or row.entry_price is None:
            unmarked.append(row.symbol)
            continue
        total += unrealized_pnl(row.quantity, row.entry_price, mark.price)
    return total, unmarked


class DailyGuard:
    """Checks the day's P&L every pass and keeps the day's liquidation going."""

    def __init__(
        self,
        *,
        store: Store,
        lane: DbLane,
        journal: Journal,
        clock: Clock,
        params: ExitParams,
        book: Book,
        marks: Callable[[str], Mark | None],
    ) -> None:
        self.store = store
        self.lane = lane
        self.journal = journal
        self.clock = clock
        self.params = params
        self.book = book
        self.marks = marks
        self.mode: ExitReason | None = None
        self.day: date | None = None
        self.last_pnl_pct: float | None = None

    async def start_day(self, today: date, starting_capital: float | None) -> DailyState:
        """Make sure the day's row exists with its starting capital; resume a liquidation."""
        state = await self.lane.call(self.store.ensure_daily_state, today, starting_capital)
        self.day, self.mode = today, mode_of(state)
        if self.mode is not None:
            self.journal.record("daily_limit", reason=self.mode, why="resumed from daily_state")
        return state

    async def check(self, today: date) -> ExitReason | None:
        """Return the day's liquidation reason (deciding it now if a limit was just hit)."""
        if self.mode is not None:
            return self.mode
        state = await self.lane.call(self.store.daily_state, today)
        self.mode = mode_of(state)
        if self.mode is not None or state is None or not state.starting_capital:
            return self.mode
        unrealized, unmarked = book_unrealized(self.book, self.marks)
        decision = evaluate_daily(
            state.realized_pnl, unrealized, state.starting_capital, self.params
        )
        pct = (state.realized_pnl + unrealized) / state.starting_capital * 100.0
        self.last_pnl_pct = pct if math.isfinite(pct) else None
        if decision is None:
            return None
        reason = ExitReason(decision.reason)
        await self._halt(today, reason)
        self.mode = reason
        self.journal.record(
            "daily_limit", level=logging.WARNING, reason=reason, pnl=decision.pnl,
            pnl_pct=decision.pnl_pct, threshold_pct=decision.threshold_pct,
            detail=decision.detail, unmarked=unmarked,
        )  # fmt: skip
        return reason

    async def _halt(self, today: date, reason: ExitReason) -> None:
        now = self.clock.now()
        if reason is ExitReason.DAILY_TARGET:
            await self.lane.call(self.store.mark_daily_target_reached, today, now=now)
        await self.lane.call(self.store.set_halted, today, True, HALT_REASONS[reason], now=now)
