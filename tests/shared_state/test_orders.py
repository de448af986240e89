"""Orders (intent, status transition table, broker ids) and fills by exec id."""

from __future__ import annotations

from datetime import timedelta

import pytest
from state_fixtures import T0

from shared_state import (
    ORDER_DONE_STATES,
    ORDER_TRANSITIONS,
    DuplicateKeyError,
    NotFoundError,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    Store,
    TransitionError,
)

BROKER_CONFIRMED = ["SUBMITTED", "PARTIAL", "FILLED", "CANCELLED", "REJECTED"]


def _intent(store: Store, ref: str = "o1", quantity: int = 100) -> None:
    store.order_intent(
        ref, symbol="AAPL", side="SELL", quantity=quantity, limit_price=10.0, purpose="exit", now=T0
    )


def test_order_intent_is_written_before_sending_with_status_intent(store: Store) -> None:
    order = store.order_intent(
        "o1", symbol="aapl", side="BUY", quantity=10, limit_price=9.5, purpose="entry", now=T0
    )

    assert (order.order_ref, order.symbol, order.side, order.purpose) == (
        "o1",
        "AAPL",
        OrderSide.BUY,
        OrderPurpose.ENTRY,
    )
    assert (order.status, order.filled_quantity, order.created_at) == (OrderStatus.INTENT, 0, T0)
    assert store.order("o1") == order
    assert [e.kind for e in store.events()] == ["order_intent"]


def test_a_reused_order_ref_is_refused(store: Store) -> None:
    _intent(store)

    with pytest.raises(DuplicateKeyError, match="o1"):
        _intent(store)


def test_order_moves_through_its_lifecycle_and_records_each_change(store: Store) -> None:
    _intent(store)
    later = T0 + timedelta(seconds=1)

    store.record_order_ack("o1", 17, 123456, now=later)
    store.update_order("o1", now=later, status="PARTIAL", filled_quantity=40, avg_fill_price=10.01)
    store.update_order("o1", now=later, filled_quantity=70, avg_fill_price=10.02)
    final = store.update_order(
        "o1", now=later, status="FILLED", filled_quantity=100, avg_fill_price=10.03
    )

    assert (final.status, final.broker_order_id, final.perm_id) == (OrderStatus.FILLED, 17, 123456)
    assert (final.filled_quantity, final.avg_fill_price, final.updated_at) == (100, 10.03, later)
    changes = [(e.detail["from"], e.detail["to"]) for e in store.events(kind="order_status")]
    assert changes == [("INTENT", "SUBMITTED"), ("SUBMITTED", "PARTIAL"), ("PARTIAL", "FILLED")]


@pytest.mark.parametrize("done", sorted(s.value for s in ORDER_DONE_STATES))
def test_a_done_order_never_changes_status_again(store: Store, done: str) -> None:
    _intent(store)
    store.update_order("o1", now=T0, status=done)

    with pytest.raises(TransitionError, match=done):
        store.update_order("o1", now=T0, status="SUBMITTED")


@pytest.mark.parametrize("confirmed", BROKER_CONFIRMED)
def test_an_unknown_order_can_move_to_any_broker_confirmed_state(
    store: Store, confirmed: str
) -> None:
    _intent(store)
    store.update_order("o1", now=T0, status="UNKNOWN", error="no ack after 10 s")

    assert store.update_order("o1", now=T0, status=confirmed).status == OrderStatus(confirmed)


def test_unknown_is_never_turned_into_intent(store: Store) -> None:
    _intent(store)
    store.update_order("o1", now=T0, status="UNKNOWN")

    with pytest.raises(TransitionError):
        store.update_order("o1", now=T0, status="INTENT")


def test_the_transition_table_covers_every_status() -> None:
    assert set(ORDER_TRANSITIONS) == set(OrderStatus)
    assert all(not ORDER_TRANSITIONS[s] for s in ORDER_DONE_STATES)
    assert ORDER_TRANSITIONS[OrderStatus.UNKNOWN] == {OrderStatus(s) for s in BROKER_CONFIRMED}


def test_filled_quantity_never_goes_down_nor_beyond_the_order(store: Store) -> None:
    _intent(store, quantity=100)
    store.update_order("o1", now=T0, status="PARTIAL", filled_quantity=50)

    with pytest.raises(TransitionError, match="go down"):
        store.update_order("o1", now=T0, filled_quantity=40)
    with pytest.raises(ValueError, match="filled_quantity"):
        store.update_order("o1", now=T0, filled_quantity=101)


def test_update_of_an_unknown_order_ref_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        store.update_order("nope", now=T0, status="SUBMITTED")


def test_update_with_an_unknown_status_names_the_allowed_ones(store: Store) -> None:
    _intent(store)

    with pytest.raises(ValueError, match="status.*'SUBMITTED'"):
        store.update_order("o1", now=T0, status="DONE")


def test_orders_are_found_by_perm_id_and_by_status(store: Store) -> None:
    _intent(store, "o1")
    _intent(store, "o2")
    store.record_order_ack("o2", 8, 777, now=T0)

    found = store.order_by_perm_id(777)
    assert found is not None and found.order_ref == "o2"
    assert store.order_by_perm_id(778) is None
    assert [o.order_ref for o in store.orders_in_status("INTENT", "SUBMITTED")] == ["o1", "o2"]
    assert [o.order_ref for o in store.orders_in_status(OrderStatus.SUBMITTED, symbol="AAPL")] == [
        "o2"
    ]
    assert store.orders_in_status("SUBMITTED", symbol="MSFT") == []


def test_record_fill_is_idempotent_by_exec_id(store: Store) -> None:
    _intent(store)
    fill = {
        "order_ref": "o1",
        "symbol": "AAPL",
        "side": "SELL",
        "quantity": 40,
        "price": 10.0,
        "commission": None,
        "time": T0,
    }

    assert store.record_fill("0001.01", **fill) is True
    assert store.record_fill("0001.01", **fill) is False
    assert store.record_fill("0001.02", **{**fill, "quantity": 60}) is True

    assert [f.quantity for f in store.fills(order_ref="o1")] == [40, 60]
    assert len(store.events(kind="fill")) == 2


def test_commission_reported_later_is_attached_to_the_fill(store: Store) -> None:
    store.record_fill(
        "e1",
        order_ref=None,
        symbol="AAPL",
        side="BUY",
        quantity=1,
        price=1.0,
        commission=None,
        time=T0,
    )

    assert store.set_fill_commission("e1", 1.05) is True
    assert store.set_fill_commission("e2", 1.05) is False
    (fill,) = store.fills(symbol="AAPL")
    assert fill.commission == 1.05 and fill.order_ref is None


def test_bad_fill_input_raises_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="price"):
        store.record_fill(
            "e1",
            order_ref=None,
            symbol="AAPL",
            side="BUY",
            quantity=1,
            price=float("nan"),
            commission=None,
            time=T0,
        )
    with pytest.raises(ValueError, match="side"):
        store.record_fill(
            "e1",
            order_ref=None,
            symbol="AAPL",
            side="LONG",
            quantity=1,
            price=1.0,
            commission=None,
            time=T0,
        )
    assert store.fills() == []
