"""The tables of design section 3 as SQLAlchemy Core, and the schema version.

Invariants live in the schema wherever SQLite can hold them: one active row per symbol
is ``UNIQUE(symbol)``, ``order_ref`` and ``exec_id`` are unique, every lifecycle column
has a CHECK listing its states. Times are stored as ISO-8601 UTC text, trading dates as
ISO dates, so the file stays readable with the plain ``sqlite3`` shell.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.types import TypeDecorator

from shared_state.errors import SchemaVersionError
from shared_state.states import (
    CommandKind,
    CommandStatus,
    ExitReason,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PhaseStatus,
    PositionState,
    ProcessState,
    WatchlistSource,
    check_values,
)

#: Bump on every change of the tables below; a file with another version is refused.
SCHEMA_VERSION = 1


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetime stored as fixed-width ISO-8601 UTC text (sorts as time does)."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class IsoDate(TypeDecorator[date]):
    """A trading date stored as 'YYYY-MM-DD'."""

    impl = String(10)
    cache_ok = True

    def process_bind_param(self, value: date | None, dialect: Dialect) -> str | None:
        return None if value is None else value.isoformat()

    def process_result_value(self, value: str | None, dialect: Dialect) -> date | None:
        return None if value is None else date.fromisoformat(value)


class Real(TypeDecorator[float]):
    """A float column that always reads back as ``float``.

    SQLite may hand back an integral REAL as ``int`` (e.g. through RETURNING).
    """

    impl = Float
    cache_ok = True

    def process_result_value(self, value: float | None, dialect: Dialect) -> float | None:
        return None if value is None else float(value)


def _in(column: str, enum: type) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({check_values(enum)})", name=f"ck_{column}_values")


metadata = MetaData()

active_positions = Table(
    "active_positions",
    metadata,
    # AUTOINCREMENT: a position id is never reused, so ``close_position(position_id=...)``
    # can never close a later position of the same symbol.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("symbol", String(16), nullable=False, unique=True),  # the one-active-row rule
    Column("state", String(16), nullable=False),
    Column("trading_date", IsoDate, nullable=False),
    Column("source", String(32), nullable=False),
    Column("is_recovery", Boolean, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("entry_price", Real),
    Column("target_price", Real),
    Column("stop_price", Real),
    Column("entry_order_ref", String(64), ForeignKey("orders.order_ref")),
    Column("exit_order_ref", String(64), ForeignKey("orders.order_ref")),
    Column("exit_reason", String(16)),
    Column("sold_quantity", Integer, nullable=False, default=0),
    Column("realized_pnl", Real, nullable=False, default=0.0),
    Column("commissions", Real, nullable=False, default=0.0),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    _in("state", PositionState),
    CheckConstraint(f"exit_reason IS NULL OR exit_reason IN ({check_values(ExitReason)})"),
    CheckConstraint("quantity > 0 AND sold_quantity >= 0", name="ck_active_quantity"),
    # An open or exiting position always knows what it paid; an exiting one its sell.
    CheckConstraint("state = 'ENTRY_PENDING' OR entry_price IS NOT NULL", name="ck_entry_px"),
    CheckConstraint("state != 'EXIT_PENDING' OR exit_order_ref IS NOT NULL", name="ck_exit"),
    sqlite_autoincrement=True,
)

closed_positions = Table(
    "closed_positions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("position_id", Integer, nullable=False),
    Column("trading_date", IsoDate, nullable=False),
    Column("symbol", String(16), nullable=False),
    Column("source", String(32), nullable=False),
    Column("entry_price", Real, nullable=False),
    Column("exit_price", Real, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("exit_reason", String(16), nullable=False),
    Column("pnl", Real, nullable=False),
    Column("commissions", Real, nullable=False),
    Column("reentry_allowed", Boolean, nullable=False),
    Column("is_recovery", Boolean, nullable=False),
    Column("entry_order_ref", String(64)),
    Column("exit_order_ref", String(64)),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime, nullable=False),
    _in("exit_reason", ExitReason),
    CheckConstraint("quantity > 0", name="ck_closed_quantity"),
    Index("ix_closed_date_symbol", "trading_date", "symbol"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_ref", String(64), nullable=False, unique=True),  # the idempotency key
    Column("symbol", String(16), nullable=False),
    Column("side", String(4), nullable=False),
    Column("purpose", String(8), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("limit_price", Real),
    Column("status", String(16), nullable=False),
    Column("broker_order_id", Integer),
    Column("perm_id", Integer),
    Column("filled_quantity", Integer, nullable=False, default=0),
    Column("avg_fill_price", Real),
    Column("error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    _in("side", OrderSide),
    _in("purpose", OrderPurpose),
    _in("status", OrderStatus),
    CheckConstraint(
        "quantity > 0 AND filled_quantity >= 0 AND filled_quantity <= quantity",
        name="ck_order_quantity",
    ),
    Index("ix_orders_status", "status"),
    Index("ix_orders_perm_id", "perm_id"),
)

fills = Table(
    "fills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exec_id", String(64), nullable=False, unique=True),
    # No foreign key: the broker may report executions of orders we never wrote
    # (manual trades in TWS); reconciliation needs to see them too.
    Column("order_ref", String(64)),
    Column("symbol", String(16), nullable=False),
    Column("side", String(4), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("price", Real, nullable=False),
    Column("commission", Real),
    Column("time", UtcDateTime, nullable=False),
    _in("side", OrderSide),
    CheckConstraint("quantity > 0 AND price > 0", name="ck_fill_values"),
    Index("ix_fills_order_ref", "order_ref"),
)

daily_state = Table(
    "daily_state",
    metadata,
    Column("trading_date", IsoDate, primary_key=True),
    Column("starting_capital", Real),
    Column("realized_pnl", Real, nullable=False, default=0.0),
    Column("trades_count", Integer, nullable=False, default=0),
    Column("daily_target_reached", Boolean, nullable=False, default=False),
    Column("halted", Boolean, nullable=False, default=False),
    Column("halt_reason", Text),
)

watchlist = Table(
    "watchlist",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trading_date", IsoDate, nullable=False),
    Column("symbol", String(16), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("score", Real, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(8), nullable=False),
    Column("gap_pct", Real),
    Column("validated", Boolean, nullable=False, default=False),
    Column("extra", Text, nullable=False, default="{}"),
    _in("source", WatchlistSource),
    UniqueConstraint("trading_date", "symbol", name="uq_watchlist_date_symbol"),
)

phase_runs = Table(
    "phase_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trading_date", IsoDate, nullable=False),
    Column("phase", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("detail", Text),
    _in("status", PhaseStatus),
    UniqueConstraint("trading_date", "phase", name="uq_phase_runs_date_phase"),
)

processes = Table(
    "processes",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("pid", Integer),
    Column("since", UtcDateTime, nullable=False),
    Column("restarts", Integer, nullable=False, default=0),
    Column("last_heartbeat", UtcDateTime),
    Column("last_error", Text),
    Column("ready", Boolean, nullable=False, default=False),
    Column("detail", Text, nullable=False, default="{}"),
    _in("state", ProcessState),
)

commands = Table(
    "commands",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("symbol", String(16)),
    Column("status", String(8), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("taken_by", String(64)),
    Column("taken_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("result", Text),
    _in("kind", CommandKind),
    _in("status", CommandStatus),
    CheckConstraint("(kind = 'liquidate_symbol') = (symbol IS NOT NULL)", name="ck_command_symbol"),
    Index("ix_commands_status_id", "status", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UtcDateTime, nullable=False),
    Column("process", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("symbol", String(16)),
    Column("detail", Text, nullable=False, default="{}"),
)

#: Every table name of the contract (design section 3).
TABLE_NAMES: tuple[str, ...] = tuple(metadata.tables)


def _found_version(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())


def _mismatch(path: Path, found: int, detail: str) -> SchemaVersionError:
    return SchemaVersionError(
        f"{path}: schema version {found} found, this code expects {SCHEMA_VERSION} "
        f"({detail}). Stop every process that uses the file, then run the code version "
        "that wrote it, or move the file aside (keep it: it holds the audit trail) and "
        "start again so a new file is created."
    )


def check_version(conn: Connection, path: Path) -> int:
    """Return the file's schema version; raise ``SchemaVersionError`` unless 0 or current."""
    found = _found_version(conn)
    if found not in (0, SCHEMA_VERSION):
        age = "newer" if found > SCHEMA_VERSION else "older"
        raise _mismatch(path, found, f"the file was written by {age} code")
    return found


def create_schema(conn: Connection, path: Path) -> None:
    """Create every table in an empty file and stamp the version (in the caller's transaction).

    Runs inside ``BEGIN IMMEDIATE``, so when several processes open a new file at once
    exactly one creates it and the others see the finished schema.
    """
    if check_version(conn, path) == SCHEMA_VERSION:
        return
    existing = inspect(conn).get_table_names()
    if existing:
        raise _mismatch(path, 0, f"it holds tables {existing[:5]} but no shared_state stamp")
    metadata.create_all(conn)
    conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
