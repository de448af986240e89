"""What the exit manager publishes in its ``processes`` row for the status display.

Pure: built from the book, the marks, the exit orders and the day. The supervisor's
status shows unrealized P&L from ``marks``; ``price_sources`` tells a person which
positions are watched on the portfolio price because no live quote streams for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from exit_manager.book import Book
from exit_manager.lifecycle import ExitOrder
from exit_manager.marks import Mark, MarkSource
from exit_manager.session import TradingDay
from shared_state import ExitReason


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def market_state(day: TradingDay) -> str:
    """Return 'open', 'closed' (after the close or no session) or 'pre-open'."""
    if day.is_open:
        return "open"
    return "closed" if day.after_close else "pre-open"


def status_detail(
    *,
    day: TradingDay,
    connected: bool,
    book: Book,
    marks: Callable[[str], Mark | None],
    exits: Sequence[ExitOrder],
    liquidation: ExitReason | None,
    daily_pnl_pct: float | None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Return the JSON-able status of the exit manager."""
    positions, prices, sources = [], {}, {}
    for row in book.rows():
        mark = marks(row.symbol)
        if mark is not None:
            prices[row.symbol] = _round(mark.price)
            sources[row.symbol] = mark.source.value
        unrealized = None
        if mark is not None and row.entry_price is not None:
            unrealized = (mark.price - row.entry_price) * row.quantity
        positions.append(
            {
                "symbol": row.symbol,
                "state": row.state.value,
                "quantity": row.quantity,
                "entry": _round(row.entry_price),
                "target": _round(row.target_price),
                "stop": _round(row.stop_price),
                "source": row.source,
                "unrealized": _round(unrealized),
            }
        )
    fallback = sorted(s for s, src in sources.items() if src != MarkSource.QUOTE.value)
    return {
        "broker_connected": connected,
        "market": market_state(day),
        "early_close": day.early_close,
        "marks": prices,
        "price_sources": sources,
        "portfolio_price_fallback": fallback,
        "positions": positions,
        "exits": [
            {
                "symbol": o.symbol,
                "order_ref": o.order_ref,
                "stage": o.stage.value,
                "step": o.step,
                "reason": o.reason.value,
                "limit": _round(o.limit),
                "age_s": round(o.age(), 1),
            }
            for o in exits
        ],
        "liquidation": liquidation.value if liquidation else None,
        "daily_pnl_pct": _round(daily_pnl_pct),
        "notes": list(notes),
        "as_of": day.now.isoformat(timespec="seconds"),
    }
