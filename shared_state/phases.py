"""Per trading date and phase: status, start, end, detail; a restart runs what is missing."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.dialects.sqlite import insert

from shared_state import events
from shared_state.models import PhaseRun
from shared_state.schema import phase_runs
from shared_state.states import PhaseStatus


def run(row: Row[Any]) -> PhaseRun:
    """Return the snapshot of a ``phase_runs`` row."""
    return PhaseRun(
        trading_date=row.trading_date,
        phase=row.phase,
        status=PhaseStatus(row.status),
        started_at=row.started_at,
        ended_at=row.ended_at,
        detail=row.detail,
    )


def get(conn: Connection, trading_date: date, phase: str) -> PhaseRun | None:
    """Return the run of ``phase`` on ``trading_date``, if any."""
    row = conn.execute(
        select(phase_runs).where(
            phase_runs.c.trading_date == trading_date, phase_runs.c.phase == phase
        )
    ).first()
    return None if row is None else run(row)


def start(conn: Connection, trading_date: date, phase: str, now: datetime, actor: str) -> bool:
    """Mark the phase RUNNING; False (nothing written) when it is already DONE that day.

    A RUNNING row found here was left by a run that died, so it is started again.
    """
    current = get(conn, trading_date, phase)
    if current is not None and current.status is PhaseStatus.DONE:
        return False
    row = {
        "trading_date": trading_date,
        "phase": phase,
        "status": PhaseStatus.RUNNING.value,
        "started_at": now,
        "ended_at": None,
        "detail": None,
    }
    statement = insert(phase_runs).on_conflict_do_update(
        index_elements=["trading_date", "phase"],
        set_={k: v for k, v in row.items() if k not in ("trading_date", "phase")},
    )
    conn.execute(statement, row)
    events.insert(
        conn,
        now=now,
        process=actor,
        kind="phase_started",
        detail={
            "phase": phase,
            "trading_date": trading_date,
            "from": None if current is None else current.status.value,
        },
    )
    return True


def finish(
    conn: Connection,
    trading_date: date,
    phase: str,
    status: PhaseStatus,
    *,
    now: datetime,
    detail: str | None,
    actor: str,
) -> PhaseRun:
    """Record how the phase ended (a phase skipped without starting gets a row too)."""
    row = {
        "trading_date": trading_date,
        "phase": phase,
        "status": status.value,
        "started_at": now,
        "ended_at": now,
        "detail": detail,
    }
    statement = insert(phase_runs).on_conflict_do_update(
        index_elements=["trading_date", "phase"],
        set_={"status": status.value, "ended_at": now, "detail": detail},
    )
    conn.execute(statement, row)
    events.insert(
        conn,
        now=now,
        process=actor,
        kind="phase_finished",
        detail={
            "phase": phase,
            "trading_date": trading_date,
            "status": status.value,
            "detail": detail,
        },
    )
    result = get(conn, trading_date, phase)
    assert result is not None
    return result


def listing(conn: Connection, trading_date: date) -> list[PhaseRun]:
    """Return the day's phase runs in start order."""
    query = select(phase_runs).where(phase_runs.c.trading_date == trading_date)
    return [run(row) for row in conn.execute(query.order_by(phase_runs.c.started_at))]
