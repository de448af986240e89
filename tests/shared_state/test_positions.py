"""Positions: the claim rules, fill, cancel, exit and close of design section 3."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from state_fixtures import DAY, T0, Claim, OpenPosition, RoundTrip

from shared_state import (
    ClaimRefusal,
    DuplicateKeyError,
    ExitReason,
    NotFoundError,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PositionState,
    Store,
    TransitionError,
)
from shared_state.db import make_engine
from shared_state.schema import active_positions
from shared_state.states import POSITION_TRANSITIONS, PositionTrigger

FORBIDDING = ["target", "daily_target", "loss_limit", "manual", "eod"]


def test_claim_creates_entry_pending_row_and_buy_intent_together(
    store: Store, claim: Claim
) -> None:
    result = claim("aapl", order_ref="buy-1", quantity=50, limit_price=10.05)

    assert result.ok and result.refusal is None
    position = result.position
    assert position is not None
    assert (position.symbol, position.state, position.quantity) == (
        "AAPL",
        PositionState.ENTRY_PENDING,
        50,
    )
    assert (position.entry_order_ref, position.source, position.is_recovery) == (
        "buy-1",
        "day_trader",
        False,
    )
    order = store.order("buy-1")
    assert order is not None
    assert (order.side, order.purpose, order.status) == (
        OrderSide.BUY,
        OrderPurpose.ENTRY,
        OrderStatus.INTENT,
    )
    assert (order.quantity, order.limit_price, order.symbol) == (50, 10.05, "AAPL")
    assert [e.kind for e in store.events()] == ["claim"]


def test_second_claim_of_an_active_symbol_is_refused_already_active(
    store: Store, claim: Claim
) -> None:
    assert claim("AAPL").ok

    second = claim("AAPL", order_ref="buy-other")

    assert second.refusal is ClaimRefusal.ALREADY_ACTIVE
    assert store.order("buy-other") is None  # the intent was rolled back with the row
    assert len(store.active_positions()) == 1


def test_one_active_row_per_symbol_is_held_by_a_unique_constraint(
    store: Store, db_path: Path
) -> None:
    row = {
        "symbol": "AAPL",
        "state": "OPEN",
        "trading_date": DAY,
        "source": "x",
        "is_recovery": False,
        "quantity": 1,
        "entry_price": 1.0,
        "sold_quantity": 0,
        "realized_pnl": 0.0,
        "commissions": 0.0,
        "opened_at": T0,
        "updated_at": T0,
    }
    engine = make_engine(db_path, 5000)
    try:
        with engine.begin() as conn:
            conn.execute(active_positions.insert(), row)
        with pytest.raises(IntegrityError, match="active_positions.symbol"), engine.begin() as conn:
            conn.execute(active_positions.insert(), row)
    finally:
        engine.dispose()


def test_claim_is_refused_while_entries_are_halted(store: Store, claim: Claim) -> None:
    store.set_halted(DAY, True, "loss limit", now=T0)

    assert claim("AAPL").refusal is ClaimRefusal.HALTED
    store.set_halted(DAY, False, None, now=T0)
    assert claim("AAPL").ok


def test_claim_is_refused_once_the_daily_target_is_reached(store: Store, claim: Claim) -> None:
    assert store.mark_daily_target_reached(DAY, now=T0) is True

    assert claim("AAPL").refusal is ClaimRefusal.DAILY_TARGET_REACHED
    assert claim("AAPL", trading_date=DAY + timedelta(days=1)).ok


@pytest.mark.parametrize("reason", FORBIDDING)
def test_claim_after_a_profit_or_forced_exit_today_is_refused(
    store: Store, claim: Claim, round_trip: RoundTrip, reason: str
) -> None:
    round_trip("AAPL", reason)

    assert claim("AAPL").refusal is ClaimRefusal.REENTRY_FORBIDDEN
    assert claim("MSFT").ok  # other symbols are unaffected
    assert claim("AAPL", trading_date=DAY + timedelta(days=1)).ok  # and tomorrow is a new day


def test_claim_after_a_stop_exit_is_a_recovery_trade_up_to_the_limit(
    store: Store, claim: Claim, round_trip: RoundTrip
) -> None:
    limits = {"max_recovery_entries": 2}
    round_trip("AAPL", "stop", **limits)
    recoveries = [round_trip("AAPL", "stop", **limits) for _ in range(2)]

    refused = claim("AAPL", **limits)

    assert [c.is_recovery for c in recoveries] == [True, True]
    assert refused.refusal is ClaimRefusal.RECOVERY_LIMIT
    assert [c.exit_reason for c in store.closed_today(DAY)] == [ExitReason.STOP] * 3


def test_a_recovery_trade_closed_at_target_forbids_further_entries(
    store: Store, claim: Claim, round_trip: RoundTrip
) -> None:
    round_trip("AAPL", "stop", max_recovery_entries=3)
    round_trip("AAPL", "target", max_recovery_entries=3)

    assert claim("AAPL", max_recovery_entries=3).refusal is ClaimRefusal.REENTRY_FORBIDDEN


def test_zero_recovery_entries_refuse_any_claim_after_a_stop(
    store: Store, claim: Claim, round_trip: RoundTrip
) -> None:
    round_trip("AAPL", "stop")

    assert claim("AAPL", max_recovery_entries=0).refusal is ClaimRefusal.RECOVERY_LIMIT


def test_claim_after_a_reconciled_close_is_a_plain_entry(
    store: Store, claim: Claim, round_trip: RoundTrip
) -> None:
    round_trip("AAPL", "reconciled")

    result = claim("AAPL")

    assert result.ok and not result.is_recovery


def test_claim_is_refused_at_max_trades_and_cancelled_entries_do_not_count(
    store: Store, claim: Claim, round_trip: RoundTrip
) -> None:
    pending = claim("AAA", max_trades_per_day=2)
    assert pending.position is not None
    store.cancel_entry("AAA", pending.position.entry_order_ref or "", now=T0, reason="timeout")
    round_trip("BBB", "target", max_trades_per_day=2)
    assert claim("CCC", max_trades_per_day=2).ok  # one closed + this one = 2 entries

    assert claim("DDD", max_trades_per_day=2).refusal is ClaimRefusal.MAX_TRADES


def test_adopted_positions_do_not_count_as_entries(store: Store, claim: Claim) -> None:
    store.adopt_position(
        "ZZZ",
        trading_date=DAY,
        now=T0,
        quantity=5,
        entry_price=3.0,
        target_price=3.1,
        stop_price=2.9,
    )

    assert claim("AAA", max_trades_per_day=1).ok


def test_claim_is_refused_at_max_positions(store: Store, claim: Claim) -> None:
    assert claim("AAA", max_positions=2).ok
    assert claim("BBB", max_positions=2).ok

    assert claim("CCC", max_positions=2).refusal is ClaimRefusal.MAX_POSITIONS
    assert claim("AAA", max_positions=2).refusal is ClaimRefusal.ALREADY_ACTIVE


def test_claim_with_a_reused_order_ref_raises_and_writes_nothing(
    store: Store, claim: Claim
) -> None:
    assert claim("AAA", order_ref="dup").ok

    with pytest.raises(DuplicateKeyError, match="dup"):
        claim("BBB", order_ref="dup")
    assert store.active_position("BBB") is None


def test_mark_filled_opens_the_position_with_the_filled_quantity(
    store: Store, claim: Claim
) -> None:
    claim("AAPL", quantity=100)

    opened = store.mark_filled(
        "AAPL", now=T0, entry_price=10.01, quantity=60, target_price=10.2, stop_price=9.9
    )
    more = store.mark_filled(
        "AAPL", now=T0, entry_price=10.02, quantity=100, target_price=10.2, stop_price=9.9
    )

    assert (opened.state, opened.quantity, opened.entry_price) == (PositionState.OPEN, 60, 10.01)
    assert (more.state, more.quantity, more.entry_price) == (PositionState.OPEN, 100, 10.02)
    assert [e.detail["to"] for e in store.events(kind="fill")] == ["OPEN", "OPEN"]


def test_mark_filled_without_a_row_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.mark_filled(
            "AAPL", now=T0, entry_price=1.0, quantity=1, target_price=1.1, stop_price=0.9
        )


def test_mark_filled_while_exiting_is_a_transition_error(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")
    store.begin_exit(
        "AAPL", now=T0, order_ref="s1", quantity=100, limit_price=None, reason="target"
    )

    with pytest.raises(TransitionError, match="EXIT_PENDING"):
        store.mark_filled(
            "AAPL", now=T0, entry_price=1.0, quantity=1, target_price=1.1, stop_price=0.9
        )


def test_cancel_entry_removes_the_row_and_cancels_the_unsent_intent(
    store: Store, claim: Claim
) -> None:
    claim("AAPL", order_ref="b1")

    assert store.cancel_entry("AAPL", "b1", now=T0, reason="signal gone") is True
    assert store.cancel_entry("AAPL", "b1", now=T0, reason="again") is False

    assert store.active_position("AAPL") is None
    order = store.order("b1")
    assert order is not None and order.status is OrderStatus.CANCELLED
    assert store.closed_today(DAY) == []
    assert claim("AAPL").ok and not claim("MSFT").is_recovery  # no re-entry rule triggered


def test_cancel_entry_is_refused_while_the_buy_is_live_at_the_broker(
    store: Store, claim: Claim
) -> None:
    claim("AAPL", order_ref="b1")
    store.record_order_ack("b1", 11, 901, now=T0)

    with pytest.raises(TransitionError, match="SUBMITTED"):
        store.cancel_entry("AAPL", "b1", now=T0, reason="timeout")
    store.update_order("b1", now=T0, status="CANCELLED")
    assert store.cancel_entry("AAPL", "b1", now=T0, reason="timeout") is True


def test_cancel_entry_is_refused_once_shares_filled(store: Store, claim: Claim) -> None:
    claim("AAPL", order_ref="b1")
    store.record_fill(
        "x1",
        order_ref="b1",
        symbol="AAPL",
        side="BUY",
        quantity=10,
        price=10.0,
        commission=None,
        time=T0,
    )

    with pytest.raises(TransitionError, match="filled"):
        store.cancel_entry("AAPL", "b1", now=T0, reason="timeout")
    assert store.active_position("AAPL") is not None


def test_cancel_entry_with_another_order_ref_leaves_the_row(store: Store, claim: Claim) -> None:
    claim("AAPL", order_ref="b2")

    assert store.cancel_entry("AAPL", "b1", now=T0, reason="stale") is False
    assert store.active_position("AAPL") is not None


def test_begin_exit_is_granted_once_with_its_sell_intent(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")

    first = store.begin_exit(
        "AAPL", now=T0, order_ref="s1", quantity=100, limit_price=10.1, reason="target"
    )
    second = store.begin_exit(
        "AAPL", now=T0, order_ref="s2", quantity=100, limit_price=10.1, reason="stop"
    )

    assert first is not None and second is None
    assert (first.order_ref, first.quantity, first.reason) == ("s1", 100, ExitReason.TARGET)
    assert first.position.state is PositionState.EXIT_PENDING
    assert first.position.exit_reason is ExitReason.TARGET
    sell = store.order("s1")
    assert sell is not None and (sell.side, sell.purpose, sell.status) == (
        OrderSide.SELL,
        OrderPurpose.EXIT,
        OrderStatus.INTENT,
    )
    assert store.order("s2") is None


def test_begin_exit_of_an_entering_or_unknown_symbol_returns_none(
    store: Store, claim: Claim
) -> None:
    claim("AAPL")

    assert (
        store.begin_exit(
            "AAPL", now=T0, order_ref="s1", quantity=1, limit_price=None, reason="stop"
        )
        is None
    )
    assert (
        store.begin_exit(
            "MSFT", now=T0, order_ref="s2", quantity=1, limit_price=None, reason="stop"
        )
        is None
    )


def test_begin_exit_of_more_than_is_held_is_a_value_error(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL", quantity=10)

    with pytest.raises(ValueError, match="holds 10"):
        store.begin_exit(
            "AAPL", now=T0, order_ref="s1", quantity=11, limit_price=None, reason="stop"
        )
    assert store.order("s1") is None


def test_cancel_exit_puts_the_row_back_to_open_for_a_new_exit(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")
    store.begin_exit(
        "AAPL", now=T0, order_ref="s1", quantity=100, limit_price=10.1, reason="target"
    )
    store.record_order_ack("s1", 5, 55, now=T0)
    with pytest.raises(TransitionError):
        store.cancel_exit("AAPL", "s1", now=T0, reason="rejected")
    store.update_order("s1", now=T0, status="REJECTED", error="201")

    reopened = store.cancel_exit("AAPL", "s1", now=T0, reason="rejected")

    assert reopened is not None and reopened.state is PositionState.OPEN
    assert reopened.exit_order_ref is None and reopened.exit_reason is None
    assert store.begin_exit(
        "AAPL", now=T0, order_ref="s2", quantity=100, limit_price=10.0, reason="stop"
    )


def test_replace_exit_order_points_the_row_at_the_new_sell(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")
    store.begin_exit("AAPL", now=T0, order_ref="s1", quantity=100, limit_price=10.1, reason="eod")

    assert (
        store.replace_exit_order(
            "AAPL",
            now=T0,
            old_order_ref="s1",
            order_ref="s2",
            quantity=100,
            limit_price=9.9,
            reason="eod",
        )
        is True
    )
    assert (
        store.replace_exit_order(
            "AAPL",
            now=T0,
            old_order_ref="s1",
            order_ref="s3",
            quantity=100,
            limit_price=9.9,
            reason="eod",
        )
        is False
    )

    position = store.active_position("AAPL")
    assert position is not None and (position.state, position.exit_order_ref) == (
        PositionState.EXIT_PENDING,
        "s2",
    )
    old = store.order("s1")
    assert old is not None and old.status is OrderStatus.CANCELLED  # it was never sent


def test_partial_exit_realizes_pnl_now_and_close_reports_the_round_trip(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL", quantity=100)
    ticket = store.begin_exit(
        "AAPL", now=T0, order_ref="s1", quantity=100, limit_price=10.1, reason="target"
    )
    assert ticket is not None

    reduced = store.reduce_position(
        "AAPL", trading_date=DAY, now=T0, sold_quantity=40, pnl=3.0, commissions=0.5
    )
    daily_mid = store.daily_state(DAY)
    closed = store.close_position(
        "AAPL", trading_date=DAY, now=T0, exit_price=10.1, reason="target", pnl=5.0, commissions=0.5
    )

    assert (reduced.quantity, reduced.sold_quantity, reduced.state) == (
        60,
        40,
        PositionState.EXIT_PENDING,
    )
    assert daily_mid is not None and (daily_mid.realized_pnl, daily_mid.trades_count) == (3.0, 0)
    assert closed is not None and (closed.quantity, closed.pnl, closed.commissions) == (
        100,
        8.0,
        1.0,
    )
    daily = store.daily_state(DAY)
    assert daily is not None and (daily.realized_pnl, daily.trades_count) == (8.0, 1)


def test_reducing_by_the_whole_position_is_refused(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL", quantity=10)

    with pytest.raises(ValueError, match="close_position"):
        store.reduce_position(
            "AAPL", trading_date=DAY, now=T0, sold_quantity=10, pnl=1.0, commissions=0.0
        )


def test_close_moves_the_row_and_counts_its_pnl_exactly_once(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")
    ticket = store.begin_exit(
        "AAPL", now=T0, order_ref="s1", quantity=100, limit_price=10.1, reason="stop"
    )
    assert ticket is not None
    later = T0 + timedelta(minutes=3)

    closed = store.close_position(
        "AAPL",
        trading_date=DAY,
        now=later,
        exit_price=9.9,
        reason="stop",
        pnl=-11.0,
        commissions=1.0,
        position_id=ticket.position_id,
    )
    again = store.close_position(
        "AAPL",
        trading_date=DAY,
        now=later,
        exit_price=9.9,
        reason="stop",
        pnl=-11.0,
        commissions=1.0,
    )

    assert again is None
    assert closed is not None
    assert (closed.symbol, closed.exit_reason, closed.pnl, closed.reentry_allowed) == (
        "AAPL",
        ExitReason.STOP,
        -11.0,
        True,
    )
    assert (closed.entry_order_ref, closed.exit_order_ref, closed.closed_at) == (
        "buy-AAPL-1",
        "s1",
        later,
    )
    assert store.active_position("AAPL") is None
    daily = store.daily_state(DAY)
    assert daily is not None and (daily.realized_pnl, daily.trades_count) == (-11.0, 1)
    assert store.closed_today(DAY) == [closed]
    assert store.closed_today(DAY + timedelta(days=1)) == []


def test_close_with_a_stale_position_id_leaves_the_new_position(
    store: Store, open_position: OpenPosition, round_trip: RoundTrip
) -> None:
    first = round_trip("AAPL", "stop")
    open_position("AAPL")

    late = store.close_position(
        "AAPL",
        trading_date=DAY,
        now=T0,
        exit_price=9.9,
        reason="stop",
        pnl=-1.0,
        commissions=0.0,
        position_id=first.position_id,
    )

    assert late is None
    assert store.active_position("AAPL") is not None


def test_close_of_an_entry_pending_row_is_a_transition_error(store: Store, claim: Claim) -> None:
    claim("AAPL")

    with pytest.raises(TransitionError, match="cancel_entry"):
        store.close_position(
            "AAPL",
            trading_date=DAY,
            now=T0,
            exit_price=1.0,
            reason="reconciled",
            pnl=0.0,
            commissions=0.0,
        )


def test_close_refuses_reentry_allowed_with_a_profit_exit(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")

    with pytest.raises(ValueError, match="reentry_allowed"):
        store.close_position(
            "AAPL",
            trading_date=DAY,
            now=T0,
            exit_price=10.2,
            reason="target",
            pnl=1.0,
            commissions=0.0,
            reentry_allowed=True,
        )
    assert store.active_position("AAPL") is not None


def test_a_stop_closed_without_reentry_forbids_the_symbol(
    store: Store, open_position: OpenPosition, claim: Claim
) -> None:
    open_position("AAPL")
    store.close_position(
        "AAPL",
        trading_date=DAY,
        now=T0,
        exit_price=9.9,
        reason="stop",
        pnl=-1.0,
        commissions=0.0,
        reentry_allowed=False,
    )

    assert claim("AAPL").refusal is ClaimRefusal.REENTRY_FORBIDDEN


def test_adopt_position_puts_an_unknown_holding_under_exit_protection(store: Store) -> None:
    adopted = store.adopt_position(
        "AAPL",
        trading_date=DAY,
        now=T0,
        quantity=30,
        entry_price=10.0,
        target_price=10.2,
        stop_price=9.9,
        detail={"avg_cost": 10.0},
    )
    again = store.adopt_position(
        "AAPL",
        trading_date=DAY,
        now=T0,
        quantity=30,
        entry_price=10.0,
        target_price=10.2,
        stop_price=9.9,
    )

    assert adopted is not None and again is None
    assert (adopted.state, adopted.source, adopted.quantity, adopted.entry_order_ref) == (
        PositionState.OPEN,
        "adopted",
        30,
        None,
    )
    (event,) = store.events(kind="adopted")
    assert event.symbol == "AAPL" and event.detail["avg_cost"] == 10.0
    assert store.begin_exit(
        "AAPL", now=T0, order_ref="s1", quantity=30, limit_price=None, reason="target"
    )


def test_active_positions_lists_every_row_by_symbol(
    store: Store, claim: Claim, open_position: OpenPosition
) -> None:
    claim("MSFT")
    open_position("AAPL")

    assert [(p.symbol, p.state) for p in store.active_positions()] == [
        ("AAPL", PositionState.OPEN),
        ("MSFT", PositionState.ENTRY_PENDING),
    ]


BAD_CLAIMS = [
    ({"quantity": -5}, "quantity"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"limit_price": float("nan")}, "limit_price"),
    ({"limit_price": -1.0}, "limit_price"),
    ({"now": T0.replace(tzinfo=None)}, "now"),
    ({"trading_date": T0}, "trading_date"),
    ({"max_positions": -1}, "max_positions"),
    ({"order_ref": ""}, "order_ref"),
]


@pytest.mark.parametrize(("override", "field"), BAD_CLAIMS)
def test_bad_claim_input_raises_value_error_naming_the_field_and_writes_nothing(
    store: Store, claim: Claim, override: dict, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        claim("AAPL", **override)

    assert store.active_positions() == [] and store.events() == []


def test_bad_close_input_raises_before_anything_is_written(
    store: Store, open_position: OpenPosition
) -> None:
    open_position("AAPL")
    before = store.events()

    with pytest.raises(ValueError, match="reason.*'target'"):
        store.close_position(
            "AAPL",
            trading_date=DAY,
            now=T0,
            exit_price=1.0,
            reason="profit",
            pnl=1.0,
            commissions=0.0,
        )
    with pytest.raises(ValueError, match="pnl"):
        store.close_position(
            "AAPL",
            trading_date=DAY,
            now=T0,
            exit_price=1.0,
            reason="stop",
            pnl=float("inf"),
            commissions=0.0,
        )

    assert store.events() == before and store.active_position("AAPL") is not None


def test_symbols_are_normalised_to_upper_case(store: Store, claim: Claim) -> None:
    claim(" aapl ")

    assert store.active_position("AAPL") is not None and store.active_position("aapl") is not None


def test_bad_symbol_is_a_value_error(store: Store, claim: Claim) -> None:
    with pytest.raises(ValueError, match="symbol"):
        claim("AA;PL")


def test_position_ids_are_never_reused(
    store: Store, round_trip: RoundTrip, open_position: OpenPosition
) -> None:
    first = round_trip("AAPL", "stop")
    second = open_position("AAPL")

    assert second.id > first.position_id


def test_transition_callers_reach_positions_only_through_the_table(store: Store) -> None:
    assert (
        POSITION_TRANSITIONS[(PositionState.OPEN, PositionTrigger.BEGIN_EXIT)]
        is PositionState.EXIT_PENDING
    )
    assert (PositionState.EXIT_PENDING, PositionTrigger.BEGIN_EXIT) not in POSITION_TRANSITIONS
    assert (PositionState.ENTRY_PENDING, PositionTrigger.CLOSE) not in POSITION_TRANSITIONS
