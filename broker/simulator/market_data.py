"""What the simulated market does: synthetic price paths, CSV replay, quotes inside a minute.

Two implementations of ``MarketData`` (see ``types.py``):

- ``SyntheticMarket``: deterministic, generated bars for the universe in ``universe.py``.
  The same ``(seed, symbol, day)`` gives identical bars in any process, in any order of
  calls and under any host time zone: every random draw comes from
  ``numpy.random.default_rng`` seeded with a BLAKE2 hash of its inputs (never Python's
  salted ``hash()``), and every instant is computed in America/New_York.
- ``CsvMarket``: replays user-supplied 1-minute bars, falling back to another market
  (usually a ``SyntheticMarket``) for symbols without a file.

Both carry two test/fault-injection controls used by the protocol server:
``set_price(symbol, price | None)`` and ``set_halted(symbol, bool)``.

How the synthetic market works
------------------------------
Daily level: per symbol, one log-price walk over trading days since ``EPOCH``, pulled
gently back towards the symbol's anchor price (an Ornstein-Uhlenbeck walk, so a
20-year run does not wander to $0.01 or $1e6). Each day draws a gap (a ``gap_share``
of symbols gap by 5% or more, mostly up; the others by at most 2%), a character
(trending up, trending down, mean-reverting, volatile) and a volume. Day ``d``'s
prior close is exactly day ``d-1``'s regular-session close.

Intraday: 1-minute bars from 04:00 ET to the session close (13:00 on early-close
days). The pre-market drifts from the prior close to the open on thin volume; the
regular session runs from the open to the day's close with U-shaped volume and
volatility. Prices are rounded to the $0.01 tick.

Quotes: inside a minute the last price walks open -> low -> high -> close (up bars)
or open -> high -> low -> close (down bars) in one-second steps, so a streamed price
moves every few seconds and touches the bar's high and low. Bid and ask straddle the
last price (about 1-5 bps for large caps, wider for thin names and pre-market).

CSV format (``CsvMarket`` input and ``write_csv`` output)
---------------------------------------------------------
One file per symbol, named ``<SYMBOL>.csv`` (e.g. ``AAPL.csv``), in one directory.
The first line is a header that names at least these columns, in any order (other
columns are ignored)::

    timestamp,open,high,low,close,volume
    2025-11-26T09:30:00-05:00,229.5,229.98,229.31,229.87,812345
    2025-11-26T09:31:00-05:00,229.87,230.1,229.7,230.02,402117

- ``timestamp``: the start of the 1-minute bar, ISO 8601. With an offset
  (``2025-11-26T09:30:00-05:00`` or ``...Z``) it is taken as written; without one
  (``2025-11-26 09:30:00``) it means America/New_York wall-clock time. It must fall on
  a whole minute, and timestamps must strictly increase down the file.
- ``open``, ``high``, ``low``, ``close``: positive prices in dollars, with
  ``low <= open, close <= high``.
- ``volume``: shares traded in the minute, a whole number >= 0.
- Bars before 04:00 ET or at/after the session close (16:00, or 13:00 on early-close
  days) are ignored; a bar on a weekend or NYSE holiday is an error.
- Daily bars are aggregated from the file: open/high/low/close from the regular
  session (09:30 to the close), volume over the whole day including pre-market.
  Missing minutes are fine; the price stays at the last bar's close.

A bad file stops ``CsvMarket`` with a ``CsvFormatError`` (a ``ValueError``) that names
the file, the line number and what is wrong.
"""

from __future__ import annotations

import csv
import hashlib
import math
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from broker.simulator.types import Bar, MarketData, Quote, SymbolInfo
from broker.simulator.universe import UniverseEntry, by_symbol, stable_con_id
from market import calendar
from market.clock import ET

TICK = 0.01

#: First trading day of the synthetic history; earlier days are not generated.
EPOCH = date(2020, 1, 2)

# Trading days per block of random draws. Blocks have a fixed size so the draws of a
# day never depend on how far the history has been extended.
_BLOCK = 512
# Daily pull of the log price back to the anchor: a half-life of about 35 sessions.
_PULL = 0.02
_GAP_UP = 0.7  # share of big gaps that are up
_SESSION_MINUTES = 390
_PREMARKET_VOL = 0.35  # pre-market per-minute volatility relative to the regular session
_PATH_CACHE_SIZE = 400  # about 60 KB each
_CSV_DEFAULT_SPREAD_BPS = 5.0


class UnknownSymbolError(KeyError):
    """The market has no data for this symbol."""


class ControllableMarket(MarketData, Protocol):
    """A market the protocol server's control interface can steer (tests, fault injection)."""

    def set_price(self, symbol: str, price: float | None) -> None:
        """Pin the last/bid/ask of ``symbol`` from now on; None removes the pin."""
        ...

    def set_halted(self, symbol: str, halted: bool) -> None:
        """Mark ``symbol`` halted (quotes freeze and say so) or resume it."""
        ...


# --------------------------------------------------------------------------- calendar facts


class _Bounds(NamedTuple):
    """One trading day's instants as POSIX seconds: pre-market start, open, close."""

    start: float
    open: float
    close: float


@lru_cache(maxsize=8192)
def _session_bounds(day: date) -> _Bounds | None:
    # calendar.session() costs ~0.15 ms; quotes need it on every call, so cache it.
    if not calendar.is_trading_day(day):
        return None
    s = calendar.session(day)
    return _Bounds(s.premarket_start.timestamp(), s.open.timestamp(), s.close.timestamp())


