"""The simulator's persistent paper account: cash, positions, orders, executions, id counters.

This is the simulated broker's *own* SQLite file, deliberately separate from the bot's
``shared_state`` database: the simulator plays IBKR, and IBKR does not share a database
with its clients. One simulator process owns the file; it keeps cash and positions in
memory as well (read on every account update) and writes through on every change.

Durability: WAL and every write unit in one ``BEGIN IMMEDIATE`` transaction. A fill
(execution row, order row, cash, position) is one transaction, so a crash never leaves
cash moved without its execution. ``synchronous=NORMAL`` rather than the bot's FULL: WAL
+ NORMAL survives a killed simulator process (what tests and restarts exercise) and only
a power cut can lose the last transactions of a *paper* exchange, while FULL would add an
fsync to each of the several writes an order makes, on the order round-trip path.

Position accounting follows IBKR: the average cost includes the opening commissions, and
the realized P&L of a closing fill is ``shares * (price - avg_cost) - commission`` (sign
flipped for shorts). ``realized_pnl`` on a position accumulates over the file's lifetime.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from broker.simulator.types import (
    DONE_STATUSES,
    AccountSnapshot,
    Action,
    ExchangeConfig,
    Execution,
    OrderRequest,
    OrderStatus,
    PositionRow,
    SimOrder,
)

_SCHEMA_VERSION = 1

#: First perm id handed out: large and non-zero like TWS perm ids, far below 2**31.
_FIRST_PERM_ID = 1_000_000_001

#: Quantities below this are zero (whole shares are carried as floats).
_QTY_EPS = 1e-9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cash REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS client_order_ids (
    client_id INTEGER PRIMARY KEY,
    max_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY,
    con_id INTEGER NOT NULL,
    quantity REAL NOT NULL,
    avg_cost REAL NOT NULL,
    realized_pnl REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    perm_id INTEGER PRIMARY KEY,
    client_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    con_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    quantity REAL NOT NULL,
    order_type TEXT NOT NULL,
    limit_price REAL,
    tif TEXT NOT NULL,
    outside_rth INTEGER NOT NULL,
    order_ref TEXT NOT NULL,
    account TEXT NOT NULL,
    status TEXT NOT NULL,
    filled REAL NOT NULL,
    avg_fill_price REAL NOT NULL,
    last_fill_price REAL NOT NULL,
    submitted_time TEXT,
    completed_time TEXT,
    completed_status TEXT NOT NULL,
    why_held TEXT NOT NULL,
    UNIQUE (client_id, order_id)
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, completed_time);
CREATE TABLE IF NOT EXISTS executions (
    exec_id TEXT PRIMARY KEY,
    perm_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    con_id INTEGER NOT NULL,
    side TEXT NOT NULL,
    shares REAL NOT NULL,
    price REAL NOT NULL,
    time TEXT NOT NULL,
    cum_qty REAL NOT NULL,
    avg_price REAL NOT NULL,
    order_ref TEXT NOT NULL,
    account TEXT NOT NULL,
    exchange TEXT NOT NULL,
    commission REAL NOT NULL,
    realized_pnl REAL
);
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (time);
CREATE INDEX IF NOT EXISTS executions_by_perm ON executions (perm_id);
"""

_ORDER_COLUMNS = (
    "perm_id, client_id, order_id, symbol, con_id, action, quantity, order_type, limit_price,"
    " tif, outside_rth, order_ref, account, status, filled, avg_fill_price, last_fill_price,"
    " submitted_time, completed_time, completed_status, why_held"
)
_EXECUTION_COLUMNS = (
    "exec_id, perm_id, order_id, client_id, symbol, con_id, side, shares, price, time, cum_qty,"
    " avg_price, order_ref, account, exchange, commission, realized_pnl"
)


class AccountStoreError(RuntimeError):
    """The account file is not usable (newer schema, or a broken invariant)."""


# --------------------------------------------------------------------------- pure math


@dataclass(frozen=True)
class PositionChange:
    """A position after one fill, and the P&L the fill realized (None for opening fills)."""

    position: PositionRow
    realized: float | None


