"""The pure rules of the entry lifecycle: broker evidence -> DB changes -> position -> phase."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from broker import models as bm
from day_trader.entries import (
    DONE_PHASES,
    ENTRY_TRANSITIONS,
    NEVER_SENT,
    EntryPhase,
    evidence,
    new_order_ref,
    order_changes,
    phase_of,
    position_step,
    ref_prefix,
)
from day_trader.gate import GateWatch, HeartbeatWatch
from day_trader.reporting import SkipThrottle
from market.clock import VirtualClock
from shared_state import (
    ActivePosition,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PositionState,
)

T0 = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)
REF = "dt12-20251126-ABC-0123abcd"

ORDER = Order(
    order_ref=REF,
    symbol="ABC",
    side=OrderSide.BUY,
    purpose=OrderPurpose.ENTRY,
    quantity=100,
    limit_price=50.25,
    status=OrderStatus.INTENT,
    broker_order_id=None,
    perm_id=None,
    filled_quantity=0,
    avg_fill_price=None,
    error=None,
    created_at=T0,
    updated_at=T0,
)
PENDING = ActivePosition(
    id=1,
    symbol="ABC",
    state=PositionState.ENTRY_PENDING,
    trading_date=date(2025, 11, 26),
    source="day_trader",
    is_recovery=False,
    quantity=100,
    entry_price=None,
    target_price=None,
    stop_price=None,
    entry_order_ref=REF,
    exit_order_ref=None,
    exit_reason=None,
    sold_quantity=0,
    realized_pnl=0.0,
    commissions=0.0,
    opened_at=T0,
    updated_at=T0,
)


def view(status: bm.OrderStatus, filled: float = 0.0, **changes: object) -> bm.OrderView:
    base = bm.OrderView(
        order_ref=REF,
        order_id=7,
        perm_id=1007,
        client_id=12,
        symbol="ABC",
        action="BUY",
        quantity=100.0,
        limit_price=50.25,
        status=status,
        filled=filled,
        remaining=100.0 - filled,
        avg_price=50.1 if filled else 0.0,
    )
    return replace(base, **changes)


def test_acknowledgement_records_ids_and_submitted() -> None:
    changes = order_changes(ORDER, evidence(view(bm.OrderStatus.SUBMITTED), 100))
    assert changes == {"status": OrderStatus.SUBMITTED, "broker_order_id": 7, "perm_id": 1007}


def test_pending_submit_says_nothing_about_the_status() -> None:
    ev = evidence(view(bm.OrderStatus.PENDING_SUBMIT, perm_id=0), 100)
    assert ev.status is None
    assert "status" not in order_changes(ORDER, ev)


def test_partial_fill_is_partial_with_the_filled_quantity_and_average() -> None:
    changes = order_changes(ORDER, evidence(view(bm.OrderStatus.SUBMITTED, 40.0), 100))
    assert changes["status"] is OrderStatus.PARTIAL
    assert changes["filled_quantity"] == 40 and changes["avg_fill_price"] == 50.1


def test_stale_submitted_after_partial_does_not_move_the_status_back() -> None:
    partial = replace(ORDER, status=OrderStatus.PARTIAL, filled_quantity=40)
    changes = order_changes(partial, evidence(view(bm.OrderStatus.PRE_SUBMITTED, 0.0), 100))
    assert "status" not in changes and "filled_quantity" not in changes


def test_fills_alone_prove_a_complete_order_filled() -> None:
    only_fills = view(bm.OrderStatus.UNKNOWN, 100.0, source="executions")
    assert evidence(only_fills, 100).status is OrderStatus.FILLED
    assert evidence(view(bm.OrderStatus.UNKNOWN, 30.0), 100).status is OrderStatus.UNKNOWN


def test_a_rejected_order_with_fills_ends_cancelled_not_rejected() -> None:
    assert evidence(view(bm.OrderStatus.REJECTED, 10.0), 100).status is OrderStatus.CANCELLED
    assert evidence(view(bm.OrderStatus.REJECTED), 100).status is OrderStatus.REJECTED


def test_unknown_is_never_taken_for_cancelled() -> None:
    unknown = replace(ORDER, status=OrderStatus.UNKNOWN)
    assert order_changes(unknown, evidence(view(bm.OrderStatus.UNKNOWN), 100)).get("status") is None
    assert phase_of(unknown, sent=True, cancel_requested=False) is EntryPhase.UNKNOWN
    assert position_step(PENDING, unknown).kind == "none"  # the row stays claimed


def test_fill_moves_the_pending_row_to_the_filled_quantity() -> None:
    partial = replace(ORDER, status=OrderStatus.PARTIAL, filled_quantity=40)
    step = position_step(PENDING, partial)
    assert (step.kind, step.quantity) == ("fill", 40)
    opened = replace(PENDING, state=PositionState.OPEN, quantity=40)
    more = replace(partial, filled_quantity=70)
    assert (position_step(opened, more).kind, position_step(opened, more).quantity) == ("fill", 70)
    assert position_step(opened, partial).kind == "none"


def test_shares_sold_by_the_exit_manager_are_not_bought_back_into_the_row() -> None:
    reduced = replace(PENDING, state=PositionState.OPEN, quantity=30, sold_quantity=10)
    filled = replace(ORDER, status=OrderStatus.FILLED, filled_quantity=100)
    assert position_step(reduced, filled).quantity == 90  # holds 100 bought - 10 sold
    exiting = replace(reduced, state=PositionState.EXIT_PENDING)
    late = position_step(exiting, filled)
    assert (late.kind, late.quantity) == ("late_fill", 60)


def test_cancelled_or_rejected_with_nothing_filled_removes_the_row() -> None:
    for status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        assert position_step(PENDING, replace(ORDER, status=status)).kind == "cancel"


def test_an_orphan_order_never_touches_a_row_of_another_entry() -> None:
    other = replace(PENDING, entry_order_ref="dt12-20251126-ABC-ffffffff")
    filled = replace(ORDER, status=OrderStatus.FILLED, filled_quantity=100)
    assert position_step(other, filled).kind == "none"
    assert position_step(None, filled).kind == "none"


@pytest.mark.parametrize(
    ("status", "filled", "error", "cancel", "phase"),
    [
        (OrderStatus.INTENT, 0, None, False, EntryPhase.SENT),
        (OrderStatus.SUBMITTED, 0, None, False, EntryPhase.WORKING),
        (OrderStatus.SUBMITTED, 0, None, True, EntryPhase.CANCELLING),
        (OrderStatus.PARTIAL, 40, None, False, EntryPhase.PARTIAL),
        (OrderStatus.FILLED, 100, None, False, EntryPhase.FILLED),
        (OrderStatus.CANCELLED, 40, None, True, EntryPhase.PARTLY_FILLED),
        (OrderStatus.CANCELLED, 0, None, True, EntryPhase.CANCELLED),
        (OrderStatus.CANCELLED, 0, f"{NEVER_SENT}: x", False, EntryPhase.NEVER_SENT),
        (OrderStatus.REJECTED, 0, "201", False, EntryPhase.REJECTED),
    ],
)
def test_phase_mirrors_the_order_status(
    status: OrderStatus, filled: int, error: str | None, cancel: bool, phase: EntryPhase
) -> None:
    order = replace(ORDER, status=status, filled_quantity=filled, error=error)
    assert phase_of(order, sent=True, cancel_requested=cancel) is phase


def test_transition_table_covers_every_phase_and_done_phases_are_final() -> None:
    assert set(ENTRY_TRANSITIONS) == set(EntryPhase)
    for done in DONE_PHASES:
        assert ENTRY_TRANSITIONS[done] == frozenset()
    assert EntryPhase.NEVER_SENT not in ENTRY_TRANSITIONS[EntryPhase.WORKING]  # the broker had it
    assert EntryPhase.NEVER_SENT in ENTRY_TRANSITIONS[EntryPhase.UNKNOWN]


def test_order_refs_are_unique_and_carry_the_client_id() -> None:
    refs = {new_order_ref(12, date(2025, 11, 26), "ABC") for _ in range(1000)}
    assert len(refs) == 1000
    assert all(r.startswith(ref_prefix(12) + "20251126-ABC-") and len(r) <= 64 for r in refs)
    assert not ref_prefix(1).startswith(ref_prefix(12)) and ref_prefix(12) != ref_prefix(120)


# ------------------------------------------------------------------ small stateful helpers


def test_heartbeat_age_is_timed_on_the_monotonic_clock_after_the_first_sighting() -> None:
    clock = VirtualClock(T0, speed=10.0)
    ticks = iter([100.0, 101.0, 130.0, 131.0])
    watch = HeartbeatWatch(clock, mono=lambda: next(ticks))
    # First sighting: 100 market s old at speed 10 is 10 real s old.
    assert watch.age_s(clock.now() - timedelta(seconds=100)) == pytest.approx(10.0, abs=0.5)
    first = clock.now()
    assert watch.age_s(first) == pytest.approx(0.0)  # changed at mono 101
    assert watch.age_s(first) == pytest.approx(29.0)  # unchanged for 29 real s
    assert watch.age_s(None) is None


def test_gate_watch_reports_only_changes() -> None:
    watch = GateWatch()
    assert watch.update("outside_session") == (None, "outside_session")
    assert watch.update("outside_session") is None
    assert watch.update(None) == ("outside_session", "allowed")


def test_skip_throttle_allows_one_event_per_symbol_and_reason_per_interval() -> None:
    now = [0.0]
    throttle = SkipThrottle(60.0, mono=lambda: now[0])
    assert throttle.due("ABC", "halted")
    assert not throttle.due("ABC", "halted")
    assert throttle.due("ABC", "stale_quote") and throttle.due("XYZ", "halted")
    now[0] = 61.0
    assert throttle.due("ABC", "halted")
