"""System benchmark of the supervisor: restart latency, and a whole virtual day.

    uv run python bench/system_bench.py [--kills 10] [--children real|standin]
                                        [--profile production|fast]

1. **Killed child back to RUNNING** (target p99 <= 5 s): the bench SIGKILLs a RUNNING
   exit manager or day trader, alternately, and times how long until the store shows
   it RUNNING again with a new pid (detection + backoff + spawn + connect/sync until
   ready + startsecs). ``--children real`` (the default once they are built) runs the
   real simulator, exit manager and day trader; ``standin`` the stand-ins of
   ``tests/supervision/``. ``--profile production`` (default) uses the real table's
   timings (``supervision/children.py``: first backoff 0.5 s, startsecs 1 s);
   ``fast`` the test table's (stand-ins only). Each kill is measured as an isolated
   crash: the flapping window is shortened to 0.5 s, otherwise repeated kills are a
   crash loop by design (growing backoff, then FATAL for the day trader).
2. **A complete virtual day at maximum speed** (target <= 90 s): ``supervisor.py
   --speed S`` with the real children, from the supervisor's start (warm-up included:
   the virtual clock holds at 06:50 while the children start) to the post-close report
   and the stop, for each S of ``--day-speeds`` (default 5000, the maximum SIM_SPEED,
   then 2000, 1000 and 500), with what the day did: phases DONE (and any SKIPPED), round
   trips. The phase jobs themselves take 1.5-3.5 real seconds each (a Python process,
   its imports, a broker connection), so above about 1000x the five pre-market phases
   need more market time than 06:55-16:00 and the later ones are skipped "started after
   the close"; the summary line names the fastest speed at which every phase was DONE.
   The stand-ins' figure (the supervisor's own overhead) is printed too. Without the real
   children: "not measured yet".
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tests" / "supervision"
for folder in (ROOT, STANDINS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import standin_table  # noqa: E402

from config.settings import load_settings  # noqa: E402
from shared_state import PhaseStatus, ProcessState, Store  # noqa: E402
from supervision import children  # noqa: E402
from supervision.children import ChildSpec, ChildTable  # noqa: E402

SIM_DATE = "2025-11-26"
ISOLATED_WINDOW_S = 0.5
KILLED = ("exit_manager", "day_trader")


def _isolated(spec: ChildSpec, timings: ChildSpec) -> ChildSpec:
    """Return ``spec`` with the timings of ``timings`` and a tiny flapping window."""
    restart = dataclasses.replace(
        timings.restart, flap_window_s=ISOLATED_WINDOW_S, flap_crashes=1000
    )
    return dataclasses.replace(spec, start=timings.start, restart=restart)


# The tables the supervisor loads for the restart measurement (``--children-table``).
REAL_TABLE = ChildTable(
    children=tuple(
        _isolated(spec, spec) if spec.name in KILLED else spec for spec in children.TABLE.children
    ),
    phase_jobs=children.TABLE.phase_jobs,
)
PRODUCTION_TABLE = ChildTable(
    children=(
        standin_table.SIMULATOR,
        _isolated(standin_table.EXIT_MANAGER, children.EXIT_MANAGER),
        _isolated(standin_table.DAY_TRADER, children.DAY_TRADER),
    ),
    phase_jobs=standin_table.PHASE_JOBS,
)
FAST_TABLE = ChildTable(
    children=(
        standin_table.SIMULATOR,
        _isolated(standin_table.EXIT_MANAGER, standin_table.EXIT_MANAGER),
        _isolated(standin_table.DAY_TRADER, standin_table.DAY_TRADER),
    ),
    phase_jobs=standin_table.PHASE_JOBS,
)


def _free_port_pair() -> int:
    """Return a port P with P and P + 1 (the simulator's control port) free."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def _env(tmp: Path, speed: str) -> dict[str, str]:
    (tmp / "standin").mkdir(exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if k != "TRADING_CLOCK"},
        "BROKER": "sim",
        "SIM_DATE": SIM_DATE,
        "SIM_SPEED": speed,
        "DB_PATH": str(tmp / "data" / "trading_state.db"),
        "LOG_DIR": str(tmp / "logs"),
        "REPORTS_DIR": str(tmp / "reports"),
        "SPANS_DB_PATH": str(tmp / "data" / "spans.db"),
        "STATUS_INTERVAL_MIN": "60",
        "SIM_PORT": str(_free_port_pair()),
        "STANDIN_DIR": str(tmp / "standin"),
    }


