"""The adapter against the real simulator, through both real client libraries.

Every test runs once with ``ib_async`` and once with ``ib_insync`` (a fresh event loop
each), against one simulator per module; tests use their own client ids and symbols.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import time, timedelta
from pathlib import Path

import pytest

from broker.adapter import ScanCode
from broker.bars import BarClosed
from broker.errors import InterlockError, OrderRefusedError, RoleError, SymbolError
from broker.guards import Role
from broker.models import OrderStatus, Quote
from broker.state import ConnState

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter_fixtures import (  # noqa: E402
    LIBRARIES,
    SimProcess,
    adapter_sim,
    fast_sim,
    in_thread,
    make_adapter,
    run,
    until,
)

__all__ = ["adapter_sim", "fast_sim"]  # fixtures: imported for pytest to find them

pytestmark = pytest.mark.parametrize("lib", LIBRARIES)


def _full(quote: Quote | None) -> Quote | None:
    # The first update of a new subscription may carry only the day's open/close ticks.
    return quote if quote and quote.bid and quote.ask and quote.last else None


def test_connect_is_ready_only_after_sync_and_reports_account(
    adapter_sim: SimProcess, lib: str
) -> None:
    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        states: list[tuple[str, str]] = []
        adapter.state_changed.subscribe(lambda c: states.append((c.old, c.new)))
        await adapter.start(timeout=15)
        try:
            assert states == [
                (ConnState.DISCONNECTED, ConnState.CONNECTING),
                (ConnState.CONNECTING, ConnState.SYNCING),
                (ConnState.SYNCING, ConnState.READY),
            ]
            assert adapter.library_name == lib
            assert adapter.account == "DU1234567" and adapter.entries_allowed
            snapshot = adapter.reconcile_snapshot()
            assert snapshot is not None and snapshot.account == "DU1234567"
            values = adapter.account_values()
            assert values.account == "DU1234567"
            assert values.net_liquidation and values.net_liquidation > 0
            assert values.excess_liquidity and values.buying_power
            assert values.buying_power >= values.excess_liquidity
        finally:
            await adapter.close()
        assert adapter.state == ConnState.DISCONNECTED

    run(scenario)


def test_qualify_and_historical_bars_with_premarket_and_daily(
    adapter_sim: SimProcess, lib: str
) -> None:
    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        await adapter.start(timeout=15)
        try:
            info = await adapter.qualify("aapl")
            assert (info.symbol, info.primary_exchange, info.min_tick) == ("AAPL", "NASDAQ", 0.01)
            assert info.con_id > 0
            with pytest.raises(SymbolError, match="NOSUCH"):
                await adapter.qualify("NOSUCH")

            bars = await adapter.bars_1min("AAPL")
            assert str(bars.index.tz) == "America/New_York"
            assert bars.index[0].time() == time(4, 0)  # the pre-market is included
            assert bars.index.is_monotonic_increasing and len(bars) > 300
            rth = await adapter.bars_1min("AAPL", include_premarket=False)
            assert rth.index[0].time() == time(9, 30)

            daily = await adapter.daily_bars("AAPL", 5)
            assert len(daily) == 5 and daily.index[-1].tz is not None
            assert list(daily.index.time) == [time(0, 0)] * 5

            # An identical request within 15 s is answered from the cache, not re-sent.
            sent = adapter.stats().history_requests
            again = await adapter.bars_1min("AAPL")
            assert adapter.stats().history_requests == sent
            assert again.equals(bars)
        finally:
            await adapter.close()

    run(scenario)


def test_streaming_quotes_arrive_as_events_live_and_delayed(
    adapter_sim: SimProcess, lib: str
) -> None:
    async def scenario() -> None:
        live = make_adapter(adapter_sim, lib)
        delayed = make_adapter(adapter_sim, lib, market_data_type=3)
        pushed: list[Quote] = []
        live.quotes_changed.subscribe(pushed.extend)
        await live.start(timeout=15)
        await delayed.start(timeout=15)
        try:
            await live.subscribe_quotes(["MSFT", "NVDA"])
            await delayed.subscribe_quotes(["MSFT"])
            await until(lambda: {q.symbol for q in pushed} == {"MSFT", "NVDA"}, 10, "both symbols")
            count = len(pushed)
            await until(lambda: len(pushed) > count + 2, 10, "further pushes")
            quote = live.quote("MSFT")
            assert quote is not None and not quote.delayed and not quote.halted
            assert quote.bid and quote.ask and quote.last and quote.bid <= quote.ask
            assert not live.is_stale("MSFT")
            late = await until(lambda: delayed.quote("MSFT"), 10, "a delayed quote")
            assert late.delayed and late.last
            with pytest.raises(SymbolError, match="NOSUCH"):
                await live.subscribe_quotes(["NOSUCH"])
        finally:
            await live.close()
            await delayed.close()

    run(scenario)


def test_scanner_returns_top_gainers_and_most_active(adapter_sim: SimProcess, lib: str) -> None:
    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        await adapter.start(timeout=15)
        try:
            gainers = await adapter.scan(ScanCode.TOP_PERC_GAIN, rows=10)
            active = await adapter.scan(ScanCode.MOST_ACTIVE, rows=10)
            assert 1 <= len(gainers) <= 10 and 1 <= len(active) <= 10
            assert all(isinstance(s, str) and s.isupper() for s in gainers + active)
            assert gainers != active
        finally:
            await adapter.close()

    run(scenario)


def test_order_lifecycle_fill_partial_fill_cancel_with_order_ref_everywhere(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = "LCID" if lib == "ib_async" else "DKNG"

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        observer = make_adapter(adapter_sim, lib)  # another client: sees all open orders
        fills, commissions, statuses = [], [], []
        adapter.fills.subscribe(fills.append)
        adapter.commissions.subscribe(commissions.append)
        adapter.order_status.subscribe(statuses.append)
        await adapter.start(timeout=15)
        await observer.start(timeout=15)
        try:
            await adapter.subscribe_quotes([symbol])
            quote = await until(lambda: _full(adapter.quote(symbol)), 10, "a quote")
            ref = f"flow-{lib}-"

            # 1. A resting buy is acknowledged, shows its orderRef to every client, cancels.
            rest = await adapter.place_limit(symbol, "BUY", 10, quote.bid * 0.97, ref + "rest")
            assert rest.status == OrderStatus.SUBMITTED and rest.perm_id
            cents = rest.limit_price * 100
            assert abs(cents - round(cents)) < 1e-6  # rounded onto the tick grid
            seen = await observer.reconcile()
            assert seen.open_orders[ref + "rest"].client_id == adapter.client_id
            cancelled = await adapter.cancel(ref + "rest")
            assert cancelled is not None
            await until(lambda: adapter.order(ref + "rest").status == OrderStatus.CANCELLED, 10)

            # 2. A big marketable buy fills partially, in several executions.
            big = 12_000
            buy = await adapter.place_limit(symbol, "BUY", big, quote.ask * 1.01, ref + "buy")
            assert buy.order_ref == ref + "buy"
            await until(
                lambda: adapter.order(ref + "buy").status == OrderStatus.FILLED, 20, "the fill"
            )
            done = adapter.order(ref + "buy")
            assert done.filled == big and done.remaining == 0
            partial = [s for s in statuses if s.order_ref == ref + "buy" and 0 < s.filled < big]
            assert partial, "expected a partially filled status before the fill"
            mine = [f for f in fills if f.order_ref == ref + "buy"]
            assert len(mine) >= 2 and sum(f.shares for f in mine) == big
            await until(lambda: {c.exec_id for c in commissions} >= {f.exec_id for f in mine}, 10)
            assert all(c.commission and c.commission > 0 for c in commissions)
            await until(lambda: adapter.position(symbol) >= big, 10, "the position")
            await until(
                lambda: any(r.symbol == symbol and r.quantity >= big for r in adapter.portfolio()),
                10,
                "the portfolio row",
            )

            # 3. Sell it back; orderRef comes back on completed orders and executions.
            quote = adapter.quote(symbol)
            await adapter.place_limit(symbol, "SELL", big, quote.bid * 0.99, ref + "sell")
            await until(
                lambda: adapter.order(ref + "sell").status == OrderStatus.FILLED, 20, "the sale"
            )
            snapshot = await adapter.reconcile()
            for suffix, status in (
                ("rest", OrderStatus.CANCELLED),
                ("buy", OrderStatus.FILLED),
                ("sell", OrderStatus.FILLED),
            ):
                assert snapshot.completed_orders[ref + suffix].status == status
            execs = snapshot.executions_for(ref + "buy")
            assert sum(e.shares for e in execs) == big and all(e.commission for e in execs)
            assert {e.side for e in snapshot.executions_for(ref + "sell")} == {"SLD"}
            found = await adapter.find_order(ref + "buy", refresh=True)
            assert found is not None and found.status == OrderStatus.FILLED

            # 4. The same orderRef is never sent twice: the known order is returned.
            sent = adapter.stats().orders_sent
            again = await adapter.place_limit(symbol, "BUY", 5, quote.ask, ref + "buy")
            assert again.status == OrderStatus.FILLED and adapter.stats().orders_sent == sent
        finally:
            await adapter.close()
            await observer.close()

    run(scenario, timeout=90)


def test_interlock_refuses_orders_for_an_unexpected_account(
    adapter_sim: SimProcess, lib: str
) -> None:
    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib, account="DU7777777")
        refusals, errors = [], []
        adapter.refusals.subscribe(refusals.append)
        adapter.errors.subscribe(errors.append)
        await adapter.start(timeout=15)
        try:
            assert adapter.state == ConnState.READY and not adapter.entries_allowed
            with pytest.raises(InterlockError, match="IB_ACCOUNT=DU7777777"):
                await adapter.place_limit(
                    "AAPL", "BUY", 1, 100.0, f"lock-{lib}", reference_price=100.0
                )
            assert [r.rule for r in refusals] == ["InterlockError"]
            assert any(e.action == "stop_trading" for e in errors)
            assert adapter.stats().orders_sent == 0
        finally:
            await adapter.close()

    run(scenario)


def test_concurrent_placements_of_one_order_ref_send_a_single_order(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick_symbol(lib, "UBER", "PYPL")

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        await adapter.start(timeout=15)
        try:
            await adapter.subscribe_quotes([symbol])
            quote = await until(lambda: _full(adapter.quote(symbol)), 10, "a quote")
            ref = f"twice-{lib}"
            views = await asyncio.gather(
                *(adapter.place_limit(symbol, "BUY", 1, quote.ask * 1.01, ref) for _ in range(3))
            )
            assert adapter.stats().orders_sent == 1
            assert len({v.order_id for v in views}) == 1
        finally:
            await adapter.close()

    run(scenario)


def test_exit_manager_may_not_buy_nor_sell_more_than_the_broker_holds(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick_symbol(lib, "DIS", "NKE")

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib, role=Role.EXIT_MANAGER)
        refusals = []
        adapter.refusals.subscribe(refusals.append)
        await adapter.start(timeout=15)
        try:
            await adapter.subscribe_quotes([symbol])
            quote = await until(lambda: _full(adapter.quote(symbol)), 10, "a quote")
            assert adapter.position(symbol) == 0
            with pytest.raises(RoleError):
                await adapter.place_limit(symbol, "BUY", 1, quote.ask, f"em-buy-{lib}")
            with pytest.raises(OrderRefusedError, match="sell_exceeds_position"):
                await adapter.place_limit(symbol, "SELL", 1, quote.bid, f"em-sell-{lib}")
            with pytest.raises(OrderRefusedError, match="price_collar"):
                await adapter.place_limit(symbol, "SELL", 1, quote.bid * 0.5, f"em-far-{lib}")
            assert [r.rule for r in refusals] == [
                "RoleError",
                "sell_exceeds_position",
                "price_collar",
            ]
            assert adapter.stats().orders_sent == 0
        finally:
            await adapter.close()

    run(scenario)


def _pick_symbol(lib: str, for_async: str, for_insync: str) -> str:
    return for_async if lib == "ib_async" else for_insync


def test_streamed_one_minute_bars_emit_each_close_and_survive_a_reconnect(
    fast_sim: SimProcess, lib: str
) -> None:
    async def scenario() -> None:
        adapter = make_adapter(fast_sim, lib)
        closed: list[BarClosed] = []
        adapter.bars_closed.subscribe(closed.append)
        await adapter.start(timeout=15)
        try:
            bars = await adapter.stream_bars_1min("amd")
            assert bars.index[0].time() == time(4, 0)  # pre-market included
            assert bars.index[-1] <= adapter.clock.now() - timedelta(minutes=1)  # completed
            await until(lambda: len(closed) >= 2, 10, "two bar closes")
            first, second = closed[0], closed[1]
            assert (first.symbol, second.time - first.time) == ("AMD", timedelta(minutes=1))
            streamed = adapter.streamed_bars_1min("AMD")
            assert streamed.index[-1] >= second.time and len(streamed) > len(bars)

            await in_thread(fast_sim.control.drop_connections)
            await until(lambda: adapter.stats().connects == 2, 10, "the reconnect")
            await until(lambda: adapter.state == ConnState.READY, 10, "READY")
            seen = len(closed)
            await until(lambda: len(closed) >= seen + 2, 10, "closes after the reconnect")
            assert closed[-1].time > second.time
            adapter.stop_bars_1min("AMD")
            assert adapter.streamed_bars_1min("AMD") is None
        finally:
            await adapter.close()

    run(scenario)
