"""The exit manager's pure decisions: evidence, money, marks, order stages, plans, the day."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from broker.models import BrokerPosition, ExecutionView, OrderView, Quote, ReconcileSnapshot
from broker.models import OrderStatus as BrokerStatus
from config.settings import load_settings
from exit_manager.book import Book, position_view
from exit_manager.daily_guard import book_unrealized, mode_of
from exit_manager.evidence import db_status, locate, order_changes
from exit_manager.ledger import entry_commission_share, sale_of, sells
from exit_manager.lifecycle import (
    STAGE_TRANSITIONS,
    Ending,
    ExitOrder,
    Next,
    NextKind,
    Stage,
    StageError,
    Trigger,
    after_order,
    ending_of,
    new_order_ref,
    next_stage,
    step_of,
    trigger_of,
)
from exit_manager.marks import Mark, MarkSource, best_mark, quote_price
from exit_manager.params import MIN_REPLACE_TIMEOUT_S, exit_params, manager_config
from exit_manager.reconcile import plan_start
from exit_manager.rules import ExitParams
from exit_manager.session import trading_day
from exit_manager.status import status_detail
from market.clock import ET, VirtualClock
from shared_state import (
    ActivePosition,
    DailyState,
    ExitReason,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PositionState,
)

NOW = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)
PARAMS = ExitParams()


def row(
    symbol: str = "ABC", state: PositionState = PositionState.OPEN, **kw: object
) -> ActivePosition:
    values = dict(
        id=1, symbol=symbol, state=state, trading_date=date(2025, 11, 26), source="day_trader",
        is_recovery=False, quantity=100, entry_price=50.0, target_price=50.9, stop_price=49.55,
        entry_order_ref="dt-1", exit_order_ref=None, exit_reason=None, sold_quantity=0,
        realized_pnl=0.0, commissions=0.0, opened_at=NOW, updated_at=NOW,
    )  # fmt: skip
    values.update(kw)
    return ActivePosition(**values)  # type: ignore[arg-type]


def order(ref: str = "em-ABC-1-s0-0000abcd", **kw: object) -> Order:
    values = dict(
        order_ref=ref, symbol="ABC", side=OrderSide.SELL, purpose=OrderPurpose.EXIT,
        quantity=100, limit_price=49.0, status=OrderStatus.SUBMITTED, broker_order_id=None,
        perm_id=None, filled_quantity=0, avg_fill_price=None, error=None, created_at=NOW,
        updated_at=NOW,
    )  # fmt: skip
    values.update(kw)
    return Order(**values)  # type: ignore[arg-type]


def view(ref: str = "em-ABC-1-s0-0000abcd", **kw: object) -> OrderView:
    values = dict(
        order_ref=ref, order_id=7, perm_id=1007, client_id=11, symbol="ABC", action="SELL",
        quantity=100.0, limit_price=49.0, status=BrokerStatus.SUBMITTED, filled=0.0,
        remaining=100.0, avg_price=0.0,
    )  # fmt: skip
    values.update(kw)
    return OrderView(**values)  # type: ignore[arg-type]


def fill(exec_id: str, shares: float, price: float, **kw: object) -> ExecutionView:
    values = dict(
        exec_id=exec_id, order_ref="em-ABC-1-s0-0000abcd", perm_id=1007, order_id=7,
        client_id=11, symbol="ABC", side="SLD", shares=shares, price=price, time=NOW,
        cum_qty=shares, avg_price=price, commission=1.0,
    )  # fmt: skip
    values.update(kw)
    return ExecutionView(**values)  # type: ignore[arg-type]


def snapshot(
    positions: tuple[BrokerPosition, ...] = (),
    open_orders: tuple[OrderView, ...] = (),
    completed: tuple[OrderView, ...] = (),
    executions: tuple[ExecutionView, ...] = (),
) -> ReconcileSnapshot:
    return ReconcileSnapshot(
        time=NOW, account="DU1", positions=positions,
        open_orders={o.order_ref: o for o in open_orders},
        completed_orders={o.order_ref: o for o in completed}, executions=executions,
    )  # fmt: skip


def held(symbol: str, quantity: float, cost: float = 50.0) -> BrokerPosition:
    return BrokerPosition("DU1", symbol, 1, quantity, cost)


def quote(**kw: object) -> Quote:
    values = dict(symbol="ABC", bid=49.9, ask=50.1, last=50.0, time=NOW)
    values.update(kw)
    return Quote(**values)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- evidence


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        (BrokerStatus.PENDING_SUBMIT, 0, None),
        (BrokerStatus.SUBMITTED, 0, OrderStatus.SUBMITTED),
        (BrokerStatus.PRE_SUBMITTED, 0, OrderStatus.SUBMITTED),
        (BrokerStatus.SUBMITTED, 40, OrderStatus.PARTIAL),
        (BrokerStatus.FILLED, 100, OrderStatus.FILLED),
        (BrokerStatus.CANCELLED, 0, OrderStatus.CANCELLED),
        (BrokerStatus.API_CANCELLED, 10, OrderStatus.CANCELLED),
        (BrokerStatus.REJECTED, 0, OrderStatus.REJECTED),
        (BrokerStatus.REJECTED, 10, OrderStatus.CANCELLED),
        (BrokerStatus.UNKNOWN, 0, OrderStatus.UNKNOWN),
    ],
)
def test_broker_statuses_map_onto_the_order_table(
    status: BrokerStatus, filled: int, expected: OrderStatus | None
) -> None:
    assert db_status(view(status=status, filled=float(filled))) == expected


def test_evidence_moves_an_order_forward_and_never_back() -> None:
    partial = order(status=OrderStatus.PARTIAL, filled_quantity=40)
    stale = view(status=BrokerStatus.SUBMITTED, filled=10.0)
    assert "status" not in order_changes(partial, stale)
    assert "filled_quantity" not in order_changes(partial, stale)
    done = order(status=OrderStatus.FILLED, filled_quantity=100)
    late = view(status=BrokerStatus.CANCELLED, filled=100.0)
    assert order_changes(done, late) == {"broker_order_id": 7, "perm_id": 1007}  # ids only
    known = replace(done, broker_order_id=7, perm_id=1007)
    assert order_changes(known, late) == {}


def test_a_fill_report_records_status_quantity_price_and_broker_ids() -> None:
    changes = order_changes(
        order(status=OrderStatus.INTENT),
        view(status=BrokerStatus.FILLED, filled=100.0, avg_price=49.5),
    )
    assert changes == {
        "status": OrderStatus.FILLED, "filled_quantity": 100, "avg_fill_price": 49.5,
        "broker_order_id": 7, "perm_id": 1007,
    }  # fmt: skip


def test_orders_are_found_by_ref_then_perm_id_then_executions() -> None:
    by_ref = snapshot(open_orders=(view(),))
    assert locate(order(), by_ref).order_ref == order().order_ref
    renamed = view(ref="", perm_id=55)
    by_perm = snapshot(completed=(replace(renamed, order_ref="perm:55"),))
    assert locate(order(perm_id=55), by_perm) is not None
    by_fills = snapshot(executions=(fill("x1", 100, 49.0, order_ref="", perm_id=56),))
    found = locate(order(perm_id=56), by_fills)
    assert found is not None and found.filled == 100
    assert locate(order(), snapshot()) is None


# ----------------------------------------------------------------------------- money


def test_a_sale_is_net_of_its_own_and_its_share_of_the_buys_commission() -> None:
    fills = [fill("a", 60, 51.0, commission=0.6), fill("b", 40, 52.0, commission=0.4)]
    sale = sale_of(fills, entry_price=50.0, entry_commission=1.0)
    assert sale.shares == 100
    assert sale.avg_price == pytest.approx(51.4)
    assert sale.commissions == pytest.approx(2.0)
    assert sale.pnl == pytest.approx(140.0 - 2.0)
    assert sale.missing_commissions == 0


def test_a_missing_commission_report_is_counted_not_guessed() -> None:
    sale = sale_of([fill("a", 10, 50.0, commission=None)], entry_price=50.0)
    assert (sale.commissions, sale.missing_commissions) == (0.0, 1)


def test_the_buys_commission_is_shared_by_the_shares_each_sale_sells() -> None:
    assert entry_commission_share(2.0, 25, 100) == pytest.approx(0.5)
    assert entry_commission_share(2.0, 0, 100) == 0.0
    assert entry_commission_share(2.0, 150, 100) == pytest.approx(2.0)


def test_sells_of_an_order_are_counted_once_each() -> None:
    ref = "em-ABC-1-s0-0000abcd"
    fills = [fill("a", 10, 50.0), fill("a", 10, 50.0), fill("b", 5, 50.0, side="BOT")]
    fills.append(fill("c", 5, 50.0, order_ref="other"))
    assert [f.exec_id for f in sells(fills, ref)] == ["a"]


# ----------------------------------------------------------------------------- marks


def test_a_live_fresh_quote_is_the_mark() -> None:
    mark = best_mark("ABC", quote(), 48.0, NOW, 15)
    assert (mark.price, mark.bid, mark.source) == (50.0, 49.9, MarkSource.QUOTE)


@pytest.mark.parametrize(
    "unusable",
    [
        {"delayed": True},
        {"time": NOW - timedelta(seconds=60)},
        {"last": None, "bid": None, "ask": None},
    ],
)
def test_without_a_usable_quote_the_portfolio_price_stands_in(unusable: dict) -> None:
    mark = best_mark("ABC", quote(**unusable), 48.0, NOW, 15)
    assert (mark.price, mark.source) == (48.0, MarkSource.PORTFOLIO)


def test_with_nothing_better_a_stale_quote_is_a_delayed_mark_and_nothing_is_none() -> None:
    stale = quote(time=NOW - timedelta(seconds=60), halted=True)
    mark = best_mark("ABC", stale, None, NOW, 15)
    assert (mark.source, mark.halted) == (MarkSource.DELAYED, True)
    assert best_mark("ABC", None, None, NOW, 15) is None


def test_the_rules_price_of_a_quote_is_last_then_mid_then_bid() -> None:
    assert quote_price(quote()) == 50.0
    assert quote_price(quote(last=None)) == pytest.approx(50.0)
    assert quote_price(quote(last=None, ask=None)) == 49.9
    assert quote_price(quote(last=math.nan, bid=None, ask=None)) is None


# ----------------------------------------------------------------------------- exit order stages


def test_every_listed_stage_transition_is_applied_and_others_refused() -> None:
    for (stage, trigger), new in STAGE_TRANSITIONS.items():
        assert next_stage(stage, trigger) is new
    with pytest.raises(StageError):
        next_stage(Stage.UNSENT, Trigger.FINAL)
    with pytest.raises(StageError):
        next_stage(Stage.DONE, Trigger.CANCEL)


def test_an_unacknowledged_order_becomes_unknown_never_cancelled() -> None:
    assert next_stage(Stage.WORKING, Trigger.NO_ACK) is Stage.UNKNOWN
    assert next_stage(Stage.UNKNOWN, Trigger.NO_ACK) is Stage.UNKNOWN
    assert (Stage.UNKNOWN, Trigger.CANCEL) not in STAGE_TRANSITIONS
    assert trigger_of(view(status=BrokerStatus.UNKNOWN)) is Trigger.NO_ACK
    assert trigger_of(view(status=BrokerStatus.PENDING_SUBMIT)) is None
    assert trigger_of(view(status=BrokerStatus.FILLED)) is Trigger.FINAL


def _after(**kw: object) -> Next:
    values = dict(
        sold=0, held=100, broker_left=100, ending=Ending.REPLACED, step=0, rejections=0,
        market_open=True, params=PARAMS, max_rejections=3,
    )  # fmt: skip
    values.update(kw)
    return after_order(**values)  # type: ignore[arg-type]


def test_after_an_order_everything_sold_or_a_flat_broker_closes() -> None:
    assert _after(sold=100, broker_left=0, ending=Ending.FILLED).kind is NextKind.CLOSE
    assert _after(sold=40, broker_left=0, ending=Ending.EXPIRED).kind is NextKind.CLOSE
    assert _after(sold=0, broker_left=0).kind is NextKind.CLOSE


def test_after_an_order_a_remainder_is_sold_again_more_aggressively_when_replaced() -> None:
    replaced = _after(sold=40, broker_left=60, ending=Ending.REPLACED, step=1)
    assert (replaced.kind, replaced.step) == (NextKind.RESELL, 2)
    capped = _after(ending=Ending.REPLACED, step=PARAMS.replace_steps)
    assert capped.step == PARAMS.replace_steps
    chunk = _after(sold=60, broker_left=40, ending=Ending.FILLED, step=0)
    assert (chunk.kind, chunk.step) == (NextKind.RESELL, 0)


def test_after_rejections_the_exit_is_retried_then_given_back_to_the_rules() -> None:
    assert _after(ending=Ending.REJECTED, rejections=1).kind is NextKind.RESELL
    assert _after(ending=Ending.REJECTED, rejections=3).kind is NextKind.REOPEN


def test_after_the_close_unsold_shares_go_back_to_open() -> None:
    assert _after(ending=Ending.EXPIRED, market_open=False).kind is NextKind.REOPEN


def test_why_an_order_ended() -> None:
    base = ExitOrder("ABC", 1, "r", ExitReason.STOP, 100, 49.0, 0, 1)
    assert ending_of(replace(base, view=view(status=BrokerStatus.FILLED))) is Ending.FILLED
    assert ending_of(replace(base, view=view(status=BrokerStatus.REJECTED))) is Ending.REJECTED
    cancelled = view(status=BrokerStatus.CANCELLED)
    assert ending_of(replace(base, view=cancelled, cancel_for=Ending.REPLACED)) is Ending.REPLACED
    assert ending_of(replace(base, view=cancelled)) is Ending.EXPIRED
    assert ending_of(replace(base, lost=True)) is Ending.LOST


def test_order_refs_are_unique_short_and_carry_their_step() -> None:
    refs = {new_order_ref("BRK.B", 123456, 3) for _ in range(1000)}
    assert len(refs) == 1000
    assert all(len(ref) <= 64 and step_of(ref) == 3 for ref in refs)
    assert step_of("dt-something") == 0


# ----------------------------------------------------------------------------- start-up plan


def test_start_up_plan_adopts_closes_resumes_and_leaves_entries_alone() -> None:
    rows = [
        row("GONE", id=1),
        row("HELD", id=2, quantity=100),
        row("LESS", id=3, quantity=100),
        row("SELLING", PositionState.EXIT_PENDING, id=4, exit_order_ref="em-S"),
        row("LOST", PositionState.EXIT_PENDING, id=5, exit_order_ref="em-L"),
        row("ENTERING", PositionState.ENTRY_PENDING, id=6),
        row("BUYING", id=7),
    ]
    orders = {"em-S": order("em-S"), "em-L": order("em-L")}
    broker = snapshot(
        positions=(
            held("HELD", 100), held("LESS", 60), held("SELLING", 100), held("NEW", 30, 12.5),
            held("SHORT", -10), held("ENTERING", 10),
        ),
        open_orders=(view("em-S", symbol="SELLING"), view("dt-B", symbol="BUYING", action="BUY")),
    )  # fmt: skip
    plan = plan_start(rows, orders, broker)

    assert [p.symbol for p in plan.adopt] == ["NEW"]
    assert [r.symbol for r in plan.close_reconciled] == ["GONE"]
    assert plan.mismatches == (("LESS", 100, 60), ("BUYING", 100, 0))  # BUYING: order working
    assert [p.symbol for p in plan.shorts] == ["SHORT"]
    resumed = {r.row.symbol: r.view for r in plan.resume}
    assert resumed["SELLING"].order_ref == "em-S"
    assert resumed["LOST"] is None


# ----------------------------------------------------------------------------- parameters, day


def test_exit_order_timeout_is_market_seconds_made_real_with_a_floor() -> None:
    settings = load_settings({"EXIT_ORDER_TIMEOUT_S": "10", "LOOP_INTERVAL_S": "2"}, env_file=None)
    start = datetime(2025, 11, 26, 10, tzinfo=ET)
    assert exit_params(settings, VirtualClock(start, 1.0)).replace_timeout_s == 10.0
    assert exit_params(settings, VirtualClock(start, 5.0)).replace_timeout_s == 2.0
    assert (
        exit_params(settings, VirtualClock(start, 100.0)).replace_timeout_s == MIN_REPLACE_TIMEOUT_S
    )
    assert manager_config(settings).pass_interval_s == 0.5  # commands within a second


def test_the_trading_day_knows_early_closes_and_days_without_a_session() -> None:
    early = trading_day(datetime(2025, 11, 28, 12, 56, tzinfo=ET), 5)
    assert early.is_open and early.early_close
    assert early.flatten_at == datetime(2025, 11, 28, 12, 55, tzinfo=ET)
    after = trading_day(datetime(2025, 11, 28, 13, 0, tzinfo=ET), 5)
    assert after.after_close and not after.is_open
    before = trading_day(datetime(2025, 11, 26, 8, 0, tzinfo=ET), 5)
    assert not before.is_open and not before.after_close
    weekend = trading_day(datetime(2025, 11, 29, 11, 0, tzinfo=ET), 5)
    assert weekend.close is None and weekend.after_close


def _state(**kw: object) -> DailyState:
    values = dict(
        trading_date=date(2025, 11, 26), starting_capital=100_000.0, realized_pnl=0.0,
        trades_count=0, daily_target_reached=False, halted=False, halt_reason=None,
    )  # fmt: skip
    values.update(kw)
    return DailyState(**values)  # type: ignore[arg-type]


def test_a_restart_resumes_the_days_liquidation_from_the_database() -> None:
    assert mode_of(_state(daily_target_reached=True)) is ExitReason.DAILY_TARGET
    assert mode_of(_state(halted=True, halt_reason="loss_limit")) is ExitReason.LOSS_LIMIT
    assert mode_of(_state(halted=True, halt_reason="manual")) is None
    assert mode_of(None) is None


def test_unrealized_pnl_counts_held_rows_with_a_mark() -> None:
    book = Book(PARAMS)
    book.load([
        row("A", id=1, quantity=100, entry_price=50.0),
        row("B", PositionState.EXIT_PENDING, id=2, quantity=10, entry_price=20.0),
        row("C", PositionState.ENTRY_PENDING, id=3, entry_price=None),
        row("D", id=4),
    ])  # fmt: skip
    prices = {"A": 51.0, "B": 19.0}

    def marks(symbol: str) -> Mark | None:
        return (
            Mark(symbol, prices[symbol], prices[symbol], MarkSource.QUOTE)
            if symbol in prices
            else None
        )

    total, unmarked = book_unrealized(book, marks)
    assert total == pytest.approx(100.0 - 10.0)
    assert unmarked == ["D"]


def test_only_open_rows_are_judged_and_missing_levels_get_the_defaults() -> None:
    assert position_view(row(state=PositionState.EXIT_PENDING), PARAMS) is None
    view_ = position_view(row(target_price=None, stop_price=None, is_recovery=True), PARAMS)
    assert view_.target_price == pytest.approx(50.0 * 1.011)
    assert view_.stop_price == pytest.approx(50.0 * 0.991)


def test_status_names_positions_watched_on_the_portfolio_price() -> None:
    book = Book(PARAMS)
    book.load([row("A", id=1), row("B", id=2)])
    sources = {"A": MarkSource.QUOTE, "B": MarkSource.PORTFOLIO}

    def marks(symbol: str) -> Mark:
        return Mark(symbol, 50.5, 50.4, sources[symbol])

    detail = status_detail(
        day=trading_day(datetime(2025, 11, 26, 11, tzinfo=ET), 5), connected=True, book=book,
        marks=marks, exits=[], liquidation=None, daily_pnl_pct=0.1,
    )  # fmt: skip
    assert detail["portfolio_price_fallback"] == ["B"]
    assert detail["marks"] == {"A": 50.5, "B": 50.5}
    assert detail["market"] == "open"
    assert detail["positions"][0]["unrealized"] == pytest.approx(50.0)
