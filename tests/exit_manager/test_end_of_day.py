"""End-of-day flatten on a normal day and on an early-close day, and a halted symbol at EOD.

Each test starts its own simulator shortly before its flatten time (EOD_FLATTEN_MINUTES = 2,
clocks at 20x), opens its positions, then starts the exit manager, so the cutoff and the
close arrive within seconds of real time.
"""

from __future__ import annotations

import sys
from datetime import datetime, time
from pathlib import Path

from exit_manager.rules import ExitParams
from market.clock import ET
from shared_state import PositionState

sys.path.insert(0, str(Path(__file__).resolve().parent))

from em_harness import Desk, processes, start_world, wait_for  # noqa: E402

SPEED = 20.0
ENV = {"EOD_FLATTEN_MINUTES": "2", "EXIT_ORDER_TIMEOUT_S": "10"}
PARAMS = ExitParams(eod_flatten_minutes=2)


def _et(instant: datetime) -> time:
    return instant.astimezone(ET).time()


def test_normal_day_flattens_at_the_cutoff_and_exits_0_after_the_close(tmp_path: Path) -> None:
    with processes() as running:
        opened = []
        world = start_world(
            running, tmp_path, "2025-11-26T15:56:30-05:00", SPEED, PARAMS, ENV,
            before=lambda desk: opened.append(desk.open("XOM", 100)),
        )  # fmt: skip
        assert _et(opened[0].row.opened_at) < time(15, 58)

        closed = world.desk.wait_closed("XOM", timeout=30)

        assert closed.exit_reason == "eod"
        assert time(15, 58) <= _et(closed.closed_at) < time(16, 0)
        assert closed.reentry_allowed is False
        assert world.trader.sold("XOM") == 100
        code = world.em.wait(timeout=60)  # after 16:00: flat, nothing pending
        assert code == 0, world.diagnose()
        assert world.sim.now().time() >= time(16, 0)
        assert world.store.active_positions() == []


def test_early_close_day_flattens_before_13h_and_a_halted_symbol_stays_protected(
    tmp_path: Path,
) -> None:
    with processes() as running:

        def prepare(desk: Desk) -> None:
            desk.open("XOM", 100)
            desk.open("WMT", 50)
            desk.sim.control.halt("WMT", True)

        world = start_world(
            running, tmp_path, "2025-11-28T12:56:30-05:00", SPEED, PARAMS, ENV, before=prepare
        )

        closed = world.desk.wait_closed("XOM", timeout=30)
        assert closed.exit_reason == "eod"
        assert time(12, 58) <= _et(closed.closed_at) < time(13, 0)  # early close: 13:00
        wait_for(lambda: world.desk.events("exit_resting_halted", "WMT"), 15, "a resting sell")

        # At the close the resting DAY sell expires unfilled: the position stays, explained.
        [unfilled] = wait_for(lambda: world.desk.events("eod_unfilled", "WMT"), 30, "the close")
        assert unfilled.detail["halted"] is True and unfilled.detail["reason"] == "eod"
        row = world.store.active_position("WMT")
        assert row.state is PositionState.OPEN and row.quantity == 50
        wait_for(lambda: world.desk.events("after_close_holding"), 10, "the holding notice")
        wait_for(lambda: world.sim.now().time() >= time(13, 0, 20), 10, "a while after the close")
        assert world.em.alive(), "it must stay up while a position is held"
        assert world.trader.sold("WMT") == 0
        info = world.store.process("exit_manager")
        assert info.detail["market"] == "closed" and info.detail["early_close"] is True
        world.em.kill(15)  # SIGTERM: asked to stop
        assert world.em.wait(timeout=30) == 0
