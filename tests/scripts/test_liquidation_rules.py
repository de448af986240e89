"""The liquidation scripts' decisions, without processes: what is sold, who sells, when."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from broker.models import BrokerPosition, PortfolioRow
from market.clock import ET, VirtualClock
from scripts.liquidation import Route, broker_view, choose_route, make_plan, market_now
from shared_state import CommandKind, Store
from supervision.status import ProcessRow

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2025, 11, 26)
T = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)


def _em(state: str = "RUNNING", age: float | None = 0.5, ready: bool = True) -> ProcessRow:
    return ProcessRow(
        name="exit_manager", state=state, pid=4242, since=T, restarts=0, ready=ready,
        last_heartbeat=T, heartbeat_age_s=age, heartbeat_stale=False, last_error=None, note="",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("em", "supervisor", "pid_runs", "route"),
    [
        (_em(), False, True, Route.QUEUE),  # alive: its queue
        (_em(state="STOPPED", ready=True), False, True, Route.QUEUE),  # run by hand, ready
        (_em(age=45.0), False, True, Route.DIRECT),  # stale heartbeat, nobody restarts it
        (_em(), False, False, Route.DIRECT),  # fresh stamp, but the process is gone
        (_em(state="BACKOFF", age=45.0), True, False, Route.QUEUE),  # the supervisor restarts it
        (_em(state="FATAL", age=45.0), True, False, Route.DIRECT),  # given up for the day
        (None, False, True, Route.DIRECT),  # never ran
    ],
)
def test_route_goes_to_the_queue_only_when_an_exit_manager_will_take_it(
    em: ProcessRow | None, supervisor: bool, pid_runs: bool, route: Route
) -> None:
    assert choose_route(em, supervisor, 30.0, pid_runs).route is route


def _rows(tmp: Path) -> list:
    store = Store(tmp / "state.db", process="test")
    limits = {"max_recovery_entries": 1, "max_trades_per_day": 20, "max_positions": 8}
    try:
        for symbol, day in (("AMD", DAY), ("OLD", date(2025, 11, 25))):
            store.claim_for_entry(symbol, day, now=T, order_ref=f"dt-{symbol}", quantity=10,
                                  limit_price=100.0, owner="day_trader", **limits)  # fmt: skip
            store.mark_filled(symbol, now=T, entry_price=100.0, quantity=10, target_price=101.8,
                              stop_price=99.1)  # fmt: skip
        store.adopt_position("QQQ", trading_date=DAY, now=T, quantity=5, entry_price=500.0,
                             target_price=None, stop_price=None)  # fmt: skip
        return store.active_positions()
    finally:
        store.close()


def test_liquidate_all_covers_every_broker_position_and_row_today_only_the_days_own(
    tmp_path: Path,
) -> None:
    rows = _rows(tmp_path)
    held = (("AMD", 10, 100.0), ("OLD", 10, 100.0), ("QQQ", 5, 500.0), ("NVDA", 7, 50.0))
    positions = [BrokerPosition("DU1", s, 1, q, c) for s, q, c in held]
    portfolio = [PortfolioRow("DU1", "NVDA", 1, 7, 51.0, 357.0, 50.0, 7.0, 0.0)]  # fmt: skip
    broker = broker_view(positions, portfolio)

    everything = make_plan(CommandKind.LIQUIDATE_ALL, rows, broker, {}, DAY)
    today = make_plan(CommandKind.LIQUIDATE_TODAY, rows, broker, {}, DAY)

    assert [h.symbol for h in everything.holdings] == ["AMD", "NVDA", "OLD", "QQQ"]
    nvda = everything.holdings[1]
    assert nvda.row is None and nvda.unrealized == pytest.approx(7.0)
    assert [h.symbol for h in today.holdings] == ["AMD"]  # not adopted, not yesterday's


def test_market_state_names_the_next_open_after_a_holiday() -> None:
    def at(hour: int, minute: int, day: int = 26) -> VirtualClock:
        start = datetime(2025, 11, day, hour, minute, tzinfo=ET)
        return VirtualClock(start, 1.0, anchor=9e12)  # held: reads ``start``

    assert market_now(at(10, 0), 5).is_open
    before = market_now(at(9, 0), 5)
    assert not before.is_open and before.opens_today
    after = market_now(at(17, 0), 5)  # Thanksgiving follows: the next open is Friday
    assert after.next_open == datetime(2025, 11, 28, 9, 30, tzinfo=ET) and not after.opens_today


def test_liquidate_today_queue_for_open_after_the_close_is_refused_with_exit_3(
    tmp_path: Path,
) -> None:
    _rows(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    env.update(DB_PATH=str(tmp_path / "state.db"), SIM_PORT="1", LOG_DIR=str(tmp_path / "logs"),
               TRADING_CLOCK="virtual|2025-11-26T17:00:00-05:00|1.0")  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "liquidate_today.py"), "--env-file",
         "/nonexistent", "--yes", "--queue-for-open"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 3, done.stdout + done.stderr
    assert "Today's session is over" in done.stdout and "liquidate_all.py" in done.stdout
    assert "broker not reachable" in done.stdout
    store = Store(tmp_path / "state.db", process="test")
    try:
        assert store.commands() == []
    finally:
        store.close()
