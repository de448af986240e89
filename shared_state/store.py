"""``Store``: the one front every process uses to read and change the shared state.

Each public method is one transaction: it validates the caller's input first (a bad
value raises ``ValueError`` before anything is written), then runs one unit of work of
the concept modules (``positions``, ``orders``, ...) inside ``BEGIN IMMEDIATE`` (writes)
or a deferred ``BEGIN`` (reads). Times and trading dates always come from the caller:
the store never reads the wall clock for a business timestamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from shared_state import (
    commands,
    daily,
    events,
    orders,
    phases,
    positions,
    processes,
    schema,
    watchlist,
)
from shared_state import validate as v
from shared_state.db import Database
from shared_state.errors import SchemaVersionError, StoreError
from shared_state.models import (
    ActivePosition,
    BusyStats,
    ClaimResult,
    ClosedPosition,
    Command,
    DailyState,
    Event,
    ExitTicket,
    Fill,
    Order,
    PhaseRun,
    ProcessInfo,
    WatchlistItem,
)
from shared_state.states import (
    REENTRY_FORBIDDING_EXITS,
    CommandKind,
    CommandStatus,
    ExitReason,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PhaseStatus,
    ProcessState,
    WatchlistSource,
)

_REF_MAX = 64


class Store:
    """The shared-state database of one SQLite file, as seen from this process.

    ``process`` names this process in the events the store records on its behalf.
    ``write_gate=False`` turns off the writers' queue of ``gate.py`` (for measurements;
    correctness never depends on it).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        create: bool = True,
        process: str = "unknown",
        write_gate: bool = True,
    ) -> None:
        self.path = Path(path)
        self.process_name = v.text(process, "process", max_len=64)
        if (
            isinstance(busy_timeout_ms, bool)
            or not isinstance(busy_timeout_ms, int)
            or (busy_timeout_ms < 0)
        ):
            raise ValueError(f"busy_timeout_ms={busy_timeout_ms!r} is not allowed: an int >= 0")
        if not create and not self.path.exists():
            raise StoreError(f"{self.path}: no such database (open it with create=True first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Database(
            self.path, busy_timeout_ms=busy_timeout_ms, write_gate=v.flag(write_gate, "write_gate")
        )
        self._open(create)

    def _open(self, create: bool) -> None:
        found = self._db.read(lambda conn: schema.check_version(conn, self.path))
        if found == schema.SCHEMA_VERSION:
            return
        if not create:
            raise SchemaVersionError(
                f"{self.path}: schema version {found} found, this code expects "
                f"{schema.SCHEMA_VERSION} (the file has no schema yet). Open it with "
                "create=True (the supervisor does) before the other processes."
            )
        self._db.write(lambda conn: schema.create_schema(conn, self.path))

    # ------------------------------------------------------------------ maintenance

    def close(self) -> None:
        """Close this process's pooled connections (the store reopens them on use)."""
        self._db.dispose()

    def busy_stats(self) -> BusyStats:
        """Return how many "database is locked" errors this process met."""
        return self._db.busy_stats()

    def integrity_check(self) -> list[str]:
        """Return ``PRAGMA integrity_check`` (``['ok']`` for a sound file)."""
        return self._db.integrity_check()

    def connection_pragmas(self) -> dict[str, Any]:
        """Return journal_mode, busy_timeout, foreign_keys, synchronous of a new connection."""
        return self._db.fresh_connection_pragmas()

    def schema_version(self) -> int:
        """Return the file's schema version (``PRAGMA user_version``)."""
        return self._db.read(lambda conn: schema.check_version(conn, self.path))

    # -------------------------------------------------------------------- positions

    def claim_for_entry(
        self,
        symbol: str,
        trading_date: date,
        *,
        now: datetime,
        order_ref: str,
        quantity: int,
        limit_price: float | None,
        max_recovery_entries: int,
        max_trades_per_day: int,
        max_positions: int,
        owner: str,
    ) -> ClaimResult:
        """Claim ``symbol`` for a buy: the ENTRY_PENDING row and BUY intent, or a refusal.

        Refused when the symbol is active (the UNIQUE constraint), entries are halted, the
        daily target is reached, a target/daily_target/loss_limit/manual/eod exit of the
        symbol today forbids re-entry, stop exits today already had
        ``max_recovery_entries`` recovery trades, today's entries reached
        ``max_trades_per_day``, or ``max_positions`` other symbols are active. After a
        stop exit today the claim is a recovery trade (``position.is_recovery``).
        Entries are counted as today's active rows plus today's closed rows, adopted
        positions excluded; a cancelled entry leaves no row, so it counts for nothing.
        """
        request = positions.ClaimRequest(
            symbol=v.symbol(symbol),
            trading_date=v.day(trading_date),
            now=v.instant(now),
            order_ref=v.text(order_ref, "order_ref", max_len=_REF_MAX),
            quantity=v.shares(quantity),
            limit_price=v.optional_price(limit_price, "limit_price"),
            max_recovery_entries=v.count(max_recovery_entries, "max_recovery_entries"),
            max_trades_per_day=v.count(max_trades_per_day, "max_trades_per_day"),
            max_positions=v.count(max_positions, "max_positions"),
            owner=v.text(owner, "owner", max_len=32),
        )
        return self._db.write(lambda conn: positions.claim(conn, request, self.process_name))

    def mark_filled(
        self,
        symbol: str,
        *,
        now: datetime,
        entry_price: float,
        quantity: int,
        target_price: float,
        stop_price: float,
    ) -> ActivePosition:
        """Record the entry fill: ENTRY_PENDING -> OPEN holding ``quantity`` (filled) shares.

        Call again on an OPEN row when more of the entry fills (partial fills).
        """
        symbol = v.symbol(symbol)
        now = v.instant(now)
        values = {
            "entry_price": v.price(entry_price, "entry_price"),
            "quantity": v.shares(quantity),
            "target_price": v.price(target_price, "target_price"),
            "stop_price": v.price(stop_price, "stop_price"),
        }
        return self._db.write(
            lambda conn: positions.mark_filled(
                conn, symbol, now=now, actor=self.process_name, values=values
            )
        )

    def cancel_entry(self, symbol: str, order_ref: str, *, now: datetime, reason: str) -> bool:
        """Remove an ENTRY_PENDING row whose buy filled nothing; False if already gone.

        A cancelled entry is not a trade and does not forbid re-entry: it leaves no
        closed row. Refused (``TransitionError``) while the buy may still trade at the
        broker (SUBMITTED/PARTIAL/UNKNOWN) or once shares filled; an INTENT that was
        never sent becomes CANCELLED in the same transaction.
        """
        symbol = v.symbol(symbol)
        order_ref = v.text(order_ref, "order_ref", max_len=_REF_MAX)
        now = v.instant(now)
        reason = v.text(reason, "reason")
        return self._db.write(
            lambda conn: positions.cancel_entry(
                conn, symbol, order_ref, now=now, reason=reason, actor=self.process_name
            )
        )

    def _exit_request(
        self,
        symbol: str,
        now: datetime,
        order_ref: str,
        quantity: int,
        limit_price: float | None,
        reason: ExitReason | str,
    ) -> positions.ExitRequest:
        return positions.ExitRequest(
            symbol=v.symbol(symbol),
            now=v.instant(now),
            order_ref=v.text(order_ref, "order_ref", max_len=_REF_MAX),
            quantity=v.shares(quantity),
            limit_price=v.optional_price(limit_price, "limit_price"),
            reason=v.member(reason, ExitReason, "reason"),
        )

    def begin_exit(
        self,
        symbol: str,
        *,
        now: datetime,
        order_ref: str,
        quantity: int,
        limit_price: float | None,
        reason: ExitReason | str,
    ) -> ExitTicket | None:
        """Take the right to sell: OPEN -> EXIT_PENDING plus the SELL intent, once.

        Return ``None`` when the symbol is not OPEN (another caller already began its
        exit, it is still entering, or it is gone). ``quantity`` may not exceed the held
        quantity.
        """
        request = self._exit_request(symbol, now, order_ref, quantity, limit_price, reason)
        return self._db.write(lambda conn: positions.begin_exit(conn, request, self.process_name))

    def replace_exit_order(
        self,
        symbol: str,
        *,
        now: datetime,
        old_order_ref: str,
        order_ref: str,
        quantity: int,
        limit_price: float | None,
        reason: ExitReason | str,
    ) -> bool:
        """Point an EXIT_PENDING row at a new SELL intent (e.g. after a rejected sell).

        The old order must be done with nothing filled (or an unsent INTENT, which is
        cancelled). Return False if the row's exit order is not ``old_order_ref``.
        """
        request = self._exit_request(symbol, now, order_ref, quantity, limit_price, reason)
        old = v.text(old_order_ref, "old_order_ref", max_len=_REF_MAX)
        return self._db.write(
            lambda conn: positions.replace_exit_order(conn, request, old, self.process_name)
        )

    def cancel_exit(
        self, symbol: str, order_ref: str, *, now: datetime, reason: str
    ) -> ActivePosition | None:
        """Put an EXIT_PENDING row back to OPEN: its sell ended without selling it all.

        Record any shares the sell did sell with ``reduce_position`` first. Return
        ``None`` if the row's exit order is not ``order_ref``.
        """
        symbol = v.symbol(symbol)
        order_ref = v.text(order_ref, "order_ref", max_len=_REF_MAX)
        now = v.instant(now)
        reason = v.text(reason, "reason")
        return self._db.write(
            lambda conn: positions.cancel_exit(
                conn, symbol, order_ref, now=now, reason=reason, actor=self.process_name
            )
        )

    def reduce_position(
        self,
        symbol: str,
        *,
        trading_date: date,
        now: datetime,
        sold_quantity: int,
        pnl: float,
        commissions: float,
    ) -> ActivePosition:
        """Record a partial exit: hold fewer shares and realize its P&L for the day now.

        The closing ``close_position`` later adds only its own sale to the day, and its
        closed row reports the whole round trip (partial exits included).
        """
        symbol = v.symbol(symbol)
        sold = v.shares(sold_quantity, "sold_quantity")
        money = positions.Realized(
            trading_date=v.day(trading_date),
            now=v.instant(now),
            pnl=v.money(pnl, "pnl"),
            commissions=v.non_negative(commissions, "commissions"),
        )
        return self._db.write(
            lambda conn: positions.reduce(conn, symbol, sold, money, self.process_name)
        )

    def close_position(
        self,
        symbol: str,
        *,
        trading_date: date,
        now: datetime,
        exit_price: float,
        reason: ExitReason | str,
        pnl: float,
        commissions: float,
        reentry_allowed: bool | None = None,
        position_id: int | None = None,
    ) -> ClosedPosition | None:
        """Close the position: closed row, daily P&L and trade count, in one transaction.

        ``pnl`` is this sale's P&L net of commissions. Exactly once: a second call (or a
        ``position_id`` that is no longer the active row) returns ``None``.
        ``reentry_allowed`` defaults to False for target/daily_target/loss_limit/manual/eod
        exits (True is refused for those) and to True otherwise.
        """
        exit_reason = v.member(reason, ExitReason, "reason")
        request = positions.CloseRequest(
            symbol=v.symbol(symbol),
            money=positions.Realized(
                trading_date=v.day(trading_date),
                now=v.instant(now),
                pnl=v.money(pnl, "pnl"),
                commissions=v.non_negative(commissions, "commissions"),
            ),
            exit_price=v.price(exit_price, "exit_price"),
            reason=exit_reason,
            reentry_allowed=_reentry(exit_reason, reentry_allowed),
            position_id=None if position_id is None else v.count(position_id, "position_id"),
        )
        return self._db.write(lambda conn: positions.close(conn, request, self.process_name))

    def adopt_position(
        self,
        symbol: str,
        *,
        trading_date: date,
        now: datetime,
        quantity: int,
        entry_price: float,
        target_price: float | None,
        stop_price: float | None,
        detail: Mapping[str, Any] | None = None,
    ) -> ActivePosition | None:
        """Put a broker position the DB does not know under exit protection (OPEN).

        The row's source is 'adopted' and an 'adopted' event is recorded. Return ``None``
        if the symbol already has an active row.
        """
        request = positions.AdoptRequest(
            symbol=v.symbol(symbol),
            trading_date=v.day(trading_date),
            now=v.instant(now),
            quantity=v.shares(quantity),
            entry_price=v.price(entry_price, "entry_price"),
            target_price=v.optional_price(target_price, "target_price"),
            stop_price=v.optional_price(stop_price, "stop_price"),
            detail=_detail_dict(detail),
        )
        return self._db.write(lambda conn: positions.adopt(conn, request, self.process_name))

    def active_positions(self) -> list[ActivePosition]:
        """Return every active position (one consistent read), by symbol."""
        return self._db.read(positions.all_active)

    def active_position(self, symbol: str) -> ActivePosition | None:
        """Return the symbol's active position, if any."""
        symbol = v.symbol(symbol)
        return self._db.read(lambda conn: positions.get(conn, symbol))

    def closed_today(self, trading_date: date) -> list[ClosedPosition]:
        """Return the round trips closed on ``trading_date`` (closed_positions_today)."""
        trading_date = v.day(trading_date)
        return self._db.read(lambda conn: positions.closed_on(conn, trading_date))

    # ------------------------------------------------------------------------ daily

    def daily_state(self, trading_date: date) -> DailyState | None:
        """Return the day's state, or ``None`` if nothing was recorded that day."""
        trading_date = v.day(trading_date)
        return self._db.read(lambda conn: daily.get(conn, trading_date))

    def ensure_daily_state(
        self, trading_date: date, starting_capital: float | None = None
    ) -> DailyState:
        """Create the day's row if missing (and set its starting capital if unknown)."""
        trading_date = v.day(trading_date)
        capital = (
            None if starting_capital is None else v.money(starting_capital, "starting_capital")
        )
        return self._db.write(lambda conn: daily.ensure(conn, trading_date, capital))

    def set_halted(
        self, trading_date: date, halted: bool, reason: str | None, *, now: datetime
    ) -> DailyState:
        """Halt (or resume) entries for the day; exits continue either way."""
        trading_date = v.day(trading_date)
        halted = v.flag(halted, "halted")
        reason = v.optional_text(reason, "reason")
        now = v.instant(now)
        return self._db.write(
            lambda conn: daily.set_halted(
                conn, trading_date, halted, reason, now, self.process_name
            )
        )

    def mark_daily_target_reached(self, trading_date: date, *, now: datetime) -> bool:
        """Record that the daily target was reached; False if it already was."""
        trading_date = v.day(trading_date)
        now = v.instant(now)
        return self._db.write(
            lambda conn: daily.mark_target_reached(conn, trading_date, now, self.process_name)
        )

    # ----------------------------------------------------------------------- orders

    def order_intent(
        self,
        order_ref: str,
        *,
        symbol: str,
        side: OrderSide | str,
        quantity: int,
        limit_price: float | None,
        purpose: OrderPurpose | str,
        now: datetime,
    ) -> Order:
        """Write a standalone INTENT row (no position change) before sending an order."""
        ref = v.text(order_ref, "order_ref", max_len=_REF_MAX)
        fields = {
            "order_ref": ref,
            "symbol": v.symbol(symbol),
            "side": v.member(side, OrderSide, "side"),
            "purpose": v.member(purpose, OrderPurpose, "purpose"),
            "quantity": v.shares(quantity),
            "limit_price": v.optional_price(limit_price, "limit_price"),
            "now": v.instant(now),
        }

        def work(conn: Any) -> Order:
            orders.insert_intent(conn, actor=self.process_name, **fields)
            result = orders.get(conn, ref)
            assert result is not None
            return result

        return self._db.write(work)

    def update_order(
        self,
        order_ref: str,
        *,
        now: datetime,
        status: OrderStatus | str | None = None,
        broker_order_id: int | None = None,
        perm_id: int | None = None,
        filled_quantity: int | None = None,
        avg_fill_price: float | None = None,
        error: str | None = None,
    ) -> Order:
        """Record what the broker reports; a status change must be in ORDER_TRANSITIONS.

        Only the arguments given change. ``filled_quantity`` never goes down.
        """
        ref = v.text(order_ref, "order_ref", max_len=_REF_MAX)
        now = v.instant(now)
        changes: dict[str, Any] = {}
        if status is not None:
            changes["status"] = v.member(status, OrderStatus, "status")
        if broker_order_id is not None:
            changes["broker_order_id"] = v.broker_id(broker_order_id, "broker_order_id")
        if perm_id is not None:
            changes["perm_id"] = v.broker_id(perm_id, "perm_id")
        if filled_quantity is not None:
            changes["filled_quantity"] = v.shares(
                filled_quantity, "filled_quantity", allow_zero=True
            )
        if avg_fill_price is not None:
            changes["avg_fill_price"] = v.price(avg_fill_price, "avg_fill_price")
        if error is not None:
            changes["error"] = v.optional_text(error, "error")
        return self._db.write(
            lambda conn: orders.update(conn, ref, now=now, actor=self.process_name, changes=changes)
        )

    def record_order_ack(
        self,
        order_ref: str,
        broker_order_id: int | None,
        perm_id: int | None,
        status: OrderStatus | str = OrderStatus.SUBMITTED,
        *,
        now: datetime,
    ) -> Order:
        """Record the broker's acknowledgement: its ids and status."""
        return self.update_order(
            order_ref, now=now, status=status, broker_order_id=broker_order_id, perm_id=perm_id
        )

    def order(self, order_ref: str) -> Order | None:
        """Return the order with ``order_ref``, if any."""
        ref = v.text(order_ref, "order_ref", max_len=_REF_MAX)
        return self._db.read(lambda conn: orders.get(conn, ref))

    def order_by_perm_id(self, perm_id: int) -> Order | None:
        """Return the order the broker knows by ``perm_id``, if any."""
        perm = v.broker_id(perm_id, "perm_id")
        assert perm is not None
        return self._db.read(lambda conn: orders.by_perm_id(conn, perm))

    def orders_in_status(
        self, *statuses: OrderStatus | str, symbol: str | None = None
    ) -> list[Order]:
        """Return the orders in any of ``statuses`` (e.g. the not-done ones), oldest first."""
        wanted = [v.member(s, OrderStatus, "status") for s in statuses]
        sym = None if symbol is None else v.symbol(symbol)
        return self._db.read(lambda conn: orders.in_status(conn, wanted, sym))

    def record_fill(
        self,
        exec_id: str,
        *,
        order_ref: str | None,
        symbol: str,
        side: OrderSide | str,
        quantity: int,
        price: float,
        commission: float | None,
        time: datetime,
    ) -> bool:
        """Record an execution once; return False if ``exec_id`` was already recorded."""
        row = {
            "exec_id": v.text(exec_id, "exec_id", max_len=_REF_MAX),
            "order_ref": None
            if order_ref is None
            else v.text(order_ref, "order_ref", max_len=_REF_MAX),
            "symbol": v.symbol(symbol),
            "side": v.member(side, OrderSide, "side").value,
            "quantity": v.shares(quantity),
            "price": v.price(price, "price"),
            "commission": None if commission is None else v.non_negative(commission, "commission"),
            "time": v.instant(time, "time"),
        }
        return self._db.write(lambda conn: orders.record_fill(conn, row, self.process_name))

    def set_fill_commission(self, exec_id: str, commission: float) -> bool:
        """Attach the broker's (later) commission report; False if the exec id is unknown."""
        exec_id = v.text(exec_id, "exec_id", max_len=_REF_MAX)
        amount = v.non_negative(commission, "commission")
        return self._db.write(lambda conn: orders.set_commission(conn, exec_id, amount))

    def fills(self, *, order_ref: str | None = None, symbol: str | None = None) -> list[Fill]:
        """Return recorded executions (of one order or symbol), in time order."""
        sym = None if symbol is None else v.symbol(symbol)
        return self._db.read(lambda conn: orders.fills_of(conn, order_ref, sym))

    # -------------------------------------------------------------------- processes

    def set_process_state(
        self,
        name: str,
        state: ProcessState | str,
        *,
        now: datetime,
        pid: int | None = None,
        error: str | None = None,
        force: bool = False,
    ) -> ProcessInfo:
        """Move a managed process to ``state`` (supervisord's table) and record the event.

        Entering STARTING from BACKOFF/EXITED/FATAL counts a restart. ``force`` allows any
        transition, for rows left behind by a previous supervisor.
        """
        name = v.text(name, "name", max_len=64)
        new = v.member(state, ProcessState, "state")
        now = v.instant(now)
        pid = v.broker_id(pid, "pid")
        error = v.optional_text(error, "error")
        force = v.flag(force, "force")
        return self._db.write(
            lambda conn: processes.set_state(
                conn, name, new, now=now, pid=pid, error=error, force=force, actor=self.process_name
            )
        )

    def set_process_ready(
        self,
        name: str,
        ready: bool,
        *,
        now: datetime,
        detail: Mapping[str, Any] | None = None,
    ) -> ProcessInfo:
        """Record that the process is ready (connected, synced), or no longer is."""
        name = v.text(name, "name", max_len=64)
        ready = v.flag(ready, "ready")
        now = v.instant(now)
        text = None if detail is None else v.detail(detail)
        return self._db.write(
            lambda conn: processes.set_ready(
                conn, name, ready, now=now, detail=text, actor=self.process_name
            )
        )

    def heartbeat(self, name: str, now: datetime, *, pid: int | None = None) -> None:
        """Stamp the process's last heartbeat."""
        name = v.text(name, "name", max_len=64)
        now = v.instant(now)
        pid = v.broker_id(pid, "pid")
        self._db.write(lambda conn: processes.heartbeat(conn, name, now, pid))

    def process(self, name: str) -> ProcessInfo | None:
        """Return one process row, if any."""
        name = v.text(name, "name", max_len=64)
        return self._db.read(lambda conn: processes.get(conn, name))

    def processes(self) -> list[ProcessInfo]:
        """Return every process row, by name."""
        return self._db.read(processes.all_processes)

    # --------------------------------------------------------------------- commands

    def enqueue_command(
        self, kind: CommandKind | str, *, now: datetime, symbol: str | None = None
    ) -> int:
        """Queue a command and return its id (``liquidate_symbol`` needs a symbol)."""
        command_kind = v.member(kind, CommandKind, "kind")
        if (command_kind is CommandKind.LIQUIDATE_SYMBOL) != (symbol is not None):
            raise ValueError(
                f"symbol={symbol!r} is not allowed with kind={command_kind.value!r}: "
                "liquidate_symbol needs a symbol, the other kinds take none"
            )
        sym = None if symbol is None else v.symbol(symbol)
        now = v.instant(now)
        return self._db.write(
            lambda conn: commands.enqueue(conn, command_kind, sym, now, self.process_name)
        )

    def take_next_command(
        self, taker: str, now: datetime, *, kinds: Iterable[CommandKind | str] | None = None
    ) -> Command | None:
        """Take the oldest PENDING command (of ``kinds``): exactly one taker gets it."""
        taker = v.text(taker, "taker", max_len=64)
        now = v.instant(now)
        wanted = None if kinds is None else [v.member(k, CommandKind, "kinds") for k in kinds]
        return self._db.write(lambda conn: commands.take_next(conn, taker, now, wanted))

    def finish_command(
        self, command_id: int, ok: bool, result: str | None, now: datetime
    ) -> Command:
        """Mark a TAKEN command DONE (``ok``) or FAILED, with its result text."""
        command_id = v.count(command_id, "command_id")
        ok = v.flag(ok, "ok")
        result = v.optional_text(result, "result")
        now = v.instant(now)
        return self._db.write(
            lambda conn: commands.finish(conn, command_id, ok, result, now, self.process_name)
        )

    def release_commands(self, taker: str, now: datetime) -> int:
        """Give back every command TAKEN by ``taker`` (it restarted before finishing)."""
        taker = v.text(taker, "taker", max_len=64)
        now = v.instant(now)
        return self._db.write(lambda conn: commands.release(conn, taker, now))

    def command(self, command_id: int) -> Command | None:
        """Return one command, if any."""
        command_id = v.count(command_id, "command_id")
        return self._db.read(lambda conn: commands.get(conn, command_id))

    def commands(
        self, *, statuses: Iterable[CommandStatus | str] | None = None, limit: int = 100
    ) -> list[Command]:
        """Return commands (in ``statuses``), newest first."""
        wanted = (
            None if statuses is None else [v.member(s, CommandStatus, "statuses") for s in statuses]
        )
        limit = v.count(limit, "limit")
        return self._db.read(lambda conn: commands.listing(conn, wanted, limit))

    # ----------------------------------------------------------------------- events

    def record_event(
        self,
        process: str,
        kind: str,
        *,
        now: datetime,
        symbol: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event to the audit trail and return its id."""
        fields = {
            "process": v.text(process, "process", max_len=64),
            "kind": v.text(kind, "kind", max_len=64),
            "now": v.instant(now),
            "symbol": None if symbol is None else v.symbol(symbol),
            "detail": v.detail(detail),
        }
        return self._db.write(lambda conn: events.insert(conn, **fields))

    def events(
        self,
        since_id: int = 0,
        limit: int = 1000,
        *,
        kind: str | None = None,
        symbol: str | None = None,
    ) -> list[Event]:
        """Return up to ``limit`` events after ``since_id``, oldest first."""
        since_id = v.count(since_id, "since_id")
        limit = v.count(limit, "limit")
        sym = None if symbol is None else v.symbol(symbol)
        return self._db.read(
            lambda conn: events.since(conn, since_id, limit, kind=kind, symbol=sym)
        )

    # -------------------------------------------------------------------- watchlist

    def replace_watchlist(self, trading_date: date, rows: Sequence[WatchlistItem]) -> int:
        """Replace the day's watchlist with ``rows``; return how many were written."""
        trading_date = v.day(trading_date)
        checked = [_watchlist_row(index, row) for index, row in enumerate(rows)]
        symbols = [row["symbol"] for row in checked]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"rows={symbols!r} is not allowed: each symbol at most once a day")
        return self._db.write(lambda conn: watchlist.replace(conn, trading_date, checked))

    def watchlist(self, trading_date: date, validated_only: bool = False) -> list[WatchlistItem]:
        """Return the day's watchlist by rank."""
        trading_date = v.day(trading_date)
        validated_only = v.flag(validated_only, "validated_only")
        return self._db.read(lambda conn: watchlist.listing(conn, trading_date, validated_only))

    def set_validated(self, trading_date: date, symbol: str, validated: bool = True) -> bool:
        """Mark a watchlist symbol (in)valid for the day; False if it is not listed."""
        trading_date = v.day(trading_date)
        symbol = v.symbol(symbol)
        validated = v.flag(validated, "validated")
        return self._db.write(
            lambda conn: watchlist.set_validated(conn, trading_date, symbol, validated)
        )

    # ----------------------------------------------------------------------- phases

    def start_phase(self, trading_date: date, phase: str, now: datetime) -> bool:
        """Mark a phase RUNNING for the day; False when it is already DONE (skip it)."""
        trading_date = v.day(trading_date)
        phase = v.text(phase, "phase", max_len=64)
        now = v.instant(now)
        return self._db.write(
            lambda conn: phases.start(conn, trading_date, phase, now, self.process_name)
        )

    def finish_phase(
        self,
        trading_date: date,
        phase: str,
        status: PhaseStatus | str,
        *,
        now: datetime,
        detail: str | None = None,
    ) -> PhaseRun:
        """Record how a phase ended: DONE, FAILED or SKIPPED."""
        trading_date = v.day(trading_date)
        phase = v.text(phase, "phase", max_len=64)
        final = v.member(status, PhaseStatus, "status")
        if final is PhaseStatus.RUNNING:
            raise ValueError("status='RUNNING' is not allowed: one of 'DONE', 'FAILED', 'SKIPPED'")
        now = v.instant(now)
        detail = v.optional_text(detail, "detail")
        return self._db.write(
            lambda conn: phases.finish(
                conn, trading_date, phase, final, now=now, detail=detail, actor=self.process_name
            )
        )

    def phase_runs(self, trading_date: date) -> list[PhaseRun]:
        """Return the day's phase runs."""
        trading_date = v.day(trading_date)
        return self._db.read(lambda conn: phases.listing(conn, trading_date))


