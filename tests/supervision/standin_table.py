"""The children table with stand-ins and fast timings, for tests and the benchmark.

Used as ``supervisor.py --children-table tests/supervision/standin_table.py``.
"""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from market.calendar import Phase
from supervision.children import ChildSpec, ChildTable, LaunchContext, PhaseJob, ReadyBy
from supervision.policy import RestartPolicy, StartRule

HERE = Path(__file__).resolve().parent

STARTSECS = 0.3
STOP_DEADLINE_S = 2.0


def _sim_args(ctx: LaunchContext) -> tuple[str, ...]:
    return ("--port", str(ctx.settings.sim_port))


def _sim_only(settings: Settings) -> bool:
    return settings.broker == "sim"


def _phase_args(ctx: LaunchContext, phase: Phase) -> tuple[str, ...]:
    return (phase.value, "--date", ctx.trading_date.isoformat())


SIMULATOR = ChildSpec(
    name="simulator",
    title="stand-in simulator",
    target=str(HERE / "standin_sim.py"),
    args=_sim_args,
    critical=True,
    ready_by=ReadyBy.STDOUT_LINE,
    ready_line="listening on 127.0.0.1:",
    start=StartRule(startsecs=0.1, ready_timeout_s=15.0),
    stop_deadline_s=STOP_DEADLINE_S,
    restart=RestartPolicy(0.2, 2.0, 0.8, 4, 30.0, keep_alive_while_positions=True),
    heartbeat=False,
    enabled=_sim_only,
)

EXIT_MANAGER = ChildSpec(
    name="exit_manager",
    title="exit manager",
    target=str(HERE / "standin_child.py"),
    critical=True,
    start=StartRule(startsecs=STARTSECS, ready_timeout_s=15.0),
    stop_deadline_s=STOP_DEADLINE_S,
    restart=RestartPolicy(0.2, 2.0, 0.8, 4, 30.0, keep_alive_while_positions=True),
)

DAY_TRADER = ChildSpec(
    name="day_trader",
    title="day trader",
    target=str(HERE / "standin_child.py"),
    start=StartRule(startsecs=STARTSECS, ready_timeout_s=15.0),
    stop_deadline_s=STOP_DEADLINE_S,
    restart=RestartPolicy(0.2, 2.0, 0.8, 3, 30.0),
)

JOB_PHASES = (
    Phase.UNIVERSE,
    Phase.DATA,
    Phase.WATCHLIST,
    Phase.VALIDATE,
    Phase.PREMARKET,
    Phase.POST_CLOSE,
)

PHASE_JOBS = tuple(
    PhaseJob(p, str(HERE / "standin_phase.py"), _phase_args, deadline_s=20.0) for p in JOB_PHASES
)

TABLE = ChildTable(children=(SIMULATOR, EXIT_MANAGER, DAY_TRADER), phase_jobs=PHASE_JOBS)

#: For the benchmark: a flapping window so short that every kill is the first crash in
#: it (the restart latency of an isolated crash, not of a crash loop).
BENCH_TABLE = ChildTable(
    children=(
        SIMULATOR,
        ChildSpec(
            name="exit_manager",
            title="exit manager",
            target=str(HERE / "standin_child.py"),
            critical=True,
            start=StartRule(startsecs=STARTSECS, ready_timeout_s=15.0),
            stop_deadline_s=STOP_DEADLINE_S,
            restart=RestartPolicy(0.2, 2.0, 0.8, 1000, 0.5, keep_alive_while_positions=True),
        ),
    ),
    phase_jobs=PHASE_JOBS,
)
