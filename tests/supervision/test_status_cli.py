"""scripts/status.py: table and JSON over a populated database, exit code on trouble."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from shared_state import ProcessState, Store, WatchlistItem, WatchlistSource
from supervision.lock import InstanceLock, acquire, lock_path_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "status.py"
DAY = date(2025, 11, 26)
KEYS = {
    "processes", "broker", "daily_state", "active_positions", "closed_today", "watchlist",
    "errors",
}  # fmt: skip


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("status_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


status_script = _load_script()


def _now() -> datetime:
    return datetime.now(UTC)


def _running(store: Store, name: str, heartbeat_age_s: float = 0.0) -> None:
    store.set_process_state(name, ProcessState.STARTING, now=_now(), pid=4242, force=True)
    store.set_process_state(name, ProcessState.RUNNING, now=_now())
    store.heartbeat(name, _now() - timedelta(seconds=heartbeat_age_s), pid=4242)


def _populate(store: Store) -> None:
    t = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)
    limits = {"max_recovery_entries": 1, "max_trades_per_day": 20, "max_positions": 8}
    store.ensure_daily_state(DAY, 100_000.0)
    for symbol in ("ACME", "BETA"):
        claim = store.claim_for_entry(
            symbol, DAY, now=t, order_ref=f"buy-{symbol}", quantity=10, limit_price=10.0,
            owner="day_trader", **limits,
        )  # fmt: skip
        assert claim.ok
        store.mark_filled(
            symbol, now=t, entry_price=10.0, quantity=10, target_price=10.18, stop_price=9.91
        )
    ticket = store.begin_exit(
        "BETA", now=t, order_ref="sell-BETA", quantity=10, limit_price=10.2, reason="target"
    )
    assert ticket is not None
    store.close_position(
        "BETA", trading_date=DAY, now=t, exit_price=10.2, reason="target", pnl=1.5,
        commissions=0.5, position_id=ticket.position_id,
    )  # fmt: skip
    store.replace_watchlist(
        DAY,
        [WatchlistItem("ACME", 1, 0.9, "gap", WatchlistSource.RULES, gap_pct=6.0, validated=True)],
    )
    _running(store, "supervisor")
    store.set_process_ready(
        "supervisor",
        True,
        now=_now(),
        detail={"mode": "sim", "clock": "live", "trading_date": DAY.isoformat(), "alerts": []},
    )
    _running(store, "exit_manager")
    store.set_process_ready("exit_manager", True, now=_now(), detail={"marks": {"ACME": 10.5}})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data" / "trading_state.db"
    store = Store(path, process="test")
    _populate(store)
    store.close()
    yield path


@pytest.fixture
def supervisor_lock(db: Path) -> Iterator[InstanceLock]:
    """This test process plays the running supervisor (it holds the lock)."""
    lock, _ = acquire(lock_path_for(db))
    yield lock
    lock.release()


def _run(db: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = status_script.main(["--env-file", "none", "--db", str(db), "--no-probe", *args])
    return code, capsys.readouterr().out


def test_json_has_the_documented_keys_and_exit_0_when_healthy(
    db: Path, supervisor_lock: InstanceLock, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(db, capsys, "--json")
    data = json.loads(out)
    assert code == 0, data["errors"]
    assert KEYS <= set(data)
    assert data["schema"] == 1 and data["trading_date"] == "2025-11-26"
    assert data["supervisor"]["running"] is True
    [acme] = data["active_positions"]
    assert (acme["symbol"], acme["last_price"], acme["unrealized_pnl"]) == ("ACME", 10.5, 5.0)
    [beta] = data["closed_today"]
    assert (beta["symbol"], beta["exit_reason"], beta["pnl"]) == ("BETA", "target", 1.5)
    daily = data["daily_state"]
    assert daily["realized_pnl"] == 1.5 and daily["unrealized_pnl"] == 5.0
    assert daily["total_pnl"] == 6.5 and daily["target_pct"] == 1.8
    assert [w["symbol"] for w in data["watchlist"]] == ["ACME"]
    assert {p["name"]: p["state"] for p in data["processes"]} == {
        "exit_manager": "RUNNING",
        "supervisor": "RUNNING",
    }
    assert data["errors"] == []


def test_table_shows_processes_positions_pnl_and_closed_trades(
    db: Path, supervisor_lock: InstanceLock, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(db, capsys)
    assert code == 0
    expected = (
        "Processes", "exit_manager", "RUNNING", "Positions (1)", "ACME", "+5.00",
        "Closed today (1)", "target", "daily target +1.80%", "nothing needs attention",
    )  # fmt: skip
    for text in expected:
        assert text in out, text


def test_fatal_process_needs_attention(
    db: Path, supervisor_lock: InstanceLock, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(db, process="test")
    store.set_process_state(
        "day_trader", ProcessState.FATAL, now=_now(), error="crash loop", force=True
    )
    store.close()
    code, out = _run(db, capsys, "--json")
    assert code == 1
    assert [e["kind"] for e in json.loads(out)["errors"]] == ["process_fatal"]


def test_stale_heartbeat_needs_attention(
    db: Path, supervisor_lock: InstanceLock, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(db, process="test")
    store.heartbeat("exit_manager", _now() - timedelta(seconds=120), pid=4242)
    store.close()
    code, out = _run(db, capsys)
    assert code == 1
    assert "exit_manager is RUNNING but its heartbeat is 120 s old" in out


def test_failed_phase_needs_attention_with_its_reason(
    db: Path, supervisor_lock: InstanceLock, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(db, process="test")
    store.start_phase(DAY, "watchlist", _now())
    store.finish_phase(DAY, "watchlist", "FAILED", now=_now(), detail="no candidate")
    store.close()
    code, out = _run(db, capsys, "--json")
    assert code == 1
    assert json.loads(out)["errors"] == [
        {"kind": "phase_failed", "process": None, "message": "phase watchlist failed: no candidate"}
    ]


def test_rows_left_running_without_a_supervisor_need_attention(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(db, capsys, "--json")
    data = json.loads(out)
    assert code == 1 and data["supervisor"]["running"] is False
    assert {e["kind"] for e in data["errors"]} == {"supervisor_gone"}


def test_after_a_clean_stop_the_status_is_readable_and_healthy(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(db, process="test")
    for name in ("exit_manager", "supervisor"):
        store.set_process_state(name, ProcessState.STOPPING, now=_now())
        store.set_process_state(name, ProcessState.STOPPED, now=_now())
    store.close()
    code, out = _run(db, capsys)
    assert code == 0, out
    assert "supervisor not running" in out and "STOPPED" in out


def test_no_database_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = status_script.main(["--env-file", "none", "--db", str(tmp_path / "none.db")])
    assert code == 2
    assert "has not run yet" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_runs_as_a_script_with_json(db: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--db", str(db), "--no-probe",
         "--env-file", "none"],
        capture_output=True, text=True, timeout=60, cwd=db.parent,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # rows RUNNING, no supervisor
    assert KEYS <= set(json.loads(result.stdout))
