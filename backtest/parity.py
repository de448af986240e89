"""Parity with the live system: fills keyed by (symbol, side, minute), compared and explained.

A virtual day run by the whole system on the simulator records its executions in the
shared-state ``fills`` table. The backtest over the same bars produces trades. Both
reduce to ``FillRecord``s: the key (symbol, BUY or SELL, minute ET) with the price and
instant of the order's first execution (the partial fills of one order count once:
fill rule F4, the backtest fills whole orders).

``compare`` pairs equal keys (a match), then the same symbol and side within
``tolerance_minutes`` (a shift: rules F1/F7/F8, the live processes decide and react on a
sped-up clock, and check the daily limits on every pass). What is left is explained per
symbol from its first difference, the *root*:

- a sell whose buy matched in minute but not in price: the live buy filled seconds into
  the minute at another price, which moves the position's stop and target (rule F7);
- a backtest sell that the live day makes later: the live exit manager reacted later
  (rule F7);
- every later difference of that symbol follows from its root (re-entries, recovery
  trades and their exits depend on when and how the previous trade ended), and is
  explained when its root is.

Anything else is unexplained, and ``agrees`` is False.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from backtest.engine import Trade
from market.clock import ET

BUY = "BUY"
SELL = "SELL"

Side = Literal["backtest", "live"]


@dataclass(frozen=True, order=True)
class FillKey:
    """When a symbol was bought or sold, to the minute."""

    symbol: str
    side: str  # BUY or SELL
    minute: datetime  # ET, seconds dropped

    def __str__(self) -> str:
        return f"{self.side} {self.symbol} {self.minute:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class FillRecord:
    """One order's first execution: its key, price and instant."""

    key: FillKey
    price: float
    time: datetime


@dataclass(frozen=True)
class Difference:
    """A fill one side has and the other has not at that minute, and why."""

    where: Side
    record: FillRecord
    rule: str | None  # the fill rule that explains it; None: unexplained
    why: str

    def __str__(self) -> str:
        verdict = f"rule {self.rule}" if self.rule else "unexplained"
        return f"only in the {self.where}: {self.record.key} ({verdict}: {self.why})"


class FillLike(Protocol):
    """What parity needs of an execution (``shared_state.models.Fill`` has it)."""

    symbol: str
    side: object  # OrderSide or str
    price: float
    time: datetime
    order_ref: str | None


@dataclass(frozen=True)
class ParityReport:
    """How the backtest's fills line up with the live day's."""

    matched: tuple[FillKey, ...]
    shifted: tuple[tuple[FillKey, FillKey], ...]  # (backtest, live), within the tolerance
    differences: tuple[Difference, ...]

    @property
    def unexplained(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.rule is None)

    @property
    def agrees(self) -> bool:
        """True when every difference is one the fill rules explain."""
        return not self.unexplained

    def explain(self) -> list[str]:
        """Return one line per difference, naming the fill rule that explains it, if any."""
        lines = [
            f"shifted {(live.minute - ours.minute) // timedelta(minutes=1):+d} min: {ours} "
            "(rules F1/F7/F8: decision instant, reaction time, daily check)"
            for ours, live in self.shifted
        ]
        return lines + [str(d) for d in self.differences]


# --------------------------------------------------------------------------- records


def minute_of(instant: datetime) -> datetime:
    """Return ``instant`` in ET with seconds dropped."""
    return instant.astimezone(ET).replace(second=0, microsecond=0)


def _record(symbol: str, side: str, price: float, time: datetime) -> FillRecord:
    return FillRecord(FillKey(symbol, side, minute_of(time)), price, time.astimezone(ET))


def _ordered(records: Iterable[FillRecord]) -> list[FillRecord]:
    return sorted(records, key=lambda r: (r.time, r.key.symbol, r.key.side))


def backtest_fills(trades: Iterable[Trade], day: date | None = None) -> list[FillRecord]:
    """Return the buy and sell of every trade (of ``day`` when given), in time order."""
    records = []
    for t in trades:
        if day is None or t.day == day:
            records.append(_record(t.symbol, BUY, t.entry_price, t.entry_time))
            records.append(_record(t.symbol, SELL, t.exit_price, t.exit_time))
    return _ordered(records)


def live_fills(fills: Iterable[FillLike], day: date | None = None) -> list[FillRecord]:
    """Return one record per order (its first execution) of ``day``'s fills, in time order."""
    first: dict[object, FillLike] = {}
    for n, fill in enumerate(sorted(fills, key=lambda f: f.time)):
        if day is not None and fill.time.astimezone(ET).date() != day:
            continue
        # Executions without an order ref (adopted orders) each count on their own.
        first.setdefault(fill.order_ref if fill.order_ref is not None else ("exec", n), fill)
    return _ordered(_record(f.symbol, _side(f.side), f.price, f.time) for f in first.values())


def _side(side: object) -> str:
    return str(getattr(side, "value", side)).upper()


@dataclass(frozen=True)
class LiveDay:
    """What a virtual day recorded that a backtest of the same day needs, and its fills."""

    day: date
    symbols: tuple[str, ...]  # the validated watchlist, by rank (what the day trader read)
    starting_capital: float | None  # NetLiquidation when the exit manager saw the day
    fills: tuple[FillRecord, ...]


