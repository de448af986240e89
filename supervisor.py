"""The supervisor: starts, watches and stops the trading processes for one trading day.

    uv run supervisor.py                      # one virtual day on the simulator (BROKER=sim)
    uv run supervisor.py --date 2025-11-26 --speed 500
    uv run supervisor.py --check              # validate the settings, print them, exit

Simulated days (BROKER=sim) keep their databases in data/sim/<date>/ (the bot's
trading_state.db and the simulator's account simulator.db) unless DB_PATH is set in the
environment or the settings file: a simulated day never touches the live database.
Simulating a date that already completed (its post-close phase is DONE) starts it fresh:
the old folder is moved aside to data/sim/<date>.<n> and the console says so; --resume
keeps it instead. At high speeds the virtual clock is held at its start for a warm-up
(--warm-up, default 8 s when that saves more than a market minute) while the simulator,
exit manager and day trader start, so a fast day does not lose its first market hours.

Exit codes: 0 the day ran (or a holiday: nothing to do, or stopped with Ctrl+C);
2 bad settings or arguments; 3 a component is not built yet; 4 another supervisor is
already running for the same database.

``--children-table REF`` replaces the table of managed children
(``supervision/children.py``) with another one, ``path/to/file.py`` or
``package.module``, optionally ``:ATTRIBUTE`` (default ``TABLE``). The tests use it to
run the stand-in children of ``tests/supervision/``; it is not needed in normal use.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from config.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from supervision.children import ChildTable
    from supervision.schedule import DayPlan

EXIT_OK = 0
EXIT_BAD_SETTINGS = 2
EXIT_NOT_BUILT = 3
EXIT_ALREADY_RUNNING = 4

ROOT = Path(__file__).resolve().parent


def print_settings(settings: Settings) -> None:
    """Print the effective settings, one per line, secrets masked."""
    rows = settings.display_rows()
    width = max(len(name) for name, _ in rows)
    for name, shown in rows:
        print(f"  {name:<{width}}  {shown}")


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None


def _clock_time(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time as HH:MM") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 600.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 600")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="validate settings, print them, exit")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument("--date", type=_day, help="sim: trading day to simulate (YYYY-MM-DD)")
    parser.add_argument("--speed", help="sim: virtual-clock speed, market seconds per second")
    parser.add_argument(
        "--start-at",
        type=_clock_time,
        help="sim: start the virtual day at this ET time instead of 06:50 (a late start)",
    )
    parser.add_argument(
        "--warm-up",
        type=_seconds,
        metavar="SECONDS",
        help="sim: hold the virtual clock at its start this many real seconds while the "
        "processes start (default: 8 when speed x 8 s is over a market minute, else 0)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="sim: keep the date's folder data/sim/<date> even when that day already "
        "completed (default: move it aside to data/sim/<date>.<n> and start fresh)",
    )
    parser.add_argument("--children-table", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _load(args: argparse.Namespace) -> Settings:
    """Return the settings with ``--date`` / ``--speed`` applied as SIM_DATE / SIM_SPEED."""
    environ = dict(os.environ)
    if args.date is not None:
        environ["SIM_DATE"] = args.date
    if args.speed is not None:
        environ["SIM_SPEED"] = args.speed
    settings = load_settings(environ=environ, env_file=args.env_file)
    sim_only = [f for f in ("date", "speed", "start_at", "warm_up") if getattr(args, f) is not None]
    if settings.broker != "sim" and sim_only:
        flags = ", ".join("--" + f.replace("_", "-") for f in sim_only)
        raise SettingsError(
            "BROKER", repr(settings.broker), f"{flags} can only be used with BROKER=sim"
        )
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = _load(args)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.check:
        print("Settings are valid. Effective values:")
        print_settings(settings)
        return EXIT_OK
    return run(settings, args)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one trading day under the supervisor; return the exit code."""
    # Imported here so that --check stays fast and works even if these cannot load.
    from supervision import children, lock, schedule, sim_folder

    try:
        table = children.load_table(args.children_table) if args.children_table else children.TABLE
    except (ImportError, ValueError, OSError) as exc:
        print(f"error: --children-table {args.children_table}: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    missing = table.missing(settings)
    if missing:
        print("Cannot run the trading day: these components are not built yet:", file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        return EXIT_NOT_BUILT
    try:
        plan = schedule.plan_day(settings, datetime.now(UTC), args.start_at, args.warm_up)
    except schedule.NoSession as exc:
        print(str(exc))
        return EXIT_OK
    if sim_folder.uses_day_folders(settings, os.environ, args.env_file):
        settings = sim_folder.in_day_folder(
            settings, plan.trading_date, environ=os.environ, env_file=args.env_file
        )
        _fresh_start(settings, plan, args.resume)
    try:
        held, stale = lock.acquire(lock.lock_path_for(settings.db_path))
    except lock.LockHeld as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    with held:
        if stale is not None:
            print(
                f"Took over a stale lock left by pid {stale.pid} (started {stale.started_at}): "
                "that supervisor is no longer running."
            )
        return _supervise(settings, table, plan)


def _fresh_start(settings: Settings, plan: DayPlan, resume: bool) -> None:
    """Move a completed simulated day's folder aside (unless ``resume``); say which is used."""
    from supervision import sim_folder

    folder = settings.db_path.parent
    moved = None if resume else sim_folder.fresh_start(settings.db_path, plan.trading_date)
    if moved is not None:
        print(
            f"Simulated day {plan.trading_date} already completed in {folder}: moved it "
            f"aside to {moved} and starting the day fresh (--resume keeps a completed day)."
        )
    else:
        kept = " (--resume)" if resume else ""
        print(f"Simulated day {plan.trading_date}: databases in {folder}{kept}.")


def _supervise(settings: Settings, table: ChildTable, plan: DayPlan) -> int:
    from shared_state import Store
    from supervision.process import Launcher
    from supervision.supervisor import StartRefused, Supervisor
    from telemetry.logs import configure_logging
    from telemetry.tracing import setup_tracing

    configure_logging("supervisor", settings.log_dir, settings.log_level, plan.clock)
    tracing = setup_tracing("supervisor", settings, clock=plan.clock)
    store = Store(settings.db_path, process="supervisor")
    try:
        supervisor = Supervisor(
            settings,
            table,
            plan,
            store,
            Launcher(ROOT),
            base_env=os.environ,
        )
        return supervisor.run()
    except StartRefused as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    finally:
        store.close()
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())
