"""What the adapter does about each fault the simulator can inject, with both client libraries.

Faults: dropped connections (and a fill while disconnected), refused connections,
connectivity 1100 then 1101 or 1102, withheld and delayed order acknowledgements, a
rejected order, stalled market data, a halted symbol, a restart with nextValidId rolled
back below used ids, and a client id already in use. Each test undoes its fault.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import pytest

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.errors import BrokerError, BrokerErrorEvent, ErrorAction
from broker.models import ExecutionView, OrderStatus, Quote
from broker.state import ConnState, StateChange
from market.clock import LiveClock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter_fixtures import (  # noqa: E402
    LIBRARIES,
    SimProcess,
    adapter_sim,
    in_thread,
    make_adapter,
    next_client_id,
    private_sim,
    run,
    until,
)

__all__ = ["adapter_sim", "private_sim"]  # fixtures: imported for pytest to find them

pytestmark = pytest.mark.parametrize("lib", LIBRARIES)


def _pick(lib: str, for_async: str, for_insync: str) -> str:
    return for_async if lib == "ib_async" else for_insync


def _record(adapter: BrokerAdapter) -> tuple[list[StateChange], list[BrokerErrorEvent]]:
    states: list[StateChange] = []
    errors: list[BrokerErrorEvent] = []
    adapter.state_changed.subscribe(states.append)
    adapter.errors.subscribe(errors.append)
    return states, errors


async def _quoted(adapter: BrokerAdapter, symbol: str) -> float:
    await adapter.subscribe_quotes([symbol])
    quote = await until(lambda: _full(adapter, symbol), 10, f"a quote of {symbol}")
    return quote.last


def _full(adapter: BrokerAdapter, symbol: str) -> Quote | None:
    # The first update of a new subscription may carry only the day's open/close ticks.
    quote = adapter.quote(symbol)
    return quote if quote and quote.bid and quote.ask and quote.last else None


def test_dropped_connection_reconnects_and_recovers_a_fill_made_while_away(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "KO", "PEP")
    ref = f"drop-{lib}"

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        states, _ = _record(adapter)
        fills: list[ExecutionView] = []
        adapter.fills.subscribe(fills.append)
        await adapter.start(timeout=15)
        try:
            last = await _quoted(adapter, symbol)
            rest = await adapter.place_limit(symbol, "BUY", 5, last * 0.98, ref)
            assert rest.status == OrderStatus.SUBMITTED
            # Keep the adapter out for 2 s, and make its resting order fill meanwhile.
            await in_thread(adapter_sim.control.refuse_connections, 2.0)
            await in_thread(adapter_sim.control.drop_connections)
            await until(lambda: adapter.state == ConnState.BACKOFF, 5, "BACKOFF")
            await in_thread(adapter_sim.control.set_price, symbol, rest.limit_price * 0.995)
            assert fills == []  # nothing reaches a disconnected client
            await until(lambda: adapter.state == ConnState.READY, 15, "READY again")
            await in_thread(adapter_sim.control.set_price, symbol, None)

            view = adapter.order(ref)
            assert (view.status, view.filled) == (OrderStatus.FILLED, 5)
            assert [f.order_ref for f in fills] == [ref]  # the fill, reported on reconcile
            assert adapter.stats().connects == 2
            path = [c.new for c in states]
            first_lost = path.index(ConnState.BACKOFF)
            assert path[first_lost - 1] == ConnState.READY
            assert path.count(ConnState.CONNECTING) >= 3  # retried while refused
            assert path[-3:] == [ConnState.CONNECTING, ConnState.SYNCING, ConnState.READY]
            # Quotes were resubscribed on the new connection.
            stamp = adapter.quote(symbol).time
            await until(lambda: adapter.quote(symbol).time > stamp, 10, "fresh quotes")
        finally:
            await adapter.close()

    run(scenario)


def test_refused_connections_are_retried_with_backoff_until_accepted(
    adapter_sim: SimProcess, lib: str
) -> None:
    async def scenario() -> None:
        await in_thread(adapter_sim.control.refuse_connections, 1.5)
        adapter = make_adapter(adapter_sim, lib)
        states, _ = _record(adapter)
        began = time.monotonic()
        await adapter.start(timeout=15)
        try:
            waited = time.monotonic() - began
            path = [c.new for c in states]
            assert waited >= 1.2
            assert path.count(ConnState.BACKOFF) >= 2
            assert all("Refused" in c.reason for c in states if c.new == ConnState.BACKOFF)
            assert adapter.state == ConnState.READY
        finally:
            await adapter.close()

    run(scenario)


@pytest.mark.parametrize("restore", [1101, 1102])
def test_connectivity_loss_pauses_entries_and_restore_resumes(
    adapter_sim: SimProcess, lib: str, restore: int
) -> None:
    symbol = {1101: _pick(lib, "T", "VZ"), 1102: _pick(lib, "PFE", "F")}[restore]

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        states, errors = _record(adapter)
        await adapter.start(timeout=15)
        try:
            await _quoted(adapter, symbol)
            requests = adapter.stats().market_data_requests
            await in_thread(adapter_sim.control.connectivity, restore, 1.0)
            await until(lambda: adapter.state == ConnState.PAUSED, 5, "PAUSED")
            assert not adapter.entries_allowed and adapter.is_connected
            assert any(e.code == 1100 and e.action == ErrorAction.RETRY for e in errors)
            await until(lambda: adapter.state == ConnState.READY, 5, "READY")
            assert adapter.entries_allowed
            assert [c.new for c in states][-2:] == [ConnState.PAUSED, ConnState.READY]
            resubscribed = adapter.stats().market_data_requests - requests
            # 1101: market data was lost and is requested again; 1102: it was kept.
            assert resubscribed == (1 if restore == 1101 else 0)
            stamp = adapter.quote(symbol).time
            await until(lambda: adapter.quote(symbol).time > stamp, 10, "quotes flowing")
        finally:
            await adapter.close()

    run(scenario)


def test_withheld_acknowledgement_makes_the_order_unknown_until_the_broker_acks(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "INTC", "CSCO")
    ref = f"withheld-{lib}"

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib, ack_timeout_s=0.5)
        statuses = []
        adapter.order_status.subscribe(lambda v: statuses.append(v.status))
        await adapter.start(timeout=15)
        try:
            last = await _quoted(adapter, symbol)
            await in_thread(adapter_sim.control.withhold_acks, True)
            try:
                view = await adapter.place_limit(symbol, "BUY", 3, last * 1.01, ref)
                assert view.status == OrderStatus.UNKNOWN  # not "cancelled": no evidence
                assert "no acknowledgement" in view.error
                assert statuses == [OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN]
                # Reconciling does not turn an unknown order into something it is not.
                await adapter.reconcile()
                assert adapter.order(ref).status == OrderStatus.UNKNOWN
                # Asking again with the same order_ref does not send a second order.
                sent = adapter.stats().orders_sent
                await adapter.place_limit(symbol, "BUY", 3, last * 1.01, ref)
                assert adapter.stats().orders_sent == sent
            finally:
                await in_thread(adapter_sim.control.withhold_acks, False)
            await until(lambda: adapter.order(ref).status == OrderStatus.FILLED, 10, "adoption")
            assert adapter.order(ref).perm_id and adapter.order(ref).filled == 3
        finally:
            await adapter.close()

    run(scenario)


def test_delayed_acknowledgement_is_unknown_first_then_adopted(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "WFC", "BAC")
    ref = f"delayed-{lib}"

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib, ack_timeout_s=0.3)
        await adapter.start(timeout=15)
        try:
            last = await _quoted(adapter, symbol)
            await in_thread(adapter_sim.control.ack_delay, 1.0)
            try:
                view = await adapter.place_limit(symbol, "BUY", 2, last * 1.01, ref)
                assert view.status == OrderStatus.UNKNOWN
                await until(lambda: adapter.order(ref).status == OrderStatus.FILLED, 10, "ack")
            finally:
                await in_thread(adapter_sim.control.ack_delay, 0.0)
        finally:
            await adapter.close()

    run(scenario)


def test_rejected_order_is_reported_rejected_with_a_classified_error(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "C", "MS")
    ref = f"reject-{lib}"

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        _, errors = _record(adapter)
        await adapter.start(timeout=15)
        try:
            last = await _quoted(adapter, symbol)
            await in_thread(adapter_sim.control.reject_next_order, 201, "insufficient margin")
            view = await adapter.place_limit(symbol, "BUY", 2, last * 1.01, ref)
            assert view.status == OrderStatus.REJECTED and view.is_done
            assert view.error_code == 201 and "margin" in view.error
            event = next(e for e in errors if e.code == 201)
            assert (event.action, event.order_ref, event.symbol) == (
                ErrorAction.SKIP_SYMBOL,
                ref,
                symbol,
            )
            assert adapter.entries_allowed  # one rejected order does not stop trading
            snapshot = await adapter.reconcile()
            assert adapter.order(ref).status == OrderStatus.REJECTED
            assert snapshot.find(ref) is not None
        finally:
            await adapter.close()

    run(scenario)


def test_stalled_market_data_shows_as_stale_quotes_then_recovers(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "SNAP", "SOFI")

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib, quote_max_age_s=1.0)
        await adapter.start(timeout=15)
        try:
            await _quoted(adapter, symbol)
            await until(lambda: not adapter.is_stale(symbol), 5, "a fresh quote")
            await in_thread(adapter_sim.control.stall_market_data, True)
            try:
                await until(lambda: adapter.is_stale(symbol), 5, "a stale quote")
                quote = adapter.quote(symbol)
                assert quote.age_s(adapter.clock.now()) > 1.0
                assert adapter.state == ConnState.READY  # data stalls, the link is fine
                await asyncio.sleep(0.5)
                assert adapter.quote(symbol) is quote  # and no update came in between
            finally:
                await in_thread(adapter_sim.control.stall_market_data, False)
            await until(lambda: not adapter.is_stale(symbol), 5, "fresh quotes again")
        finally:
            await adapter.close()

    run(scenario)


def test_halted_symbol_quotes_halted_and_orders_rest_until_resumed(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "NIO", "RIVN")
    ref = f"halt-{lib}"

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        await adapter.start(timeout=15)
        try:
            last = await _quoted(adapter, symbol)
            await in_thread(adapter_sim.control.halt, symbol, True)
            try:
                await until(lambda: adapter.quote(symbol).halted, 5, "a halted quote")
                view = await adapter.place_limit(symbol, "BUY", 4, last * 1.02, ref)
                assert view.status == OrderStatus.SUBMITTED
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:  # nothing fills while halted
                    assert adapter.order(ref).filled == 0
                    await asyncio.sleep(0.05)
            finally:
                await in_thread(adapter_sim.control.halt, symbol, False)
            await until(lambda: not adapter.quote(symbol).halted, 5, "trading resumed")
            await until(lambda: adapter.order(ref).status == OrderStatus.FILLED, 10, "the fill")
        finally:
            await adapter.close()

    run(scenario)


def test_restart_keeps_the_account_and_rolled_back_next_id_never_reuses_an_order_id(
    private_sim: SimProcess, lib: str
) -> None:
    symbol = "F"

    async def scenario() -> None:
        client_id = next_client_id()
        adapter = make_adapter(private_sim, lib, client_id=client_id, connect_timeout_s=3.0)
        states, errors = _record(adapter)
        await adapter.start(timeout=15)
        try:
            last = await _quoted(adapter, symbol)
            views = [
                await adapter.place_limit(symbol, "BUY", 1, last * 1.01, f"rb-{lib}-{i}")
                for i in range(6)
            ]
            await until(
                lambda: all(adapter.order(v.order_ref).status == "Filled" for v in views), 10
            )
            used = [v.order_id for v in views]
            held = adapter.position(symbol)
            net_liq = adapter.account_values().net_liquidation

            # The gateway comes back with nextValidId at our *first* id: reusing ids is easy.
            await in_thread(private_sim.control.roll_back_next_valid_id, client_id, used[0])
            await in_thread(private_sim.restart)
            await until(lambda: adapter.stats().connects == 2, 20, "reconnect after restart")
            await until(lambda: adapter.state == ConnState.READY, 10, "READY")
            assert ConnState.BACKOFF in [c.new for c in states]

            # The account survived the restart, and so did the orders and fills.
            await until(lambda: adapter.position(symbol) == held, 5, "positions")
            assert adapter.account_values().net_liquidation == pytest.approx(net_liq, rel=1e-3)
            snapshot = adapter.reconcile_snapshot()
            assert all(snapshot.completed_orders[v.order_ref].status == "Filled" for v in views)
            assert len(snapshot.executions_for(f"rb-{lib}-0")) == 1

            await until(lambda: _full(adapter, symbol), 10, "quotes after the restart")
            after = await adapter.place_limit(symbol, "BUY", 1, last * 1.01, f"rb-{lib}-new")
            assert after.order_id > max(used)
            await until(lambda: adapter.order(after.order_ref).status == "Filled", 10)
            assert not [e for e in errors if e.code == 103]  # no duplicate order id
        finally:
            await adapter.close()

    run(scenario, timeout=90)


def test_client_id_in_use_is_retried_after_a_delay(adapter_sim: SimProcess, lib: str) -> None:
    async def scenario() -> None:
        client_id = next_client_id()
        first = make_adapter(adapter_sim, lib, client_id=client_id)
        second = make_adapter(adapter_sim, lib, client_id=client_id)
        states, errors = _record(second)
        await first.start(timeout=15)
        try:
            await second.start(wait=False)
            await until(lambda: any(e.code == 326 for e in errors), 10, "error 326")
            await until(lambda: second.state == ConnState.BACKOFF, 5, "BACKOFF")
            assert "326" in [c for c in states if c.new == ConnState.BACKOFF][0].reason
            assert next(e for e in errors if e.code == 326).action == ErrorAction.RETRY
            await first.close()
            await second.wait_ready(10)
            assert second.state == ConnState.READY
        finally:
            await first.close()
            await second.close()

    run(scenario)


def test_live_data_not_subscribed_falls_back_to_delayed_quotes(
    adapter_sim: SimProcess, lib: str
) -> None:
    symbol = _pick(lib, "PINS", "ROKU")

    async def scenario() -> None:
        adapter = make_adapter(adapter_sim, lib)
        _, errors = _record(adapter)
        await adapter.start(timeout=15)
        try:
            await _quoted(adapter, symbol)
            assert not adapter.quote(symbol).delayed
            requests = adapter.stats().market_data_requests
            # The simulator always has live data; deliver what TWS says without a market
            # data subscription, through the library's own error event.
            contract = adapter._contracts[symbol][0]
            adapter._ib.errorEvent.emit(
                -1, 354, "Requested market data is not subscribed.", contract
            )
            await until(lambda: adapter.quote(symbol).delayed, 10, "delayed quotes")
            assert adapter.stats().market_data_requests == requests + 1
            assert next(e for e in errors if e.code == 354).action == ErrorAction.SKIP_SYMBOL
            await until(lambda: _full(adapter, symbol), 10, "a full delayed quote")
        finally:
            await adapter.close()

    run(scenario)


def test_giving_up_after_the_allowed_attempts_is_fatal(lib: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        config = AdapterConfig(
            port=port, max_connect_attempts=3, backoff_base_s=0.05, backoff_cap_s=0.1
        )
        adapter = BrokerAdapter(config, LiveClock(), next_client_id(), role="tool", library=lib)
        states, _ = _record(adapter)
        with pytest.raises(BrokerError, match="gave up"):
            await adapter.start(timeout=10)
        assert adapter.state == ConnState.FATAL
        assert [c.new for c in states].count(ConnState.CONNECTING) == 3
        await adapter.close()
        assert adapter.state == ConnState.DISCONNECTED

    run(scenario)
