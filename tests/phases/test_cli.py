"""``python -m phases`` as the supervisor runs it: a real subprocess, its exit code, its records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from phase_fixtures import DAY, ROOT

from phases import PHASE_NAMES
from shared_state import PhaseStatus, Store, WatchlistItem, WatchlistSource

CLOCK = "virtual|2025-11-26T08:15:00-05:00|1.0"


def _closed_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_CLOCK", "SUPERVISOR"))}
    env.update(
        BROKER="sim",
        SIM_PORT=str(port),
        DB_PATH=str(tmp / "state.db"),
        LOG_DIR=str(tmp / "logs"),
        REPORTS_DIR=str(tmp / "reports"),
        SPANS_DB_PATH=str(tmp / "spans.db"),
        TRADING_CLOCK=CLOCK,
        DEEPSEEK_API_KEY="",
    )
    return env


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phases", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_unknown_phase_name_exits_2_and_lists_the_valid_names() -> None:
    result = _run(["nosuch"])

    assert result.returncode == 2
    assert "invalid choice: 'nosuch'" in result.stderr
    assert all(f"'{name}'" in result.stderr for name in PHASE_NAMES)


def test_a_phase_already_done_for_the_date_exits_0_without_touching_the_broker(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state.db", process="supervisor")
    stamp = datetime(2025, 11, 26, 12, 0, tzinfo=UTC)
    assert store.start_phase(DAY, "data", stamp)
    store.finish_phase(DAY, "data", PhaseStatus.DONE, now=stamp, detail="done earlier")

    # Nothing listens on the broker port: any connection attempt would fail the run.
    result = _run(["data", "--date", "2025-11-26"], _env(tmp_path, _closed_port()))

    assert result.returncode == 0, result.stderr
    assert "data 2025-11-26: already_done" in result.stdout
    (row,) = store.phase_runs(DAY)
    assert row.status is PhaseStatus.DONE and row.detail == "done earlier"
    store.close()


def test_a_phase_that_cannot_reach_the_broker_exits_1_and_records_why(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", process="test")
    store.replace_watchlist(DAY, [WatchlistItem("AAPL", 1, 50.0, "seeded", WatchlistSource.RULES)])

    result = _run(["validate", "--date", "2025-11-26"], _env(tmp_path, _closed_port()))

    assert result.returncode == 1, result.stderr
    (row,) = store.phase_runs(DAY)
    assert row.status is PhaseStatus.FAILED
    assert (row.detail or "").startswith("broker unreachable at 127.0.0.1:")
    log = tmp_path / "logs" / "phase_validate-2025-11-26.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["level"] == "ERROR" and "FAILED" in r["message"] for r in lines)
    assert all(r["process"] == "phase_validate" for r in lines)
    store.close()
