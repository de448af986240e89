"""Status check: what the trading system is doing, or what it left behind.

    uv run scripts/status.py              # readable table
    uv run scripts/status.py --json       # machine-readable, schema below
    uv run scripts/status.py --date 2025-11-26 --db data/trading_state.db

Works while the supervisor runs (it only reads the database, which WAL allows at any
time) and after it stopped. Exit code: 0 nothing needs attention; 1 something does
(the ``errors`` list is not empty: a FATAL process, a stale heartbeat, processes left
marked running by a supervisor that is gone, a failed phase, an active alert); 2 no
database yet, or bad settings.

JSON schema (version 1; docs/status.md has every field)::

    {
      "schema": 1,
      "generated_at": ISO-8601 instant (trading clock),
      "trading_date": "YYYY-MM-DD",
      "mode": "sim" | "ibkr",
      "supervisor": {"running": bool, "pid": int|null, "started_at": str|null},
      "processes": [{"name", "state", "pid", "since", "restarts", "ready",
                     "last_heartbeat", "heartbeat_age_s", "heartbeat_stale",
                     "last_error", "note"}],
      "broker": {"mode", "host", "port", "reachable": bool|null, "detail"},
      "daily_state": {"trading_date", "starting_capital", "realized_pnl",
                      "unrealized_pnl", "total_pnl", "pnl_pct", "target_pct",
                      "target_progress_pct", "trades_count", "daily_target_reached",
                      "halted", "halt_reason"},
      "active_positions": [{"symbol", "state", "quantity", "entry_price", "last_price",
                            "unrealized_pnl", "target_price", "stop_price",
                            "is_recovery", "source", "opened_at"}],
      "closed_today": [{"symbol", "quantity", "entry_price", "exit_price", "pnl",
                        "exit_reason", "reentry_allowed", "is_recovery", "closed_at"}],
      "watchlist": [{"rank", "symbol", "score", "source", "gap_pct", "validated",
                     "reason"}],
      "phases": [{"phase", "time", "status", "started_at", "ended_at", "detail"}],
      "errors": [{"kind": "process_fatal" | "heartbeat_stale" | "supervisor_gone"
                          | "phase_failed" | "alert", "process": str|null,
                  "message": str}]
    }
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.settings import SettingsError, load_settings  # noqa: E402
from shared_state import Store, StoreError  # noqa: E402
from supervision.lock import holder, lock_path_for  # noqa: E402
from supervision.sim_folder import current_db_path  # noqa: E402
from supervision.status import SupervisorRow, build_snapshot, render, to_json  # noqa: E402

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_NO_DATA = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (schema: docs/status.md)")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument(
        "--db", type=Path, help="database file (default: DB_PATH; sim: data/sim/<date>/)"
    )
    parser.add_argument("--date", type=date.fromisoformat, help="trading date (YYYY-MM-DD)")
    parser.add_argument("--no-probe", action="store_true", help="do not test the broker's API port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    # BROKER=sim without DB_PATH: the current (or last) simulated day's data/sim/<date>/.
    db = args.db or current_db_path(settings, os.environ, args.env_file)
    if not db.exists():
        print(f"No database at {db}: the system has not run yet.", file=sys.stderr)
        return EXIT_NO_DATA
    owner = holder(lock_path_for(db))
    supervisor = SupervisorRow(
        running=owner is not None,
        pid=owner.pid if owner else None,
        started_at=owner.started_at if owner else None,
    )
    try:
        store = Store(db, create=False, process="status")
    except StoreError as exc:
        print(f"Cannot read {db}: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    try:
        snapshot = build_snapshot(
            store,
            settings,
            trading_date=args.date,
            supervisor=supervisor,
            probe_broker=not args.no_probe,
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps(to_json(snapshot), indent=2))
    else:
        print(render(snapshot))
    return EXIT_ATTENTION if snapshot.needs_attention else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
