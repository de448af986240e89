"""The exit manager end to end on a normal day: one simulator, one exit manager, real clients.

2025-11-26 from 10:00 ET. Each test uses its own symbols; the module's tests run in file
order and the last one liquidates whatever is left. Positions are opened the way the day
trader will (claim, buy through another client, mark filled) or, for adoption, bought
with no row at all. Outcomes are read from the database and from the simulator's own
executions (every client's).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exit_manager.rules import ExitParams, stop_price, target_price
from shared_state import ClosedPosition, CommandStatus, OrderStatus, PositionState

sys.path.insert(0, str(Path(__file__).resolve().parent))

from em_harness import World, processes, start_world, wait_for  # noqa: E402

START = "2025-11-26T10:00:00-05:00"
SPEED = 5.0
PARAMS = ExitParams()  # the defaults: target 1.8 %, recovery 1.1 %, stop 0.9 %
ENV = {
    # The daily limits are the subject of test_daily_limits.py; here they stay out of the way.
    "DAILY_TARGET_PCT": "50",
    "DAILY_LOSS_LIMIT_PCT": "50",
    "MAX_ORDER_NOTIONAL": "2000000",
    "QUOTE_MAX_AGE_S": "5",
    "EXIT_ORDER_TIMEOUT_S": "5",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with processes() as running:
        yield start_world(running, tmp_path_factory.mktemp("day"), START, SPEED, PARAMS, env=ENV)


def _commissions(world: World, symbol: str) -> float:
    return sum(f.commission or 0.0 for f in world.store.fills(symbol=symbol))


def _closed(world: World, symbol: str, count: int = 1, timeout: float = 30.0) -> ClosedPosition:
    try:
        return world.desk.wait_closed(symbol, timeout, count)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{world.diagnose()}") from None


def test_target_crossing_sells_once_and_closes_with_target_and_net_pnl(world: World) -> None:
    opened = world.desk.open("AAPL", 100)
    world.sim.control.set_price("AAPL", round(opened.row.target_price + 0.05, 2))

    closed = _closed(world, "AAPL")

    assert closed.exit_reason == "target"
    assert closed.reentry_allowed is False
    assert closed.quantity == 100
    assert world.trader.sold("AAPL") == 100
    assert len(world.trader.sell_orders("AAPL")) == 1
    # Net of both commissions: the buy's (recorded like the day trader does) and the sell's.
    assert closed.commissions == pytest.approx(_commissions(world, "AAPL"))
    assert closed.commissions >= 2.0
    gross = (closed.exit_price - opened.entry) * 100
    assert closed.pnl == pytest.approx(gross - closed.commissions, abs=0.01)
    [decided] = world.desk.events("exit_decided", "AAPL")
    assert decided.detail["reason"] == "target"
    assert decided.detail["price"] >= opened.row.target_price


def test_stop_then_recovery_trade_exits_at_the_lower_recovery_target(world: World) -> None:
    first = world.desk.open("MSFT", 50)
    world.sim.control.set_price("MSFT", round(first.row.stop_price - 0.05, 2))
    stopped = _closed(world, "MSFT")
    assert stopped.exit_reason == "stop"
    assert stopped.reentry_allowed is True
    assert stopped.pnl < 0

    again = world.desk.open("MSFT", 50)  # the claim makes it a recovery trade
    assert again.row.is_recovery
    recovery_target = target_price(again.entry, True, PARAMS)
    assert again.row.target_price == pytest.approx(recovery_target)
    between = round((recovery_target + target_price(again.entry, False, PARAMS)) / 2, 2)
    world.sim.control.set_price("MSFT", between)  # above 1.1 %, below 1.8 %

    closed = _closed(world, "MSFT", count=2)
    assert closed.exit_reason == "target"
    assert closed.is_recovery
    assert closed.reentry_allowed is False
    assert world.trader.sold("MSFT") == 100
    assert len(world.trader.sell_orders("MSFT")) == 2


def test_position_bought_by_another_client_is_adopted_protected_and_exited(world: World) -> None:
    opened = world.desk.open("NVDA", 40, with_row=False)

    row = wait_for(lambda: world.store.active_position("NVDA"), 20, "NVDA to be adopted")
    assert row.source == "adopted"
    assert row.state is PositionState.OPEN
    assert row.quantity == 40
    assert row.entry_price == pytest.approx(opened.entry, abs=0.05)
    assert row.stop_price == pytest.approx(stop_price(row.entry_price, PARAMS))
    assert row.target_price == pytest.approx(target_price(row.entry_price, False, PARAMS))
    assert world.desk.events("adopted", "NVDA")

    world.sim.control.set_price("NVDA", round(row.stop_price - 0.05, 2))
    closed = _closed(world, "NVDA")
    assert (closed.exit_reason, closed.source) == ("stop", "adopted")
    assert world.trader.sold("NVDA") == 40


def test_liquidate_symbol_command_is_taken_within_a_second_and_sells_only_it(world: World) -> None:
    world.desk.open("AMD", 60)
    world.desk.open("INTC", 300)  # stays for the liquidate-today test

    queued = time.monotonic()
    command_id = world.store.enqueue_command("liquidate_symbol", now=world.sim.now(), symbol="AMD")
    wait_for(
        lambda: world.store.command(command_id).status is not CommandStatus.PENDING,
        1.0,
        "the command to be taken within 1 s",
    )
    assert time.monotonic() - queued <= 1.0

    closed = _closed(world, "AMD")
    assert closed.exit_reason == "manual"
    assert closed.reentry_allowed is False
    command = world.store.command(command_id)
    assert command.status is CommandStatus.DONE and "AMD" in (command.result or "")
    assert world.store.active_position("INTC").state is PositionState.OPEN


def test_halt_and_resume_entries_commands_switch_the_day_flag(world: World) -> None:
    today = world.desk.today()
    halt = world.store.enqueue_command("halt_entries", now=world.sim.now())
    wait_for(lambda: world.store.command(halt).status is CommandStatus.DONE, 3, "halt done")
    state = world.store.daily_state(today)
    assert state.halted and state.halt_reason == "manual"
    refused = world.store.claim_for_entry(
        "KO", today, now=world.sim.now(), order_ref="dt-ko-halted", quantity=1,
        limit_price=None, max_recovery_entries=1, max_trades_per_day=100,
        max_positions=50, owner="day_trader",
    )  # fmt: skip
    assert refused.refusal == "HALTED"

    resume = world.store.enqueue_command("resume_entries", now=world.sim.now())
    wait_for(lambda: world.store.command(resume).status is CommandStatus.DONE, 3, "resume done")
    assert world.store.daily_state(today).halted is False


def test_liquidate_today_sells_the_day_traders_positions_not_adopted_ones(world: World) -> None:
    world.desk.open("QQQ", 20, with_row=False)
    wait_for(lambda: world.store.active_position("QQQ"), 20, "QQQ to be adopted")

    command_id = world.store.enqueue_command("liquidate_today", now=world.sim.now())

    closed = _closed(world, "INTC")
    assert closed.exit_reason == "manual"
    wait_for(lambda: world.store.command(command_id).status is CommandStatus.DONE, 5, "done")
    assert world.store.active_position("QQQ").state is PositionState.OPEN  # adopted: kept


def test_rejected_sell_is_explained_and_sold_by_a_new_order(world: World) -> None:
    opened = world.desk.open("META", 30)
    world.sim.control.reject_next_order(201, "simulated rejection")
    world.sim.control.set_price("META", round(opened.row.stop_price - 0.05, 2))

    closed = _closed(world, "META")

    assert closed.exit_reason == "stop"
    [rejected] = world.desk.events("exit_rejected", "META")
    assert rejected.detail["code"] == 201
    orders = world.exit_orders("META")
    assert [o.status for o in orders] == [OrderStatus.REJECTED, OrderStatus.FILLED]
    assert world.trader.sold("META") == 30
    assert world.trader.sell_orders("META") == {orders[1].order_ref}


def test_unacknowledged_sell_stays_unknown_and_is_never_sent_twice(world: World) -> None:
    opened = world.desk.open("GOOGL", 40)
    world.sim.control.withhold_acks(True)
    try:
        world.sim.control.set_price("GOOGL", round(opened.row.stop_price - 0.05, 2))
        order = wait_for(
            lambda: [o for o in world.exit_orders("GOOGL") if o.status is OrderStatus.UNKNOWN],
            15,
            "the unacknowledged sell to become UNKNOWN",
        )[0]
        assert world.store.active_position("GOOGL").state is PositionState.EXIT_PENDING
        assert world.desk.events("exit_order_unknown", "GOOGL")
        time.sleep(1.0)  # a pass or four: still one order, still waiting
        assert [o.order_ref for o in world.exit_orders("GOOGL")] == [order.order_ref]
    finally:
        world.sim.control.withhold_acks(False)

    closed = _closed(world, "GOOGL")
    assert closed.exit_reason == "stop"
    assert world.trader.sell_orders("GOOGL") == {order.order_ref}
    assert world.trader.sold("GOOGL") == 40


def test_partial_fills_keep_the_remainder_protected_and_never_oversell(world: World) -> None:
    opened = world.desk.open("BLK", 1200)
    sold_before = world.trader.sold("BLK")
    bid_level = opened.entry
    world.store.enqueue_command("liquidate_symbol", now=world.sim.now(), symbol="BLK")

    def partly_sold() -> bool:
        held = {p["symbol"]: p["quantity"] for p in world.sim.control.status()["positions"]}
        return 0 < held.get("BLK", 0) < 1200

    wait_for(partly_sold, 10, "a first partial fill", interval=0.01)
    # The rest of the first order now rests (the market fell below its limit): it is
    # cancelled after the timeout and its remainder sold by a more aggressive order.
    world.sim.control.set_price("BLK", round(bid_level * 0.993, 2))

    closed = _closed(world, "BLK", timeout=40)
    assert closed.exit_reason == "manual"
    assert closed.quantity == 1200
    assert world.trader.sold("BLK") - sold_before == 1200
    orders = world.exit_orders("BLK")
    assert len(orders) >= 2
    first = orders[0]
    assert first.status is OrderStatus.CANCELLED and 0 < first.filled_quantity < 1200
    assert world.desk.events("reduced", "BLK")
    assert sum(o.filled_quantity for o in orders) == 1200
    # Each later order asked for no more than what was still held.
    held = 1200
    for order in orders:
        assert order.quantity <= held
        held -= order.filled_quantity
    fills = [f for f in world.store.fills(symbol="BLK") if f.side == "SELL"]
    proceeds = sum(f.quantity * f.price for f in fills)
    assert closed.pnl == pytest.approx(
        proceeds - opened.entry * 1200 - closed.commissions, abs=0.05
    )


def test_disconnect_during_an_exit_ends_closed_once(world: World) -> None:
    opened = world.desk.open("TSLA", 30)
    world.sim.control.halt("TSLA", True)
    world.sim.control.set_price("TSLA", round(opened.row.stop_price - 0.1, 2))
    wait_for(lambda: world.desk.events("exit_resting_halted", "TSLA"), 15, "a resting sell")
    [order] = world.exit_orders("TSLA")

    world.sim.control.refuse_connections(3.0)
    world.sim.control.drop_connections()
    wait_for(lambda: world.desk.events("broker_disconnected"), 10, "the disconnect")
    world.sim.control.halt("TSLA", False)  # the resting sell fills while we are away

    closed = _closed(world, "TSLA", timeout=40)
    assert closed.exit_reason == "stop"
    wait_for(lambda: world.desk.events("broker_reconnected"), 20, "the reconnect")
    world.trader.reconnect(world.sim.port)
    assert world.trader.sell_orders("TSLA") == {order.order_ref}
    assert world.trader.sold("TSLA") == 30


def test_stalled_quotes_fall_back_to_the_portfolio_price_and_say_so(world: World) -> None:
    opened = world.desk.open("AMZN", 50)
    world.sim.control.stall_market_data(True)
    try:

        def on_portfolio() -> bool:
            info = world.store.process("exit_manager")
            return info.detail.get("price_sources", {}).get("AMZN") == "portfolio"

        wait_for(on_portfolio, 20, "the status to show AMZN on the portfolio price")
        world.sim.control.set_price("AMZN", round(opened.row.stop_price - 0.1, 2))
        closed = _closed(world, "AMZN")
    finally:
        world.sim.control.stall_market_data(False)
    assert closed.exit_reason == "stop"
    [decided] = world.desk.events("exit_decided", "AMZN")
    assert decided.detail["mark_source"] == "portfolio"
    assert world.desk.events("price_source", "AMZN")


def test_positions_stay_protected_while_the_day_trader_is_gone(world: World) -> None:
    opened = world.desk.open("PLTR", 50)
    world.trader.ib.disconnect()  # the day trader crashed: its connection is gone
    world.sim.control.set_price("PLTR", round(opened.row.target_price + 0.05, 2))

    closed = _closed(world, "PLTR")

    assert closed.exit_reason == "target"
    world.trader.reconnect(world.sim.port)
    assert world.trader.sold("PLTR") == 50


def test_liquidate_all_sells_every_broker_position(world: World) -> None:
    world.desk.open("NFLX", 10)
    world.desk.open("SPY", 10, with_row=False)  # not adopted yet: the command adopts it

    command_id = world.store.enqueue_command("liquidate_all", now=world.sim.now())

    for symbol in ("NFLX", "SPY", "QQQ"):
        assert _closed(world, symbol).exit_reason == "manual"
    wait_for(lambda: world.store.command(command_id).status is CommandStatus.DONE, 5, "done")
    wait_for(lambda: not world.sim.control.status()["positions"], 10, "a flat account")
    assert world.store.active_positions() == []
    assert world.em.alive()
