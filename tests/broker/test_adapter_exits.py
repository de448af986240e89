"""The adapter and the exit manager's sells: forgetting a lost sell, and the notional cap.

``forget_order`` is for a sell that a reconcile on a newer connection proved the broker
never had: it must stop counting as working (else the sell guard, "never more than held
minus the sells still working", blocks the resend forever), and it must never forget an
order the broker has. The notional cap stops fat-fingered entries; the exit manager's
sells are exempt from it (never more than held still applies).

A lost sell is made for real: the simulator is restarted on the same ports with a fresh
account database, so the new connection's snapshot has no trace of the sell.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.adapter import BrokerAdapter
from broker.errors import OrderRefusedError
from broker.guards import Role
from broker.models import OrderStatus, OrderView
from broker.orders import ForgottenOrder

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter_fixtures import (  # noqa: E402
    SimProcess,
    adapter_sim,
    make_adapter,
    private_sim,
    run,
    until,
)

__all__ = ["adapter_sim", "private_sim"]  # fixtures: imported for pytest to find them

LIB = "ib_async"  # the behaviour under test is the adapter's own, not the library's


async def _last(adapter: BrokerAdapter, symbol: str) -> float:
    await adapter.subscribe_quotes([symbol])
    quote = await until(
        lambda: (q := adapter.quote(symbol)) and q.bid and q.ask and q.last and q, 10, "a quote"
    )
    return quote.last


async def _limit(
    adapter: BrokerAdapter,
    symbol: str,
    action: str,
    shares: int,
    limit: float,
    ref: str,
    last: float,
) -> OrderView:
    """Send a limit order checked against ``last`` (as the exit manager passes its mark)."""
    return await adapter.place_limit(symbol, action, shares, limit, ref, reference_price=last)


async def _buy(tool: BrokerAdapter, symbol: str, shares: int, ref: str) -> None:
    last = await _last(tool, symbol)
    await _limit(tool, symbol, "BUY", shares, last * 1.01, ref, last)
    await until(lambda: tool.order(ref).status == OrderStatus.FILLED, 15, f"{ref} filled")


async def _reconnected(adapter: BrokerAdapter, connects: int) -> None:
    await until(
        lambda: adapter.stats().connects >= connects and adapter.is_connected,
        30,
        f"connection {connects} of client {adapter.client_id}",
    )


def test_sell_absent_from_a_newer_connections_snapshot_is_forgotten_and_the_rest_sold(
    private_sim: SimProcess, tmp_path: Path
) -> None:
    symbol = "ORCL"

    async def scenario() -> None:
        tool = make_adapter(private_sim, LIB)
        exits = make_adapter(private_sim, LIB, role=Role.EXIT_MANAGER)
        forgotten: list[ForgottenOrder] = []
        statuses: list[OrderView] = []
        exits.forgotten.subscribe(forgotten.append)
        exits.order_status.subscribe(statuses.append)
        await tool.start(timeout=15)
        await exits.start(timeout=15)
        try:
            await _buy(tool, symbol, 10, "buy-a")
            await until(lambda: exits.position(symbol) == 10, 10, "the position")
            last = await _last(exits, symbol)
            await _limit(exits, symbol, "SELL", 10, last * 1.04, "lost-1", last)  # rests
            assert exits.order("lost-1").status == OrderStatus.SUBMITTED
            # Same connection: nothing has looked for it since it was sent.
            assert exits.forget_order("lost-1", "absent after a reconnect") is False

            # The broker comes back with no trace of the sell; another client buys there.
            private_sim.stop()
            private_sim.db = tmp_path / "fresh-account.db"
            private_sim.launch()
            await _reconnected(tool, 2)
            await _reconnected(exits, 2)
            await _buy(tool, symbol, 10, "buy-b")
            await until(lambda: exits.position(symbol) == 10, 10, "the new position")
            last = await _last(exits, symbol)
            with pytest.raises(OrderRefusedError, match="sell_exceeds_position"):
                await _limit(exits, symbol, "SELL", 10, last * 0.99, "resend-1", last)

            assert exits.forget_order("lost-1", "absent after a reconnect") is True
            view = exits.order("lost-1")
            assert view.status == OrderStatus.CANCELLED and view.remaining == 0
            assert view.error == "absent after a reconnect"
            assert statuses[-1].order_ref == "lost-1"
            assert statuses[-1].status == OrderStatus.CANCELLED
            (event,) = forgotten
            assert (event.order_ref, event.symbol, event.action) == ("lost-1", symbol, "SELL")
            assert event.quantity == 10 and event.reason == "absent after a reconnect"
            assert "connection 2" in event.proof
            assert exits.forget_order("lost-1", "again") is False  # final now: once
            # Never sent twice under its order_ref: the book still knows it.
            assert (await _limit(exits, symbol, "SELL", 10, last, "lost-1", last)).is_done

            await _limit(exits, symbol, "SELL", 10, last * 0.99, "resend-2", last)
            await until(lambda: exits.order("resend-2").status == OrderStatus.FILLED, 15, "sold")
            await until(lambda: exits.position(symbol) == 0, 10, "flat")
        finally:
            await exits.close()
            await tool.close()

    run(scenario, timeout=120)


def test_sell_working_at_the_broker_is_never_forgotten_before_or_after_a_reconnect(
    adapter_sim: SimProcess,
) -> None:
    symbol = "UBER"

    async def scenario() -> None:
        tool = make_adapter(adapter_sim, LIB)
        exits = make_adapter(adapter_sim, LIB, role=Role.EXIT_MANAGER)
        forgotten: list[ForgottenOrder] = []
        exits.forgotten.subscribe(forgotten.append)
        await tool.start(timeout=15)
        await exits.start(timeout=15)
        try:
            await _buy(tool, symbol, 5, "buy-live")
            await until(lambda: exits.position(symbol) == 5, 10, "the position")
            last = await _last(exits, symbol)
            await _limit(exits, symbol, "SELL", 5, last * 1.04, "live-1", last)  # rests
            assert exits.forget_order("live-1", "test") is False  # not looked for since
            assert exits.forget_order("never-sent", "test") is False  # not ours at all

            adapter_sim.control.drop_connections()
            await _reconnected(exits, 2)
            found = exits.reconcile_snapshot().find("live-1")
            assert found is not None and found.remaining == 5

            assert exits.forget_order("live-1", "test") is False
            assert exits.order("live-1").status == OrderStatus.SUBMITTED
            assert forgotten == []
            with pytest.raises(OrderRefusedError, match="sell_exceeds_position"):
                await _limit(exits, symbol, "SELL", 5, last * 0.99, "live-2", last)
            await exits.cancel("live-1")
            await until(lambda: exits.order("live-1").is_done, 10, "the cancel")
        finally:
            await exits.close()
            await tool.close()

    run(scenario, timeout=120)


def test_exit_managers_sell_above_the_notional_cap_goes_as_one_order_and_a_buy_is_refused(
    adapter_sim: SimProcess,
) -> None:
    symbol = "DIS"

    async def scenario() -> None:
        tool = make_adapter(adapter_sim, LIB)
        await tool.start(timeout=15)
        last = await _last(tool, symbol)
        cap = 20 * last  # 40 shares are worth twice the cap
        exits = make_adapter(adapter_sim, LIB, role=Role.EXIT_MANAGER, max_order_notional=cap)
        buyer = make_adapter(adapter_sim, LIB, role=Role.DAY_TRADER, max_order_notional=cap)
        await exits.start(timeout=15)
        await buyer.start(timeout=15)
        try:
            with pytest.raises(OrderRefusedError, match="notional_cap"):
                await _limit(buyer, symbol, "BUY", 40, last * 1.01, "cap-buy", last)
            await _buy(tool, symbol, 40, "cap-tool-buy")
            await until(lambda: exits.position(symbol) == 40, 10, "the position")
            last = await _last(exits, symbol)
            with pytest.raises(OrderRefusedError, match="sell_exceeds_position"):
                await _limit(exits, symbol, "SELL", 41, last * 0.99, "cap-sell-41", last)

            await _limit(exits, symbol, "SELL", 40, last * 0.99, "cap-sell", last)
            await until(lambda: exits.order("cap-sell").status == OrderStatus.FILLED, 15, "sold")
            assert exits.order("cap-sell").filled == 40
            assert [o.order_ref for o in exits.orders()] == ["cap-sell"]
        finally:
            await buyer.close()
            await exits.close()
            await tool.close()

    run(scenario, timeout=120)
