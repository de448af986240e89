"""Orders, fills and executions through the real client libraries (ib_async and ib_insync).

Every test uses its own clientIds and symbols in the module's shared simulator, so the
tests do not depend on each other's orders or positions.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import pytest

#: Per library, so that the two runs of a parametrized test never share a symbol.
SYMBOLS = {
    "fill": {"ib_async": "AAPL", "ib_insync": "MSFT"},
    "partial": {"ib_async": "AMC", "ib_insync": "ENPH"},
    "away": {"ib_async": "KO", "ib_insync": "PFE"},
}
CLIENT_IDS = {"ib_async": 100, "ib_insync": 200}


def _cid(lib: ModuleType, offset: int) -> int:
    return CLIENT_IDS[lib.__name__] + offset


def _ref(tag: str) -> str:
    return f"{tag}-{time.monotonic_ns()}"


def _qualified(ib: Any, lib: ModuleType, symbol: str) -> Any:
    contract = lib.Stock(symbol, "SMART", "USD")
    assert ib.qualifyContracts(contract) == [contract]
    return contract


def _quote(ib: Any, contract: Any) -> Any:
    (ticker,) = ib.reqTickers(contract)
    assert ticker.bid > 0 and ticker.ask > 0
    return ticker


def _cash(ib: Any) -> float:
    (cash,) = [float(v.value) for v in ib.accountValues() if v.tag == "TotalCashValue"]
    return cash


def _codes_by_order(ib: Any) -> dict[int, list[int]]:
    codes: dict[int, list[int]] = {}
    ib.errorEvent += lambda req_id, code, *rest: codes.setdefault(req_id, []).append(code)
    return codes


def test_marketable_limit_buy_fills_with_commission_and_order_ref(
    sim, client_lib, connect, wait_until
) -> None:
    ib = connect(client_lib, sim.port, _cid(client_lib, 1))
    contract = _qualified(ib, client_lib, SYMBOLS["fill"][client_lib.__name__])
    ask = _quote(ib, contract).ask
    ref = _ref("buy")
    trade = ib.placeOrder(
        contract, client_lib.LimitOrder("BUY", 10, round(ask * 1.02, 2), orderRef=ref)
    )
    events: list[str] = []
    trade.fillEvent += lambda *args: events.append("fill")
    trade.filledEvent += lambda *args: events.append("filled")
    trade.commissionReportEvent += lambda *args: events.append("commission")
    wait_until(ib, lambda: "commission" in events and trade.isDone(), what="fill + commission")

    assert trade.orderStatus.status == "Filled"
    assert events[:2] == ["fill", "filled"]
    assert trade.order.permId > 0 and trade.order.orderRef == ref
    (fill,) = trade.fills
    assert (fill.execution.orderRef, fill.execution.side, fill.execution.shares) == (ref, "BOT", 10)
    assert fill.execution.price <= round(ask * 1.02, 2)
    assert fill.execution.permId == trade.order.permId
    assert fill.commissionReport.commission > 0 and fill.commissionReport.currency == "USD"

    wait_until(
        ib,
        lambda: any(
            p.contract.conId == contract.conId and p.position >= 10 for p in ib.positions()
        ),
        what="position after the fill",
    )
    completed = [t for t in ib.reqCompletedOrders(apiOnly=True) if t.order.orderRef == ref]
    assert [(t.orderStatus.status, t.order.permId) for t in completed] == [
        ("Filled", trade.order.permId)
    ]
    executions = [f for f in ib.reqExecutions() if f.execution.orderRef == ref]
    assert [f.execution.execId for f in executions] == [fill.execution.execId]


def test_resting_limit_is_listed_then_cancelled(sim, client_lib, connect, wait_until) -> None:
    ib = connect(client_lib, sim.port, _cid(client_lib, 2))
    codes = _codes_by_order(ib)
    contract = _qualified(ib, client_lib, "INTC")
    limit = round(_quote(ib, contract).bid * 0.8, 2)
    ref = _ref("rest")
    trade = ib.placeOrder(contract, client_lib.LimitOrder("BUY", 5, limit, orderRef=ref))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted", what="Submitted")
    assert ref in [t.order.orderRef for t in ib.reqOpenOrders()]

    ib.cancelOrder(trade.order)
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled", what="Cancelled")
    wait_until(ib, lambda: 202 in codes.get(trade.order.orderId, []), what="error 202")
    assert trade.isDone() and trade.fills == []
    assert ref not in [t.order.orderRef for t in ib.reqOpenOrders()]
    completed = {t.order.orderRef: t.orderStatus.status for t in ib.reqCompletedOrders(False)}
    assert completed[ref] == "Cancelled"


def test_rejected_orders_end_cancelled_with_the_tws_code(
    sim, client_lib, connect, wait_until
) -> None:
    ib = connect(client_lib, sim.port, _cid(client_lib, 3))
    codes = _codes_by_order(ib)
    contract = _qualified(ib, client_lib, "BAC")
    bid = _quote(ib, contract).bid
    off_tick = ib.placeOrder(contract, client_lib.LimitOrder("BUY", 1, round(bid * 0.9, 2) + 0.005))
    unknown = ib.placeOrder(
        client_lib.Stock("NOSUCH", "SMART", "USD"), client_lib.LimitOrder("BUY", 1, 10.0)
    )
    too_big = ib.placeOrder(
        contract, client_lib.LimitOrder("BUY", int(20_000_000 / bid), round(bid, 2))
    )
    cases = {110: off_tick, 200: unknown, 201: too_big}
    for code, trade in cases.items():
        wait_until(ib, trade.isDone, what=f"trade rejected with {code}")
        assert trade.orderStatus.status == "Cancelled"
        assert code in codes[trade.order.orderId]
        assert trade.fills == []


def test_large_order_fills_in_parts(sim, client_lib, connect, wait_until) -> None:
    ib = connect(client_lib, sim.port, _cid(client_lib, 4))
    contract = _qualified(ib, client_lib, SYMBOLS["partial"][client_lib.__name__])
    bars = ib.reqHistoricalData(contract, "", "300 S", "1 min", "TRADES", useRTH=True)
    quantity = max(int(bars[-1].volume * 0.25) * 3, 300)
    ask = _quote(ib, contract).ask
    assert quantity * ask < 1_000_000, "pick a less liquid symbol: this would exceed buying power"
    trade = ib.placeOrder(contract, client_lib.LimitOrder("BUY", quantity, round(ask * 1.05, 2)))
    wait_until(ib, trade.isDone, timeout=20, what="large order filled")

    assert trade.orderStatus.status == "Filled"
    shares = [f.execution.shares for f in trade.fills]
    assert len(shares) >= 2 and sum(shares) == quantity
    assert [f.execution.cumQty for f in trade.fills] == [
        sum(shares[: i + 1]) for i in range(len(shares))
    ]
    partial = [e for e in trade.log if e.status == "Submitted" and e.message.startswith("Fill")]
    assert partial, trade.log


def test_fill_while_disconnected_is_seen_after_reconnect(
    sim, client_lib, connect, wait_until
) -> None:
    client_id = _cid(client_lib, 5)
    symbol = SYMBOLS["away"][client_lib.__name__]
    ib = connect(client_lib, sim.port, client_id)
    contract = _qualified(ib, client_lib, symbol)
    limit = round(_quote(ib, contract).bid * 0.95, 2)
    ref = _ref("away")
    trade = ib.placeOrder(contract, client_lib.LimitOrder("BUY", 10, limit, orderRef=ref))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted", what="Submitted")
    perm_id = trade.order.permId
    ib.disconnect()

    # Reconnecting finds the order still working (reqOpenOrders inside connect).
    wait_until(ib, lambda: client_id not in sim.control.status()["clients"], what="id freed")
    ib = connect(client_lib, sim.port, client_id)
    assert [t.order.permId for t in ib.openTrades() if t.order.orderRef == ref] == [perm_id]
    ib.disconnect()
    wait_until(ib, lambda: client_id not in sim.control.status()["clients"], what="id freed")

    sim.control.set_price(symbol, round(limit - 0.05, 2))  # crosses the resting buy
    try:
        wait_until(
            ib,
            lambda: any(p["symbol"] == symbol for p in sim.control.status()["positions"]),
            what="fill while disconnected",
        )
    finally:
        sim.control.set_price(symbol, None)

    ib = connect(client_lib, sim.port, client_id)
    fills = [f for f in ib.fills() if f.execution.orderRef == ref]
    assert [(f.execution.permId, f.execution.price, f.execution.shares) for f in fills] == [
        (perm_id, limit, 10)
    ]
    assert fills[0].commissionReport.commission > 0
    assert ref in [f.execution.orderRef for f in ib.reqExecutions()]
    assert not [t for t in ib.openTrades() if t.order.orderRef == ref]


def test_restart_after_shutdown_keeps_positions_cash_and_executions(
    start_sim, ib_lib, connect, wait_until, raw_client
) -> None:
    first = start_sim(speed=5.0)
    ib = connect(ib_lib, first.port, 7)
    contract = _qualified(ib, ib_lib, "WMT")
    ref = _ref("restart")
    trade = ib.placeOrder(
        contract,
        ib_lib.LimitOrder("BUY", 20, round(_quote(ib, contract).ask * 1.02, 2), orderRef=ref),
    )
    wait_until(ib, trade.isDone, what="fill before restart")
    wait_until(ib, lambda: ib.positions(), what="position")
    before = wait_until(ib, lambda: _cash(ib) < 1_000_000 and _cash(ib), what="cash debited")
    (position,) = ib.positions()
    order_id = trade.order.orderId
    ib.disconnect()
    raw = raw_client(first.port, 8)
    raw.wait_for(lambda m: m[0] == "9")  # nextValidId: the session is up
    first.control.shutdown()
    assert first.proc.wait(timeout=15) == 0
    assert raw.wait_closed()

    second = start_sim(db=first.db, start="2025-11-26T11:00:00-05:00", speed=5.0)
    ib = connect(ib_lib, second.port, 7)
    (after,) = ib.positions()
    assert (after.contract.conId, after.position, after.avgCost) == (
        contract.conId, 20, position.avgCost,
    )  # fmt: skip
    assert _cash(ib) == before
    fills = [f for f in ib.fills() if f.execution.orderRef == ref]
    assert len(fills) == 1 and fills[0].commissionReport.commission > 0
    assert ib.client.getReqId() > order_id  # the next order id moved past the old one
    completed = {t.order.orderRef: t.orderStatus.status for t in ib.reqCompletedOrders(False)}
    assert completed[ref] == "Filled"


@pytest.mark.parametrize("client_id", [0])
def test_client_zero_connects_with_auto_open_orders(sim, ib_lib, connect, client_id) -> None:
    ib = connect(ib_lib, sim.port, client_id)
    assert ib.isConnected() and ib.client.clientId == 0


def test_selling_the_whole_position_removes_it_from_positions_and_portfolio(
    sim, ib_lib, connect, wait_until
) -> None:
    ib = connect(ib_lib, sim.port, 150)
    contract = _qualified(ib, ib_lib, "T")
    buy = ib.placeOrder(
        contract, ib_lib.LimitOrder("BUY", 10, round(_quote(ib, contract).ask * 1.02, 2))
    )
    wait_until(ib, buy.isDone, what="buy filled")
    wait_until(
        ib,
        lambda: [p for p in ib.portfolio() if p.contract.conId == contract.conId],
        what="portfolio row",
    )
    sell = ib.placeOrder(
        contract, ib_lib.LimitOrder("SELL", 10, round(_quote(ib, contract).bid * 0.98, 2))
    )
    wait_until(ib, lambda: sell.isDone() and sell.fills, what="sell filled")
    assert sell.orderStatus.status == "Filled"

    def flat() -> bool:
        held = [p for p in ib.positions() if p.contract.conId == contract.conId]
        shown = [p for p in ib.portfolio() if p.contract.conId == contract.conId]
        return not held and not shown

    wait_until(ib, flat, what="position and portfolio row removed")
    wait_until(ib, lambda: sell.fills[-1].commissionReport.commission > 0, what="commission")
    assert sell.fills[-1].commissionReport.realizedPNL != 0


def test_global_cancel_cancels_every_clients_orders(sim, ib_lib, connect, wait_until) -> None:
    first, second = connect(ib_lib, sim.port, 151), connect(ib_lib, sim.port, 152)
    contract = _qualified(first, ib_lib, "XOM")
    limit = round(_quote(first, contract).bid * 0.8, 2)
    refs = [_ref("global-a"), _ref("global-b")]
    trades = [
        ib.placeOrder(contract, ib_lib.LimitOrder("BUY", 1, limit, orderRef=ref))
        for ib, ref in zip((first, second), refs, strict=True)
    ]
    wait_until(first, lambda: all(t.orderStatus.status == "Submitted" for t in trades))
    listed = {t.order.orderRef: t.order.clientId for t in first.reqAllOpenOrders()}
    assert (listed.get(refs[0]), listed.get(refs[1])) == (151, 152)

    first.reqGlobalCancel()
    wait_until(first, lambda: all(t.orderStatus.status == "Cancelled" for t in trades))


def test_order_by_con_id_works_and_foreign_account_is_refused(
    sim, ib_lib, connect, wait_until
) -> None:
    ib = connect(ib_lib, sim.port, 153)
    codes = _codes_by_order(ib)
    by_id = ib_lib.Contract(conId=272093, exchange="SMART")  # MSFT, no symbol
    limit = round(_quote(ib, _qualified(ib, ib_lib, "MSFT")).bid * 0.8, 2)
    resting = ib.placeOrder(by_id, ib_lib.LimitOrder("BUY", 1, limit))
    foreign = ib.placeOrder(by_id, ib_lib.LimitOrder("BUY", 1, limit, account="DU999"))
    wait_until(ib, lambda: resting.orderStatus.status == "Submitted", what="Submitted")
    wait_until(ib, foreign.isDone, what="foreign account refused")
    assert foreign.orderStatus.status == "Cancelled"
    assert 321 in codes[foreign.order.orderId]
    observer = connect(ib_lib, sim.port, 154)  # sees the order as the wire describes it
    listed = [t for t in observer.reqAllOpenOrders() if t.order.permId == resting.order.permId]
    assert [t.contract.symbol for t in listed] == ["MSFT"]
    ib.cancelOrder(resting.order)
    wait_until(ib, resting.isDone, what="cancelled")