class _TradingDays:
    """Trading days from ``EPOCH`` on, as an index; extended lazily as later days are asked."""

    def __init__(self, epoch: date) -> None:
        self._epoch = epoch
        self._days: list[date] = []
        self._checked_through = epoch - timedelta(days=1)

    def _extend_through(self, day: date) -> None:
        while self._checked_through < day:
            nxt = self._checked_through + timedelta(days=1)
            try:
                trading = calendar.is_trading_day(nxt)
            except ValueError as exc:  # exchange_calendars covers about a year ahead
                raise ValueError(
                    f"{day.isoformat()} is outside the exchange calendar: {exc}"
                ) from None
            if trading:
                self._days.append(nxt)
            self._checked_through = nxt

    def index_on_or_before(self, day: date) -> int:
        """Return the index of the last trading day <= ``day`` (-1 if none since the epoch)."""
        if day < self._epoch:
            raise ValueError(
                f"synthetic history starts on {self._epoch.isoformat()}; {day.isoformat()} "
                "is earlier (replay older data with CsvMarket)"
            )
        self._extend_through(day)
        return bisect_right(self._days, day) - 1

    def index_of(self, day: date) -> int | None:
        """Return the index of trading day ``day``, or None when it is not a trading day."""
        i = self.index_on_or_before(day)
        return i if i >= 0 and self._days[i] == day else None

    def day(self, index: int) -> date:
        return self._days[index]


_TRADING_DAYS = _TradingDays(EPOCH)


# --------------------------------------------------------------------------- prices


def _price(value: float) -> float:
    """Return ``value`` rounded to the tick (and at least one tick)."""
    return max(TICK, round(value, 2))


def _prices(values: np.ndarray) -> np.ndarray:
    # rint(x * 100) / 100 is the double nearest to the 2-decimal value, same as round(x, 2).
    return np.maximum(np.rint(values * 100.0) / 100.0, TICK)


def _bar_waps(highs: np.ndarray, lows: np.ndarray, closes: np.ndarray) -> np.ndarray:
    return np.rint((highs + lows + closes) / 3.0 * 10_000.0) / 10_000.0


