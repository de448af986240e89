"""The audit trail: every decision, order, fill and state change, in commit order."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from shared_state import prepared
from shared_state.models import Event
from shared_state.schema import events

_INSERT = events.insert()


def to_json(detail: dict[str, Any]) -> str:
    """Return the JSON text of a detail the store builds itself (dates become ISO text)."""
    return json.dumps(detail, sort_keys=True, default=str)


def insert(
    conn: Connection,
    *,
    now: datetime,
    process: str,
    kind: str,
    symbol: str | None = None,
    detail: dict[str, Any] | str | None = None,
) -> int:
    """Append one event in the caller's transaction and return its id."""
    text = detail if isinstance(detail, str) else to_json(detail or {})
    params = {"time": now, "process": process, "kind": kind, "symbol": symbol, "detail": text}
    result = prepared.execute(conn, _INSERT, params)
    return int(result.lastrowid)


def _event(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        time=row.time,
        process=row.process,
        kind=row.kind,
        symbol=row.symbol,
        detail=json.loads(row.detail),
    )


def since(
    conn: Connection,
    since_id: int,
    limit: int,
    *,
    kind: str | None = None,
    symbol: str | None = None,
) -> list[Event]:
    """Return up to ``limit`` events with id > ``since_id``, oldest first."""
    query = select(events).where(events.c.id > since_id)
    if kind is not None:
        query = query.where(events.c.kind == kind)
    if symbol is not None:
        query = query.where(events.c.symbol == symbol)
    rows = conn.execute(query.order_by(events.c.id).limit(limit))
    return [_event(row) for row in rows]