def apply_to_position(
    position: PositionRow, signed_shares: float, price: float, commission: float
) -> PositionChange:
    """Return ``position`` after a fill of ``signed_shares`` (+ buy, - sell) at ``price``.

    Opening (or increasing) fills fold price and commission into the average cost;
    closing fills realize ``closed * (price - avg_cost) * direction`` minus their share of
    the commission. A fill that flips the position opens the rest at ``price``.
    """
    qty = position.quantity
    if abs(qty) < _QTY_EPS or (qty > 0) == (signed_shares > 0):
        new_qty = qty + signed_shares
        basis = qty * position.avg_cost + signed_shares * price + commission
        opened = PositionRow(
            position.symbol, position.con_id, new_qty, basis / new_qty, position.realized_pnl
        )
        return PositionChange(opened, None)
    closed = min(abs(signed_shares), abs(qty))
    direction = 1.0 if qty > 0 else -1.0
    close_share = closed / abs(signed_shares)
    realized = closed * (price - position.avg_cost) * direction - commission * close_share
    new_qty = qty + signed_shares
    if abs(new_qty) < _QTY_EPS:
        new_qty, avg = 0.0, 0.0
    elif (new_qty > 0) == (qty > 0):
        avg = position.avg_cost
    else:  # flipped: the remainder opens at the fill price with the rest of the commission
        avg = (new_qty * price + commission * (1.0 - close_share)) / new_qty
    after = PositionRow(
        position.symbol, position.con_id, new_qty, avg, position.realized_pnl + realized
    )
    return PositionChange(after, realized)


def account_snapshot(
    account_id: str,
    cash: float,
    positions: list[PositionRow],
    marks: dict[str, float],
    config: ExchangeConfig,
) -> AccountSnapshot:
    """Return the account values of ``cash`` and ``positions`` marked at ``marks``.

    Maintenance margin is 25% of the gross long value and 30% of the gross short value;
    buying power is ``margin_multiplier`` times the excess liquidity (never negative).
    """
    market_value = gross = unrealized = realized = margin = 0.0
    for pos in positions:
        mark = marks.get(pos.symbol, pos.avg_cost)
        value = pos.quantity * mark
        market_value += value
        gross += abs(value)
        unrealized += pos.quantity * (mark - pos.avg_cost)
        realized += pos.realized_pnl
        margin += abs(value) * (0.25 if pos.quantity > 0 else 0.30)
    net_liq = cash + market_value
    excess = net_liq - margin
    return AccountSnapshot(
        account=account_id,
        cash=cash,
        net_liquidation=net_liq,
        excess_liquidity=excess,
        buying_power=max(0.0, config.margin_multiplier * excess),
        gross_position_value=gross,
        unrealized_pnl=unrealized,
        realized_pnl=realized,
    )


def format_exec_id(prefix: int, sequence: int) -> str:
    """Return an execution id in TWS's shape, e.g. ``0000e0d5.6543f1a2.01.01``."""
    return f"{prefix & 0xFFFFFFFF:08x}.{sequence & 0xFFFFFFFF:08x}.01.01"


# --------------------------------------------------------------------------- row mapping


def _ts(value: datetime | None) -> str | None:
    # Fixed-width UTC text, so SQL string comparison orders instants correctly.
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _order_params(order: SimOrder) -> tuple[object, ...]:
    req = order.request
    return (
        order.perm_id,
        req.client_id,
        req.order_id,
        req.symbol,
        req.con_id,
        req.action.value,
        req.quantity,
        req.order_type,
        req.limit_price,
        req.tif,
        int(req.outside_rth),
        req.order_ref,
        req.account,
        order.status.value,
        order.filled,
        order.avg_fill_price,
        order.last_fill_price,
        _ts(order.submitted_time),
        _ts(order.completed_time),
        order.completed_status,
        order.why_held,
    )


