"""scripts/liquidate_all.py and liquidate_today.py against a real simulator and exit manager.

One world for the module (``tests/exit_manager/em_harness.py``): a simulator whose clock
starts at 09:27 ET on 2025-11-26 at 10x, and an exit manager. The tests run in file
order along that clock: before the open (refusal, ``--queue-for-open``), after it with
the exit manager running (the queue), then with it stopped (the script sells in its
place). The scripts run as subprocesses with the world's settings and clock; outcomes are
read from the database and from the simulator's own executions (every client's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import time as clock_time
from pathlib import Path

import pytest

from exit_manager.rules import ExitParams
from shared_state import CommandStatus, OrderStatus, PositionState

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "exit_manager"))

from em_harness import BASE_ENV, World, processes, start_world, wait_for  # noqa: E402

START = "2025-11-26T09:27:00-05:00"
SPEED = 10.0
SCRIPTS_CLIENT_ID = "44"
ENV = {
    # The daily limits and the notional cap are other tests' subject: out of the way here.
    "DAILY_TARGET_PCT": "50",
    "DAILY_LOSS_LIMIT_PCT": "50",
    "MAX_ORDER_NOTIONAL": "2000000",
    "QUOTE_MAX_AGE_S": "30",
    "IB_CLIENT_ID_SCRIPTS": SCRIPTS_CLIENT_ID,
}


def _premarket_buy(world_or_desk: object, symbol: str, quantity: int) -> None:
    """Buy before the open with outsideRth (no database row: the exit manager adopts it)."""
    desk = world_or_desk
    price = desk.price(symbol)
    desk.sim.control.set_price(symbol, price)
    trader = desk.trader
    order = trader.lib.LimitOrder(
        "BUY", quantity, round(price * 1.005, 2), orderRef=f"pre-{symbol}", outsideRth=True
    )
    trade = trader.ib.placeOrder(trader.contract(symbol), order)
    wait_for(lambda: trader.pump() or trade.isDone(), 20, f"pre-market buy of {symbol}")
    assert trade.orderStatus.status == "Filled", trade.log[-3:]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with processes() as running:
        yield start_world(
            running, tmp_path_factory.mktemp("liquidation"), START, SPEED, ExitParams(),
            env=ENV, before=lambda desk: _premarket_buy(desk, "KO", 30),
        )  # fmt: skip


def liquidate(world: World, script: str, *args: str, timeout: float = 90) -> tuple[int, str]:
    """Run ``scripts/<script>.py`` with the world's settings and clock; (exit code, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    env.update(
        BASE_ENV, **ENV, DB_PATH=str(world.db), SIM_PORT=str(world.sim.port),
        TRADING_CLOCK=world.sim.clock, LOG_DIR=str(world.tmp / "logs"),
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--env-file", "/nonexistent",
         *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def _commands(world: World) -> list:
    return world.store.commands()


def test_yes_while_the_market_is_closed_is_refused_with_exit_3_and_queues_nothing(
    world: World,
) -> None:
    assert world.sim.now().time() < clock_time(9, 29)

    code, out = liquidate(world, "liquidate_all", "--yes")

    assert code == 3, out
    assert "The market is closed" in out and "--queue-for-open" in out
    assert _commands(world) == []
    assert world.store.active_position("KO").state is PositionState.OPEN  # adopted, kept


def test_queue_for_open_waits_for_the_open_then_the_exit_manager_sells(world: World) -> None:
    code, out = liquidate(world, "liquidate_all", "--yes", "--queue-for-open")

    assert code == 0, out
    assert "the exit manager carries it out at the open" in out
    [command] = _commands(world)
    # Passes of the exit manager run while closed: the liquidation stays queued.
    wait_for(lambda: world.sim.now().time() >= clock_time(9, 29, 50), 30, "09:29:50")
    assert world.store.command(command.id).status is CommandStatus.PENDING

    closed = world.desk.wait_closed("KO", timeout=40)

    assert closed.exit_reason == "manual" and closed.source == "adopted"
    assert closed.closed_at.astimezone(world.sim.now().tzinfo).time() >= clock_time(9, 30)
    assert world.store.command(command.id).status is CommandStatus.DONE
    assert world.trader.sold("KO") == 30


