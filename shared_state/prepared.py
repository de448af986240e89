"""The hot statements, compiled once by SQLAlchemy and run on the driver's cursor.

Every statement is still SQLAlchemy Core, compiled by SQLAlchemy for this dialect with
its own bind and result processors (ISO text times, booleans, floats); what ``execute``
skips is the per-execution machinery of ``Connection.execute`` (execution context,
events, result metadata), about 90 µs a statement measured on the claim / begin-exit /
close path, where a transaction has 4-5 statements and a ~0.3 ms commit. It runs in the
caller's transaction (the ``Connection`` of a unit of work): BEGIN and COMMIT stay with
``db.Database``.

Driver errors come back as SQLAlchemy's (``IntegrityError``, ``OperationalError``, with
``.orig``), so callers and the busy retry see what ``Connection.execute`` would raise.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for one set of parameter names."""

    __slots__ = ("_compiled", "_defaults", "_order", "_results", "_row", "sql", "statement")

    def __init__(self, statement: ClauseElement, keys: tuple[str, ...], dialect: Any) -> None:
        self.statement = statement  # held, so the id() it is cached under stays its own
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.positiontup is None:
            raise TypeError(f"{type(dialect).__name__}: expected a positional paramstyle")
        self._compiled = compiled
        self.sql = compiled.string
        self._defaults = _python_defaults(compiled)
        processors = compiled._bind_processors  # noqa: SLF001 - SQLAlchemy's own, per bind
        self._order = [(name, processors.get(name)) for name in compiled.positiontup]
        columns = compiled._result_columns  # noqa: SLF001 - (keyname, name, objects, type)
        self._results: list[Processor] = [
            column[3]._cached_result_processor(dialect, None)  # noqa: SLF001
            for column in columns
        ]
        self._row = namedtuple("Row", [column[0] for column in columns]) if columns else None  # noqa: PYI024

    def parameters(self, params: Mapping[str, Any]) -> list[Any]:
        """Return the positional values of ``params`` (with column defaults), processed."""
        given = {**self._defaults, **params} if self._defaults else params
        values = self._compiled.construct_params(given)
        return [_bound(values[name], process) for name, process in self._order]

    def rows(self, raw: list[tuple[Any, ...]]) -> list[Any]:
        """Return ``raw`` driver rows as named rows of processed values."""
        assert self._row is not None
        make, processors = self._row._make, self._results
        return [
            make(v if p is None else p(v) for v, p in zip(row, processors, strict=True))
            for row in raw
        ]


def _bound(value: Any, process: Processor) -> Any:
    return value if process is None else process(value)


def _python_defaults(compiled: Any) -> dict[str, Any]:
    """Return the scalar Python-side defaults the statement needs (INSERT and UPDATE)."""
    defaults: dict[str, Any] = {}
    for column, default in [
        *((c, c.default) for c in compiled.insert_prefetch),
        *((c, c.onupdate) for c in compiled.update_prefetch),
    ]:
        if default is None or not default.is_scalar:
            raise TypeError(f"column {column.key}: only scalar Python defaults are supported")
        defaults[column.key] = default.arg
    return defaults


class Result:
    """The rows of one statement, fetched; the subset of SQLAlchemy's ``Result`` we use."""

    __slots__ = ("_rows", "lastrowid", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


_cache: dict[tuple[int, tuple[str, ...]], Prepared] = {}


def execute(
    conn: Connection, statement: ClauseElement, params: Mapping[str, Any] | None = None
) -> Result:
    """Run ``statement`` with ``params`` in ``conn``'s transaction on the driver cursor.

    ``statement`` must be long-lived (a module constant, or built once per shape behind
    a cache): it is compiled once per parameter-name set.
    """
    params = params or {}
    key = (id(statement), tuple(sorted(params)))
    prepared = _cache.get(key)
    if prepared is None:
        prepared = _cache[key] = Prepared(statement, key[1], conn.dialect)
    values = prepared.parameters(params)
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        cursor = driver.execute(prepared.sql, values)
        raw = cursor.fetchall() if cursor.description else []
    except sqlite3.Error as exc:
        raise DBAPIError.instance(prepared.sql, values, exc, sqlite3.Error) from exc
    rows = prepared.rows(raw) if raw else []
    return Result(rows, cursor.rowcount, cursor.lastrowid)