def _order_from_row(row: sqlite3.Row) -> SimOrder:
    request = OrderRequest(
        client_id=row["client_id"],
        order_id=row["order_id"],
        symbol=row["symbol"],
        con_id=row["con_id"],
        action=Action(row["action"]),
        quantity=row["quantity"],
        order_type=row["order_type"],
        limit_price=row["limit_price"],
        tif=row["tif"],
        outside_rth=bool(row["outside_rth"]),
        order_ref=row["order_ref"],
        account=row["account"],
    )
    return SimOrder(
        request=request,
        perm_id=row["perm_id"],
        status=OrderStatus(row["status"]),
        filled=row["filled"],
        avg_fill_price=row["avg_fill_price"],
        last_fill_price=row["last_fill_price"],
        submitted_time=_dt(row["submitted_time"]),
        completed_time=_dt(row["completed_time"]),
        completed_status=row["completed_status"],
        why_held=row["why_held"],
    )


def _execution_params(e: Execution) -> tuple[object, ...]:
    return (
        e.exec_id,
        e.perm_id,
        e.order_id,
        e.client_id,
        e.symbol,
        e.con_id,
        e.side,
        e.shares,
        e.price,
        _ts(e.time),
        e.cum_qty,
        e.avg_price,
        e.order_ref,
        e.account,
        e.exchange,
        e.commission,
        e.realized_pnl,
    )


def _execution_from_row(row: sqlite3.Row) -> Execution:
    time = _dt(row["time"])
    assert time is not None  # NOT NULL column
    return Execution(
        exec_id=row["exec_id"],
        perm_id=row["perm_id"],
        order_id=row["order_id"],
        client_id=row["client_id"],
        symbol=row["symbol"],
        con_id=row["con_id"],
        side=row["side"],
        shares=row["shares"],
        price=row["price"],
        time=time,
        cum_qty=row["cum_qty"],
        avg_price=row["avg_price"],
        order_ref=row["order_ref"],
        account=row["account"],
        exchange=row["exchange"],
        commission=row["commission"],
        realized_pnl=row["realized_pnl"],
    )


# --------------------------------------------------------------------------- the store