def _bar_counts(volumes: np.ndarray) -> np.ndarray:
    # About one trade per 100 shares, as for liquid US stocks today.
    return np.maximum(volumes // 100, 1)


def _spread_bps(entry: UniverseEntry | None) -> float:
    """Return the typical quoted spread of a stock in basis points (wider when thinly traded)."""
    if entry is None:
        return _CSV_DEFAULT_SPREAD_BPS
    dollar_volume = entry.anchor_price * entry.avg_volume
    return min(40.0, 0.5 + 4.0 * math.sqrt(1e9 / dollar_volume))


# --------------------------------------------------------------------------- one day's bars


class _Tick(NamedTuple):
    """The traded price at one instant, with where it sits in the day's bars."""

    price: float
    cum_volume: int
    minute: int  # minutes since 04:00 ET
    second: int
    premarket: bool


def _waypoint_seconds(minute: int) -> tuple[int, int]:
    # When inside the minute the first and second extremes are reached; varied per minute
    # without any random state so CSV replay and synthetic bars behave the same.
    return 6 + (minute * 37) % 17, 30 + (minute * 53) % 22


def _lerp(a: float, b: float, fraction: float) -> float:
    return a + (b - a) * fraction


@dataclass(frozen=True, eq=False)
class DayPath:
    """One symbol's 1-minute bars of one trading day, as arrays (04:00 ET to the close).

    Arrays rather than ``Bar`` objects: a day is ~60 KB this way instead of ~400 KB, and
    the simulator keeps hundreds of days cached.
    """

    day: date
    bounds: _Bounds
    minutes: np.ndarray  # bar start, minutes since 04:00 ET, strictly increasing
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    volumes: np.ndarray  # int64
    cum_volumes: np.ndarray  # inclusive running total
    waps: np.ndarray
    counts: np.ndarray
    rth_start: int  # index of the first bar at or after the open

    @classmethod
    def build(
        cls,
        day: date,
        bounds: _Bounds,
        minutes: np.ndarray,
        ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        volumes: np.ndarray,
    ) -> DayPath:
        """Return the day's path from bar arrays (prices already on the tick)."""
        o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in ohlc)
        v = np.asarray(volumes, dtype=np.int64)
        minutes = np.asarray(minutes, dtype=np.int64)
        open_minute = round((bounds.open - bounds.start) / 60)
        return cls(
            day=day,
            bounds=bounds,
            minutes=minutes,
            opens=o,
            highs=h,
            lows=lo,
            closes=c,
            volumes=v,
            cum_volumes=np.cumsum(v),
            waps=_bar_waps(h, lo, c),
            counts=_bar_counts(v),
            rth_start=int(np.searchsorted(minutes, open_minute)),
        )

    def bars(self) -> list[Bar]:
        """Return the day's 1-minute bars, oldest first."""
        start = self.bounds.start
        columns = (self.opens, self.highs, self.lows, self.closes, self.volumes, self.waps)
        # tolist() turns numpy scalars into plain floats and ints (repr, JSON, equality).
        return [
            Bar(datetime.fromtimestamp(start + 60 * m, ET), o, h, lo, c, v, w, n)
            for m, o, h, lo, c, v, w, n in zip(
                self.minutes.tolist(),
                *(col.tolist() for col in columns),
                self.counts.tolist(),
                strict=True,
            )
        ]

    @cached_property
    def daily_bar(self) -> Bar | None:
        """Return the day as one bar: regular-session OHLC, whole-day volume (None: no RTH bars)."""
        k = self.rth_start
        if k >= len(self.minutes):
            return None
        volume = int(self.cum_volumes[-1])
        wap = float(np.dot(self.waps, self.volumes)) / max(volume, 1)
        return Bar(
            time=datetime.combine(self.day, time(0), tzinfo=ET),
            open=float(self.opens[k]),
            high=float(self.highs[k:].max()),
            low=float(self.lows[k:].min()),
            close=float(self.closes[-1]),
            volume=volume,
            wap=round(wap, 4),
            count=int(self.counts.sum()),
        )

    @property
    def last_close(self) -> float:
        return float(self.closes[-1])

    @property
    def first_open(self) -> float:
        return float(self.opens[0])

    def tick_at(self, ts: float) -> _Tick | None:
        """Return the traded price at POSIX time ``ts`` (None before 04:00, after the close)."""
        if ts < self.bounds.start or ts >= self.bounds.close:
            return None
        offset = ts - self.bounds.start
        minute = int(offset // 60)
        k = int(np.searchsorted(self.minutes, minute, side="right")) - 1
        if k < 0:
            return None  # no trade yet today
        premarket = ts < self.bounds.open
        if int(self.minutes[k]) != minute:
            # A minute without a bar (CSV gaps): the price rests at the last close.
            return _Tick(float(self.closes[k]), int(self.cum_volumes[k]), minute, 0, premarket)
        second = min(59, int(offset - minute * 60))
        before = int(self.cum_volumes[k - 1]) if k else 0
        traded = before + int(self.volumes[k]) * second // 60
        return _Tick(self._intrabar_price(k, minute, second), traded, minute, second, premarket)

    def _intrabar_price(self, k: int, minute: int, second: int) -> float:
        o, h = float(self.opens[k]), float(self.highs[k])
        lo, c = float(self.lows[k]), float(self.closes[k])
        first, then = (lo, h) if c >= o else (h, lo)
        a, b = _waypoint_seconds(minute)
        if second <= a:
            value = _lerp(o, first, second / a)
        elif second <= b:
            value = _lerp(first, then, (second - a) / (b - a))
        else:
            value = _lerp(then, c, (second - b) / (60 - b))
        return round(value, 2)


# --------------------------------------------------------------------------- quotes and controls


def _quote(symbol: str, instant: datetime, tick: _Tick, spread_bps: float) -> Quote:
    ticks = max(1, round(tick.price * spread_bps / 10_000 / TICK))
    if tick.premarket:
        ticks = 2 * ticks + 1  # pre-market books are thin
    bid = _price(tick.price - (ticks // 2) * TICK)
    # Sizes vary from second to second without random state, in round lots.
    mix = tick.minute * 31 + tick.second * 7
    return Quote(
        symbol=symbol,
        time=instant,
        bid=bid,
        ask=round(bid + ticks * TICK, 2),
        last=tick.price,
        bid_size=100 * (1 + mix % 9),
        ask_size=100 * (1 + (mix // 9) % 9),
        last_size=100 * (1 + mix % 4),
        day_volume=tick.cum_volume,
    )


def _requote(quote: Quote, last: float, day_volume: int, halted: bool) -> Quote:
    """Return ``quote`` moved to ``last`` with the same spread width."""
    width = max(1, round((quote.ask - quote.bid) / TICK))
    bid = _price(last - (width // 2) * TICK)
    return replace(
        quote,
        bid=bid,
        ask=round(bid + width * TICK, 2),
        last=last,
        day_volume=day_volume,
        halted=halted,
    )


class _Controls:
    """Price pins and trading halts set by tests and fault injection."""

    def __init__(self, halted: Iterable[str]) -> None:
        self._pins: dict[str, float] = {}
        self._halted: set[str] = set(halted)
        # A halted symbol stops trading: its last price and volume freeze at the first
        # quote seen after the halt.
        self._frozen: dict[str, tuple[float, int]] = {}

    def set_price(self, symbol: str, price: float | None) -> None:
        if price is None:
            self._pins.pop(symbol, None)
            return
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"pinned price of {symbol} must be positive, got {price!r}")
        self._pins[symbol] = _price(price)

    def set_halted(self, symbol: str, halted: bool) -> None:
        if halted:
            self._halted.add(symbol)
        else:
            self._halted.discard(symbol)
            self._frozen.pop(symbol, None)

    def apply(self, quote: Quote) -> Quote:
        """Return ``quote`` with any pin or halt of its symbol applied."""
        pin = self._pins.get(quote.symbol)
        halted = quote.symbol in self._halted
        if pin is None and not halted:
            return quote
        last, volume = quote.last, quote.day_volume
        if halted:
            last, volume = self._frozen.setdefault(quote.symbol, (last, volume))
        return _requote(quote, pin if pin is not None else last, volume, halted)


class _QuotingMarket:
    """Quotes, 1-minute bars and controls shared by the synthetic and CSV markets."""

    def __init__(self, halted: Iterable[str] | None) -> None:
        self._controls = _Controls(halted or ())

    def _day_path(self, symbol: str, day: date) -> DayPath | None:
        raise NotImplementedError

    def _spread_bps(self, symbol: str) -> float:
        raise NotImplementedError

    def set_price(self, symbol: str, price: float | None) -> None:
        """Pin last/bid/ask of ``symbol`` to ``price`` from now on (None removes the pin).

        The pin shows in quotes only while the market would quote at all (04:00 ET to
        the close of a trading day); bars are not changed.
        """
        self._controls.set_price(symbol, price)

    def set_halted(self, symbol: str, halted: bool) -> None:
        """Halt ``symbol`` (quotes say halted; price and volume freeze) or resume it."""
        self._controls.set_halted(symbol, halted)

    def intraday_bars(self, symbol: str, day: date) -> list[Bar]:
        """Return the 1-min bars of ``day`` from 04:00 ET to the session close (empty off-days)."""
        path = self._day_path(symbol, day)
        return path.bars() if path is not None else []

    def quote_at(self, symbol: str, instant: datetime) -> Quote | None:
        """Return the quote at ``instant``; None before 04:00 ET, after the close or off-days."""
        if instant.tzinfo is None:
            raise ValueError(f"quote_at needs a timezone-aware instant, got {instant}")
        path = self._day_path(symbol, instant.astimezone(ET).date())
        tick = path.tick_at(instant.timestamp()) if path is not None else None
        if tick is None:
            return None
        return self._controls.apply(_quote(symbol, instant, tick, self._spread_bps(symbol)))


# --------------------------------------------------------------------------- synthetic days


class DayCharacter(StrEnum):
    """How a symbol's regular session behaves on one day."""

    TREND_UP = "trend_up"
    TREND_DOWN = "trend_down"
    MEAN_REVERTING = "mean_reverting"
    VOLATILE = "volatile"


_CHARACTERS = tuple(DayCharacter)
_UP, _DOWN, _MEAN, _VOLATILE = range(4)
# Per character: intraday noise relative to the symbol's volatility, and volume factor.
_NOISE = np.array([0.6, 0.6, 0.7, 1.6])
_VOLUME_FACTOR = np.array([1.1, 1.1, 0.85, 1.5])


@dataclass(frozen=True)
class DayPlan:
    """The shape of one symbol's day, decided before its minutes are drawn."""

    symbol: str
    day: date
    prior_close: float
    open: float
    close: float
    gapper: bool  # gaps by 5% or more
    character: DayCharacter
    volume: int  # expected shares over a full-length day
    premarket_share: float  # fraction of the volume traded before the open
    minute_vol: float  # regular-session per-minute log volatility (before the U-shape)

    @property
    def gap_pct(self) -> float:
        return (self.open / self.prior_close - 1.0) * 100.0


def _rng(*parts: object) -> np.random.Generator:
    """Return a generator seeded from a stable hash of ``parts`` (same in every process)."""
    key = "|".join(str(p) for p in parts).encode("utf-8")
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(key, digest_size=16).digest()))


@dataclass(frozen=True)
class _Traits:
    """Per-day draws of one block of trading days (arrays of length ``_BLOCK``)."""

    gap: np.ndarray  # open vs prior close, simple return, before tick rounding
    gapper: np.ndarray
    character: np.ndarray  # index into _CHARACTERS
    ret: np.ndarray  # intraday log return, before the pull to the anchor
    noise: np.ndarray  # intraday noise multiplier
    volume_mult: np.ndarray
    premarket_share: np.ndarray


# Character cut-offs on a uniform draw: gappers mostly go with the gap, sometimes fade
# it (with, against, mean-reverting, volatile); other days lean mean-reverting
# (up, down, mean-reverting, volatile).
_GAPPER_CUTS = np.array([0.40, 0.65, 0.80])
_PLAIN_CUTS = np.array([0.22, 0.44, 0.84])
_GAP_WITH, _GAP_AGAINST = 0.40, 0.25
_TREND_SIGN = np.array([1.0, -1.0, 0.0, 0.0])
_RANDOM_SCALE = np.array([0.0, 0.0, 0.25, 1.3])  # untrended days: return = scale * z


def _pick_characters(u: np.ndarray, gapper: np.ndarray, sign: np.ndarray) -> np.ndarray:
    plain = np.searchsorted(_PLAIN_CUTS, u, side="right")
    gap_pick = np.searchsorted(_GAPPER_CUTS, u, side="right")
    # For a down gap "with the gap" is TREND_DOWN: swap the two trend codes.
    gap_days = np.where(gap_pick < 2, gap_pick ^ (sign < 0), gap_pick)
    return np.where(gapper, gap_days, plain)


def _character_returns(character: np.ndarray, scale: np.ndarray, z: np.ndarray) -> np.ndarray:
    trend = scale * (0.6 + 0.5 * np.abs(z))
    return _TREND_SIGN[character] * trend + _RANDOM_SCALE[character] * scale * z


def _gap_magnitude(big: np.ndarray | float, sigma: float) -> np.ndarray | float:
    return np.minimum(0.05 + 0.035 * big * math.sqrt(sigma / 0.03), 0.35)


def _gap_drift(sigma: float, gap_prob: float) -> float:
    """Return the mean daily log drift that mostly-up gaps add (subtracted to stay level)."""
    magnitude = float(_gap_magnitude(1.0, sigma))
    up_bias = _GAP_UP - (1.0 - _GAP_UP)
    gap = up_bias * math.log1p(magnitude)
    intraday = up_bias * (_GAP_WITH - _GAP_AGAINST) * 0.85 * sigma * (1.0 + 4.0 * magnitude)
    return gap_prob * (gap + intraday)


def _draw_traits(rng: np.random.Generator, sigma: float, gap_prob: float) -> _Traits:
    n = _BLOCK
    u_gap, u_dir, u_char, u_pre = rng.random((4, n))
    big = rng.exponential(1.0, n)
    z_gap, z_ret, z_vol = rng.standard_normal((3, n))
    gapper = u_gap < gap_prob
    magnitude = _gap_magnitude(big, sigma)
    sign = np.where(u_dir < _GAP_UP, 1.0, -1.0)
    gap = np.where(gapper, sign * magnitude, np.clip(0.25 * sigma * z_gap, -0.015, 0.015))
    character = _pick_characters(u_char, gapper, sign)
    excitement = np.where(gapper, 1.0 + 4.0 * magnitude, 1.0)  # gappers move more intraday
    ret = _character_returns(character, 0.85 * sigma * excitement, z_ret)
    volume_mult = (
        np.exp(0.35 * z_vol - 0.06)
        * _VOLUME_FACTOR[character]
        * np.where(gapper, 2.0 + 25.0 * magnitude, 1.0)
    )
    premarket_share = np.where(gapper, 0.08 + 0.10 * u_pre, 0.015 + 0.02 * u_pre)
    return _Traits(
        gap, gapper, character, ret, _NOISE[character] * excitement, volume_mult, premarket_share
    )


@lru_cache(maxsize=1)
def _pull_matrices() -> tuple[np.ndarray, np.ndarray]:
    # x[k] = a**(k+1) * x_prev + sum_j a**(k-j) * e[j]: the AR(1) walk of one block as
    # a matrix product, so the walk needs no Python loop over days.
    a = 1.0 - _PULL
    k = np.arange(_BLOCK)
    lags = k[:, None] - k[None, :]
    weights = np.where(lags >= 0, a ** np.maximum(lags, 0), 0.0)
    return a ** (k + 1), weights


def _open_price(prior: float, gap: float, gapper: bool) -> float:
    """Return the open for ``gap``, nudged a tick at a time so rounding keeps the gap class."""
    price = _price(prior * (1.0 + gap))
    step = TICK if gap >= 0 else -TICK
    if gapper:
        while abs(price / prior - 1.0) < 0.05:
            price = _price(price + step)
    else:
        while abs(price / prior - 1.0) > 0.02 and price != prior:
            price = _price(price - step)
    return price


class _SymbolHistory:
    """One symbol's daily walk (log price vs anchor) and per-day traits, built block by block."""

    def __init__(self, entry: UniverseEntry, seed: int, gap_prob: float) -> None:
        self._entry = entry
        self._seed = seed
        self._gap_prob = gap_prob
        self._drift = _gap_drift(entry.daily_vol_pct / 100.0, gap_prob)
        self._traits: list[_Traits] = []
        self._levels: list[np.ndarray] = []

    def _ensure_block(self, block: int) -> None:
        decay, weights = _pull_matrices()
        sigma = self._entry.daily_vol_pct / 100.0
        while len(self._traits) <= block:
            b = len(self._traits)
            rng = _rng(self._seed, self._entry.symbol, "days", b)
            traits = _draw_traits(rng, sigma, self._gap_prob)
            prev = float(self._levels[-1][-1]) if self._levels else 0.0
            steps = np.log1p(traits.gap) + traits.ret - self._drift
            self._traits.append(traits)
            self._levels.append(decay * prev + weights @ steps)

    def close(self, index: int) -> float:
        """Return the regular-session close of trading day ``index`` (-1: the anchor)."""
        if index < 0:
            return _price(self._entry.anchor_price)
        block, j = divmod(index, _BLOCK)
        self._ensure_block(block)
        return _price(self._entry.anchor_price * math.exp(float(self._levels[block][j])))

    def plan(self, index: int, day: date) -> DayPlan:
        """Return the plan of trading day ``index`` (which is ``day``)."""
        block, j = divmod(index, _BLOCK)
        self._ensure_block(block)
        t = self._traits[block]
        prior = self.close(index - 1)
        gapper = bool(t.gapper[j])
        entry = self._entry
        return DayPlan(
            symbol=entry.symbol,
            day=day,
            prior_close=prior,
            open=_open_price(prior, float(t.gap[j]), gapper),
            close=self.close(index),
            gapper=gapper,
            character=_CHARACTERS[int(t.character[j])],
            volume=int(entry.avg_volume * float(t.volume_mult[j])),
            premarket_share=float(t.premarket_share[j]),
            minute_vol=0.85
            * entry.daily_vol_pct
            / 100.0
            / math.sqrt(_SESSION_MINUTES)
            * float(t.noise[j]),
        )


# --------------------------------------------------------------------------- synthetic minutes


def _bridge(increments: np.ndarray) -> np.ndarray:
    """Return a random walk of ``increments`` pinned to 0 at both ends (n + 1 points)."""
    walk = np.concatenate(([0.0], np.cumsum(increments)))
    t = np.linspace(0.0, 1.0, len(walk))
    return walk - t * walk[-1]


def _premarket_path(
    rng: np.random.Generator, start: float, end: float, n: int, vol: float, gapper: bool
) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n + 1)
    # A gapper's news is out before 04:00: most of the move comes early, then it drifts.
    shape = 1.0 - (1.0 - t) ** 3 if gapper else t
    return start + (end - start) * shape + _bridge(rng.standard_normal(n) * vol)


def _intraday_profile(n: int) -> np.ndarray:
    """Return the per-minute volatility profile of a session: busy open, livelier close."""
    k = np.arange(n)
    profile = 1.0 + 1.5 * np.exp(-k / 20.0) + 0.5 * np.exp(-(n - 1 - k) / 25.0)
    return profile / math.sqrt(float(np.mean(profile**2)))


def _session_path(
    rng: np.random.Generator, start: float, end: float, n: int, plan: DayPlan
) -> tuple[np.ndarray, np.ndarray]:
    """Return the regular session's log-price points (n + 1) and per-minute volatility (n)."""
    vol = plan.minute_vol * _intraday_profile(n)
    t = np.linspace(0.0, 1.0, n + 1)
    line = start + (end - start) * t
    if plan.character is DayCharacter.VOLATILE:
        shocks = rng.standard_t(4, n) / math.sqrt(2.0)  # fat tails, unit variance
        return line + _bridge(shocks * vol), vol
    noise = _bridge(rng.standard_normal(n) * vol)
    if plan.character is DayCharacter.MEAN_REVERTING:
        # Swings back and forth around the day's line instead of wandering off.
        cycles, phase = rng.uniform(2.5, 6.0), rng.uniform(0.0, 2.0 * math.pi)
        swing = np.sin(2.0 * math.pi * cycles * t + phase)
        swing -= swing[0] + (swing[-1] - swing[0]) * t
        noise = 0.5 * noise + 6.0 * plan.minute_vol * swing
    return line + noise, vol


def _bars_from_points(
    rng: np.random.Generator, points: np.ndarray, vol: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    prices = _prices(np.exp(points))
    o, c = prices[:-1].copy(), prices[1:].copy()
    wicks = np.abs(rng.standard_normal((2, len(o)))) * 0.6 * vol
    h = _prices(np.maximum(o, c) * np.exp(wicks[0]))
    lo = _prices(np.minimum(o, c) * np.exp(-wicks[1]))
    return o, h, lo, c


def _minute_volumes(
    rng: np.random.Generator, plan: DayPlan, n_pre: int, n_rth: int, activity: np.ndarray
) -> np.ndarray:
    """Return per-minute volumes: thin pre-market ramping up, then U-shaped, busier on moves."""
    pre_total = plan.volume * plan.premarket_share
    # Early-close sessions trade proportionally less.
    rth_total = (plan.volume - pre_total) * n_rth / _SESSION_MINUTES
    t = np.linspace(0.0, 1.0, n_pre)
    w_pre = (0.1 + t**2) * np.exp(0.7 * rng.standard_normal(n_pre)) * activity[:n_pre]
    k = np.arange(n_rth)
    w_rth = 1.0 + 3.0 * np.exp(-k / 15.0) + 1.5 * np.exp(-(n_rth - 1 - k) / 12.0)
    w_rth = w_rth * np.exp(0.35 * rng.standard_normal(n_rth)) * activity[n_pre:]
    w_rth[-1] *= 3.0  # the closing cross
    volumes = np.concatenate((w_pre / w_pre.sum() * pre_total, w_rth / w_rth.sum() * rth_total))
    return np.maximum(np.rint(volumes), 1).astype(np.int64)


def _generate_day(plan: DayPlan, bounds: _Bounds, seed: int) -> DayPath:
    """Draw the 1-minute bars of ``plan``'s day: pre-market to the open, then the session."""
    rng = _rng(seed, plan.symbol, "minutes", plan.day.isoformat())
    n_pre = round((bounds.open - bounds.start) / 60)
    n_rth = round((bounds.close - bounds.open) / 60)
    pre_vol = _PREMARKET_VOL * plan.minute_vol
    log_prior, log_open = math.log(plan.prior_close), math.log(plan.open)
    pre = _premarket_path(rng, log_prior, log_open, n_pre, pre_vol, plan.gapper)
    rth, rth_vol = _session_path(rng, log_open, math.log(plan.close), n_rth, plan)
    vol = np.concatenate((np.full(n_pre, pre_vol), rth_vol))
    o, h, lo, c = _bars_from_points(rng, np.concatenate((pre, rth[1:])), vol)
    # The day is anchored exactly: starts at the prior close, opens at the gap, ends at the close.
    o[0], c[n_pre - 1], o[n_pre], c[-1] = plan.prior_close, plan.open, plan.open, plan.close
    h, lo = np.maximum(h, np.maximum(o, c)), np.minimum(lo, np.minimum(o, c))
    activity = 1.0 + 0.5 * np.minimum(np.abs(np.log(c / o)) / vol, 6.0)
    volumes = _minute_volumes(rng, plan, n_pre, n_rth, activity)
    return DayPath.build(plan.day, bounds, np.arange(n_pre + n_rth), (o, h, lo, c), volumes)


# --------------------------------------------------------------------------- synthetic market


class SyntheticMarket(_QuotingMarket):
    """A deterministic generated market over the simulator universe."""

    def __init__(
        self,
        seed: int = 7,
        gap_share: float = 0.1,
        halted: Iterable[str] | None = None,
        universe: Iterable[UniverseEntry] | None = None,
    ) -> None:
        if not 0.0 <= gap_share <= 1.0:
            raise ValueError(f"gap_share must be between 0 and 1, got {gap_share!r}")
        super().__init__(halted)
        self.seed = seed
        self.gap_share = gap_share
        self._entries = by_symbol() if universe is None else {e.symbol: e for e in universe}
        # Volatile names gap more often than mega caps; the universe average stays gap_share.
        self._mean_vol = float(np.mean([e.daily_vol_pct for e in self._entries.values()]))
        self._histories: dict[str, _SymbolHistory] = {}
        self._paths: OrderedDict[tuple[str, date], DayPath] = OrderedDict()
        self._daily: dict[tuple[str, date], Bar] = {}

    def symbols(self) -> list[str]:
        """Return every symbol this market knows, sorted."""
        return sorted(self._entries)

    def info(self, symbol: str) -> SymbolInfo | None:
        """Return the reference data of ``symbol``, or None when it is unknown."""
        entry = self._entries.get(symbol)
        return entry.info() if entry is not None else None

    def _history(self, symbol: str) -> _SymbolHistory:
        history = self._histories.get(symbol)
        if history is None:
            entry = self._entries.get(symbol)
            if entry is None:
                raise UnknownSymbolError(symbol)
            gap_prob = min(1.0, self.gap_share * entry.daily_vol_pct / self._mean_vol)
            history = self._histories[symbol] = _SymbolHistory(entry, self.seed, gap_prob)
        return history

    def _spread_bps(self, symbol: str) -> float:
        return _spread_bps(self._entries.get(symbol))

    def day_plan(self, symbol: str, day: date) -> DayPlan | None:
        """Return how ``symbol``'s ``day`` is built (gap, character...), None off-days."""
        history = self._history(symbol)
        index = _TRADING_DAYS.index_of(day)
        return history.plan(index, day) if index is not None else None

    def prior_close(self, symbol: str, day: date) -> float:
        """Return the regular-session close of the trading day before ``day``."""
        history = self._history(symbol)
        before = day - timedelta(days=1)
        if day >= EPOCH > before:
            return history.close(-1)  # the first synthetic day opens off the anchor price
        return history.close(_TRADING_DAYS.index_on_or_before(before))

    def _day_path(self, symbol: str, day: date) -> DayPath | None:
        key = (symbol, day)
        path = self._paths.get(key)
        if path is not None:
            self._paths.move_to_end(key)
            return path
        plan = self.day_plan(symbol, day)
        if plan is None:
            return None
        bounds = _session_bounds(day)
        assert bounds is not None  # day_plan returned a plan, so the day trades
        path = self._paths[key] = _generate_day(plan, bounds, self.seed)
        if len(self._paths) > _PATH_CACHE_SIZE:
            self._paths.popitem(last=False)
        return path

    def _daily_bar(self, symbol: str, day: date) -> Bar:
        key = (symbol, day)
        bar = self._daily.get(key)
        if bar is None:
            path = self._day_path(symbol, day)
            assert path is not None and path.daily_bar is not None
            bar = self._daily[key] = path.daily_bar
        return bar

    def daily_bars(self, symbol: str, end_day: date, count: int) -> list[Bar]:
        """Return ``count`` daily bars of the sessions up to and including ``end_day``.

        Fewer come back when the synthetic history (from ``EPOCH``) is shorter.
        """
        self._history(symbol)  # unknown symbols fail here, not halfway
        last = _TRADING_DAYS.index_on_or_before(end_day)
        first = max(0, last - count + 1)
        return [self._daily_bar(symbol, _TRADING_DAYS.day(i)) for i in range(first, last + 1)]


# --------------------------------------------------------------------------- CSV replay

_CSV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class CsvFormatError(ValueError):
    """A bar file is malformed; the message names the file, the line and the problem."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}: line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class _Row(NamedTuple):
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int


def _parse_timestamp(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"timestamp {text!r} is not ISO 8601 (e.g. 2025-11-26T09:30:00-05:00)"
        ) from None
    ts = ts.replace(tzinfo=ET) if ts.tzinfo is None else ts
    if ts.second or ts.microsecond:
        raise ValueError(f"timestamp {text!r} is not at the start of a minute")
    return ts


def _parse_number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def _parse_row(fields: list[str], columns: dict[str, int]) -> _Row:
    if len(fields) < len(columns) or max(columns.values()) >= len(fields):
        raise ValueError(f"expected at least {max(columns.values()) + 1} fields, got {len(fields)}")
    ts = _parse_timestamp(fields[columns["timestamp"]])
    o, h, lo, c = (_parse_number(n, fields[columns[n]]) for n in ("open", "high", "low", "close"))
    volume = _parse_number("volume", fields[columns["volume"]])
    if min(o, h, lo, c) <= 0:
        raise ValueError("prices must be positive")
    if h < lo:
        raise ValueError(f"high {h} is below low {lo}")
    if not (lo <= o <= h and lo <= c <= h):
        raise ValueError(f"open {o} and close {c} must lie between low {lo} and high {h}")
    if volume < 0 or volume != int(volume):
        raise ValueError(f"volume {fields[columns['volume']]!r} is not a whole number >= 0")
    return _Row(ts, o, h, lo, c, int(volume))


def _read_header(reader: Iterable[list[str]], path: Path) -> dict[str, int]:
    header = next(iter(reader), None)
    if header is None:
        raise CsvFormatError(path, 1, f"empty file; expected header {','.join(_CSV_COLUMNS)}")
    names = [name.strip().lower() for name in header]
    missing = [name for name in _CSV_COLUMNS if name not in names]
    if missing:
        raise CsvFormatError(path, 1, f"missing column(s) {', '.join(missing)} in header")
    return {name: names.index(name) for name in _CSV_COLUMNS}


class _DayRows:
    """The accepted rows of one day while a file is read."""

    def __init__(self, bounds: _Bounds) -> None:
        self.bounds = bounds
        self.minutes: list[int] = []
        self.values: list[tuple[float, float, float, float, int]] = []

    def add(self, row: _Row) -> None:
        minute = round((row.ts.timestamp() - self.bounds.start) / 60)
        if 0 <= minute and self.bounds.start + 60 * minute < self.bounds.close:
            self.minutes.append(minute)
            self.values.append((row.open, row.high, row.low, row.close, row.volume))

    def path(self, day: date) -> DayPath:
        table = np.array(self.values, dtype=float)
        ohlc = (table[:, 0], table[:, 1], table[:, 2], table[:, 3])
        volumes = np.array([v[4] for v in self.values], dtype=np.int64)
        return DayPath.build(day, self.bounds, np.array(self.minutes), ohlc, volumes)


def read_bars_csv(path: Path) -> dict[date, DayPath]:
    """Read and validate one symbol's bar file; return its days (those with bars in hours)."""
    days: dict[date, _DayRows] = {}
    previous: datetime | None = None
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        columns = _read_header(reader, path)
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            try:
                row = _parse_row(fields, columns)
                day = row.ts.astimezone(ET).date()
                _check_row_order(row, previous, day)
            except ValueError as exc:
                raise CsvFormatError(path, reader.line_num, str(exc)) from None
            previous = row.ts
            if day not in days:
                bounds = _session_bounds(day)
                assert bounds is not None  # _check_row_order rejected non-trading days
                days[day] = _DayRows(bounds)
            days[day].add(row)
    if previous is None:
        raise CsvFormatError(path, 2, "no bars after the header")
    return {day: rows.path(day) for day, rows in sorted(days.items()) if rows.minutes}


def _check_row_order(row: _Row, previous: datetime | None, day: date) -> None:
    if previous is not None and row.ts <= previous:
        raise ValueError(
            f"timestamp {row.ts.isoformat()} is not after the previous row's {previous.isoformat()}"
        )
    if _session_bounds(day) is None:
        raise ValueError(f"{day.isoformat()} (ET) is not an NYSE trading day")


class CsvMarket(_QuotingMarket):
    """Replays 1-minute bar files; other symbols come from ``fallback`` when given."""

    def __init__(
        self,
        data_dir: Path,
        fallback: MarketData | None = None,
        halted: Iterable[str] | None = None,
    ) -> None:
        super().__init__(halted)
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise ValueError(f"market data directory {data_dir} does not exist")
        self._fallback = fallback
        self._files: dict[str, dict[date, DayPath]] = {
            path.stem.upper(): read_bars_csv(path) for path in sorted(data_dir.glob("*.csv"))
        }
        # Days with regular-session bars, sorted: what daily bars and prior closes use.
        self._sessions: dict[str, list[date]] = {
            symbol: [d for d, p in days.items() if p.daily_bar is not None]
            for symbol, days in self._files.items()
        }

    def _other(self, symbol: str) -> MarketData:
        if self._fallback is None:
            raise UnknownSymbolError(symbol)
        return self._fallback

    def symbols(self) -> list[str]:
        """Return every symbol with a file or known to the fallback, sorted."""
        others = self._fallback.symbols() if self._fallback is not None else []
        return sorted(set(self._files) | set(others))

    def info(self, symbol: str) -> SymbolInfo | None:
        """Return the reference data of ``symbol`` (universe data when it is a known ticker)."""
        known = self._fallback.info(symbol) if self._fallback is not None else None
        if known is not None or symbol not in self._files:
            return known
        entry = by_symbol().get(symbol)
        if entry is not None:
            return entry.info()
        return SymbolInfo(symbol, stable_con_id(symbol), symbol, "NASDAQ")

    def _spread_bps(self, symbol: str) -> float:
        return _spread_bps(by_symbol().get(symbol))

    def _day_path(self, symbol: str, day: date) -> DayPath | None:
        return self._files[symbol].get(day)

    def intraday_bars(self, symbol: str, day: date) -> list[Bar]:
        """Return the file's 1-min bars of ``day`` (04:00 ET to the close), or the fallback's."""
        if symbol not in self._files:
            return self._other(symbol).intraday_bars(symbol, day)
        return super().intraday_bars(symbol, day)

    def quote_at(self, symbol: str, instant: datetime) -> Quote | None:
        """Return the quote at ``instant`` replayed from the file, or the fallback's."""
        if symbol in self._files:
            return super().quote_at(symbol, instant)
        quote = self._other(symbol).quote_at(symbol, instant)
        return self._controls.apply(quote) if quote is not None else None

    def daily_bars(self, symbol: str, end_day: date, count: int) -> list[Bar]:
        """Return up to ``count`` daily bars aggregated from the file, through ``end_day``."""
        if symbol not in self._files:
            return self._other(symbol).daily_bars(symbol, end_day, count)
        sessions = self._sessions[symbol]
        last = bisect_right(sessions, end_day)
        chosen = sessions[max(0, last - count) : last]
        return [bar for d in chosen if (bar := self._files[symbol][d].daily_bar) is not None]

    def prior_close(self, symbol: str, day: date) -> float:
        """Return the file's last regular-session close before ``day``.

        On the file's first day (nothing earlier) this is that day's first price, so a
        scanner sees no change rather than failing.
        """
        if symbol not in self._files:
            return self._other(symbol).prior_close(symbol, day)
        sessions = self._sessions[symbol]
        i = bisect_right(sessions, day - timedelta(days=1))
        if i > 0:
            return self._files[symbol][sessions[i - 1]].last_close
        later = [p for d, p in self._files[symbol].items() if d >= day]
        if not later:
            raise ValueError(f"{symbol}: no bars on or before {day.isoformat()} in the CSV data")
        return later[0].first_open


def write_csv(market: MarketData, symbol: str, days: Iterable[date], path: Path) -> Path:
    """Write ``symbol``'s 1-min bars of ``days`` from ``market`` as a CsvMarket file.

    ``path`` is the file, or a directory to write ``<SYMBOL>.csv`` into. Return the file.
    """
    target = Path(path)
    if target.is_dir():
        target = target / f"{symbol}.csv"
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for day in sorted(days):
            for bar in market.intraday_bars(symbol, day):
                ts = bar.time.astimezone(ET).isoformat()
                # repr() of a float reads back as the identical float.
                writer.writerow(
                    (ts, repr(bar.open), repr(bar.high), repr(bar.low), repr(bar.close), bar.volume)
                )
    return target


def build_market(seed: int, data_dir: Path | None, gap_share: float) -> ControllableMarket:
    """Return the simulator's market: CSV replay over a synthetic fallback, or synthetic only."""
    synthetic = SyntheticMarket(seed=seed, gap_share=gap_share)
    if data_dir is None:
        return synthetic
    return CsvMarket(Path(data_dir), fallback=synthetic)
