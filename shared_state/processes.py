"""Managed processes: supervisord states, pid, heartbeat, readiness (design 5).

``set_state`` is the one path that changes a process's state; it records the
"from X to Y" event. The supervisor owns the lifecycle; children write ``ready`` and
heartbeats on their own row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.dialects.sqlite import insert

from shared_state import events
from shared_state.errors import NotFoundError, TransitionError
from shared_state.models import ProcessInfo
from shared_state.schema import processes
from shared_state.states import PROCESS_TRANSITIONS, RESTART_FROM, ProcessState

_GET = select(processes).where(processes.c.name == bindparam("name"))


def info(row: Row[Any]) -> ProcessInfo:
    """Return the snapshot of a ``processes`` row."""
    return ProcessInfo(
        name=row.name,
        state=ProcessState(row.state),
        pid=row.pid,
        since=row.since,
        restarts=row.restarts,
        last_heartbeat=row.last_heartbeat,
        last_error=row.last_error,
        ready=bool(row.ready),
        detail=json.loads(row.detail),
    )


def get(conn: Connection, name: str) -> ProcessInfo | None:
    """Return the process row called ``name``, if any."""
    row = conn.execute(_GET, {"name": name}).first()
    return None if row is None else info(row)


def all_processes(conn: Connection) -> list[ProcessInfo]:
    """Return every process row, by name."""
    return [info(row) for row in conn.execute(select(processes).order_by(processes.c.name))]


def _check(name: str, old: ProcessState, new: ProcessState, force: bool) -> None:
    if force or old == new or new in PROCESS_TRANSITIONS[old]:
        return
    raise TransitionError(
        f"process {name}: {old.value} -> {new.value} is not a supervisord transition "
        "(pass force=True to repair a row left by a previous supervisor)"
    )


def set_state(
    conn: Connection,
    name: str,
    state: ProcessState,
    *,
    now: datetime,
    pid: int | None,
    error: str | None,
    force: bool,
    actor: str,
) -> ProcessInfo:
    """Move ``name`` to ``state`` (creating the row) and record the transition."""
    current = get(conn, name)
    old = ProcessState.STOPPED if current is None else current.state
    _check(name, old, state, force)
    changes: dict[str, Any] = {"state": state.value}
    if current is None or old != state:
        changes["since"] = now
    if state is not ProcessState.RUNNING:
        # Readiness belongs to one run of the child: any state but RUNNING clears it.
        changes["ready"] = False
    if pid is not None:
        changes["pid"] = pid
    if error is not None:
        changes["last_error"] = error
    restarted = state is ProcessState.STARTING and old in RESTART_FROM
    if current is None:
        conn.execute(processes.insert(), {"name": name, "restarts": 0, "detail": "{}", **changes})
    else:
        if restarted:
            changes["restarts"] = current.restarts + 1
        conn.execute(processes.update().where(processes.c.name == name).values(changes))
    if current is None or old != state:
        detail = {
            "from": None if current is None else old.value,
            "to": state.value,
            "pid": pid,
            "error": error,
            "by": actor,
            "forced": force,
        }
        events.insert(conn, now=now, process=name, kind="process_state", detail=detail)
    result = get(conn, name)
    assert result is not None
    return result


def heartbeat(conn: Connection, name: str, now: datetime, pid: int | None) -> None:
    """Stamp ``last_heartbeat``; a process with no row yet (run by hand) gets one."""
    row = {
        "name": name,
        "state": ProcessState.RUNNING.value,
        "pid": pid,
        "since": now,
        "last_heartbeat": now,
        "restarts": 0,
        "ready": False,
        "detail": "{}",
    }
    changes: dict[str, Any] = {"last_heartbeat": now}
    if pid is not None:
        changes["pid"] = pid
    statement = insert(processes).on_conflict_do_update(index_elements=["name"], set_=changes)
    conn.execute(statement, row)


def set_ready(
    conn: Connection, name: str, ready: bool, *, now: datetime, detail: str | None, actor: str
) -> ProcessInfo:
    """Record that the process is (or is no longer) ready: connected and synced."""
    current = get(conn, name)
    if current is None:
        raise NotFoundError(f"process {name}: no row; the supervisor creates it at STARTING")
    changes: dict[str, Any] = {"ready": ready}
    if detail is not None:
        changes["detail"] = detail
    conn.execute(processes.update().where(processes.c.name == name).values(changes))
    if current.ready != ready:
        events.insert(
            conn,
            now=now,
            process=name,
            kind="ready" if ready else "not_ready",
            detail={"by": actor},
        )
    result = get(conn, name)
    assert result is not None
    return result
