"""The simulator's account file: position math, margin math, durability, atomic fills, ids."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.simulator.account import (
    AccountStore,
    AccountStoreError,
    account_snapshot,
    apply_to_position,
)
from broker.simulator.types import (
    Action,
    ExchangeConfig,
    OrderRequest,
    OrderStatus,
    PositionRow,
    SimOrder,
)

T0 = datetime(2025, 11, 25, 15, 0, tzinfo=UTC)


def new_order(perm_id: int, order_id: int = 1, action: Action = Action.BUY) -> SimOrder:
    req = OrderRequest(1, order_id, "AAPL", 265598, action, 100, "LMT", 100.05, order_ref="r1")
    return SimOrder(req, perm_id, OrderStatus.SUBMITTED, submitted_time=T0)


def filled(order: SimOrder, shares: float, price: float) -> SimOrder:
    return replace(
        order,
        filled=shares,
        avg_fill_price=price,
        last_fill_price=price,
        status=OrderStatus.FILLED if shares >= order.request.quantity else order.status,
    )


# --------------------------------------------------------------------------- pure math


def test_opening_fills_fold_commission_into_avg_cost() -> None:
    flat = PositionRow("AAPL", 1, 0.0, 0.0)

    first = apply_to_position(flat, 100, 10.00, 1.00)
    second = apply_to_position(first.position, 100, 12.00, 1.00)

    assert (first.realized, second.realized) == (None, None)
    assert second.position.quantity == 200
    assert second.position.avg_cost == pytest.approx((1000 + 1 + 1200 + 1) / 200)


def test_short_position_math_and_flip_through_zero() -> None:
    short = apply_to_position(PositionRow("X", 1, 0.0, 0.0), -100, 20.00, 1.00).position
    assert short.avg_cost == pytest.approx((2000 - 1) / 100)  # proceeds net of commission

    flip = apply_to_position(short, 150, 18.00, 1.50)

    assert flip.realized == pytest.approx(100 * (18.00 - short.avg_cost) * -1 - 1.00)
    assert flip.position.quantity == 50
    assert flip.position.avg_cost == pytest.approx((50 * 18.00 + 0.50) / 50)


def test_snapshot_margin_is_25_percent_long_and_30_percent_short() -> None:
    config = ExchangeConfig()
    rows = [PositionRow("L", 1, 100, 50.0), PositionRow("S", 2, -10, 100.0, realized_pnl=7.0)]

    snap = account_snapshot("DU1", 10_000.0, rows, {"L": 60.0, "S": 90.0}, config)

    assert snap.net_liquidation == pytest.approx(10_000 + 6_000 - 900)
    assert snap.gross_position_value == pytest.approx(6_900)
    assert snap.unrealized_pnl == pytest.approx(100 * 10 + (-10) * (90 - 100))
    assert snap.excess_liquidity == pytest.approx(15_100 - 0.25 * 6_000 - 0.30 * 900)
    assert snap.buying_power == pytest.approx(4 * snap.excess_liquidity)
    assert snap.realized_pnl == 7.0


def test_snapshot_without_a_mark_uses_avg_cost() -> None:
    rows = [PositionRow("L", 1, 10, 50.0)]

    snap = account_snapshot("DU1", 0.0, rows, {}, ExchangeConfig())

    assert (snap.net_liquidation, snap.unrealized_pnl) == (500.0, 0.0)


# --------------------------------------------------------------------------- the file


def test_new_file_starts_with_configured_cash_and_durable_pragmas(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "a.db", ExchangeConfig(starting_cash=25_000.0))

    assert store.cash() == 25_000.0
    assert store.positions() == []
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # NORMAL (1): crash-safe under WAL; see the AccountStore module docstring.
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_fill_is_booked_atomically_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = AccountStore(path, ExchangeConfig())
    order = new_order(store.next_perm_id())
    store.record_order(order)

    execution = store.apply_fill(filled(order, 100, 100.01), 100, 100.01, 1.0, T0)
    store.close()
    again = AccountStore(path, ExchangeConfig(starting_cash=5.0))  # config cash ignored now

    assert again.cash() == pytest.approx(1_000_000 - 10_001 - 1)
    (pos,) = again.positions()
    assert (pos.quantity, pos.avg_cost) == (100, pytest.approx(100.02))
    assert again.executions() == [execution]
    (stored,) = again.load_orders()
    assert stored == filled(order, 100, 100.01)


def test_failed_fill_changes_nothing(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "a.db", ExchangeConfig())
    never_recorded = new_order(store.next_perm_id())

    with pytest.raises(AccountStoreError):
        store.apply_fill(filled(never_recorded, 100, 10.0), 100, 10.0, 1.0, T0)

    assert store.cash() == 1_000_000
    assert store.executions() == []
    assert store.positions(include_flat=True) == []
    rows = sqlite3.connect(store.path).execute("SELECT count(*) FROM executions").fetchone()
    assert rows == (0,)


def test_ids_are_unique_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = AccountStore(path, ExchangeConfig())
    perms = [store.next_perm_id() for _ in range(3)]
    execs = [store.next_exec_id() for _ in range(3)]
    store.close()
    again = AccountStore(path, ExchangeConfig())

    assert min(perms) > 0 and len(set(perms)) == 3
    assert again.next_perm_id() > max(perms)
    assert again.next_exec_id() not in execs
    assert all(re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.01\.01", e) for e in execs)


def test_next_valid_id_per_client_and_rollback(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "a.db", ExchangeConfig())
    store.note_order_id(1, 41)
    store.note_order_id(1, 7)
    store.note_order_id(2, 3)

    assert (store.next_valid_id(1), store.next_valid_id(2), store.next_valid_id(3)) == (42, 4, 1)
    store.roll_back_next_valid_id(1, to=5)
    assert store.next_valid_id(1) == 5


def test_load_orders_returns_live_and_recent_done_only(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "a.db", ExchangeConfig())
    live = new_order(store.next_perm_id(), 1)
    old = new_order(store.next_perm_id(), 2)
    recent = new_order(store.next_perm_id(), 3)
    for o in (live, old, recent):
        store.record_order(o)
    store.update_order(replace(old, status=OrderStatus.CANCELLED, completed_time=T0))
    store.update_order(
        replace(recent, status=OrderStatus.CANCELLED, completed_time=T0 + timedelta(hours=30))
    )

    loaded = store.load_orders(done_since=T0 + timedelta(hours=1))

    assert [o.request.order_id for o in loaded] == [1, 3]
    assert len(store.load_orders()) == 3
    assert store.find_order(1, 2) is not None and store.find_order(2, 2) is None


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    AccountStore(path, ExchangeConfig()).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    with pytest.raises(AccountStoreError, match="schema version 99"):
        AccountStore(path, ExchangeConfig())
