"""Which price a position is judged and sold at: the streaming quote, else the portfolio mark.

Pure functions. A live, fresh quote is the first choice (and the one the event-driven
path sees). Where there is no usable quote (no market data subscription, delayed data
only, or a stalled feed) the broker's portfolio market price stands in, and the mark says
so, because the status display must tell a person the stop is watched on a coarser price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from broker.models import Quote


class MarkSource(StrEnum):
    """Where a mark's price came from."""

    QUOTE = "quote"  # live streaming quote, fresh
    PORTFOLIO = "portfolio"  # the broker's portfolio market price (no usable quote)
    DELAYED = "delayed_quote"  # only a delayed or stale quote is known (last resort)


@dataclass(frozen=True)
class Mark:
    """The price the rules see for one symbol, the bid a sell is priced from, and whence."""

    symbol: str
    price: float
    bid: float
    source: MarkSource
    halted: bool = False


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def quote_price(quote: Quote) -> float | None:
    """Return the price the rules judge a quote by: last trade, else mid, else bid."""
    for value in (quote.last, quote.mid, quote.bid):
        if _usable(value):
            return value
    return None


def quote_mark(quote: Quote, source: MarkSource = MarkSource.QUOTE) -> Mark | None:
    """Return the mark of ``quote`` (None when it carries no price at all)."""
    price = quote_price(quote)
    if price is None:
        return None
    bid = quote.bid if _usable(quote.bid) else price
    return Mark(quote.symbol, price, bid, source, quote.halted)


def is_live(quote: Quote | None, now: datetime, max_age_s: float) -> bool:
    """Return True for a real-time quote no older than ``max_age_s`` market seconds."""
    return quote is not None and not quote.delayed and not quote.is_stale(now, max_age_s)


def best_mark(
    symbol: str,
    quote: Quote | None,
    portfolio_price: float | None,
    now: datetime,
    max_age_s: float,
) -> Mark | None:
    """Return the best mark of ``symbol``: live quote, else portfolio price, else any quote."""
    if quote is not None and is_live(quote, now, max_age_s):
        mark = quote_mark(quote)
        if mark is not None:
            return mark
    halted = quote.halted if quote is not None else False
    if portfolio_price is not None and _usable(portfolio_price):
        return Mark(symbol, portfolio_price, portfolio_price, MarkSource.PORTFOLIO, halted)
    if quote is not None:
        return quote_mark(quote, MarkSource.DELAYED)
    return None
