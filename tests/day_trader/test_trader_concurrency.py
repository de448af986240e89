"""Two day traders started at once on one watchlist never hold two positions in one symbol.

Each process has its own IBKR client id (the broker allows one connection per id) and
both share the database; the claim transaction (UNIQUE symbol) decides every race. The
exchange must see exactly one buy order per symbol.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from market.clock import ET

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dt_harness import (  # noqa: E402
    QUIET_PATTERN,
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
SPEED = 10.0
PATHS = (
    PricePath("DUPA", VWAP_PATTERN, gap_pct=1.0),
    PricePath("DUPB", VWAP_PATTERN, gap_pct=1.0, start_price=25.0),
    PricePath("DUPC", QUIET_PATTERN, gap_pct=7.0),
    PricePath("DUPD", QUIET_PATTERN, gap_pct=8.0, start_price=30.0),
)
SYMBOLS = [p.symbol for p in PATHS]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    with running_market(tmp_path_factory.mktemp("twins"), PATHS, START, SPEED) as m:
        yield m


@pytest.fixture
def traders(market: Market, tmp_path: Path) -> Iterator[Traders]:
    started = Traders(market, tmp_path)
    yield started
    started.stop_all()


def test_two_traders_started_at_once_never_hold_two_positions_in_one_symbol(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, SYMBOLS)
    with ExitManagerStandIn(store, market.clock):
        one = traders.start(db, name="one", IB_CLIENT_ID_DAY_TRADER=12, QUOTE_MAX_AGE_S=120)
        two = traders.start(db, name="two", IB_CLIENT_ID_DAY_TRADER=22, QUOTE_MAX_AGE_S=120)

        def explain() -> str:
            return f"--- one\n{one.tail(30)}\n--- two\n{two.tail(30)}"

        positions = wait_for(
            lambda: all(open_position(store, s) for s in SYMBOLS) and store.active_positions(),
            90,
            "every symbol held",
            explain=explain,
        )
        for process in (one, two):
            wait_for(lambda p=process: "entries from starting to allowed" in p.text(), 30,
                     "both traders past the gate", explain=explain)  # fmt: skip
        seen = market.now()
        wait_for(lambda: market.now() >= seen + timedelta(minutes=1, seconds=10), 30, "a bar")
        claims = sorted(e.symbol for e in events_of(store, "claim"))
    assert claims == sorted(SYMBOLS), explain()
    assert sorted(p.symbol for p in positions) == sorted(SYMBOLS)
    held = {p.symbol: p.entry_order_ref for p in store.active_positions()}
    for symbol in SYMBOLS:
        assert [o.order_ref for o in buy_orders(store, symbol)] == [held[symbol]]
    buys = buys_by_symbol(broker_executions(market.sim.port))
    assert {s: buys.get(s) for s in SYMBOLS} == {s: {held[s]} for s in SYMBOLS}
    row = store.process("day_trader")
    assert row is not None and row.ready and row.last_heartbeat is not None
    assert (one.stop(), two.stop()) == (0, 0)  # SIGTERM: a requested stop exits 0