def _start(tmp: Path, speed: str, table: str | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(ROOT / "supervisor.py"), "--env-file", str(tmp / "none")]
    if table:
        argv += ["--children-table", table]
    log = (tmp / "supervisor.out").open("wb")
    proc = subprocess.Popen(
        argv, cwd=tmp, env=_env(tmp, speed), stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    return proc


def _wait_running(store: Store, name: str, not_pid: int | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.process(name)
        if row and row.state is ProcessState.RUNNING and row.pid and row.pid != not_pid:
            return row.pid
        time.sleep(0.02)
    raise TimeoutError(f"{name} not RUNNING within {timeout} s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _open_store(db: Path, timeout: float = 60.0) -> Store:
    deadline = time.monotonic() + timeout
    while not db.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return Store(db, process="bench")


def measure_restarts(kills: int, table_attribute: str) -> dict[str, list[float]]:
    """Kill RUNNING children ``kills`` times; return the seconds back to RUNNING, per child."""
    samples: dict[str, list[float]] = {name: [] for name in KILLED}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        proc = _start(tmp, "1", f"{Path(__file__).resolve()}:{table_attribute}")
        store: Store | None = None
        try:
            store = _open_store(tmp / "data" / "trading_state.db")
            pids = {name: _wait_running(store, name, None, 120) for name in KILLED}
            for index in range(kills):
                name = KILLED[index % 2]
                os.kill(pids[name], signal.SIGKILL)
                killed_at = time.monotonic()
                pids[name] = _wait_running(store, name, pids[name], 60)
                samples[name].append(time.monotonic() - killed_at)
                time.sleep(ISOLATED_WINDOW_S + 0.1)  # the next kill is an isolated crash
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            if store is not None:
                store.close()
    return samples


@dataclasses.dataclass(frozen=True)
class DayRun:
    speed: str
    wall_s: float
    phases_done: int
    phases: int
    skipped: tuple[str, ...]
    round_trips: int
    reasons: str

    @property
    def all_done(self) -> bool:
        return self.phases_done == self.phases > 0

    def line(self) -> str:
        skipped = f", SKIPPED {', '.join(self.skipped)}" if self.skipped else ""
        return (
            f"SIM_SPEED={self.speed}: {self.wall_s:.1f} s wall; phases DONE "
            f"{self.phases_done}/{self.phases}{skipped}; round trips {self.round_trips} "
            f"({self.reasons})"
        )


def measure_day(table: str | None, speed: str) -> DayRun:
    """Run a whole virtual day at ``speed``; return its wall time and what it did."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        started = time.monotonic()
        proc = _start(tmp, speed, table)
        code = proc.wait(timeout=600)
        wall = time.monotonic() - started
        if code != 0:
            raise RuntimeError(f"supervisor exited {code}: {(tmp / 'supervisor.out').read_text()}")
        store = Store(tmp / "data" / "trading_state.db", process="bench")
        try:
            day = date.fromisoformat(SIM_DATE)
            runs = store.phase_runs(day)
            closed = store.closed_today(day)
        finally:
            store.close()
        done = sum(1 for r in runs if r.status is PhaseStatus.DONE)
        skipped = tuple(r.phase for r in runs if r.status is PhaseStatus.SKIPPED)
        reasons = ", ".join(sorted({c.exit_reason.value for c in closed})) or "none"
        return DayRun(speed, wall, done, len(runs), skipped, len(closed), reasons)


def _real_children_built() -> bool:
    settings = load_settings(environ={"BROKER": "sim"}, env_file=None)
    return not children.TABLE.missing(settings)


def _print_samples(samples: dict[str, list[float]], label: str) -> None:
    every = [s for values in samples.values() for s in values]
    print(f"killed RUNNING child back to RUNNING ({label}, {len(every)} kills):")
    for name, values in [*samples.items(), ("all", every)]:
        if values:
            print(
                f"  {name:<13} n={len(values):<3} p50={_percentile(values, 0.5):.2f} s  "
                f"p99={_percentile(values, 0.99):.2f} s  max={max(values):.2f} s"
            )
    verdict = "met" if every and _percentile(every, 0.99) <= 5.0 else "NOT met"
    print(f"  target p99 <= 5 s: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs (alternating children)")
    parser.add_argument("--children", choices=("real", "standin"), help="default: real if built")
    parser.add_argument("--profile", choices=("production", "fast"), default="production")
    parser.add_argument(
        "--day-speeds", default="5000,2000,1000,500", help="SIM_SPEEDs of the day runs"
    )
    args = parser.parse_args()
    built = _real_children_built()
    which = args.children or ("real" if built else "standin")

    if which == "real":
        _print_samples(measure_restarts(args.kills, "REAL_TABLE"), "real children")
    else:
        attribute = "PRODUCTION_TABLE" if args.profile == "production" else "FAST_TABLE"
        label = f"stand-in children, {args.profile} timings"
        _print_samples(measure_restarts(args.kills, attribute), label)

    speeds = [s.strip() for s in args.day_speeds.split(",") if s.strip()]
    print("complete virtual day, real children (target <= 90 s wall):")
    runs = []
    for speed in speeds:
        if not built:
            print(f"  SIM_SPEED={speed}: not measured yet: needs exit manager and day trader")
            continue
        runs.append(measure_day(None, speed))
        print(f"  {runs[-1].line()}")
    complete = [r for r in runs if r.all_done]
    if complete:
        best = max(complete, key=lambda r: float(r.speed))
        verdict = "met" if best.wall_s <= 90.0 else "NOT met"
        print(
            f"  fastest with every phase DONE: {best.speed}x in {best.wall_s:.1f} s "
            f"(target <= 90 s: {verdict})"
        )
    elif runs:
        print("  no measured speed ran every phase: try lower --day-speeds")
    standin = measure_day(str(STANDINS / "standin_table.py"), max(speeds, key=float))
    print(f"  stand-in children: {standin.wall_s:.1f} s wall (the supervisor's own overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
