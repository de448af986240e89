"""The frame around every phase: once per date, the timeout, a stop request, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

from phase_fixtures import DAY, context, settings_for

from market.clock import VirtualClock
from phases.runner import (
    EXIT_FAILED,
    EXIT_OK,
    PhaseBody,
    PhaseContext,
    PhaseError,
    PhaseOutcome,
    PhaseResult,
    run_phase,
)
from shared_state import Event, PhaseRun, PhaseStatus, Store

CLOCK = VirtualClock(datetime.fromisoformat("2025-11-26T07:00:00-05:00"), 1.0)


def _run(
    tmp: Path,
    body: PhaseBody,
    day: date = DAY,
    stop: Callable[[], Awaitable[str]] | None = None,
    timeout_s: float = 120.0,
) -> tuple[PhaseOutcome, list[PhaseRun], list[Event]]:
    settings = replace(settings_for(tmp), phase_timeout_s=timeout_s)
    store = Store(settings.db_path, process="test")
    ctx = context("probe", settings, CLOCK, store, day)
    try:
        outcome = asyncio.run(run_phase(ctx, body, stop=stop))
    finally:
        ctx.data.close()
    runs = store.phase_runs(day)
    events = store.events(kind="phase_result")
    store.close()
    return outcome, runs, events


async def _done(ctx: PhaseContext) -> PhaseResult:
    return PhaseResult("probed 3 things", {"things": 3})


async def _forever(ctx: PhaseContext) -> PhaseResult:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


def test_a_finished_phase_is_done_with_its_summary_and_an_event(tmp_path: Path) -> None:
    outcome, (row,), (event,) = _run(tmp_path, _done)

    assert (outcome.status, outcome.exit_code) == ("done", EXIT_OK)
    assert row.status is PhaseStatus.DONE and (row.detail or "").startswith("probed 3 things (")
    assert event.detail["things"] == 3 and event.detail["phase"] == "probe"


def test_a_run_left_running_by_a_crash_runs_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", process="test")
    assert store.start_phase(DAY, "probe", CLOCK.now())  # the crashed run
    store.close()

    outcome, (row,), _ = _run(tmp_path, _done)

    assert outcome.status == "done" and row.status is PhaseStatus.DONE


def test_a_phase_past_its_timeout_fails_with_the_reason(tmp_path: Path) -> None:
    outcome, (row,), events = _run(tmp_path, _forever, timeout_s=0.2)

    assert (outcome.status, outcome.exit_code) == ("failed", EXIT_FAILED)
    assert row.status is PhaseStatus.FAILED
    assert row.detail == "timed out after 0.2 s (PHASE_TIMEOUT_S)"
    assert events == []


def test_a_stop_request_interrupts_the_phase_and_records_it(tmp_path: Path) -> None:
    async def sigterm() -> str:
        await asyncio.sleep(0.1)
        return "SIGTERM"

    outcome, (row,), _ = _run(tmp_path, _forever, stop=sigterm)

    assert outcome.exit_code == EXIT_FAILED
    assert row.status is PhaseStatus.FAILED and row.detail == "interrupted: SIGTERM"


def test_a_phase_error_fails_with_its_message(tmp_path: Path) -> None:
    async def refuse(ctx: PhaseContext) -> PhaseResult:
        raise PhaseError("no candidate for 2025-11-26")

    outcome, (row,), _ = _run(tmp_path, refuse)

    assert outcome.exit_code == EXIT_FAILED and row.detail == "no candidate for 2025-11-26"


def test_a_holiday_is_skipped_without_running_the_phase(tmp_path: Path) -> None:
    outcome, (row,), _ = _run(tmp_path, _forever, day=date(2025, 11, 27))  # Thanksgiving

    assert (outcome.status, outcome.exit_code) == ("skipped", EXIT_OK)
    assert row.status is PhaseStatus.SKIPPED and "not a trading day" in (row.detail or "")
