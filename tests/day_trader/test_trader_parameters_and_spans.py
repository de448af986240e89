"""``python -m day_trader`` with today's parameter set: levels, size, commissions, spans.

One simulator replays two symbols: one built to fire the standard (VWAP) entry, one
built never to fire (below VWAP), which the trader evaluates on every pass all along.
Before the trader starts, the post-close evaluation's set for the day is written
through ``PhaseData``: target 3 %, stop 1.5 %, size 2 % (the settings say 1.8 %, 0.9 %
and 10 %). One trader runs for the module; each test reads what it did.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.guards import Role
from broker.models import ExecutionView
from config.settings import load_settings
from day_trader.sizing import position_size
from exit_manager.rules import ExitParams, stop_price, target_price
from market.clock import ET, Clock, LiveClock
from shared_state import ActivePosition, Store
from shared_state.phase_data import ParameterSet, PhaseData
from shared_state.spans import SpanRecord, SpanStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dt_harness import (  # noqa: E402
    DAY,
    SLIDE_PATTERN,
    VWAP_PATTERN,
    DayTraderProcess,
    ExitManagerStandIn,
    PricePath,
    Traders,
    broker_executions,
    events_of,
    new_store,
    open_position,
    publish_watchlist,
    running_market,
    wait_for,
)

START = datetime(2025, 11, 26, 10, 0, tzinfo=ET)
SPEED = 20.0
SYMBOL = "PSET"
QUIET = "PQUIET"
SET_PARAMS = ExitParams(profit_target_pct=3.0, stop_loss_pct=1.5, recovery_target_pct=2.0)
SIZE_PCT = 2.0
MAX_ORDER_NOTIONAL = load_settings({}, env_file=None).max_order_notional


@dataclass
class Run:
    """What one day trader did with today's set."""

    store: Store
    clock: Clock  # the shared trading clock
    spans: Path
    trader: DayTraderProcess
    excess_liquidity: float  # the account's before the buy
    position: ActivePosition
    executions: list[ExecutionView]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("param-set")
    paths = [PricePath(SYMBOL, VWAP_PATTERN, 1.0), PricePath(QUIET, SLIDE_PATTERN, 1.0)]
    with running_market(tmp, paths, START, SPEED) as market:
        db = tmp / "state.db"
        store = new_store(db)
        _write_set(db)
        publish_watchlist(store, [SYMBOL, QUIET])
        liquidity = _excess_liquidity(market.sim.port)
        traders = Traders(market, tmp)
        try:
            with ExitManagerStandIn(store, market.clock):
                trader = traders.start(db, QUOTE_MAX_AGE_S=120, OTEL_BSP_SCHEDULE_DELAY=100)
                position = wait_for(
                    lambda: _settled(store), 60, f"{SYMBOL} bought", explain=trader.tail
                )
                executions = broker_executions(market.sim.port)
                spans = db.with_name("spans.db")
                yield Run(store, market.clock, spans, trader, liquidity, position, executions)
        finally:
            traders.stop_all()
            store.close()


def _excess_liquidity(port: int) -> float:
    """Return the simulator account's ExcessLiquidity, read as another client."""

    async def read() -> float:
        adapter = BrokerAdapter(
            AdapterConfig(port=port, connect_timeout_s=10.0), LiveClock(), 91, role=Role.TOOL
        )
        await adapter.start(timeout=30.0)
        try:
            deadline = time.monotonic() + 10.0
            while (value := adapter.account_values().excess_liquidity) is None:
                assert time.monotonic() < deadline, "no ExcessLiquidity from the simulator"
                await asyncio.sleep(0.05)
            return value
        finally:
            await adapter.close()

    return asyncio.run(read())


def _write_set(db: Path) -> None:
    data = PhaseData(db)
    data.set_parameters(
        ParameterSet(
            effective_date=DAY,
            profit_target_pct=SET_PARAMS.profit_target_pct,
            stop_loss_pct=SET_PARAMS.stop_loss_pct,
            size_pct=SIZE_PCT,
            recovery_target_pct=SET_PARAMS.recovery_target_pct,
            decided_on=date(2025, 11, 25),
            created_at=datetime(2025, 11, 25, 21, tzinfo=ET),
            reason="test: smaller, wider",
        )
    )
    data.close()


def _settled(store: Store) -> ActivePosition | None:
    """Return the position once its buy is FILLED (all its fills are in)."""
    row = open_position(store, SYMBOL)
    if row is None or row.entry_order_ref is None:
        return None
    order = store.order(row.entry_order_ref)
    return row if order is not None and order.status.value == "FILLED" else None