def _reentry(reason: ExitReason, requested: bool | None) -> bool:
    """Return the re-entry flag of a close; a forbidding exit cannot allow re-entry."""
    forbidding = reason in REENTRY_FORBIDDING_EXITS
    if requested is None:
        return not forbidding
    v.flag(requested, "reentry_allowed")
    if requested and forbidding:
        raise ValueError(
            f"reentry_allowed=True is not allowed with reason={reason.value!r}: "
            "target/daily_target/loss_limit/manual/eod exits forbid re-entry that day"
        )
    return requested


def _detail_dict(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    v.detail(detail)  # proves it is JSON-serialisable
    return dict(detail or {})


def _watchlist_row(index: int, row: WatchlistItem) -> dict[str, Any]:
    if not isinstance(row, WatchlistItem):
        raise ValueError(f"rows[{index}]={row!r} is not allowed: a WatchlistItem")
    field = f"rows[{index}]"
    return {
        "symbol": v.symbol(row.symbol, f"{field}.symbol"),
        "rank": v.count(row.rank, f"{field}.rank"),
        "score": v.money(row.score, f"{field}.score"),
        "reason": v.optional_text(row.reason, f"{field}.reason") or "",
        "source": v.member(row.source, WatchlistSource, f"{field}.source").value,
        "gap_pct": None if row.gap_pct is None else v.money(row.gap_pct, f"{field}.gap_pct"),
        "validated": v.flag(row.validated, f"{field}.validated"),
        "extra": v.detail(row.extra, f"{field}.extra"),
    }
