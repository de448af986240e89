"""Checks of caller input, run before any transaction so nothing is ever half-written.

Each check raises ``ValueError`` naming the field, the value and what is allowed, and
returns the normalised value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\- ]{0,14}$")
_NAME_MAX = 200


def _fail(field: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{field}={value!r} is not allowed: {allowed}")


def symbol(value: object, field: str = "symbol") -> str:
    """Return the upper-cased stock symbol."""
    if not isinstance(value, str):
        raise _fail(field, value, "a ticker string such as 'AAPL'")
    normal = value.strip().upper()
    if not _SYMBOL.match(normal):
        raise _fail(field, value, "1-15 characters A-Z, 0-9, '.', '-', ' '")
    return normal


def text(value: object, field: str, *, max_len: int = _NAME_MAX) -> str:
    """Return a non-empty string of at most ``max_len`` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise _fail(field, value, f"a non-empty string of at most {max_len} characters")
    return value


def optional_text(value: object, field: str, *, max_len: int = 10_000) -> str | None:
    """Return ``None`` or a string of at most ``max_len`` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _fail(field, value, f"None or a string of at most {max_len} characters")
    return value


def shares(value: object, field: str = "quantity", *, allow_zero: bool = False) -> int:
    """Return a whole, positive (or non-negative) number of shares."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, value, "a whole number of shares")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise _fail(field, value, "a whole number of shares")
    number = int(value)
    if number < 0 or (number == 0 and not allow_zero):
        raise _fail(field, value, ">= 0 shares" if allow_zero else "> 0 shares")
    return number


def count(value: object, field: str) -> int:
    """Return a non-negative integer limit."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(field, value, "an integer >= 0")
    return value


def money(value: object, field: str) -> float:
    """Return a finite amount of money (any sign)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(field, value, "a finite number")
    return float(value)


def price(value: object, field: str) -> float:
    """Return a finite price > 0."""
    number = money(value, field)
    if number <= 0:
        raise _fail(field, value, "a finite price > 0")
    return number


def optional_price(value: object, field: str) -> float | None:
    """Return ``None`` or a finite price > 0."""
    return None if value is None else price(value, field)


def non_negative(value: object, field: str) -> float:
    """Return a finite amount >= 0 (commissions)."""
    number = money(value, field)
    if number < 0:
        raise _fail(field, value, "a finite number >= 0")
    return number


def broker_id(value: object, field: str) -> int | None:
    """Return ``None`` or a broker-assigned integer id."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, value, "None or an integer id")
    return value


def instant(value: object, field: str = "now") -> datetime:
    """Return an aware datetime (the store never guesses a time zone)."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _fail(field, value, "a timezone-aware datetime (use the product clock)")
    return value


def day(value: object, field: str = "trading_date") -> date:
    """Return a ``datetime.date`` that is not a ``datetime``."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise _fail(field, value, "a datetime.date (the trading date, not a datetime)")
    return value


def flag(value: object, field: str) -> bool:
    """Return a real ``bool`` (no truthy strings)."""
    if not isinstance(value, bool):
        raise _fail(field, value, "True or False")
    return value


def member[E: StrEnum](value: object, enum: type[E], field: str) -> E:
    """Return the enum member named by ``value`` (a member or its string value)."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise _fail(field, value, f"one of {allowed}") from None


def detail(value: Mapping[str, Any] | None, field: str = "detail") -> str:
    """Return the JSON text of a detail mapping (must be JSON-serialisable)."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise _fail(field, value, "a dict of JSON values")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _fail(field, value, f"a dict of JSON values ({exc})") from None
