"""Per trading date: starting capital, realized P&L, trades, daily target, halt."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.dialects.sqlite import insert

from shared_state import events, prepared
from shared_state.models import DailyState
from shared_state.schema import daily_state

_GET = select(daily_state).where(daily_state.c.trading_date == bindparam("d"))

_ENSURE = insert(daily_state).on_conflict_do_nothing(index_elements=["trading_date"])

# realized P&L and trade count move only through this statement, in the same
# transaction as the close (or partial exit) that realised them.
_ADD = insert(daily_state).values(
    trading_date=bindparam("d"), realized_pnl=bindparam("pnl"), trades_count=bindparam("trades")
)
_ADD = _ADD.on_conflict_do_update(
    index_elements=["trading_date"],
    set_={
        "realized_pnl": daily_state.c.realized_pnl + _ADD.excluded.realized_pnl,
        "trades_count": daily_state.c.trades_count + _ADD.excluded.trades_count,
    },
)


def _daily(row: Row[Any]) -> DailyState:
    return DailyState(
        trading_date=row.trading_date,
        starting_capital=row.starting_capital,
        realized_pnl=row.realized_pnl,
        trades_count=row.trades_count,
        daily_target_reached=bool(row.daily_target_reached),
        halted=bool(row.halted),
        halt_reason=row.halt_reason,
    )


def get(conn: Connection, trading_date: date) -> DailyState | None:
    """Return the day's row, or ``None`` before anything happened that day."""
    row = prepared.execute(conn, _GET, {"d": trading_date}).first()
    return None if row is None else _daily(row)


def ensure(conn: Connection, trading_date: date, starting_capital: float | None) -> DailyState:
    """Create the day's row if missing; fill in the starting capital if not yet known."""
    conn.execute(_ENSURE, {"trading_date": trading_date, "starting_capital": starting_capital})
    if starting_capital is not None:
        conn.execute(
            daily_state.update()
            .where(daily_state.c.trading_date == trading_date)
            .where(daily_state.c.starting_capital.is_(None))
            .values(starting_capital=starting_capital)
        )
    result = get(conn, trading_date)
    assert result is not None
    return result


def add_realized(conn: Connection, trading_date: date, pnl: float, trades: int) -> None:
    """Add realized P&L (and closed round trips) to the day, creating its row if needed."""
    prepared.execute(conn, _ADD, {"d": trading_date, "pnl": pnl, "trades": trades})


def set_halted(
    conn: Connection,
    trading_date: date,
    halted: bool,
    reason: str | None,
    now: datetime,
    actor: str,
) -> DailyState:
    """Halt or resume entries for the day; record an event when it changes."""
    before = ensure(conn, trading_date, None)
    if before.halted == halted and (not halted or before.halt_reason == reason):
        return before
    conn.execute(
        daily_state.update()
        .where(daily_state.c.trading_date == trading_date)
        .values(halted=halted, halt_reason=reason if halted else None)
    )
    detail = {"trading_date": trading_date, "reason": reason, "from": before.halted, "to": halted}
    events.insert(
        conn, now=now, process=actor, kind="halted" if halted else "resumed", detail=detail
    )
    return ensure(conn, trading_date, None)


def mark_target_reached(conn: Connection, trading_date: date, now: datetime, actor: str) -> bool:
    """Record that the daily target was reached; return False if it already was."""
    before = ensure(conn, trading_date, None)
    if before.daily_target_reached:
        return False
    conn.execute(
        daily_state.update()
        .where(daily_state.c.trading_date == trading_date)
        .values(daily_target_reached=True)
    )
    detail = {"trading_date": trading_date, "realized_pnl": before.realized_pnl}
    events.insert(conn, now=now, process=actor, kind="daily_target_reached", detail=detail)
    return True
