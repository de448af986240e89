"""The entry and exit rules re-written as a backtesting.py Strategy: the independent check.

Test and benchmark code only: backtesting.py is AGPL-licensed, and the product
(``backtest/``, ``scripts/``) never imports it (``test_no_agpl_import.py`` checks).

Independence: nothing here calls the live decision functions or the backtest's numpy
indicator series. Indicators come from the pandas-ta face of ``market.indicators``
(``session_vwap``, ``rsi``, ``atr_pct``), computed per day from 04:00 as the live
snapshot does; the rules are written out again from their docstrings; stops and
targets are backtesting.py's own bracket orders; P&L is its own accounting.

How the engine is configured to be comparable (``engine_config_for_crosscheck``):
one symbol per run (backtesting.py trades one instrument), so the watchlist is that
symbol; no spread (backtesting.py charges its spread only on entry); the stop-first
intrabar rule (backtesting.py processes the stop order before the target); the daily
target and loss limit disabled (they are cross-symbol rules of the whole book).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from backtesting import Strategy

from backtest.data import SymbolDay
from market.calendar import Session
from market.indicators import atr_pct, rsi, session_vwap

TICK = 0.01


@dataclass(frozen=True)
class Rules:
    """Parameters of the rules (percentages in percent), as the settings name them."""

    gap_min_pct: float = 5.0
    rsi_max: float = 60.0
    atr_min_pct: float = 1.0
    recovery_rsi_min: float = 50.0
    profit_target_pct: float = 1.8
    recovery_target_pct: float = 1.1
    stop_loss_pct: float = 0.9
    max_recovery_entries: int = 1
    max_trades_per_day: int = 20
    allocation: float = 0.10
    max_order_notional: float = 25_000.0
    limit_aggression_pct: float = 0.5
    eod_flatten_minutes: int = 5
    daily_target_pct: float | None = None  # None: the rule is off
    daily_loss_limit_pct: float | None = None


def ibkr_fixed_commission(size: float, price: float) -> float:
    """IBKR Pro fixed: $0.005 a share, at least $1, at most 1% of the order's value."""
    shares = abs(size)
    return min(max(0.005 * shares, 1.0), 0.01 * shares * price)


def strategy_frame(days: Sequence[tuple[Session, SymbolDay]], rules: Rules) -> pd.DataFrame:
    """Return one symbol's bars of ``days`` with the columns the strategy reads."""
    return pd.concat([_day_frame(session, bars, rules) for session, bars in days])


def _day_frame(session: Session, bars: SymbolDay, rules: Rules) -> pd.DataFrame:
    frame = bars.frame(session)
    rsi_now = rsi(frame["close"])
    out = pd.DataFrame(
        {
            "Open": frame["open"],
            "High": frame["high"],
            "Low": frame["low"],
            "Close": frame["close"],
            "Volume": frame["volume"],
            "Vwap": session_vwap(frame, session.open),
            "Rsi": rsi_now,
            "PrevRsi": rsi_now.shift(1),
            "AtrPct": atr_pct(frame),
            "Gap": _gap(frame, session, bars.prior_close),
            # The price an order decided at this bar's close meets: the next bar's open.
            "NextOpen": frame["open"].shift(-1),
        }
    )
    close_at = frame.index + pd.Timedelta(minutes=1)
    out["Day"] = session.day.toordinal()
    out["Now"] = (close_at - pd.Timestamp(session.premarket_start)) / pd.Timedelta(minutes=1)
    out["OpenAt"] = _minutes(session, session.open)
    out["FlattenAt"] = _minutes(session, session.close) - rules.eod_flatten_minutes
    out.index = frame.index.tz_localize(None)  # backtesting.py wants naive times
    return out


def _minutes(session: Session, instant: object) -> float:
    return (pd.Timestamp(instant) - pd.Timestamp(session.premarket_start)) / pd.Timedelta(minutes=1)


def _gap(frame: pd.DataFrame, session: Session, prior_close: float) -> pd.Series:
    """Gap in % to the first session bar's open, or to the latest close before it."""
    in_session = frame.index >= pd.Timestamp(session.open)
    price = frame["close"].copy()
    if in_session.any():
        price[in_session] = frame["open"][in_session].iloc[0]
    return (price - prior_close) / prior_close * 100.0


