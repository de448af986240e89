"""The local span store: OpenTelemetry spans of every process in their own SQLite file.

Spans are observability, not coordination, so they live in a file of their own (default
``data/spans.db``, setting ``SPANS_DB_PATH``) and never contend with the trading state
for its write lock. The connection recipe is the shared state's (``db.Database``: WAL,
busy timeout, one ``BEGIN IMMEDIATE`` per write), the tables are created when missing.

Times are the span's own: nanoseconds since the Unix epoch from the OpenTelemetry SDK
(real time, what a span measures), plus the ISO text of the start for people reading
the file with the ``sqlite3`` shell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)

from shared_state.db import Database

metadata = MetaData()

spans = Table(
    "spans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_id", String(16)),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("process", String(64), nullable=False),
    Column("start_ns", Integer, nullable=False),
    Column("end_ns", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("started_at", String(32), nullable=False),  # ISO UTC, for the sqlite3 shell
    Column("status", String(8), nullable=False),  # UNSET, OK, ERROR
    Column("status_message", Text),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("events", Text, nullable=False, default="[]"),
    Index("ix_spans_name_start", "name", "start_ns"),
    Index("ix_spans_trace", "trace_id"),
)


@dataclass(frozen=True)
class SpanRecord:
    """One finished span, as exported and as read back."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None
    name: str
    kind: str
    process: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[Mapping[str, Any]] = ()

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.start_ns / 1e9, tz=UTC)


def _row(record: SpanRecord) -> dict[str, Any]:
    return {
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "parent_id": record.parent_id,
        "name": record.name,
        "kind": record.kind,
        "process": record.process,
        "start_ns": record.start_ns,
        "end_ns": record.end_ns,
        "duration_ms": record.duration_ms,
        "started_at": record.started_at.isoformat(timespec="microseconds"),
        "status": record.status,
        "status_message": record.status_message,
        "attributes": json.dumps(dict(record.attributes), sort_keys=True, default=str),
        "events": json.dumps([dict(e) for e in record.events], default=str),
    }


def _record(row: Any) -> SpanRecord:
    return SpanRecord(
        trace_id=row.trace_id,
        span_id=row.span_id,
        parent_id=row.parent_id,
        name=row.name,
        kind=row.kind,
        process=row.process,
        start_ns=row.start_ns,
        end_ns=row.end_ns,
        status=row.status,
        status_message=row.status_message,
        attributes=json.loads(row.attributes),
        events=json.loads(row.events),
    )


class SpanStore:
    """The span tables of one SQLite file: append finished spans, find them again."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # No writers' gate: span exports are rare batches, never on a trading path.
        self._db = Database(self.path, busy_timeout_ms=busy_timeout_ms, write_gate=False)
        self._db.write(lambda conn: metadata.create_all(conn, checkfirst=True))

    def add(self, records: Sequence[SpanRecord]) -> int:
        """Append ``records`` in one transaction; return how many were written."""
        rows = [_row(r) for r in records]
        if not rows:
            return 0

        def work(conn: Connection) -> int:
            conn.execute(spans.insert(), rows)
            return len(rows)

        return self._db.write(work)

    def find(
        self,
        name: str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        process: str | None = None,
        limit: int = 1000,
    ) -> list[SpanRecord]:
        """Return spans (named ``name``, of ``process``) whose attributes include ``attributes``.

        Newest first. Attribute values compare as JSON values (``1`` is not ``"1"``).
        """
        query = select(spans)
        if name is not None:
            query = query.where(spans.c.name == name)
        if process is not None:
            query = query.where(spans.c.process == process)
        for key, value in (attributes or {}).items():
            query = query.where(func.json_extract(spans.c.attributes, f'$."{key}"') == value)
        query = query.order_by(spans.c.start_ns.desc(), spans.c.id.desc()).limit(limit)
        return self._db.read(lambda conn: [_record(r) for r in conn.execute(query)])

    def count(self) -> int:
        """Return how many spans the file holds."""
        query = select(func.count()).select_from(spans)
        return self._db.read(lambda conn: int(conn.execute(query).scalar_one()))

    def prune(self, before_ns: int) -> int:
        """Delete spans that started before ``before_ns``; return how many went."""
        statement = spans.delete().where(spans.c.start_ns < before_ns)
        return self._db.write(lambda conn: conn.execute(statement).rowcount)

    def close(self) -> None:
        """Close this process's connections to the file."""
        self._db.dispose()
