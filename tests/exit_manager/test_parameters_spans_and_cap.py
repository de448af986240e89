"""The exit manager with today's parameter set, its spans, and sells above the notional cap.

One simulator, one database and one exit manager for the module (2025-11-26 from 10:00
ET). Before the exit manager starts, the post-close evaluation's parameter set for the
day is written through ``PhaseData`` (target 3 %, stop 1.5 %) and two positions exist:
one the day trader opened with the settings' levels (1.8 % / 0.9 %), one bought with no
row (adopted at start-up). MAX_ORDER_NOTIONAL is far below every position's value.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from exit_manager.rules import ExitParams, stop_price, target_price
from shared_state.phase_data import ParameterSet, PhaseData
from shared_state.spans import SpanRecord, SpanStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from em_harness import Desk, World, processes, start_world, wait_for  # noqa: E402

START = "2025-11-26T10:00:00-05:00"
DAY = date(2025, 11, 26)
SPEED = 5.0
SETTINGS_PARAMS = ExitParams()  # what the settings (defaults) give: 1.8 % / 0.9 %
SET_PARAMS = ExitParams(profit_target_pct=3.0, stop_loss_pct=1.5, recovery_target_pct=2.0)
CAP = 5000.0
ENV = {
    "DAILY_TARGET_PCT": "50",
    "DAILY_LOSS_LIMIT_PCT": "50",
    "MAX_ORDER_NOTIONAL": str(CAP),
    "QUOTE_MAX_AGE_S": "5",
    "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans every 0.1 s, not every 5 s
}


def _prepare(desk: Desk) -> None:
    data = PhaseData(desk.store.path)
    data.set_parameters(
        ParameterSet(
            effective_date=DAY,
            profit_target_pct=SET_PARAMS.profit_target_pct,
            stop_loss_pct=SET_PARAMS.stop_loss_pct,
            size_pct=5.0,
            recovery_target_pct=SET_PARAMS.recovery_target_pct,
            decided_on=date(2025, 11, 25),
            created_at=datetime.fromisoformat("2025-11-25T21:00:00+00:00"),
            reason="test: wider target",
        )
    )
    data.close()
    desk.open("MSFT", 100)  # the day trader's, with the settings' target and stop
    desk.open("NVDA", 100, with_row=False)  # no row: adopted at start-up


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with processes() as running:
        tmp = tmp_path_factory.mktemp("params")
        yield start_world(running, tmp, START, SPEED, SETTINGS_PARAMS, env=ENV, before=_prepare)


def _closed(world: World, symbol: str) -> object:
    try:
        return world.desk.wait_closed(symbol, 30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{world.diagnose()}") from None


def _span(world: World, name: str, order_ref: str) -> SpanRecord:
    store = SpanStore(world.tmp / "spans.db")
    try:
        found = wait_for(
            lambda: store.find(name, attributes={"order_ref": order_ref}),
            10,
            f"span {name} of {order_ref}",
        )
    finally:
        store.close()
    assert len(found) == 1, found
    return found[0]


def test_the_parameter_set_in_force_is_recorded_once_at_start_up(world: World) -> None:
    (event,) = world.desk.events("params_in_force")

    assert event.detail["source"] == "param_sets of 2025-11-26 (decided 2025-11-25)"
    assert event.detail["profit_target_pct"] == 3.0
    assert event.detail["stop_loss_pct"] == 1.5
    assert event.detail["reason"] == "test: wider target"
    assert "parameters in force for new positions" in world.em.log_text()


def test_adopted_position_gets_the_sets_levels_and_an_open_one_keeps_its_own(
    world: World,
) -> None:
    adopted = world.store.active_position("NVDA")
    assert adopted is not None and adopted.source == "adopted"
    entry = adopted.entry_price
    assert adopted.target_price == pytest.approx(target_price(entry, False, SET_PARAMS))
    assert adopted.stop_price == pytest.approx(stop_price(entry, SET_PARAMS))
    kept = world.store.active_position("MSFT")
    assert kept is not None and kept.entry_price is not None
    own_target = target_price(kept.entry_price, False, SETTINGS_PARAMS)
    assert kept.target_price == pytest.approx(own_target)

    # Above its own 1.8 % target, below the set's 3 %: it is sold at its own target.
    world.sim.control.set_price("MSFT", round(kept.entry_price * 1.025, 2))
    closed = _closed(world, "MSFT")

    assert closed.exit_reason == "target"
    assert world.store.active_position("NVDA") is not None  # 2.5 % is below its 3 %


def test_position_worth_more_than_the_notional_cap_is_sold_by_one_order(world: World) -> None:
    opened = world.desk.open("META", 60)
    assert opened.row is not None and opened.quantity * opened.entry > 4 * CAP
    world.sim.control.set_price("META", round(opened.row.stop_price - 0.05, 2))

    closed = _closed(world, "META")

    assert closed.exit_reason == "stop" and closed.quantity == 60
    assert world.trader.sold("META") == 60
    assert len(world.trader.sell_orders("META")) == 1
    (order,) = world.exit_orders("META")
    assert order.quantity == 60


def test_an_exit_and_its_order_placement_are_spans_in_the_span_store(world: World) -> None:
    opened = world.desk.open("AMZN", 30)
    assert opened.row is not None
    world.sim.control.set_price("AMZN", round(opened.row.stop_price - 0.05, 2))
    _closed(world, "AMZN")
    (order,) = world.exit_orders("AMZN")

    placed = _span(world, "order.place", order.order_ref)
    exited = _span(world, "exit.stop", order.order_ref)

    assert placed.process == "exit_manager" and placed.status != "ERROR"
    assert placed.attributes["symbol"] == "AMZN" and placed.attributes["side"] == "SELL"
    assert placed.attributes["quantity"] == 30
    assert placed.attributes["limit"] == pytest.approx(order.limit_price)
    assert placed.attributes["outcome"] == "sent"
    assert exited.attributes["symbol"] == "AMZN"
    assert exited.attributes["price"] <= opened.row.stop_price
    assert placed.parent_id == exited.span_id  # the placement is part of the exit
