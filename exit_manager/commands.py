"""Commands from the ``commands`` table: liquidate (all / today / one symbol), halt, resume.

Taken every pass (well within a second of being queued), one at a time, exactly once
(``take_next_command`` gives each to one taker). A liquidation is done when every sell
it asks for has *begun* (fills are the seller's business); its result names them.
Rows still entering (ENTRY_PENDING) cannot be sold yet: a liquidation remembers them and
sells them the moment they turn OPEN in this run; a sell that could not start (no price,
a refusal) is tried again every pass until the row is gone.

``resume_entries`` does not lift a halt the daily loss limit imposed: that halt is for the
rest of the day (design 9: the kill switch), and the command fails saying so.

While the market is closed only halt/resume are taken: a liquidation stays PENDING until
the open (``scripts/liquidate_*.py --queue-for-open`` relies on it), since nothing can be
sold before then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from exit_manager.book import Book
from exit_manager.db_lane import DbLane
from exit_manager.journal import PROCESS, Journal
from exit_manager.reconcile import DriftWatch
from exit_manager.selling import Seller
from market.clock import Clock
from shared_state import ActivePosition, Command, CommandKind, ExitReason, PositionState, Store
from shared_state.positions import ADOPTED

log = logging.getLogger("exit_manager.commands")

#: Halt reasons a manual resume may not lift.
LOCKED_HALTS = frozenset({"loss_limit", "daily_target"})

#: The commands taken while the market is closed (liquidations wait for the open).
CLOSED_MARKET_KINDS = (CommandKind.HALT_ENTRIES, CommandKind.RESUME_ENTRIES)


def opened_today(rows: list[ActivePosition], today: date) -> list[ActivePosition]:
    """Return the rows ``liquidate_today`` sells: opened by the system today, not adopted."""
    return [r for r in rows if r.trading_date == today and r.source != ADOPTED]


@dataclass(frozen=True)
class Outcome:
    """How a command ended."""

    ok: bool
    result: str


class Commands:
    """Takes and carries out the queued commands."""

    def __init__(
        self,
        *,
        store: Store,
        lane: DbLane,
        journal: Journal,
        clock: Clock,
        book: Book,
        seller: Seller,
        drift: DriftWatch,
    ) -> None:
        self.store = store
        self.lane = lane
        self.journal = journal
        self.clock = clock
        self.book = book
        self.seller = seller
        self.drift = drift
        #: Symbols a liquidation asked to sell whose rows are still active.
        self.liquidating: set[str] = set()

    async def release_stale(self) -> int:
        """Give back commands a previous run took but never finished."""
        return await self.lane.call(self.store.release_commands, PROCESS, self.clock.now())

    async def take_all(self, today: date, market_open: bool) -> None:
        """Carry out every queued command, oldest first (liquidations only while open)."""
        kinds = None if market_open else CLOSED_MARKET_KINDS
        while True:
            command = await self.lane.call(
                self.store.take_next_command, PROCESS, self.clock.now(), kinds=kinds
            )
            if command is None:
                return
            try:
                outcome = await self._run(command, today, market_open)
            except Exception as exc:  # noqa: BLE001 - a failed command must be finished FAILED
                log.exception("command %d failed", command.id)
                outcome = Outcome(False, f"error: {exc}")
            await self.lane.call(
                self.store.finish_command, command.id, outcome.ok, outcome.result, self.clock.now()
            )
            self.journal.record(
                "command_done", command.symbol, id=command.id, command=command.kind,
                ok=outcome.ok, result=outcome.result,
            )  # fmt: skip

    async def _run(self, command: Command, today: date, market_open: bool) -> Outcome:
        kind = command.kind
        if kind is CommandKind.HALT_ENTRIES:
            await self.lane.call(self.store.set_halted, today, True, "manual", now=self.clock.now())
            return Outcome(True, "entries halted for the day")
        if kind is CommandKind.RESUME_ENTRIES:
            return await self._resume(today)
        if not market_open:
            return Outcome(False, "market closed: nothing can be sold now")
        if kind is CommandKind.LIQUIDATE_ALL:
            await self.drift.adopt_all_now()
            return self._liquidate(self.book.rows(), "all")
        if kind is CommandKind.LIQUIDATE_TODAY:
            return self._liquidate(opened_today(self.book.rows(), today), "today's")
        symbol = command.symbol or ""
        row = self.book.row(symbol)
        if row is None:
            await self.drift.adopt_all_now()
            row = self.book.row(symbol)
        if row is None:
            return Outcome(False, f"no position in {symbol}")
        return self._liquidate([row], symbol)

    async def _resume(self, today: date) -> Outcome:
        state = await self.lane.call(self.store.daily_state, today)
        if state is not None and state.halted and state.halt_reason in LOCKED_HALTS:
            return Outcome(False, f"entries stay halted today ({state.halt_reason})")
        await self.lane.call(self.store.set_halted, today, False, None, now=self.clock.now())
        return Outcome(True, "entries resumed")

    def _liquidate(self, rows: list[ActivePosition], what: str) -> Outcome:
        started, exiting, entering, later = [], [], [], []
        for row in rows:
            self.liquidating.add(row.symbol)
            if row.state is PositionState.ENTRY_PENDING:
                entering.append(row.symbol)
            elif row.state is PositionState.EXIT_PENDING or self.seller.busy(row.symbol):
                exiting.append(row.symbol)
            elif self.sell(row):
                started.append(row.symbol)
            else:
                later.append(row.symbol)  # e.g. the broker is away: tried again every pass
        parts = [f"liquidating {what}: selling {_names(started)}"]
        if exiting:
            parts.append(f"already exiting {_names(exiting)}")
        if entering:
            parts.append(f"will sell when filled {_names(entering)}")
        if later:
            parts.append(f"will sell as soon as possible {_names(later)}")
        return Outcome(True, "; ".join(parts))

    def sell(self, row: ActivePosition) -> bool:
        """Begin a manual exit of an OPEN row."""
        return self.seller.request(row.symbol, ExitReason.MANUAL, float("nan"), "manual command")

    def continue_liquidations(self) -> None:
        """Keep selling what a liquidation asked for until its rows are gone."""
        for symbol in list(self.liquidating):
            row = self.book.row(symbol)
            if row is None:
                self.liquidating.discard(symbol)  # closed (or the entry was cancelled)
            elif row.state is PositionState.OPEN and not self.seller.busy(symbol):
                self.sell(row)


def _names(symbols: list[str]) -> str:
    return ", ".join(symbols) if symbols else "nothing"