class RulesStrategy(Strategy):
    """Gap-and-go, VWAP and recovery entries; target, stop and EOD exits; re-entry rules."""

    rules = Rules()

    def init(self) -> None:
        self._day = None
        self._exits: list[str] = []
        self._entries = 0
        self._seen = 0
        self._levels: dict[int, tuple[float, float]] = {}  # entry bar -> (stop, target)
        self._day_equity = self.equity
        self._halted = False

    def next(self) -> None:
        data = self.data
        if data.Day[-1] != self._day:
            self._day, self._exits, self._entries = data.Day[-1], [], 0
            self._day_equity, self._halted = self.equity, False
        self._note_exits()
        if self._halted:
            return
        if data.Now[-1] > data.OpenAt[-1] and self._daily_limit_hit():
            self._halted = True
            if self.position:
                self._flatten()
            return
        if self.position:
            if data.Now[-1] >= data.FlattenAt[-1]:
                self._flatten()
            return
        if self.orders or not data.OpenAt[-1] <= data.Now[-1] < data.FlattenAt[-1]:
            return
        if self._entries >= self.rules.max_trades_per_day:
            return
        kind = self._entry_kind()
        if kind is not None and self._fires(kind):
            self._buy(kind == "recovery")

    def _daily_limit_hit(self) -> bool:
        """Day P&L beyond the target or the limit: closed trades net of commissions plus
        open trades at the close before commissions (the live guard's figures)."""
        paid = sum(ibkr_fixed_commission(t.size, t.entry_price) for t in self.trades)
        pct = (self.equity + paid - self._day_equity) / self._day_equity * 100
        target, limit = self.rules.daily_target_pct, self.rules.daily_loss_limit_pct
        return (target is not None and pct >= target) or (limit is not None and pct <= -limit)

    def _note_exits(self) -> None:
        for trade in self.closed_trades[self._seen :]:
            stop, target = self._levels[trade.entry_bar]
            if trade.exit_price <= stop:
                self._exits.append("stop")
            elif trade.exit_price >= target:
                self._exits.append("target")
            else:
                self._exits.append("eod")
        self._seen = len(self.closed_trades)

    def _flatten(self) -> None:
        for trade in self.trades:
            trade.sl = None  # the close order alone fills at the next open
            trade.tp = None
        self.position.close()

    def _entry_kind(self) -> str | None:
        if not self._exits:
            return "fresh"
        recoveries = len(self._exits) - 1
        if all(r == "stop" for r in self._exits) and recoveries < self.rules.max_recovery_entries:
            return "recovery"
        return None

    def _fires(self, kind: str) -> bool:
        d, r = self.data, self.rules
        close, vwap, rsi_now, atr = d.Close[-1], d.Vwap[-1], d.Rsi[-1], d.AtrPct[-1]
        rsi_ok = rsi_now < r.rsi_max  # False for NaN
        if kind == "recovery":
            rise = rsi_now - d.PrevRsi[-1]
            return close > vwap and rsi_ok and rise > 0 and rsi_now >= r.recovery_rsi_min
        if d.Gap[-1] >= r.gap_min_pct and rsi_ok:
            return True
        return close > vwap and atr >= r.atr_min_pct and rsi_ok

    def _buy(self, recovery: bool) -> None:
        r = self.rules
        price = self.data.NextOpen[-1]
        if not price > 0:
            return
        limit = math.ceil(round(price * (1 + r.limit_aggression_pct / 100) / TICK, 6)) * TICK
        shares = _shares(self.equity, r.allocation, limit, r.max_order_notional)
        if shares <= 0:
            return
        target_pct = r.recovery_target_pct if recovery else r.profit_target_pct
        target = round(price * (1 + target_pct / 100), 6)
        stop = round(price * (1 - r.stop_loss_pct / 100), 6)
        self._levels[len(self.data)] = (stop, target)
        self.buy(size=shares, sl=stop, tp=target)
        self._entries += 1


def _shares(equity: float, allocation: float, price: float, max_notional: float) -> int:
    if price > equity:
        return 0
    shares = max(1, math.floor(equity * allocation / price + 1e-9))
    return min(shares, math.floor(max_notional / price + 1e-9))


def trades_table(stats: pd.Series) -> pd.DataFrame:
    """Return backtesting.py's trades with naive ET entry and exit times."""
    return stats["_trades"][["Size", "EntryTime", "ExitTime", "EntryPrice", "ExitPrice", "PnL"]]


def net_pnl(stats: pd.Series, cash: float) -> float:
    """Return the run's net P&L: final equity minus starting cash."""
    return float(stats["Equity Final [$]"]) - cash
