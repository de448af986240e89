"""Restarts never buy twice, bad data and lost connectivity never buy: day trader + simulator.

- SIGKILL right after the buy left (its acknowledgement withheld by the simulator, so the
  DB has nothing but the intent): the restarted trader finds the order by order_ref,
  adopts it, and the exchange saw exactly one buy.
- An intent the broker never saw (the state a crash between the claim's commit and
  placeOrder leaves) is cancelled at restart, and the symbol is bought once.
- A stalled feed: the quote goes stale, the signal still fires, no order, an event says
  ``stale_quote``.
- TWS's 1100 (connectivity lost) stops entries; 1101 (restored, market data lost) brings
  them back once the quotes are renewed (the old ones are stale by then).

Halted quotes: ``test_trader_entries``. NaN and zero quotes cannot come out of the
simulator, whose quotes are always positive, nor out of the adapter, which turns them
into None: ``test_decision`` covers them on the decision itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from market.clock import ET
from shared_state import OrderStatus, PositionState

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dt_harness import (  # noqa: E402
    DAY,
    VWAP_PATTERN,
    ExitManagerStandIn,
    Market,
    PricePath,
    Traders,
    broker_executions,
    buy_orders,
    buys_by_symbol,
    events_of,
    new_store,
    open_position,
    publish_watchlist,
    running_market,
    wait_for,
)

START = datetime(2025, 11, 26, 10, 0, tzinfo=ET)
SPEED = 5.0
PATHS = tuple(PricePath(s, VWAP_PATTERN, gap_pct=1.0) for s in ("KILLA", "NEVER", "STALE", "PAUSE"))


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    with running_market(tmp_path_factory.mktemp("restart"), PATHS, START, SPEED) as m:
        yield m


@pytest.fixture
def traders(market: Market, tmp_path: Path) -> Iterator[Traders]:
    started = Traders(market, tmp_path)
    yield started
    started.stop_all()


def test_killed_right_after_sending_the_restarted_trader_adopts_the_order_and_one_buy_happens(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, ["KILLA"])
    open_before = market.control.status()["open_orders"]
    market.control.withhold_acks(True)
    try:
        with ExitManagerStandIn(store, market.clock):
            first = traders.start(db, name="first")
            wait_for(
                lambda: market.control.status()["open_orders"] > open_before,
                60,
                "the buy to reach the simulator",
                every=0.05,
                explain=first.tail,
            )
            first.kill()  # right after sending: the DB holds the intent, no acknowledgement
            (intent,) = buy_orders(store, "KILLA")
            assert intent.status in (OrderStatus.INTENT, OrderStatus.UNKNOWN)
            assert intent.perm_id is None  # the broker's id: never acknowledged
            row = store.active_position("KILLA")
            assert row is not None and row.state is PositionState.ENTRY_PENDING

            market.control.withhold_acks(False)  # the exchange acknowledges and fills it
            second = traders.start(db, name="second")
            adopted = wait_for(
                lambda: open_position(store, "KILLA"), 60, "KILLA adopted", explain=second.tail
            )
            (recovery,) = wait_for(
                lambda: events_of(store, "recovery"), 30, "recovery event", explain=second.tail
            )
            seen = market.now()
            wait_for(lambda: market.now() >= seen + timedelta(seconds=30), 40, "more passes")
    finally:
        market.control.withhold_acks(False)
    assert adopted.entry_order_ref == intent.order_ref
    assert recovery.detail["adopted"] == [intent.order_ref]
    (order,) = buy_orders(store, "KILLA")  # never a second intent
    assert order.status is OrderStatus.FILLED and order.filled_quantity == order.quantity
    assert order.perm_id is not None and adopted.quantity == order.quantity
    assert [e.symbol for e in events_of(store, "claim")] == ["KILLA"]
    executions = [e for e in broker_executions(market.sim.port) if e.symbol == "KILLA"]
    assert {e.order_ref for e in executions} == {intent.order_ref}
    assert {e.perm_id for e in executions} == {order.perm_id}
    assert sum(e.shares for e in executions) == order.quantity


def test_an_intent_the_broker_never_saw_is_cancelled_at_restart_and_the_symbol_bought_once(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, ["NEVER"])
    # What a crash between the claim's commit and placeOrder leaves behind (client id 12).
    ghost = "dt12-20251126-NEVER-0badc0de"
    claim = store.claim_for_entry(
        "NEVER",
        DAY,
        now=market.clock.now(),
        order_ref=ghost,
        quantity=10,
        limit_price=50.0,
        max_recovery_entries=1,
        max_trades_per_day=20,
        max_positions=8,
        owner="day_trader",
    )
    assert claim.ok
    with ExitManagerStandIn(store, market.clock):
        trader = traders.start(db)
        (recovery,) = wait_for(
            lambda: events_of(store, "recovery"), 60, "recovery event", explain=trader.tail
        )
        fresh = wait_for(
            lambda: open_position(store, "NEVER"), 60, "NEVER open", explain=trader.tail
        )
    assert recovery.detail["never_sent"] == [ghost]
    cancelled = store.order(ghost)
    assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED
    assert (cancelled.error or "").startswith("never sent")
    assert fresh.entry_order_ref != ghost
    buys = buys_by_symbol(broker_executions(market.sim.port))
    assert buys["NEVER"] == {fresh.entry_order_ref}


def test_stale_quotes_give_no_order_and_an_event_saying_stale_quote(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, ["STALE"])
    max_age_s = 10.0
    # No exit-manager heartbeat yet: the gate holds entries while the feed is made to stall.
    trader = traders.start(db, QUOTE_MAX_AGE_S=max_age_s)
    (blocked,) = wait_for(
        lambda: events_of(store, "entries_blocked"), 60, "entries blocked", explain=trader.tail
    )
    assert blocked.detail["to"] == "exit_manager_heartbeat_stale"
    market.control.stall_market_data(True)
    try:
        time.sleep(market.clock.to_real_seconds(max_age_s * 1.5))
        with ExitManagerStandIn(store, market.clock):
            skips = wait_for(
                lambda: [
                    e for e in events_of(store, "entry_skipped", "STALE")
                    if e.detail["reason"] == "stale_quote"
                ],
                30,
                "a stale_quote skip",
                explain=trader.tail,
            )  # fmt: skip
            time.sleep(2.0)  # several more passes
    finally:
        traders.stop_all()  # before the feed resumes: the trader would buy then
        market.control.stall_market_data(False)
    claims = events_of(store, "claim")
    assert claims == []
    assert skips[0].detail["signal"] == "vwap"
    assert len(skips) == 1  # throttled: one event per symbol and reason per minute
    assert "STALE" not in buys_by_symbol(broker_executions(market.sim.port))


def test_connectivity_lost_1100_blocks_entries_and_1101_resumes_them_on_renewed_quotes(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, ["PAUSE"])
    max_age_s = 5.0
    trader = traders.start(db, QUOTE_MAX_AGE_S=max_age_s)  # no heartbeat yet: held at the gate
    wait_for(
        lambda: events_of(store, "entries_blocked"), 60, "entries blocked", explain=trader.tail
    )
    market.control.connectivity(1100)
    lost = True
    try:
        with ExitManagerStandIn(store, market.clock):
            wait_for(
                lambda: [
                    e for e in events_of(store, "entries_blocked")
                    if e.detail["to"] == "broker_disconnected"
                ],
                30,
                "entries blocked by 1100",
                explain=trader.tail,
            )  # fmt: skip
            # Several passes with a firing signal; the quotes from before 1100 go stale.
            time.sleep(market.clock.to_real_seconds(max_age_s * 1.5))
            held_back = events_of(store, "claim")
            market.control.connectivity(1101, seconds=0.1)
            lost = False
            position = wait_for(
                lambda: open_position(store, "PAUSE"), 60, "PAUSE bought", explain=trader.tail
            )
    finally:
        if lost:
            market.control.connectivity(1102, seconds=0.1)
    assert held_back == []
    gate = [
        (e.kind, e.detail["to"]) for e in store.events(0, 1000) if e.kind.startswith("entries_")
    ]
    assert gate == [
        ("entries_blocked", "exit_manager_heartbeat_stale"),
        ("entries_blocked", "broker_disconnected"),
        ("entries_allowed", "allowed"),
    ]
    assert buys_by_symbol(broker_executions(market.sim.port))["PAUSE"] == {position.entry_order_ref}
