"""Per trading date: the symbols the phases selected, ranked, and which are validated."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, Row, select

from shared_state.models import WatchlistItem
from shared_state.schema import watchlist
from shared_state.states import WatchlistSource


def item(row: Row[Any]) -> WatchlistItem:
    """Return the snapshot of a ``watchlist`` row."""
    return WatchlistItem(
        symbol=row.symbol,
        rank=row.rank,
        score=row.score,
        reason=row.reason,
        source=WatchlistSource(row.source),
        gap_pct=row.gap_pct,
        validated=bool(row.validated),
        extra=json.loads(row.extra),
    )


def replace(conn: Connection, trading_date: date, rows: Sequence[dict[str, Any]]) -> int:
    """Replace the day's whole watchlist with ``rows``; return how many were written."""
    conn.execute(watchlist.delete().where(watchlist.c.trading_date == trading_date))
    if rows:
        conn.execute(watchlist.insert(), [{"trading_date": trading_date, **r} for r in rows])
    return len(rows)


def listing(conn: Connection, trading_date: date, validated_only: bool) -> list[WatchlistItem]:
    """Return the day's watchlist by rank."""
    query = select(watchlist).where(watchlist.c.trading_date == trading_date)
    if validated_only:
        query = query.where(watchlist.c.validated.is_(True))
    rows = conn.execute(query.order_by(watchlist.c.rank, watchlist.c.symbol))
    return [item(row) for row in rows]


def set_validated(conn: Connection, trading_date: date, symbol: str, validated: bool) -> bool:
    """Mark one symbol (in)valid for the day; False if it is not on the day's list."""
    result = conn.execute(
        watchlist.update()
        .where(watchlist.c.trading_date == trading_date, watchlist.c.symbol == symbol)
        .values(validated=validated)
    )
    return result.rowcount == 1
