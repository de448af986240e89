"""One symbol's entry decision: signal, re-entry rule, quote, size and collar, in one pure call.

``decide_entry`` answers with one of three things:

- ``None``: the price action says no (the usual case; nothing to record);
- ``EntrySkip``: the price action says buy, but something forbids this order now (a
  re-entry rule, a bad quote, no money, the collar); the trader records it as an event;
- ``EntryPlan``: claim the symbol and send this buy limit.

Order of checks (each refusal names the first rule that refused):

1. the re-entry rule of today's exits (``exit_manager.rules.next_entry_kind``): a
   symbol stopped out today may only come back through the *recovery* signal, one that
   hit its target (or was closed for any other reason) not at all;
2. the entry signal (``signals.evaluate_entry``) on completed 1-min bars;
3. the quote: present, not halted, not NaN/zero/negative/crossed, not stale
   (``sizing.check_quote``);
4. the limit (ask plus ``limit_aggression_pct``, rounded up to the tick) and the size
   (``sizing.position_size``: ALLOCATION x ExcessLiquidity over the watchlist, whole
   shares, at least one, capped by MAX_ORDER_NOTIONAL);
5. the price collar (the limit within PRICE_COLLAR_PCT of the last price).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from broker.models import Quote
from day_trader.params import TraderParams
from day_trader.signals import EntryKind, EntrySignal, evaluate_entry, gap_pct
from day_trader.sizing import check_quote, position_size, price_collar_ok
from exit_manager.rules import next_entry_kind
from market.indicators import IndicatorSnapshot
from market.pricing import buy_limit

# Skip reasons besides the quote codes of ``sizing`` (halted, nan_quote, zero_quote, ...).
REENTRY_FORBIDDEN = "reentry_forbidden"
RECOVERY_LIMIT = "recovery_limit"
NO_QUOTE = "no_quote"
NO_EXCESS_LIQUIDITY = "no_excess_liquidity"
SIZE_ZERO = "size_zero"
PRICE_COLLAR = "price_collar"


@dataclass(frozen=True)
class SymbolView:
    """What the trader knows about one watchlist symbol when a pass starts."""

    symbol: str
    snapshot: IndicatorSnapshot
    gap_pct: float
    quote: Quote | None
    exits_today: tuple[str, ...] = ()  # exit reasons of today's closed rows, oldest first


@dataclass(frozen=True)
class Funds:
    """The account figures sizing reads."""

    excess_liquidity: float | None
    watchlist_size: int


@dataclass(frozen=True)
class EntryPlan:
    """Claim ``symbol`` and buy ``quantity`` at ``limit``."""

    symbol: str
    kind: EntryKind
    is_recovery: bool
    quantity: int
    limit: float
    reference: float  # the last price: the collar's (and the adapter's) reference
    signal: EntrySignal


@dataclass(frozen=True)
class EntrySkip:
    """The signal fired but no order may go: ``reason`` says which rule refused."""

    symbol: str
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def decide_entry(
    view: SymbolView, funds: Funds, now: datetime, params: TraderParams
) -> EntryPlan | EntrySkip | None:
    """Return the entry decision for ``view`` at ``now``; see the module docstring."""
    return judge_entry(view, funds, now, params)[1]


def judge_entry(
    view: SymbolView, funds: Funds, now: datetime, params: TraderParams
) -> tuple[EntrySignal, EntryPlan | EntrySkip | None]:
    """Return the entry signal of ``view`` at ``now`` and the decision it leads to.

    The decision is ``decide_entry``'s; the signal says why, also when it does not fire.
    """
    kind = next_entry_kind(view.exits_today, params.max_recovery_entries)
    recovery = kind == "recovery"
    signal = evaluate_entry(
        view.symbol, view.snapshot, view.gap_pct, now, params.entry, recovery=recovery
    )
    if not signal.fire or signal.kind is None:
        return signal, None
    if kind is None:
        return signal, _skip(view.symbol, _reentry_refusal(view.exits_today), signal)
    quote = view.quote
    problem = quote_problem(quote, now, params.quote_max_age_s)
    if problem is not None or quote is None:
        return signal, _skip(view.symbol, problem or NO_QUOTE, signal, _quote_detail(quote))
    return signal, _priced(view.symbol, signal, recovery, quote, funds, params)


def quote_problem(quote: Quote | None, now: datetime, max_age_s: float) -> str | None:
    """Return why ``quote`` must not be traded on, or None when it is usable."""
    if quote is None:
        return NO_QUOTE
    return check_quote(
        _number(quote.bid),
        _number(quote.ask),
        _number(quote.last),
        quote.time,
        now,
        quote.halted,
        max_age_s,
    )


def _priced(
    symbol: str,
    signal: EntrySignal,
    recovery: bool,
    quote: Quote,
    funds: Funds,
    params: TraderParams,
) -> EntryPlan | EntrySkip:
    assert quote.ask is not None and quote.last is not None  # quote_problem passed
    limit = buy_limit(quote.ask, params.limit_aggression_pct)
    liquidity = funds.excess_liquidity
    if liquidity is None or not (math.isfinite(liquidity) and liquidity > 0):
        return _skip(symbol, NO_EXCESS_LIQUIDITY, signal, {"excess_liquidity": liquidity})
    quantity = position_size(
        liquidity, params.allocation, funds.watchlist_size, limit, params.max_order_notional
    )
    sizing = {"limit": limit, "excess_liquidity": liquidity, "watchlist": funds.watchlist_size}
    if quantity < 1:
        return _skip(symbol, SIZE_ZERO, signal, sizing)
    if not price_collar_ok(limit, quote.last, params.price_collar_pct):
        return _skip(symbol, PRICE_COLLAR, signal, {**sizing, "last": quote.last})
    assert signal.kind is not None
    return EntryPlan(symbol, signal.kind, recovery, quantity, limit, quote.last, signal)


def _reentry_refusal(exits_today: tuple[str, ...]) -> str:
    # next_entry_kind refused: either a forbidding exit today, or stops used up the recoveries.
    return RECOVERY_LIMIT if all(reason == "stop" for reason in exits_today) else REENTRY_FORBIDDEN


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def _quote_detail(quote: Quote | None) -> dict[str, Any]:
    if quote is None:
        return {}
    return {
        "bid": quote.bid,
        "ask": quote.ask,
        "last": quote.last,
        "quote_time": quote.time.isoformat(),
        "halted": quote.halted,
    }


def _skip(
    symbol: str, reason: str, signal: EntrySignal, extra: Mapping[str, Any] | None = None
) -> EntrySkip:
    detail = {"signal": signal.kind, "metrics": _finite(signal.metrics), **(extra or {})}
    return EntrySkip(symbol, reason, detail)


def _finite(metrics: Mapping[str, float]) -> dict[str, float | None]:
    # JSON has no NaN: the events table gets null for a metric that is not defined.
    return {k: (round(v, 4) if math.isfinite(v) else None) for k, v in metrics.items()}


def opening_gap(
    prior_close: float | None,
    bars: pd.DataFrame | None,
    session_open: datetime,
    fallback: float | None = None,
) -> float:
    """Return the gap in percent from ``prior_close`` to the session's first open.

    Before the first session bar the last close stands in for the open (the pre-market
    gap). Without a prior close (or without bars) ``fallback`` is used: the watchlist
    row's gap as the phases measured it. NaN when nothing is known.
    """
    price = _opening_price(bars, session_open)
    if prior_close is not None and math.isfinite(price):
        gap = gap_pct(prior_close, price)
        if math.isfinite(gap):
            return gap
    return math.nan if fallback is None else float(fallback)


def _opening_price(bars: pd.DataFrame | None, session_open: datetime) -> float:
    if bars is None or bars.empty:
        return math.nan
    first = int(bars.index.searchsorted(pd.Timestamp(session_open)))
    if first < len(bars):
        return float(bars["open"].iloc[first])
    return float(bars["close"].iloc[-1])
