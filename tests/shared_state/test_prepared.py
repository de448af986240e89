"""The hot-path executor writes and reads exactly what SQLAlchemy's own execute does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from state_fixtures import DAY, T0

from shared_state import Store, prepared
from shared_state.db import Database
from shared_state.schema import daily_state, orders

ORDER = {
    "order_ref": "ref-1",
    "symbol": "AAPL",
    "side": "BUY",
    "purpose": "entry",
    "quantity": 10,
    "limit_price": 100.0,
    "status": "INTENT",
    "filled_quantity": 0,
    "created_at": T0,
    "updated_at": T0,
}


@pytest.fixture
def database(tmp_path: Path) -> Database:
    path = tmp_path / "state.db"
    Store(path, process="test").close()  # the schema
    db = Database(path, busy_timeout_ms=2000)
    yield db
    db.dispose()


def _stored_text(db: Database, table: str, column: str) -> list[tuple]:
    return db.read(lambda c: list(c.exec_driver_sql(f"SELECT {column} FROM {table}")))


def test_rows_written_both_ways_are_stored_byte_for_byte_alike(database: Database) -> None:
    other = {**ORDER, "order_ref": "ref-2", "created_at": datetime(2025, 3, 3, 9, 30, tzinfo=UTC)}
    database.write(lambda c: prepared.execute(c, orders.insert(), ORDER))
    database.write(lambda c: c.execute(orders.insert(), other))
    stored = _stored_text(database, "orders", "created_at, limit_price, quantity")
    assert stored == [("2025-03-03T14:30:00.000000+00:00", 100.0, 10)] + [
        ("2025-03-03T09:30:00.000000+00:00", 100.0, 10)
    ]


def test_read_rows_carry_the_column_types_and_names(database: Database) -> None:
    database.write(lambda c: c.execute(orders.insert(), ORDER))
    by_ref = select(orders).where(orders.c.order_ref == bindparam("ref"))
    fast = database.read(lambda c: prepared.execute(c, by_ref, {"ref": "ref-1"}).one())
    slow = database.read(lambda c: c.execute(by_ref, {"ref": "ref-1"}).one())
    assert tuple(fast) == tuple(slow)
    assert fast.created_at == T0 and fast.created_at.tzinfo is not None
    assert database.read(lambda c: prepared.execute(c, by_ref, {"ref": "nope"}).first()) is None


def test_python_side_column_defaults_are_applied(database: Database) -> None:
    # daily_state.halted / daily_target_reached / realized_pnl have Python-side defaults.
    database.write(lambda c: prepared.execute(c, daily_state.insert(), {"trading_date": DAY}))
    row = database.read(lambda c: c.execute(select(daily_state)).one())
    assert (row.halted, row.daily_target_reached, row.realized_pnl, row.trades_count) == (
        False,
        False,
        0.0,
        0,
    )


def test_a_constraint_violation_is_sqlalchemys_integrity_error_and_rolls_back(
    database: Database,
) -> None:
    database.write(lambda c: prepared.execute(c, orders.insert(), ORDER))

    def twice(conn) -> None:
        prepared.execute(conn, orders.insert(), {**ORDER, "order_ref": "ref-3"})
        prepared.execute(conn, orders.insert(), ORDER)  # order_ref is unique

    with pytest.raises(IntegrityError) as caught:
        database.write(twice)
    assert "orders.order_ref" in str(caught.value.orig)
    refs = database.read(lambda c: [r.order_ref for r in c.execute(select(orders))])
    assert refs == ["ref-1"]  # ref-3 went with the failed transaction


def test_rowcount_and_lastrowid_are_the_drivers(database: Database) -> None:
    result = database.write(lambda c: prepared.execute(c, orders.insert(), ORDER))
    assert result.rowcount == 1 and result.lastrowid == 1
    gone = orders.delete().where(orders.c.order_ref == bindparam("ref"))
    assert database.write(lambda c: prepared.execute(c, gone, {"ref": "nope"})).rowcount == 0


def test_a_callable_default_is_refused_when_compiled() -> None:
    table = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String, default=lambda: "x"),
    )
    from sqlalchemy.dialects import sqlite

    with pytest.raises(TypeError, match="column name: only scalar Python defaults"):
        prepared.Prepared(table.insert(), ("id",), sqlite.dialect())
