"""Market scanners of the simulator (what reqScannerSubscription answers), over any MarketData.

Rankings use only the ``MarketData`` protocol (quotes and prior closes), so they work
the same on the synthetic market and on CSV replay, and they see price pins and halts.
Ties are broken by symbol so a ranking is deterministic.
"""

from __future__ import annotations

from datetime import datetime

from broker.simulator.types import MarketData, Quote
from market.calendar import session
from market.clock import ET


def _live_quotes(market: MarketData, instant: datetime) -> list[Quote]:
    quotes = (market.quote_at(symbol, instant) for symbol in market.symbols())
    return [q for q in quotes if q is not None]


def _in_regular_session(instant: datetime) -> bool:
    # Only called when quotes exist, so the day trades and session() cannot fail.
    return instant >= session(instant.astimezone(ET).date()).open


def top_gainers(
    market: MarketData, instant: datetime, n: int = 50, premarket: bool = True
) -> list[str]:
    """Return up to ``n`` symbols ranked by % change of the current price vs the prior close.

    With ``premarket=False`` only regular-session prices count: before the open the
    ranking is empty. Symbols without a quote at ``instant`` are left out.
    """
    quotes = _live_quotes(market, instant)
    if not quotes or (not premarket and not _in_regular_session(instant)):
        return []
    day = instant.astimezone(ET).date()
    changes = [(q.last / market.prior_close(q.symbol, day) - 1.0, q.symbol) for q in quotes]
    changes.sort(key=lambda row: (-row[0], row[1]))
    return [symbol for _, symbol in changes[:n]]


def most_active(market: MarketData, instant: datetime, n: int = 50) -> list[str]:
    """Return up to ``n`` symbols ranked by shares traded today up to ``instant``."""
    quotes = _live_quotes(market, instant)
    quotes.sort(key=lambda q: (-q.day_volume, q.symbol))
    return [q.symbol for q in quotes[:n]]
