"""The backtest's fill model: how an order decided on 1-min bars fills.

It mirrors the simulator's exchange (``broker/simulator/exchange.py``) and market
(``broker/simulator/market_data.py``) as closely as bars allow. Every place where it
cannot, or deliberately does not, is a numbered rule here; the parity check against a
live virtual day cites these numbers to explain a difference.

F1  Decision instant. The day trader decides at each 1-min bar's close (bar start +
    60 s) on the completed bars so far; its order reaches the market at that instant,
    which is the next bar's open. The live day trader is woken by the close of its
    streamed bars and hears of it some market seconds later on a sped-up clock (F7).
F2  Quote. At a bar's open the last price is the bar's open (the simulator's intrabar
    path starts there). Bid and ask straddle a price as the simulator quotes them: a
    spread of ``round(price * spread_bps / 1e4 / $0.01)`` whole ticks (at least one),
    ``bid = price - floor(ticks / 2)`` ticks, ``ask = bid + ticks``, with the market's
    own spread of the symbol (``data.py``; for a market that does not tell it, the
    width of its quote at the open, which can be a tick off the simulator's elsewhere).
    ``FillModel.spread_bps`` overrides it (0: no spread, the backtesting.py cross-check).
F3  Entry. The buy limit is ``buy_limit(ask, LIMIT_AGGRESSION_PCT)``, marketable on
    arrival, so it fills at the touch (the ask), like the simulator's marketable limits.
F4  Size. The whole order fills at once. The simulator fills at most 25% of the 1-min
    bar's volume per matching step, so a larger order fills over several seconds at
    moving prices. No buying-power rejection is modelled (entries never exceed
    ExcessLiquidity, and the simulator allows 4x).
F5  Exits at the open. At each bar's open ``evaluate_exit`` sees the open price
    (precedence stop > target > eod, as in the live rule); an exit fills at that
    price's bid. This is how a gap through a stop fills at the open, and how the EOD
    flatten fills at the open of the bar at ``close - EOD_FLATTEN_MINUTES``.
F6  Exits inside a bar. The price walks open -> low -> high -> close when close >= open,
    else open -> high -> low -> close (the simulator's path). ``evaluate_exit`` sees
    each extreme in that order (the live exit manager judges by the last trade price,
    ``exit_manager/marks.py``); a stop fills at the stop level's bid, a target at the
    target level's bid (the first price of the path at the level). The simulator's path
    moves in one-second steps rounded to the cent, so its trigger price can be one step
    beyond the level. ``intrabar="stop_first"`` visits the low first on every bar (the
    conservative rule, and backtesting.py's).
F7  Reaction time. Zero: a buy fills at the bar's open, an exit at its trigger. The
    live processes need real time to see a bar or a quote and send the order; on a
    clock sped up N times that is N times as many market seconds (at 60x a buy decided
    at a bar close fills 10-20 s into the next minute, at the path's price then), so a
    live fill can come at another price and, near a minute boundary, in another minute;
    a different entry price moves the position's stop and target.
F8  Daily target and loss limit. Checked at each bar close on realized P&L (net of
    both commissions) plus unrealized P&L ``(close - entry) x shares``, as the live
    guard computes them (``exit_manager.ledger``); a liquidation fills at the next bar's
    open bid. The live exit manager checks on every pass with the streaming last price,
    so it can act inside a minute on a move the bar close no longer shows.
F9  Commission. The simulator's own ``order_commission`` (IBKR Pro fixed: $0.005 per
    share, at least $1, at most 1% of value), charged on each order (entry and exit).
F10 Sizing. ExcessLiquidity is cash plus 75% of the long market value at the bar close
    (the simulator's 25% maintenance margin). All entries of one decision pass see the
    same figure: buys not yet filled do not reduce it.
F11 Gap. The gap of gap-and-go is the prior close to the first regular-session bar's
    open, or to the latest close before that bar exists (the decision at the open):
    the day trader's ``opening_gap``, held equal at every minute by a test.
F12 No halts, price pins, rejections or outages: bars carry none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from broker.simulator.exchange import order_commission
from broker.simulator.types import ExchangeConfig
from exit_manager.rules import STOP, TARGET, PositionView

#: The simulator quotes every stock on a $0.01 grid (``market_data.TICK``).
TICK = 0.01

IntrabarOrder = Literal["path", "stop_first"]
INTRABAR_ORDERS: tuple[IntrabarOrder, ...] = ("path", "stop_first")


@dataclass(frozen=True)
class FillModel:
    """How orders fill; see the module docstring for the rules (F1-F12)."""

    intrabar: IntrabarOrder = "path"
    #: None: each symbol-day's spread as measured from the market (F2); else this, in bps.
    spread_bps: float | None = None
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)

    def __post_init__(self) -> None:
        if self.intrabar not in INTRABAR_ORDERS:
            raise ValueError(f"intrabar must be one of {INTRABAR_ORDERS}, got {self.intrabar!r}")
        if self.spread_bps is not None and not (
            math.isfinite(self.spread_bps) and self.spread_bps >= 0
        ):
            raise ValueError(f"spread_bps must be a number >= 0, got {self.spread_bps!r}")

    def spread_of(self, measured_bps: float) -> float:
        """Return the spread in bps to quote a symbol with (the override wins, F2)."""
        return measured_bps if self.spread_bps is None else self.spread_bps

    def quote(self, price: float, spread_bps: float) -> tuple[float, float]:
        """Return (bid, ask) around ``price`` as the simulator quotes it (F2)."""
        if spread_bps <= 0:
            return price, price
        ticks = max(1, round(price * spread_bps / 10_000 / TICK))
        bid = max(TICK, round(price - (ticks // 2) * TICK, 2))
        return bid, round(bid + ticks * TICK, 2)

    def waypoints(self, open_: float, high: float, low: float, close: float) -> tuple[float, float]:
        """Return the bar's two extremes in the order the price visits them (F6)."""
        if self.intrabar == "stop_first" or close >= open_:
            return low, high
        return high, low

    def commission(self, shares: int, price: float) -> float:
        """Return the commission of one order of ``shares`` at ``price`` (F9)."""
        return order_commission(shares, shares * price, self.exchange)


def trigger_level(reason: str, position: PositionView, seen: float) -> float:
    """Return the price at which a path that reached ``seen`` fired ``reason`` (F6).

    The path comes from the open, which was on the safe side of both levels (F5 handles
    the open), so it crossed the level itself on its way to ``seen``.
    """
    if reason == STOP:
        return max(position.stop_price, seen)
    if reason == TARGET:
        return min(position.target_price, seen)
    return seen
