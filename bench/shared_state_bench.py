"""Benchmark of the shared-state store: 2 writer processes + 1 reader on one WAL file.

    uv run python bench/shared_state_bench.py [--seconds 10] [--pause-ms 1.0] [--no-gate]
                                              [--dir DIR]

Each writer loops over round trips on its own symbols (claim, mark_filled, begin_exit,
close_position, each its own BEGIN IMMEDIATE transaction with synchronous=FULL) and
pauses ``--pause-ms`` between operations; the reader loops over ``active_positions()``
with the same pause. Prints p50/p99/max (ms) per operation, the store's busy
retries/errors, and two single-process baselines on the same disk: a raw sqlite3
one-row commit (same pragmas) and a bare 4 KiB append + fsync, so the disk's share of
the latency is visible. ``--no-gate`` turns the writers' gate off (SQLite's busy handler
alone), to compare. ``--dir`` puts the files on the disk to measure (default: temp dir).
Target: p99 <= 2 ms, 0 busy errors. Not a test: nothing here can fail the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared_state import Store, baseline  # noqa: E402

OPS = ("claim", "mark_filled", "begin_exit", "close", "read_all_active")
BASE_DAY = date(2030, 1, 1)
NOW = datetime(2030, 1, 1, 15, 0, tzinfo=UTC)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _timed[T](
    samples: list[float], pause_s: float, call: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    start = time.perf_counter()
    result = call(*args, **kwargs)
    samples.append((time.perf_counter() - start) * 1000.0)
    time.sleep(pause_s)
    return result


def _round_trip(
    store: Store,
    samples: dict[str, list[float]],
    symbol: str,
    cycle: int,
    writer: int,
    pause_s: float,
) -> None:
    day = BASE_DAY + timedelta(days=cycle)  # a new trading date per cycle: no refusals
    ref = f"w{writer}-{cycle}-{symbol}"
    claim = _timed(
        samples["claim"],
        pause_s,
        store.claim_for_entry,
        symbol,
        day,
        now=NOW,
        order_ref=f"{ref}-buy",
        quantity=100,
        limit_price=10.0,
        max_recovery_entries=1,
        max_trades_per_day=1000,
        max_positions=50,
        owner="bench",
    )
    assert claim.ok, claim
    _timed(
        samples["mark_filled"],
        pause_s,
        store.mark_filled,
        symbol,
        now=NOW,
        entry_price=10.0,
        quantity=100,
        target_price=10.2,
        stop_price=9.9,
    )
    ticket = _timed(
        samples["begin_exit"],
        pause_s,
        store.begin_exit,
        symbol,
        now=NOW,
        order_ref=f"{ref}-sell",
        quantity=100,
        limit_price=10.1,
        reason="target",
    )
    assert ticket is not None
    _timed(
        samples["close"],
        pause_s,
        store.close_position,
        symbol,
        trading_date=day,
        now=NOW,
        exit_price=10.1,
        reason="target",
        pnl=9.0,
        commissions=1.0,
        position_id=ticket.position_id,
    )


def run_writer(db: Path, seconds: float, pause_s: float, writer: int, gate: bool) -> dict:
    store = Store(db, process=f"bench-writer-{writer}", write_gate=gate)
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    symbols = [f"W{writer}S{i}" for i in range(3)]
    deadline = time.monotonic() + seconds
    cycle = 0
    while time.monotonic() < deadline:
        for symbol in symbols:
            _round_trip(store, samples, symbol, cycle, writer, pause_s)
        cycle += 1
    stats = store.busy_stats()
    return {"samples": samples, "retries": stats.retries, "busy_errors": stats.busy_errors}


def run_reader(db: Path, seconds: float, pause_s: float) -> dict:
    store = Store(db, process="bench-reader")
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _timed(samples["read_all_active"], pause_s, store.active_positions)
    stats = store.busy_stats()
    return {"samples": samples, "retries": stats.retries, "busy_errors": stats.busy_errors}


def raw_baseline(directory: Path, when: str, count: int = 1000) -> dict[str, list[float]]:
    """Time plain sqlite3 commits and bare fsyncs on the same disk, one process."""
    return {
        f"raw sqlite3 commit, {when}": baseline.raw_commit_ms(directory, count),
        f"raw 4K append+fsync, {when}": baseline.fsync_ms(directory, count // 2),
    }


def _spawn(role: str, db: Path, args: argparse.Namespace, writer: int = 0) -> subprocess.Popen:
    command = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--db",
        str(db),
        "--seconds",
        str(args.seconds),
        "--pause-ms",
        str(args.pause_ms),
        "--writer",
        str(writer),
        *(["--no-gate"] if args.no_gate else []),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"{name:<28}{len(ordered):>8}{_percentile(ordered, 0.5):>10.3f}"
        f"{_percentile(ordered, 0.99):>10.3f}{(ordered[-1] if ordered else 0):>10.3f}"
    )


def main_parent(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="shared_state_bench_", dir=args.dir) as tmp:
        directory = Path(tmp)
        db = directory / "bench.db"
        Store(db, process="bench").close()
        # Before and after the run: the disk's latency drifts (other work on the host).
        baselines = raw_baseline(directory, "before")
        procs = [
            _spawn("writer", db, args, 1),
            _spawn("writer", db, args, 2),
            _spawn("reader", db, args),
        ]
        reports = [json.loads(proc.communicate()[0]) for proc in procs]
        if any(proc.returncode for proc in procs):
            print("a benchmark process failed", file=sys.stderr)
            return 1
        baselines |= raw_baseline(directory, "after")
    merged: dict[str, list[float]] = {op: [] for op in OPS}
    for report in reports:
        for op in OPS:
            merged[op].extend(report["samples"][op])
    print(
        f"shared_state bench: 2 writers + 1 reader, {args.seconds:g} s, "
        f"pause {args.pause_ms:g} ms between ops, write gate {'off' if args.no_gate else 'on'}, "
        "synchronous=FULL, WAL, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'operation':<28}{'n':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for op in OPS:
        print(_row(op, merged[op]))
    for name, values in baselines.items():
        print(_row(name, values))
    retries = sum(r["retries"] for r in reports)
    errors = sum(r["busy_errors"] for r in reports)
    print(f"busy: {retries} locked retries, {errors} busy errors (StoreBusyError)")
    worst = max(_percentile(sorted(merged[op]), 0.99) for op in OPS)
    verdict = "met" if worst <= 2.0 and errors == 0 else "NOT met"
    print(f"target p99 <= 2 ms and 0 busy errors: {verdict} (worst p99 {worst:.3f} ms)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=1.0,
        help="pause of each process between operations (0 = back to back)",
    )
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="writers skip the write gate (SQLite's busy handler alone)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files")
    parser.add_argument("--role", choices=("parent", "writer", "reader"), default="parent")
    parser.add_argument("--db", type=Path)
    parser.add_argument("--writer", type=int, default=0)
    args = parser.parse_args()
    if args.role == "parent":
        return main_parent(args)
    pause = args.pause_ms / 1000.0
    if args.role == "writer":
        report = run_writer(args.db, args.seconds, pause, args.writer, not args.no_gate)
    else:
        report = run_reader(args.db, args.seconds, pause)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
