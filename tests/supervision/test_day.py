"""The day: holiday exit, late start, a whole virtual day, components not built yet."""

from __future__ import annotations

import re
import signal
import time
from datetime import UTC, date, datetime

from supervision_harness import SIM_DATE, Harness

from shared_state import PhaseStatus, ProcessState

ALL_PHASES = [
    "universe", "data", "watchlist", "validate", "premarket",
    "open", "eod_cutoff", "close", "post_close",
]  # fmt: skip
JOB_PHASES = ["universe", "data", "watchlist", "validate", "premarket", "post_close"]


def _phase_runs(h: Harness) -> list[tuple[str, str, str]]:
    """Return (phase, ET clock time, date) of each stand-in phase job, in run order."""
    rows = []
    for name, event, _pid, _at, extra in h.journal():
        if name == "phases" and event == "run":
            phase, clock_time, day = extra.split("@")
            rows.append((phase, clock_time, day))
    return rows


def test_holiday_says_so_and_exits_0_without_starting_anything(harness: Harness) -> None:
    proc = harness.start("--date", "2025-12-25")
    assert harness.wait_exit(proc, 20) == 0
    out = harness.output()
    assert "2025-12-25 (Thursday) is not an NYSE trading day" in out
    assert "Traceback" not in out
    assert not harness.db.exists() and harness.journal() == []


def test_late_start_runs_missed_phases_in_order_at_once_but_not_those_done(
    harness: Harness,
) -> None:
    day = date.fromisoformat(SIM_DATE)
    earlier = datetime(2025, 11, 26, 12, 0, tzinfo=UTC)
    harness.store.start_phase(day, "universe", earlier)  # done by an earlier run today
    harness.store.finish_phase(day, "universe", PhaseStatus.DONE, now=earlier)

    proc = harness.start("--start-at", "09:45")
    harness.wait_for(
        lambda: (
            {r.phase for r in harness.store.phase_runs(day) if r.status is PhaseStatus.DONE}
            >= {"universe", "data", "watchlist", "validate", "premarket", "open"}
        ),
        30,
        "the missed phases DONE",
    )
    runs = _phase_runs(harness)
    assert [r[0] for r in runs] == ["data", "watchlist", "validate", "premarket"]
    assert all(r[1] >= "09:45:00" and r[2] == SIM_DATE for r in runs)
    details = {r.phase: r.detail for r in harness.store.phase_runs(day)}
    assert details["data"] == "stand-in summary"  # the job's own record is kept
    assert "eod_cutoff" not in details  # not due yet
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 20) == 0


def test_failed_phases_raise_alerts_and_the_next_phases_still_run(harness: Harness) -> None:
    day = date.fromisoformat(SIM_DATE)
    harness.behave("phases", fail=["watchlist"], crash=["validate"])
    proc = harness.start("--start-at", "09:45")
    harness.wait_for(
        lambda: (
            {r.phase: r.status for r in harness.store.phase_runs(day)}.get("open")
            is PhaseStatus.DONE
        ),
        30,
        "the open phase",
    )
    runs = {r.phase: r for r in harness.store.phase_runs(day)}
    assert runs["watchlist"].status is PhaseStatus.FAILED
    assert runs["watchlist"].detail == "stand-in failure"  # recorded by the job itself
    assert runs["validate"].status is PhaseStatus.FAILED
    assert runs["validate"].detail.startswith("exit code 4")  # recorded by the supervisor
    assert runs["premarket"].status is PhaseStatus.DONE
    alerts = [e.detail["message"] for e in harness.events("alert")]
    assert any("phase watchlist failed: stand-in failure" in m for m in alerts)
    assert any("phase validate failed: exit code 4" in m for m in alerts)
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 20) == 0


def test_phase_failed_by_the_supervisor_keeps_the_jobs_own_detail_with_the_exit_code(
    harness: Harness,
) -> None:
    day = date.fromisoformat(SIM_DATE)
    harness.behave("phases", crash_after_done=["data"])
    proc = harness.start("--start-at", "09:45")
    harness.wait_for(
        lambda: {r.phase: r.status for r in harness.store.phase_runs(day)}.get("open"),
        30,
        "the open phase",
    )
    data = next(r for r in harness.store.phase_runs(day) if r.phase == "data")
    assert data.status is PhaseStatus.FAILED  # exit 4: not trusted as DONE
    assert data.detail.startswith("stand-in summary (exit code 4 after "), data.detail
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 20) == 0


def test_a_whole_virtual_day_at_top_speed_runs_every_phase_and_exits_0(harness: Harness) -> None:
    started = time.monotonic()
    # The warm-up has its own test below; without it this day is over in seconds.
    proc = harness.start("--speed", "5000", "--warm-up", "0")
    assert harness.wait_exit(proc, 60) == 0
    wall = time.monotonic() - started

    runs = harness.store.phase_runs(date.fromisoformat(SIM_DATE))
    assert [r.phase for r in runs] == ALL_PHASES
    assert all(r.status is PhaseStatus.DONE for r in runs)
    assert [r[0] for r in _phase_runs(harness)] == JOB_PHASES
    stops = {n: at for n, event, _pid, at, _ in harness.journal() if event == "stop"}
    assert stops["day_trader"] < stops["exit_manager"] < stops["simulator"]
    for name in ("simulator", "exit_manager", "day_trader", "supervisor"):
        assert harness.state(name) is ProcessState.STOPPED
    assert harness.alive_pids() == []
    assert "the trading day is complete" in harness.output()
    assert wall < 45


def test_warm_up_holds_the_clock_until_the_children_run_so_the_first_phase_is_on_time(
    harness: Harness,
) -> None:
    # 300x: the universe phase (06:55) is 1 real second after the clock starts, and a
    # late start (07:00 or after) would need 1.8 s of lag; at 5000x a 0.1 s hiccup of a
    # loaded machine was enough to fail it. The rest of the day is not this test's.
    proc = harness.start("--speed", "300", "--warm-up", "3")

    def universe_started() -> tuple[float, str] | None:
        return next(
            ((at, x) for n, e, _p, at, x in harness.journal() if n == "phases" and e == "run"),
            None,
        )

    run_at, phase = harness.wait_for(universe_started, 30, "the first phase")
    harness.wait_for(lambda: "phase universe: started" in harness.output(), 10, "its log line")
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 30) == 0, harness.output()

    ready = {name: at for name, event, _pid, at, _ in harness.journal() if event == "ready"}
    assert phase.startswith("universe@")
    assert ready["exit_manager"] < run_at and ready["day_trader"] < run_at
    # Started at its time (the job's own clock reading comes after its imports).
    assert re.search(r" 06:5\d:\d\d supervisor INFO phase universe: started", harness.output())
    assert "clock held at 06:50 for 3 s" in harness.output()


def test_component_not_built_yet_is_named_and_exit_code_is_3(harness: Harness) -> None:
    table = harness.tmp / "table.py"
    table.write_text(
        "from supervision.children import ChildSpec, ChildTable\n"
        "TABLE = ChildTable(children=(ChildSpec(name='exit_manager', title='exit manager',"
        " target='no_such_exit_manager'),))\n"
    )
    proc = harness.start(table=str(table))
    assert harness.wait_exit(proc, 20) == 3
    out = harness.output()
    assert "not built yet" in out and "exit manager (python -m no_such_exit_manager)" in out
    assert "Traceback" not in out