class AccountStore:
    """The simulated account in one SQLite file; a restart over the same file keeps it all."""

    def __init__(self, path: Path, config: ExchangeConfig) -> None:
        self.path = Path(path)
        self.config = config
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit BEGIN IMMEDIATE ... COMMIT below.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._create_schema()
        # Exec ids of different account files differ in their first part, like TWS's.
        self._exec_prefix = zlib.crc32(f"{config.account_id}|{self.path.name}".encode())
        self._cash = self._read_cash()
        self._positions = self._read_positions()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # One writer unit: take the write lock up front (design section 3).
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _create_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise AccountStoreError(
                f"{self.path} has schema version {version}; this simulator knows {_SCHEMA_VERSION}"
            )
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO account (id, cash) VALUES (1, ?)",
                (self.config.starting_cash,),
            )
            conn.execute(
                "INSERT OR IGNORE INTO counters (name, value)"
                " VALUES ('perm_id', ?), ('exec_id', 0)",
                (_FIRST_PERM_ID - 1,),
            )
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _read_cash(self) -> float:
        return float(self._conn.execute("SELECT cash FROM account WHERE id = 1").fetchone()[0])

    def _read_positions(self) -> dict[str, PositionRow]:
        rows = self._conn.execute(
            "SELECT symbol, con_id, quantity, avg_cost, realized_pnl FROM positions ORDER BY symbol"
        ).fetchall()
        return {r["symbol"]: PositionRow(*r) for r in rows}

    # ----------------------------------------------------------------------- ids

    def next_valid_id(self, client_id: int) -> int:
        """Return the next order id ``client_id`` may use: one above the highest it used."""
        with self._lock:
            row = self._conn.execute(
                "SELECT max_used FROM client_order_ids WHERE client_id = ?", (client_id,)
            ).fetchone()
        return max(1, (row[0] + 1) if row else 1)

    def note_order_id(self, client_id: int, order_id: int) -> None:
        """Remember that ``client_id`` used ``order_id`` (also for orders that were rejected)."""
        with self._write() as conn:
            self._note_order_id(conn, client_id, order_id)

    @staticmethod
    def _note_order_id(conn: sqlite3.Connection, client_id: int, order_id: int) -> None:
        conn.execute(
            "INSERT INTO client_order_ids (client_id, max_used) VALUES (?, ?)"
            " ON CONFLICT (client_id) DO UPDATE SET max_used = max(max_used, excluded.max_used)",
            (client_id, order_id),
        )

    def roll_back_next_valid_id(self, client_id: int, to: int) -> None:
        """Make ``next_valid_id(client_id)`` return ``to``, even below ids already used (fault)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO client_order_ids (client_id, max_used) VALUES (?, ?)"
                " ON CONFLICT (client_id) DO UPDATE SET max_used = excluded.max_used",
                (client_id, to - 1),
            )

    def next_perm_id(self) -> int:
        """Allocate a fresh, unique, non-zero perm id."""
        with self._write() as conn:
            return self._bump(conn, "perm_id")

    def next_exec_id(self) -> str:
        """Allocate a fresh, unique execution id."""
        with self._write() as conn:
            return format_exec_id(self._exec_prefix, self._bump(conn, "exec_id"))

    @staticmethod
    def _bump(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", (name,)
        ).fetchone()
        return int(row[0])

    # ----------------------------------------------------------------------- orders

    def record_order(self, order: SimOrder) -> None:
        """Insert a newly accepted order and note its order id as used by its client."""
        placeholders = ", ".join("?" * 21)
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES ({placeholders})",
                _order_params(order),
            )
            self._note_order_id(conn, order.request.client_id, order.request.order_id)

    def update_order(self, order: SimOrder) -> None:
        """Write the current state (and possibly modified request) of a recorded order."""
        with self._write() as conn:
            self._update_order(conn, order)

    @staticmethod
    def _update_order(conn: sqlite3.Connection, order: SimOrder) -> None:
        params = _order_params(order)
        names = [c.strip() for c in _ORDER_COLUMNS.split(",")]
        assignments = ", ".join(f"{name} = ?" for name in names[1:])
        cursor = conn.execute(
            f"UPDATE orders SET {assignments} WHERE perm_id = ?", (*params[1:], params[0])
        )
        if cursor.rowcount != 1:
            raise AccountStoreError(f"order with perm id {order.perm_id} was never recorded")

    def load_orders(self, done_since: datetime | None = None) -> list[SimOrder]:
        """Return every live order, plus done orders completed at or after ``done_since``.

        With ``done_since`` None all done orders are returned too. Sorted by perm id.
        """
        sql = f"SELECT {_ORDER_COLUMNS} FROM orders"
        params: list[object] = []
        if done_since is not None:
            done = [s.value for s in DONE_STATUSES]
            marks = ", ".join("?" * len(done))
            sql += f" WHERE status NOT IN ({marks}) OR completed_time >= ?"
            params = [*done, _ts(done_since)]
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY perm_id", params).fetchall()
        return [_order_from_row(r) for r in rows]

    def find_order(self, client_id: int, order_id: int) -> SimOrder | None:
        """Return the order ``client_id`` placed under ``order_id``, live or done, if any."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_id = ? AND order_id = ?",
                (client_id, order_id),
            ).fetchone()
        return None if row is None else _order_from_row(row)

    # ----------------------------------------------------------------------- fills

    def apply_fill(
        self, order: SimOrder, shares: float, price: float, commission: float, time: datetime
    ) -> Execution:
        """Book one fill of ``order`` in a single transaction and return its execution.

        ``order`` must already carry its state *after* the fill (filled, average price,
        status); this writes the execution, the order row, cash, and the position with
        its average cost and realized P&L together.
        """
        req = order.request
        signed = shares if req.action is Action.BUY else -shares
        with self._write() as conn:
            before = self._positions.get(req.symbol) or PositionRow(
                req.symbol, req.con_id, 0.0, 0.0
            )
            change = apply_to_position(before, signed, price, commission)
            execution = Execution(
                exec_id=format_exec_id(self._exec_prefix, self._bump(conn, "exec_id")),
                perm_id=order.perm_id,
                order_id=req.order_id,
                client_id=req.client_id,
                symbol=req.symbol,
                con_id=req.con_id,
                side="BOT" if req.action is Action.BUY else "SLD",
                shares=shares,
                price=price,
                time=time,
                cum_qty=order.filled,
                avg_price=order.avg_fill_price,
                order_ref=req.order_ref,
                account=req.account or self.config.account_id,
                commission=commission,
                realized_pnl=change.realized,
            )
            cash = self._cash - signed * price - commission
            self._insert_execution(conn, execution)
            self._update_order(conn, order)
            self._write_position(conn, change.position)
            conn.execute("UPDATE account SET cash = ? WHERE id = 1", (cash,))
        # Only after COMMIT: memory never runs ahead of the file.
        self._cash = cash
        self._positions[req.symbol] = change.position
        return execution

    def record_execution(self, execution: Execution) -> None:
        """Insert one execution row as is (no cash or position effect)."""
        with self._write() as conn:
            self._insert_execution(conn, execution)

    @staticmethod
    def _insert_execution(conn: sqlite3.Connection, execution: Execution) -> None:
        placeholders = ", ".join("?" * 17)
        conn.execute(
            f"INSERT INTO executions ({_EXECUTION_COLUMNS}) VALUES ({placeholders})",
            _execution_params(execution),
        )

    @staticmethod
    def _write_position(conn: sqlite3.Connection, pos: PositionRow) -> None:
        conn.execute(
            "INSERT INTO positions (symbol, con_id, quantity, avg_cost, realized_pnl)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET con_id = excluded.con_id,"
            " quantity = excluded.quantity, avg_cost = excluded.avg_cost,"
            " realized_pnl = excluded.realized_pnl",
            (pos.symbol, pos.con_id, pos.quantity, pos.avg_cost, pos.realized_pnl),
        )

    def executions(
        self, since: datetime | None = None, client_id: int | None = None
    ) -> list[Execution]:
        """Return executions at or after ``since`` (all when None), oldest first.

        ``client_id`` None or 0 means every client's (TWS's default execution filter).
        """
        sql = f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE time >= ?"
        params: list[object] = [_ts(since) or ""]
        if client_id:
            sql += " AND client_id = ?"
            params.append(client_id)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY time, exec_id", params).fetchall()
        return [_execution_from_row(r) for r in rows]

    def commission_by_perm(self) -> dict[int, float]:
        """Return the commission charged so far per perm id of every order not yet done."""
        done = [s.value for s in DONE_STATUSES]
        marks = ", ".join("?" * len(done))
        with self._lock:
            rows = self._conn.execute(
                "SELECT e.perm_id, sum(e.commission) FROM executions e JOIN orders o"
                f" ON o.perm_id = e.perm_id WHERE o.status NOT IN ({marks}) GROUP BY e.perm_id",
                done,
            ).fetchall()
        return {int(r[0]): float(r[1]) for r in rows}

    # ----------------------------------------------------------------------- account

    def cash(self) -> float:
        """Return the cash balance (negative when the account borrows on margin)."""
        return self._cash

    def position(self, symbol: str) -> PositionRow | None:
        """Return the position row of ``symbol`` (possibly flat), or None if never traded."""
        return self._positions.get(symbol)

    def positions(self, include_flat: bool = False) -> list[PositionRow]:
        """Return positions sorted by symbol; flat rows only with ``include_flat``."""
        rows = sorted(self._positions.values(), key=lambda p: p.symbol)
        return [p for p in rows if include_flat or abs(p.quantity) >= _QTY_EPS]

    def snapshot(self, marks: dict[str, float]) -> AccountSnapshot:
        """Return the account values with positions marked at ``marks`` (avg cost if missing)."""
        return account_snapshot(
            self.config.account_id,
            self._cash,
            self.positions(include_flat=True),
            marks,
            self.config,
        )
