"""Worker of the crash test: a launcher that forks writers, which the test SIGKILLs.

    python worker_crash.py DB_PATH REPORT_DIR

The launcher imports the store once (so a restart costs a fork, not an interpreter
start) but never opens the database: each forked writer opens its own. For every line
``spawn N`` on stdin the launcher forks writer N, prints ``pid <pid>``, waits for it to
die and prints ``dead <pid> <signal or -exit code>``.

A writer loops over write transactions and, after each commit returned, appends one line
to REPORT_DIR/N.log saying what it committed (``claim <order_ref>``, ``close <id>``,
``event <id>``, ``command <id>``, ...). The test kills it at a random moment and then
checks that everything reported is in the file.

REPORT_DIR/N.state holds one byte: ``W`` while the writer is inside a write unit of work
(from just before BEGIN IMMEDIATE until the commit returned), ``-`` otherwise, so the
test knows where each kill landed.
"""

from __future__ import annotations

import os
import random
import sys
import traceback
from datetime import UTC, date, datetime
from pathlib import Path

from shared_state import PositionState, Store

DAY = date(2025, 9, 2)
NOW = datetime(2025, 9, 2, 15, 0, tzinfo=UTC)
SYMBOLS = ("K0", "K1", "K2", "K3")


class Writer:
    def __init__(self, store: Store, incarnation: int, report: int) -> None:
        self.store = store
        self.incarnation = incarnation
        self.report = report
        self.serial = 0
        self.rng = random.Random(incarnation)

    def say(self, line: str) -> None:
        os.write(self.report, (line + "\n").encode())  # unbuffered: survives SIGKILL

    def ref(self) -> str:
        self.serial += 1
        return f"k{self.incarnation}-{self.serial}"

    def advance(self, symbol: str) -> None:
        """Take the symbol's position one step further, whatever state a kill left it in."""
        row = self.store.active_position(symbol)
        if row is None:
            ref = self.ref()
            result = self.store.claim_for_entry(
                symbol,
                DAY,
                now=NOW,
                order_ref=ref,
                quantity=10,
                limit_price=5.0,
                max_recovery_entries=0,
                max_trades_per_day=1_000_000,
                max_positions=10,
                owner="crash",
            )
            if result.ok:
                self.say(f"claim {ref}")
        elif row.state is PositionState.ENTRY_PENDING:
            self.store.mark_filled(
                symbol, now=NOW, entry_price=5.0, quantity=10, target_price=5.1, stop_price=4.9
            )
            self.say(f"fill {row.id}")
        elif row.state is PositionState.OPEN:
            ref = self.ref()
            if self.store.begin_exit(
                symbol, now=NOW, order_ref=ref, quantity=10, limit_price=5.05, reason="reconciled"
            ):
                self.say(f"exit {ref}")
        else:
            pnl = self.rng.randint(-300, 300) / 100.0
            closed = self.store.close_position(
                symbol,
                trading_date=DAY,
                now=NOW,
                exit_price=5.05,
                reason="reconciled",
                pnl=pnl,
                commissions=0.5,
                position_id=row.id,
            )
            if closed is not None:
                self.say(f"close {closed.id}")

    def run(self) -> None:
        while True:
            for symbol in SYMBOLS:
                self.advance(symbol)
            event = self.store.record_event("crash", "tick", now=NOW, detail={"n": self.serial})
            self.say(f"event {event}")
            if self.rng.random() < 0.3:
                self.say(f"command {self.store.enqueue_command('liquidate_all', now=NOW)}")


def _trace_write_units(store: Store, state_file: Path) -> None:
    """Mark the state file while a write unit of work runs (white-box, test only)."""
    fd = os.open(state_file, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"-", 0)
    database = store._db
    run_once = database._once

    def traced(work, write):  # type: ignore[no-untyped-def]
        if write:
            os.pwrite(fd, b"W", 0)
        result = run_once(work, write)
        if write:
            os.pwrite(fd, b"-", 0)
        return result

    database._once = traced  # type: ignore[method-assign]


def _writer(db_path: str, report_dir: str, incarnation: int) -> None:
    report = os.open(
        Path(report_dir) / f"{incarnation}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
    )
    try:
        store = Store(db_path, process=f"crash-{incarnation}", create=False)
        _trace_write_units(store, Path(report_dir) / f"{incarnation}.state")
        Writer(store, incarnation, report).run()
    except BaseException:
        traceback.print_exc()
        os._exit(3)


def main() -> None:
    db_path, report_dir = sys.argv[1:3]
    for line in sys.stdin:
        incarnation = int(line.split()[1])
        pid = os.fork()
        if pid == 0:
            _writer(db_path, report_dir, incarnation)
            os._exit(0)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"dead {pid} {code}", flush=True)


if __name__ == "__main__":
    main()
