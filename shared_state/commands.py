"""The command queue: requests from scripts and the supervisor to the daemons.

PENDING -> TAKEN (exactly one taker, atomically) -> DONE | FAILED. A taker that
restarts gives back what it had taken with ``release``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select

from shared_state import events
from shared_state.errors import NotFoundError, TransitionError
from shared_state.models import Command
from shared_state.schema import commands
from shared_state.states import CommandKind, CommandStatus

_GET = select(commands).where(commands.c.id == bindparam("cid"))


def command(row: Row[Any]) -> Command:
    """Return the snapshot of a ``commands`` row."""
    return Command(
        id=row.id,
        kind=CommandKind(row.kind),
        symbol=row.symbol,
        status=CommandStatus(row.status),
        created_at=row.created_at,
        taken_by=row.taken_by,
        taken_at=row.taken_at,
        finished_at=row.finished_at,
        result=row.result,
    )


def get(conn: Connection, command_id: int) -> Command | None:
    """Return the command with ``command_id``, if any."""
    row = conn.execute(_GET, {"cid": command_id}).first()
    return None if row is None else command(row)


def enqueue(
    conn: Connection, kind: CommandKind, symbol: str | None, now: datetime, actor: str
) -> int:
    """Queue a PENDING command and return its id."""
    row = {
        "kind": kind.value,
        "symbol": symbol,
        "status": CommandStatus.PENDING.value,
        "created_at": now,
    }
    command_id = int(conn.execute(commands.insert(), row).lastrowid)
    events.insert(
        conn,
        now=now,
        process=actor,
        kind="command_queued",
        symbol=symbol,
        detail={"id": command_id, "command": kind.value},
    )
    return command_id


def take_next(
    conn: Connection, taker: str, now: datetime, kinds: Iterable[CommandKind] | None
) -> Command | None:
    """Move the oldest PENDING command (of ``kinds``) to TAKEN by ``taker``."""
    query = select(commands.c.id).where(commands.c.status == CommandStatus.PENDING.value)
    if kinds is not None:
        query = query.where(commands.c.kind.in_([k.value for k in kinds]))
    command_id = conn.execute(query.order_by(commands.c.id).limit(1)).scalar()
    if command_id is None:
        return None
    conn.execute(
        commands.update()
        .where(commands.c.id == command_id, commands.c.status == CommandStatus.PENDING.value)
        .values(status=CommandStatus.TAKEN.value, taken_by=taker, taken_at=now)
    )
    taken = get(conn, command_id)
    assert taken is not None
    events.insert(
        conn,
        now=now,
        process=taker,
        kind="command_taken",
        symbol=taken.symbol,
        detail={"id": command_id, "command": taken.kind.value},
    )
    return taken


def finish(
    conn: Connection, command_id: int, ok: bool, result: str | None, now: datetime, actor: str
) -> Command:
    """Move a TAKEN command to DONE or FAILED with its result."""
    current = get(conn, command_id)
    if current is None:
        raise NotFoundError(f"command {command_id}: no such command")
    if current.status is not CommandStatus.TAKEN:
        raise TransitionError(f"command {command_id}: finish in status {current.status.value}")
    status = CommandStatus.DONE if ok else CommandStatus.FAILED
    conn.execute(
        commands.update()
        .where(commands.c.id == command_id)
        .values(status=status.value, result=result, finished_at=now)
    )
    events.insert(
        conn,
        now=now,
        process=actor,
        kind="command_finished",
        symbol=current.symbol,
        detail={"id": command_id, "status": status.value, "result": result},
    )
    finished = get(conn, command_id)
    assert finished is not None
    return finished


def release(conn: Connection, taker: str, now: datetime) -> int:
    """Put every command TAKEN by ``taker`` back to PENDING (the taker restarted)."""
    result = conn.execute(
        commands.update()
        .where(commands.c.status == CommandStatus.TAKEN.value, commands.c.taken_by == taker)
        .values(status=CommandStatus.PENDING.value, taken_by=None, taken_at=None)
    )
    if result.rowcount:
        events.insert(
            conn,
            now=now,
            process=taker,
            kind="commands_released",
            detail={"count": result.rowcount},
        )
    return int(result.rowcount)


def listing(
    conn: Connection, statuses: Iterable[CommandStatus] | None, limit: int
) -> list[Command]:
    """Return commands (of ``statuses``), newest first."""
    query = select(commands)
    if statuses is not None:
        query = query.where(commands.c.status.in_([s.value for s in statuses]))
    return [command(row) for row in conn.execute(query.order_by(commands.c.id.desc()).limit(limit))]