def test_preview_with_the_exit_manager_running_shows_the_queue_route_and_sells_nothing(
    world: World,
) -> None:
    world.desk.open("AMD", 60)

    code, out = liquidate(world, "liquidate_all")

    assert code == 0, out
    assert "AMD" in out and "yes, OPEN" in out and "This is a preview" in out
    assert "Route: the exit manager runs" in out
    assert world.store.active_position("AMD").state is PositionState.OPEN
    assert len(_commands(world)) == 1  # only the earlier test's


def test_liquidate_today_through_the_queue_sells_todays_rows_and_keeps_adopted_ones(
    world: World,
) -> None:
    _premarket_buy(world.desk, "QQQ", 20)  # outside RTH flag is harmless in the session
    wait_for(lambda: world.store.active_position("QQQ"), 20, "QQQ adopted")

    code, out = liquidate(world, "liquidate_today", "--yes")

    assert code == 0, out
    assert "Queued liquidate_today" in out and "Done:" in out
    closed = world.desk.closed("AMD")
    assert [c.exit_reason for c in closed] == ["manual"]
    assert world.trader.sold("AMD") == 60
    assert world.store.active_position("QQQ").state is PositionState.OPEN
    assert _commands(world)[0].status is CommandStatus.DONE


def test_without_the_exit_manager_the_preview_names_positions_the_database_lacks(
    world: World,
) -> None:
    world.em.stop()
    world.desk.open("META", 100)
    world.desk.open("NVDA", 40, with_row=False)

    code, out = liquidate(world, "liquidate_all")

    assert code == 0, out
    assert "no exit manager runs" in out and f"client id {SCRIPTS_CLIENT_ID}" in out
    nvda = next(line for line in out.splitlines() if line.startswith("NVDA"))
    assert "no: adopted, then sold" in nvda
    assert world.store.active_position("NVDA") is None  # a preview changes nothing


def test_without_the_exit_manager_the_script_sells_every_position_never_more_than_held(
    world: World,
) -> None:
    # The broker holds 60 META while the row says 100 (40 sold elsewhere).
    trader = world.trader
    sell = trader.lib.LimitOrder("SELL", 40, round(world.desk.price("META") * 0.99, 2))
    trade = trader.ib.placeOrder(trader.contract("META"), sell)
    wait_for(lambda: trader.pump() or trade.isDone(), 20, "META sold elsewhere")
    started = time.monotonic()

    code, out = liquidate(world, "liquidate_all", "--yes")

    assert code == 0, out
    assert "Selling as client id" in out and "Done:" in out
    assert time.monotonic() - started < 60
    assert world.store.active_positions() == []
    positions = {p.contract.symbol: p.position for p in trader.ib.reqPositions()}
    assert all(qty == 0 for qty in positions.values()), positions
    ours = [f for f in trader.sells("META") if f.execution.clientId == int(SCRIPTS_CLIENT_ID)]
    assert sum(f.execution.shares for f in ours) == 60  # never more than held
    for symbol in ("META", "NVDA", "QQQ"):
        [closed] = world.desk.closed(symbol)
        assert closed.exit_reason == "manual", symbol
        exits = [o for o in world.exit_orders(symbol) if o.status is OrderStatus.FILLED]
        assert exits, symbol
        sold = {f.order_ref for f in world.store.fills(symbol=symbol) if f.side.value == "SELL"}
        assert {o.order_ref for o in exits} <= sold  # the fills are recorded
    assert [e for e in world.desk.events("liquidation_direct") if e.process == "scripts"]