def _spans(run: Run, name: str, **attributes: object) -> list[SpanRecord]:
    """Return the spans exported so far named ``name`` with ``attributes``."""
    store = SpanStore(run.spans)
    try:
        return store.find(name, attributes=attributes)
    finally:
        store.close()


def _span(run: Run, name: str, **attributes: object) -> list[SpanRecord]:
    """Wait for spans named ``name`` with ``attributes``; return them."""
    return wait_for(lambda: _spans(run, name, **attributes), 15, f"span {name} {attributes}")


def test_the_set_in_force_is_recorded_once_at_start_up(run: Run) -> None:
    (event,) = events_of(run.store, "params_in_force")

    assert event.detail["source"] == "param_sets of 2025-11-26 (decided 2025-11-25)"
    assert event.detail["allocation"] == pytest.approx(SIZE_PCT / 100)
    assert "parameters in force" in run.trader.text()


def test_the_new_positions_target_and_stop_come_from_the_set(run: Run) -> None:
    entry = run.position.entry_price
    assert entry is not None

    assert run.position.target_price == pytest.approx(target_price(entry, False, SET_PARAMS))
    assert run.position.stop_price == pytest.approx(stop_price(entry, SET_PARAMS))


def test_the_buy_is_sized_with_the_sets_allocation(run: Run) -> None:
    (order_event,) = events_of(run.store, "entry_order", SYMBOL)
    limit = order_event.detail["limit"]

    cash = run.excess_liquidity
    expected = position_size(cash, SIZE_PCT / 100, 2, limit, MAX_ORDER_NOTIONAL)
    assert order_event.detail["quantity"] == expected
    assert expected < position_size(cash, 0.10, 2, limit, MAX_ORDER_NOTIONAL)  # settings'
    assert run.position.quantity == expected


def test_buy_fills_are_recorded_with_their_commission(run: Run) -> None:
    ref = run.position.entry_order_ref
    broker = {e.exec_id: e for e in run.executions if e.order_ref == ref}
    fills = wait_for(
        lambda: (
            (rows := run.store.fills(order_ref=ref))
            and all(f.commission is not None for f in rows)
            and rows
        ),
        10,
        "every buy fill with its commission",
    )

    assert {f.exec_id for f in fills} == set(broker)
    assert sum(f.quantity for f in fills) == run.position.quantity
    for fill in fills:
        assert fill.commission == pytest.approx(broker[fill.exec_id].commission)
        assert fill.commission > 0


def test_signal_evaluation_and_order_placement_are_spans_in_the_span_store(run: Run) -> None:
    ref = run.position.entry_order_ref
    (placed,) = _span(run, "order.place", order_ref=ref)
    fired = _span(run, "signal.evaluate", symbol=SYMBOL, fire=True)

    assert placed.process == "day_trader" and placed.status != "ERROR"
    assert placed.attributes["symbol"] == SYMBOL and placed.attributes["side"] == "BUY"
    assert placed.attributes["quantity"] == run.position.quantity
    assert placed.attributes["limit"] > 0 and placed.attributes["outcome"] == "sent"
    assert {s.attributes["kind"] for s in fired} == {"vwap"}
    assert all(s.attributes["reason"].startswith("vwap:") for s in fired)
    assert all("decision" in s.attributes for s in fired)


def test_an_evaluation_is_traced_again_only_when_its_outcome_changes(run: Run) -> None:
    first = min(_span(run, "signal.evaluate", symbol=QUIET), key=lambda s: s.start_ns)
    since = datetime.fromisoformat(first.attributes["market.time"])
    # Passes run every LOOP_INTERVAL_S (0.25 s): a dozen per bar here. Two more bars:
    wait_for(lambda: run.clock.now() >= since + timedelta(minutes=2), 15, "two more bars")
    time.sleep(0.5)  # the trader exports spans every 0.1 s

    traced = sorted(_spans(run, "signal.evaluate", symbol=QUIET), key=lambda s: s.start_ns)
    outcomes = [
        (a.get("kind"), a["fire"], tuple(a.get("failed", ())), a["decision"])
        for a in (s.attributes for s in traced)
    ]

    assert all(before != after for before, after in zip(outcomes, outcomes[1:], strict=False))
    assert all(not fire and "below_vwap" in failed for _, fire, failed, _ in outcomes)
    assert all(s.end_ns > s.start_ns for s in traced)
