"""BROKER=ibkr waits: for 06:50 ET (an early Task Scheduler trigger) and for the gateway."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from standin_table import TABLE
from supervision_harness import free_port

from config.settings import load_settings
from market.calendar import phase_times, session
from market.clock import ET, VirtualClock
from shared_state import ProcessState, Store
from supervision.children import ROOT
from supervision.process import Launcher
from supervision.schedule import DAY_START, DayPlan
from supervision.supervisor import Supervisor

DAY = date(2025, 11, 26)


@pytest.fixture
def make(tmp_path: Path) -> Iterator:
    stores: list[Store] = []

    def _make(hh: int, mm: int, port: int) -> tuple[Supervisor, io.StringIO]:
        env = {"BROKER": "ibkr", "IB_PORT": str(port), "DB_PATH": str(tmp_path / "t.db"),
               "LOG_DIR": str(tmp_path / "logs")}  # fmt: skip
        settings = load_settings(environ=env, env_file=None)
        # Nearly frozen (1 ms per second) so the countdown texts are exact.
        clock = VirtualClock(datetime(2025, 11, 26, hh, mm, tzinfo=ET), 0.001)
        plan = DayPlan(
            mode="ibkr",
            trading_date=DAY,
            clock=clock,
            session=session(DAY),
            times=phase_times(DAY),
            day_start=datetime.combine(DAY, DAY_START, tzinfo=ET),
        )
        store = Store(settings.db_path, process="supervisor")
        stores.append(store)
        out = io.StringIO()
        sup = Supervisor(settings, TABLE, plan, store, Launcher(ROOT), base_env={}, out=out)
        return sup, out

    yield _make
    for store in stores:
        store.close()


def test_started_before_0650_et_waits_with_a_countdown_and_starts_nothing(make) -> None:  # noqa: ANN001
    sup, out = make(5, 55, free_port())
    sup.begin()
    sup.step()
    assert "Waiting for the day to start at 06:50 ET (in 0:55:00)" in out.getvalue()
    assert all(slot.state is ProcessState.STOPPED for slot in sup.slots)
    assert sup.phases.running is None and not sup.phases.finished


def test_gateway_down_before_9_shows_a_countdown_and_starts_no_child(make) -> None:  # noqa: ANN001
    port = free_port()
    sup, out = make(8, 30, port)
    now = time.monotonic()
    sup.wait_for_broker(now)
    sup.start_due(now)
    assert f"Waiting for IB Gateway / TWS at 127.0.0.1:{port}" in out.getvalue()
    assert "in 0:30:00" in out.getvalue()
    assert not sup.alerts
    assert [slot.name for slot in sup.slots] == ["exit_manager", "day_trader"]
    assert all(slot.state is ProcessState.STOPPED for slot in sup.slots)


def test_gateway_not_up_by_9_alerts_in_log_and_store_then_clears_when_it_comes_up(
    make,  # noqa: ANN001
) -> None:
    port = free_port()
    sup, _out = make(9, 1, port)
    sup.wait_for_broker(time.monotonic())
    assert "gateway" in sup.alerts
    alerts = sup.store.events(kind="alert")
    assert alerts and "not reachable" in alerts[0].detail["message"]
    assert "by 09:00 ET" in alerts[0].detail["message"]
    published = sup.store.process("supervisor")
    assert published is None or published.detail.get("alerts")  # status sees it

    with socket.socket() as gateway:
        gateway.bind(("127.0.0.1", port))
        gateway.listen()
        sup.wait_for_broker(time.monotonic() + 10)  # past the probe interval
    assert sup.broker_ready and "gateway" not in sup.alerts
