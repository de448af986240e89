"""Snapshots and the order book: library objects -> frozen views, and the merge rules.

The conversions are fed the real dataclasses of both client libraries.
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from broker import convert
from broker.ib import LIB_ENV, ClientLibraryError, load
from broker.models import ExecutionView, OrderStatus, OrderView, Quote, ReconcileSnapshot
from broker.orders import OrderBook
from market.clock import ET

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("ib_async", "ib_insync")
T0 = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)


def _trade(lib: Any, status: str, *, ref: str = "r-1", log_code: int = 0, filled: float = 0) -> Any:
    m = importlib.import_module(lib)
    order = m.LimitOrder("BUY", 100, 10.0, orderRef=ref, orderId=7, permId=0, clientId=12)
    st = m.OrderStatus(orderId=7, status=status, filled=filled, remaining=100 - filled)
    log = [m.TradeLogEntry(T0, status, "Order rejected - reason: x", log_code)] if log_code else []
    return m.Trade(m.Stock("AAPL", "SMART", "USD"), order, st, [], log)


def _view(ref: str = "r-1", **changes: Any) -> OrderView:
    base = OrderView(
        order_ref=ref,
        order_id=7,
        perm_id=0,
        client_id=12,
        symbol="AAPL",
        action="BUY",
        quantity=100,
        limit_price=10.0,
        status=OrderStatus.PENDING_SUBMIT,
        filled=0.0,
        remaining=100.0,
        avg_price=0.0,
        source="live",
    )
    return replace(base, **changes)


def _fill(ref: str, shares: float, *, client_id: int = 12, perm_id: int = 900) -> ExecutionView:
    return ExecutionView(
        exec_id=f"{ref}-{shares}",
        order_ref=ref,
        perm_id=perm_id,
        order_id=7,
        client_id=client_id,
        symbol="AAPL",
        side="BOT",
        shares=shares,
        price=10.0,
        time=T0,
        cum_qty=shares,
        avg_price=10.0,
    )


def _snapshot(**kw: Any) -> ReconcileSnapshot:
    return ReconcileSnapshot(
        time=T0,
        account="DU1",
        positions=kw.get("positions", ()),
        open_orders=kw.get("open_orders", {}),
        completed_orders=kw.get("completed_orders", {}),
        executions=kw.get("executions", ()),
    )


# --------------------------------------------------------------------------- import shim


def test_shim_loads_both_libraries_by_name() -> None:
    assert load("ib_async").name == "ib_async" and load("ib_async").version.startswith("2.1")
    assert load("ib_insync").name == "ib_insync" and load("ib_insync").version == "0.9.86"
    assert load("ib_insync").IB.__module__.startswith("ib_insync")


def test_shim_refuses_an_unsupported_library_name() -> None:
    with pytest.raises(ClientLibraryError, match="expected one of"):
        load("ibapi")


@pytest.mark.parametrize(("forced", "expected"), [("", "ib_async"), ("ib_insync", "ib_insync")])
def test_shim_prefers_ib_async_and_the_env_var_forces_the_fallback(
    forced: str, expected: str
) -> None:
    code = "import broker.ib as b; print(b.LIBRARY_NAME, b.IB.__module__.split('.')[0])"
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(ROOT), LIB_ENV: forced}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == [expected, expected], out.stderr


def test_shim_falls_back_to_ib_insync_when_ib_async_is_missing() -> None:
    # Hide ib_async from the import system: a None entry in sys.modules makes it unimportable.
    code = (
        "import sys; sys.modules['ib_async'] = None\nimport broker.ib as b; print(b.LIBRARY_NAME)"
    )
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "ib_insync", out.stderr


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("lib", LIBRARIES)
def test_cancelled_trade_with_a_rejection_code_is_rejected(lib: str) -> None:
    view = convert.order_view(_trade(lib, "Cancelled", log_code=201), "live")
    assert view.status == OrderStatus.REJECTED
    assert view.error_code == 201 and "rejected" in view.error
    assert view.is_done and view.remaining == 0.0


@pytest.mark.parametrize("lib", LIBRARIES)
def test_user_cancelled_trade_stays_cancelled(lib: str) -> None:
    view = convert.order_view(_trade(lib, "Cancelled", log_code=202), "live")
    assert view.status == OrderStatus.CANCELLED


@pytest.mark.parametrize("lib", LIBRARIES)
def test_partially_filled_trade_reports_filled_and_remaining(lib: str) -> None:
    view = convert.order_view(_trade(lib, "Submitted", filled=40), "live")
    assert (view.status, view.filled, view.remaining) == (OrderStatus.SUBMITTED, 40, 60)
    assert (view.order_ref, view.order_id, view.client_id) == ("r-1", 7, 12)


def test_validation_warning_status_keeps_the_last_real_status() -> None:
    trade = _trade("ib_async", "ValidationError")
    trade.log.append(importlib.import_module("ib_async").TradeLogEntry(T0, "Submitted", "", 0))
    assert convert.order_view(trade, "live").status == OrderStatus.SUBMITTED


@pytest.mark.parametrize("lib", LIBRARIES)
def test_fill_without_its_commission_report_has_commission_none(lib: str) -> None:
    m = importlib.import_module(lib)
    execution = m.Execution(
        execId="e1", time=T0, side="SLD", shares=5, price=9.5, permId=3, clientId=12,
        orderId=7, cumQty=5, avgPrice=9.5, orderRef="r-1",
    )  # fmt: skip
    bare = m.Fill(m.Stock("AAPL", "SMART", "USD"), execution, m.CommissionReport(), T0)
    reported = bare._replace(commissionReport=m.CommissionReport(execId="e1", commission=1.0))
    assert convert.execution_view(bare).commission is None
    view = convert.execution_view(reported)
    assert (view.commission, view.side, view.signed_shares, view.order_ref) == (
        1.0,
        "SLD",
        -5,
        "r-1",
    )


@pytest.mark.parametrize("lib", LIBRARIES)
def test_ticker_maps_to_a_quote_with_delayed_and_halted_flags(lib: str) -> None:
    m = importlib.import_module(lib)
    ticker = m.Ticker(contract=m.Stock("AAPL", "SMART", "USD"))
    ticker.bid, ticker.ask, ticker.last = 9.99, 10.01, -1.0
    ticker.marketDataType, ticker.halted = 3, 1.0
    quote = convert.quote("AAPL", ticker, T0)
    assert (quote.bid, quote.ask, quote.last) == (9.99, 10.01, None)
    assert quote.delayed and quote.halted and quote.mid == pytest.approx(10.0)


def test_quote_age_and_staleness_are_in_market_seconds() -> None:
    quote = Quote("AAPL", 1.0, 1.1, 1.05, T0)
    later = datetime(2025, 11, 26, 15, 0, 16, tzinfo=UTC)
    assert quote.age_s(later) == 16.0
    assert quote.is_stale(later, 15.0) and not quote.is_stale(later, 16.0)


@pytest.mark.parametrize("lib", LIBRARIES)
def test_bars_become_a_frame_indexed_by_eastern_time(lib: str) -> None:
    m = importlib.import_module(lib)
    minute = m.BarData(date=datetime(2025, 11, 26, 9, 0, tzinfo=UTC), open=1, high=2, low=0.5,
                       close=1.5, volume=100, average=1.2, barCount=3)  # fmt: skip
    daily = m.BarData(date=date(2025, 11, 25), open=1, high=2, low=0.5, close=1.5, volume=9)
    frame = convert.bars_frame([minute])
    assert str(frame.index.tz) == "America/New_York"
    assert frame.index[0] == datetime(2025, 11, 26, 4, 0, tzinfo=ET)
    assert list(frame.columns) == convert.BAR_COLUMNS
    assert convert.bars_frame([daily]).index[0] == datetime(2025, 11, 25, tzinfo=ET)
    assert convert.bars_frame([]).empty


@pytest.mark.parametrize("lib", LIBRARIES)
def test_account_values_prefer_usd_rows_and_skip_other_accounts(lib: str) -> None:
    m = importlib.import_module(lib)
    rows = [
        m.AccountValue("DU1", "NetLiquidation", "1000.5", "BASE", ""),
        m.AccountValue("DU1", "NetLiquidation", "1001.5", "USD", ""),
        m.AccountValue("DU2", "ExcessLiquidity", "5", "USD", ""),
        m.AccountValue("DU1", "BuyingPower", "4000", "USD", ""),
    ]
    values = convert.account_values("DU1", rows)
    assert (values.net_liquidation, values.excess_liquidity, values.buying_power) == (
        1001.5,
        None,
        4000.0,
    )


def test_unset_and_nan_numbers_become_none() -> None:
    assert convert.number(sys.float_info.max) is None
    assert convert.number(math.nan) is None and convert.number("") is None
    assert convert.price(-1.0) is None and convert.price(0.5) == 0.5


# --------------------------------------------------------------------------- order book


def _book() -> tuple[OrderBook, list[OrderView]]:
    seen: list[OrderView] = []
    return OrderBook(12, seen.append), seen


def test_book_emits_on_change_only() -> None:
    book, seen = _book()
    book.update(_view())
    book.update(_view())
    book.update(_view(status=OrderStatus.SUBMITTED, perm_id=900))
    assert [v.status for v in seen] == [OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMITTED]


def test_done_order_never_comes_back_to_life() -> None:
    book, _ = _book()
    book.update(_view(status=OrderStatus.FILLED, filled=100, remaining=0))
    after = book.update(_view(status=OrderStatus.SUBMITTED, filled=40))
    assert after.status == OrderStatus.FILLED and after.filled == 100


def test_filled_quantity_never_goes_down() -> None:
    book, _ = _book()
    book.update(_view(status=OrderStatus.SUBMITTED, filled=60, remaining=40))
    after = book.update(_view(status=OrderStatus.SUBMITTED, filled=20, remaining=80))
    assert (after.filled, after.remaining) == (60, 40)


def test_unacknowledged_order_becomes_unknown_and_is_adopted_on_acknowledgement() -> None:
    book, seen = _book()
    book.update(_view())
    assert book.mark_unknown("r-1", "no ack").status == OrderStatus.UNKNOWN
    assert book.update(_view()).status == OrderStatus.UNKNOWN  # PendingSubmit again: no ack
    adopted = book.update(_view(status=OrderStatus.SUBMITTED, perm_id=900))
    assert adopted.status == OrderStatus.SUBMITTED and adopted.perm_id == 900
    assert [v.status for v in seen][-2:] == [OrderStatus.UNKNOWN, OrderStatus.SUBMITTED]


def test_acknowledged_or_done_order_is_never_marked_unknown() -> None:
    book, _ = _book()
    book.update(_view(status=OrderStatus.SUBMITTED, perm_id=900))
    book.update(_view("r-2", status=OrderStatus.CANCELLED))
    assert book.mark_unknown("r-1", "late") is None and book.mark_unknown("r-2", "late") is None


def test_rejected_order_stays_rejected_when_completed_orders_say_cancelled() -> None:
    book, _ = _book()
    book.update(_view(status=OrderStatus.REJECTED, error_code=201))
    assert book.update(_view(status=OrderStatus.CANCELLED)).status == OrderStatus.REJECTED


def test_forgotten_order_ends_cancelled_with_its_reason_and_stops_counting_as_pending() -> None:
    book, seen = _book()
    book.update(_view(action="SELL", status=OrderStatus.SUBMITTED, perm_id=900))
    assert book.pending("AAPL", "SELL") == 100

    forgotten = book.forget("r-1", "absent after a reconnect")

    assert forgotten is not None and forgotten.status == OrderStatus.CANCELLED
    assert forgotten.error == "absent after a reconnect" and forgotten.source == "local"
    assert book.pending("AAPL", "SELL") == 0
    assert seen[-1] == forgotten
    assert book.forget("r-1", "twice") is None and book.forget("r-9", "unknown") is None
    # Should the broker report it after all, its fills still count; it stays final.
    late = book.update(_view(action="SELL", status=OrderStatus.SUBMITTED, filled=30))
    assert late.status == OrderStatus.CANCELLED and late.filled == 30


def test_reconcile_adopts_a_fill_that_happened_while_disconnected() -> None:
    book, _ = _book()
    book.update(_view(status=OrderStatus.SUBMITTED, perm_id=900))
    done = _view(status=OrderStatus.FILLED, perm_id=900, order_id=0, client_id=0,
                 filled=100, remaining=0, source="completed")  # fmt: skip
    book.adopt(_snapshot(completed_orders={"r-1": done}, executions=(_fill("r-1", 100),)))
    view = book.get("r-1")
    assert (view.status, view.filled, view.order_id, view.client_id) == (
        OrderStatus.FILLED, 100, 7, 12,
    )  # fmt: skip


def test_reconcile_marks_an_order_the_broker_does_not_know_unknown_not_cancelled() -> None:
    book, _ = _book()
    book.update(_view())
    changed = book.adopt(_snapshot())
    assert [v.status for v in changed] == [OrderStatus.UNKNOWN]


def test_reconcile_builds_an_order_known_only_from_this_clients_executions() -> None:
    book, _ = _book()
    book.adopt(
        _snapshot(executions=(_fill("r-9", 30), _fill("r-9", 20), _fill("x", 5, client_id=99)))
    )
    view = book.get("r-9")
    assert view is not None and view.status == OrderStatus.UNKNOWN and view.filled == 50
    assert book.get("x") is None  # another client's fill is not this book's order


def test_reconcile_ignores_other_clients_open_orders_but_snapshot_finds_them() -> None:
    book, _ = _book()
    other = _view("theirs", client_id=99, status=OrderStatus.SUBMITTED, perm_id=5, source="open")
    snapshot = _snapshot(open_orders={"theirs": other})
    book.adopt(snapshot)
    assert book.get("theirs") is None
    assert snapshot.find("theirs") == other and snapshot.by_perm_id(5) == other


def test_snapshot_find_looks_in_open_then_completed_then_executions() -> None:
    open_view = _view("a", status=OrderStatus.SUBMITTED, source="open")
    done_view = _view("a", status=OrderStatus.FILLED, source="completed")
    snapshot = _snapshot(
        open_orders={"a": open_view},
        completed_orders={"a": done_view, "b": done_view},
        executions=(_fill("c", 10),),
    )
    assert snapshot.find("a") is open_view
    assert snapshot.find("b") is done_view
    assert snapshot.find("c").filled == 10 and snapshot.find("c").source == "executions"
    assert snapshot.find("zzz") is None


def test_pending_sells_count_only_unfinished_orders_of_the_symbol() -> None:
    book, _ = _book()
    book.update(_view("s1", action="SELL", status=OrderStatus.SUBMITTED, filled=30, remaining=70))
    book.update(_view("s2", action="SELL", status=OrderStatus.FILLED, filled=100, remaining=0))
    book.update(_view("b1", status=OrderStatus.SUBMITTED))
    assert book.pending("AAPL", "SELL") == 70