def read_live_day(db_path: Path, day: date) -> LiveDay:
    """Return ``day``'s watchlist, starting capital and fills from a shared-state DB."""
    from shared_state.store import Store  # only the live comparison needs the database

    store = Store(db_path, create=False, process="backtest")
    try:
        watchlist = store.watchlist(day, validated_only=True)
        state = store.daily_state(day)
        fills = live_fills(store.fills(), day)
    finally:
        store.close()
    symbols = tuple(item.symbol for item in sorted(watchlist, key=lambda item: item.rank))
    capital = state.starting_capital if state is not None else None
    return LiveDay(day, symbols, capital, tuple(fills))


# --------------------------------------------------------------------------- comparison


def compare(
    backtest: Sequence[FillRecord], live: Sequence[FillRecord], tolerance_minutes: int = 1
) -> ParityReport:
    """Match ``backtest`` fills against ``live`` ones and explain the rest (module docstring)."""
    ours, theirs = _ordered(backtest), _ordered(live)
    pairs = _pair(ours, theirs, lambda a, b: a.key == b.key)
    tolerance = timedelta(minutes=tolerance_minutes)
    shifts = _pair(ours, theirs, lambda a, b: _same_order(a, b) and _apart(a, b) <= tolerance)
    left = [("backtest", r) for r in ours] + [("live", r) for r in theirs]
    return ParityReport(
        matched=tuple(a.key for a, _ in pairs),
        shifted=tuple((a.key, b.key) for a, b in shifts),
        differences=tuple(_explain(left, pairs, shifts)),
    )


Fits = Callable[[FillRecord, FillRecord], bool]


def _pair(
    ours: list[FillRecord], theirs: list[FillRecord], fits: Fits
) -> list[tuple[FillRecord, FillRecord]]:
    """Remove and return the (ours, theirs) pairs that ``fits``, nearest first."""
    found = []
    for a in list(ours):
        near = [b for b in theirs if fits(a, b)]
        if near:
            b = min(near, key=lambda b: _apart(a, b))
            ours.remove(a)
            theirs.remove(b)
            found.append((a, b))
    return found


def _explain(
    left: list[tuple[Side, FillRecord]],
    pairs: list[tuple[FillRecord, FillRecord]],
    shifts: list[tuple[FillRecord, FillRecord]],
) -> list[Difference]:
    out: list[Difference] = []
    roots: dict[str, Difference | tuple[FillRecord, FillRecord]] = {
        a.key.symbol: (a, b) for a, b in sorted(shifts, key=lambda p: p[0].time, reverse=True)
    }
    for where, record in sorted(left, key=lambda item: (item[1].time, item[0])):
        symbol = record.key.symbol
        root = roots.get(symbol)
        if root is not None and _time_of(root) <= record.time:
            out.append(_cascade(where, record, root))
            continue
        difference = _root(where, record, left, pairs)
        roots[symbol] = difference
        out.append(difference)
    return out


def _time_of(root: Difference | tuple[FillRecord, FillRecord]) -> datetime:
    return root.record.time if isinstance(root, Difference) else root[0].time


def _cascade(
    where: Side, record: FillRecord, root: Difference | tuple[FillRecord, FillRecord]
) -> Difference:
    if isinstance(root, Difference):
        origin, rule = str(root.record.key), root.rule and "cascade"
    else:
        origin, rule = f"{root[0].key} (shifted)", "cascade"
    return Difference(where, record, rule, f"follows the earlier difference {origin}")


def _root(
    where: Side,
    record: FillRecord,
    left: list[tuple[Side, FillRecord]],
    pairs: list[tuple[FillRecord, FillRecord]],
) -> Difference:
    """Classify the first difference of a symbol."""
    if record.key.side == SELL:
        buy = _last_matched_buy(record, pairs)
        if buy is not None and abs(buy[0].price - buy[1].price) > 1e-9:
            ours, theirs = buy
            why = (
                f"the live buy filled at {theirs.price:g} at {theirs.time:%H:%M:%S}, the "
                f"backtest's at {ours.price:g} at the bar open: stop and target moved"
            )
            return Difference(where, record, "F7", why)
        if where == "backtest" and _live_sells_later(record, left):
            return Difference(where, record, "F7", "the live exit manager sold later")
    return Difference(where, record, None, "no fill rule covers it")


def _last_matched_buy(
    sell: FillRecord, pairs: list[tuple[FillRecord, FillRecord]]
) -> tuple[FillRecord, FillRecord] | None:
    buys = [
        (a, b)
        for a, b in pairs
        if a.key.symbol == sell.key.symbol and a.key.side == BUY and a.time <= sell.time
    ]
    return max(buys, key=lambda p: p[0].time) if buys else None


def _live_sells_later(sell: FillRecord, left: list[tuple[Side, FillRecord]]) -> bool:
    return any(where == "live" and _same_order(r, sell) and r.time > sell.time for where, r in left)


def _same_order(a: FillRecord, b: FillRecord) -> bool:
    return a.key.symbol == b.key.symbol and a.key.side == b.key.side


def _apart(a: FillRecord, b: FillRecord) -> timedelta:
    return abs(a.key.minute - b.key.minute)
