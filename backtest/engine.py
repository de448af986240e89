"""The backtest's event loop: the live decision functions over 1-min bars.

Each trading day is replayed minute by minute over the watchlist. At each minute:

1. the bar's open: buys decided at the previous close fill, a pending daily
   liquidation fills, and ``evaluate_exit`` sees every position at the open price
   (stops gapped through, targets gapped over, the EOD flatten: fill rule F5);
2. inside the bar: ``evaluate_exit`` sees the bar's extremes in path order (F6);
3. the bar's close: ``evaluate_daily`` on realized + unrealized P&L (F8), then one
   decision pass of the day trader: ``entry_gate``, then per watchlist symbol without
   a position or a buy the day trader's own ``decide_entry`` (re-entry rule, entry
   signal, quote check, buy limit, size, price collar) on the indicator snapshot, the
   opening gap and the quote at that instant; the gate again after each buy, as the
   live claim refuses the rest of a pass once a limit is reached.

Every decision is a call to the live pure functions; this module only moves time,
keeps the book and applies the fill model (``fills.py``). Indicator snapshots come
precomputed per symbol-day from ``series.py`` (equal to ``snapshot`` at every bar).
Two shortcuts change no decision: a symbol whose re-entry rule already says no is not
offered to ``decide_entry`` (it could only answer with a skip, which the backtest does
not record), and ``evaluate_entry`` is asked first with the same inputs, because
``decide_entry`` answers None whenever that signal does not fire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy as np

from backtest.config import BacktestConfig
from backtest.data import SymbolDay
from backtest.fills import trigger_level
from backtest.series import SymbolSeries, prepare
from broker.models import Quote
from day_trader.decision import EntryPlan, Funds, SymbolView, decide_entry
from day_trader.signals import EntryKind, evaluate_entry, gap_pct
from day_trader.sizing import GateState, entry_gate
from exit_manager.ledger import unrealized_pnl
from exit_manager.rules import (
    EOD,
    PositionView,
    evaluate_daily,
    evaluate_exit,
    next_entry_kind,
    stop_price,
    target_price,
)
from market.calendar import Session
from market.indicators import IndicatorSnapshot

#: The backtest has no exit manager process: its heartbeat is always fresh.
_HEARTBEAT_AGE_S = 0.0
#: Share of long market value that counts towards ExcessLiquidity (simulator: 25% margin).
_LONG_LIQUIDITY = 0.75


@dataclass(frozen=True)
class Trade:
    """One round trip: a buy and the sell that closed it."""

    symbol: str
    day: date
    entry_kind: EntryKind
    is_recovery: bool
    quantity: int
    entry_time: datetime  # the minute the buy filled (bar start, ET)
    entry_price: float
    exit_time: datetime
    exit_price: float
    exit_reason: str
    commission: float  # both orders
    pnl: float  # net of commission

    @property
    def won(self) -> bool:
        return self.pnl > 0


@dataclass(frozen=True)
class DayResult:
    """One trading day's outcome."""

    day: date
    symbols: tuple[str, ...]
    trades: int
    wins: int
    net_pnl: float
    start_equity: float
    end_equity: float
    halt_reason: str | None  # daily_target or loss_limit when the day was ended early


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Everything a run produced."""

    config: BacktestConfig
    trades: tuple[Trade, ...]
    days: tuple[DayResult, ...]
    equity_times: np.ndarray  # int64 POSIX seconds of each regular-session bar close
    equity: np.ndarray  # account equity at those instants (cash + positions at the close)
    bars: int  # 1-min bars read, pre-market included, over all symbol-days


@dataclass(frozen=True)
class TradingDay:
    """One session and its watchlist's prepared bars, in watchlist order."""

    session: Session
    series: tuple[SymbolSeries, ...]
    bars: int


def prepare_day(session: Session, symbol_days: Sequence[SymbolDay]) -> TradingDay:
    """Return ``symbol_days`` of ``session`` ready for the engine (indicators precomputed)."""
    series = tuple(prepare(symbol_day, session) for symbol_day in symbol_days)
    return TradingDay(session, series, sum(len(symbol_day) for symbol_day in symbol_days))


def run_backtest(
    days: Iterable[TradingDay],
    config: BacktestConfig,
    on_day: Callable[[DayResult], None] | None = None,
) -> BacktestResult:
    """Replay ``days`` in order with ``config``; call ``on_day`` after each (progress)."""
    account = _Account(config.starting_capital)
    trades: list[Trade] = []
    results: list[DayResult] = []
    bars = 0
    for day in days:
        result = _DayRun(day, config, account, trades).run()
        results.append(result)
        bars += day.bars
        if on_day is not None:
            on_day(result)
    return BacktestResult(
        config=config,
        trades=tuple(trades),
        days=tuple(results),
        equity_times=np.array(account.curve_times, dtype=np.int64),
        equity=np.array(account.curve, dtype=np.float64),
        bars=bars,
    )


@lru_cache(maxsize=1024)
def _instants(session: Session, slots: int) -> tuple[datetime, ...]:
    """Return the start of each minute of ``session`` from 04:00 ET, and the close.

    Cached (about 35 KB a session, four years at most): every sweep combination and
    every per-symbol run of a day needs the same ones, and building them costs more
    than replaying a quiet day.
    """
    start = session.premarket_start
    return tuple(start + timedelta(minutes=k) for k in range(slots + 1))


def _gate_state(day_halt: str | None, entries: int, open_positions: int) -> GateState:
    """Return what the day trader knows at the start of a pass, in a backtest."""
    return GateState(
        entries_halted=day_halt == "loss_limit",
        daily_target_reached=day_halt == "daily_target",
        trades_today=entries,
        exit_manager_heartbeat_age_s=_HEARTBEAT_AGE_S,
        broker_connection_lost=False,
        open_positions=open_positions,
    )


class _Account:
    """Cash and the equity curve, carried from day to day."""

    def __init__(self, cash: float) -> None:
        self.cash = cash
        self.curve_times: list[int] = []
        self.curve: list[float] = []


@dataclass(slots=True)
class _Position:
    """An open position of the day run (mutable: owned by ``_DayRun`` only)."""

    view: PositionView
    kind: EntryKind
    entry_time: datetime
    entry_commission: float


@dataclass(frozen=True, slots=True)
class _Buy:
    """A buy decided at a bar close, filling at the next bar's open (F1, F3)."""

    index: int
    quantity: int
    price: float  # the ask at the decision instant
    kind: EntryKind
    is_recovery: bool


class _Columns:
    """One symbol-day's grid arrays as Python lists (indexing a list is several times
    cheaper than boxing a numpy scalar, and the loop reads them ~10 times a minute)."""

    __slots__ = (
        "symbol", "prior", "spread", "open", "high", "low", "close", "has_bar",
        "vwap", "rsi", "prev_rsi", "atr_pct", "last_bar", "gap_price",
    )  # fmt: skip

    def __init__(self, series: SymbolSeries, spread_bps: float) -> None:
        self.symbol = series.symbol
        self.prior = series.prior_close
        self.spread = spread_bps
        for name in self.__slots__[3:]:
            setattr(self, name, getattr(series, name).tolist())


class _DayRun:
    """One trading day: the book, the day's counters and the minute loop."""

    def __init__(
        self, day: TradingDay, config: BacktestConfig, account: _Account, trades: list[Trade]
    ) -> None:
        self.cfg = config
        self.session = day.session
        self.account = account
        self.trades = trades
        self.cols = [_Columns(s, config.fill.spread_of(s.spread_bps)) for s in day.series]
        self.slots = len(day.series[0]) if day.series else 0
        self.open_index = day.series[0].open_index if day.series else 0
        self.start_ts = int(day.session.premarket_start.timestamp())
        self.instants = _instants(day.session, self.slots)
        self.positions: dict[int, _Position] = {}
        self.buys: list[_Buy] = []
        self.exits: list[list[str]] = [[] for _ in self.cols]
        # next_entry_kind of each symbol; it changes only when the symbol exits (``_close``).
        self.kinds = [next_entry_kind([], config.max_recovery_entries) for _ in self.cols]
        self.entries = 0
        self.day_halt: str | None = None  # daily_target or loss_limit, once decided
        self.liquidate: str | None = None  # reason of a liquidation to fill at the next open
        self.start_equity = account.cash
        self.realized = 0.0
        self.pnl_changed = False
        self.first_trade = len(trades)
        self.gate_counts: tuple[str | None, int, int] = (None, 0, 0)
        self.gate_state = _gate_state(*self.gate_counts)

    # ------------------------------------------------------------------ the day

    def run(self) -> DayResult:
        """Replay the day from the last pre-market bar (the decision at the open) on."""
        for m in range(max(self.open_index - 1, 0), self.slots):
            if m >= self.open_index:
                if self.positions or self.buys or self.liquidate is not None:
                    self._at_open(m)
                    self._inside(m)
                self._check_daily(m)
                self._record_equity(m)
            self._decide_entries(m)
        self._close_leftovers()
        return self._result()

    # ------------------------------------------------------------------ exits

    def _at_open(self, m: int) -> None:
        """Fill what was decided at the previous close, then check every position (F5)."""
        now = self.instants[m]
        for buy in self.buys:
            self._open_position(buy, now)
        self.buys = []
        if self.liquidate is not None:
            for index in list(self.positions):
                self._close(index, self.cols[index].open[m], self.liquidate, now)
            self.liquidate = None
        for index, position in list(self.positions.items()):
            price = self.cols[index].open[m]
            decision = evaluate_exit(position.view, price, now, self.session.close, self.cfg.exit)
            if decision is not None:
                self._close(index, price, decision.reason, now)

    def _inside(self, m: int) -> None:
        """Walk each position's bar extremes in path order; exit at the level reached (F6)."""
        now = self.instants[m]
        for index, position in list(self.positions.items()):
            cols = self.cols[index]
            if not cols.has_bar[m]:
                continue
            bar = (cols.open[m], cols.high[m], cols.low[m], cols.close[m])
            for seen in self.cfg.fill.waypoints(*bar):
                decision = evaluate_exit(
                    position.view, seen, now, self.session.close, self.cfg.exit
                )
                if decision is not None:
                    price = trigger_level(decision.reason, position.view, seen)
                    self._close(index, price, decision.reason, now)
                    break

    def _check_daily(self, m: int) -> None:
        """Evaluate the daily target and loss limit at the bar close (F8)."""
        if self.day_halt is not None or not (self.positions or self.pnl_changed):
            return  # the same figures as last time give the same answer
        self.pnl_changed = False
        unrealized = sum(
            unrealized_pnl(p.view.quantity, p.view.entry_price, self.cols[i].close[m])
            for i, p in self.positions.items()
        )
        decision = evaluate_daily(self.realized, unrealized, self.start_equity, self.cfg.exit)
        if decision is not None:
            self.day_halt = decision.reason
            self.liquidate = decision.reason if self.positions else None

    # ------------------------------------------------------------------ entries

    def _decide_entries(self, m: int) -> None:
        """Run the day trader's decision pass at the close of minute ``m`` (F1)."""
        if m + 1 >= self.slots:
            return  # no next bar to fill at: the day is over
        pending = {buy.index for buy in self.buys}
        candidates = [
            index
            for index, kind in enumerate(self.kinds)
            if kind is not None and index not in self.positions and index not in pending
        ]
        now = self.instants[m + 1]
        if not candidates or self._gate(now) is not None:
            return
        # One account read per pass, as the live trader does (F10).
        funds = Funds(self._excess_liquidity(m), len(self.cols))
        for index in candidates:
            buy = self._entry(index, m, now, funds)
            if buy is None:
                continue
            self.buys.append(buy)
            self.entries += 1
            if self._gate(now) is not None:
                return  # the live claim refuses the rest of the pass for the same reason

    def _gate(self, now: datetime) -> str | None:
        counts = (self.day_halt, self.entries, len(self.positions) + len(self.buys))
        if counts != self.gate_counts:  # most minutes change nothing: reuse the state
            self.gate_counts, self.gate_state = counts, _gate_state(*counts)
        return entry_gate(self.gate_state, now, self.session, self.cfg.gate)

    def _entry(self, index: int, m: int, now: datetime, funds: Funds) -> _Buy | None:
        """Return the buy the live ``decide_entry`` plans for symbol ``index``, or None."""
        cols = self.cols[index]
        snap = self._snapshot(cols, m)
        gap = gap_pct(cols.prior, cols.gap_price[m])
        # decide_entry answers None whenever this same signal does not fire (its contract);
        # asking first spares building a quote and a view on the ~99% of quiet minutes.
        recovery = self.kinds[index] == "recovery"
        if not evaluate_entry(cols.symbol, snap, gap, now, self.cfg.entry, recovery=recovery).fire:
            return None
        last = cols.open[m + 1]  # the quote at the decision instant is the next bar's open (F2)
        if not last > 0:
            return None
        bid, ask = self.cfg.fill.quote(last, cols.spread)
        quote = Quote(cols.symbol, bid, ask, last, now)
        view = SymbolView(cols.symbol, snap, gap, quote, tuple(self.exits[index]))
        plan = decide_entry(view, funds, now, self.cfg.trader)
        if not isinstance(plan, EntryPlan):
            return None  # no signal, or a skip (re-entry rule, quote, size, collar)
        return _Buy(index, plan.quantity, ask, plan.kind, plan.is_recovery)

    def _snapshot(self, cols: _Columns, m: int) -> IndicatorSnapshot:
        last_bar = cols.last_bar[m]
        return IndicatorSnapshot(
            close=cols.close[m],
            vwap=cols.vwap[m],
            rsi=cols.rsi[m],
            prev_rsi=cols.prev_rsi[m],
            atr_pct=cols.atr_pct[m],
            bar_time=self.instants[last_bar] if last_bar >= 0 else None,
        )

    def _excess_liquidity(self, m: int) -> float:
        """Return ExcessLiquidity at the close of minute ``m`` (F10)."""
        held = sum(p.view.quantity * self.cols[i].close[m] for i, p in self.positions.items())
        return self.account.cash + _LONG_LIQUIDITY * held

    # ------------------------------------------------------------------ the book

    def _open_position(self, buy: _Buy, now: datetime) -> None:
        symbol = self.cols[buy.index].symbol
        commission = self.cfg.fill.commission(buy.quantity, buy.price)
        self.account.cash -= buy.quantity * buy.price + commission
        view = PositionView(
            symbol=symbol,
            quantity=buy.quantity,
            entry_price=buy.price,
            is_recovery=buy.is_recovery,
            target_price=target_price(buy.price, buy.is_recovery, self.cfg.exit),
            stop_price=stop_price(buy.price, self.cfg.exit),
        )
        self.positions[buy.index] = _Position(view, buy.kind, now, commission)

    def _close(self, index: int, seen: float, reason: str, now: datetime) -> None:
        """Sell position ``index`` at the bid of ``seen`` for ``reason`` (F3, F9)."""
        position = self.positions.pop(index)
        view = position.view
        bid, _ = self.cfg.fill.quote(seen, self.cols[index].spread)
        commission = self.cfg.fill.commission(view.quantity, bid)
        self.account.cash += view.quantity * bid - commission
        pnl = view.quantity * (bid - view.entry_price) - position.entry_commission - commission
        self.realized += pnl
        self.pnl_changed = True
        self.exits[index].append(reason)
        self.kinds[index] = next_entry_kind(self.exits[index], self.cfg.max_recovery_entries)
        self.trades.append(
            Trade(
                symbol=view.symbol,
                day=self.session.day,
                entry_kind=position.kind,
                is_recovery=view.is_recovery,
                quantity=view.quantity,
                entry_time=position.entry_time,
                entry_price=view.entry_price,
                exit_time=now,
                exit_price=bid,
                exit_reason=reason,
                commission=position.entry_commission + commission,
                pnl=pnl,
            )
        )

    def _record_equity(self, m: int) -> None:
        equity = self.account.cash
        for index, position in self.positions.items():
            equity += position.view.quantity * self.cols[index].close[m]
        self.account.curve_times.append(self.start_ts + 60 * (m + 1))
        self.account.curve.append(equity)

    def _close_leftovers(self) -> None:
        # The EOD flatten empties the book before the close; only a liquidation decided
        # at the last bar's close, or an EOD_FLATTEN_MINUTES of 0, leaves something here.
        last = self.slots - 1
        for index in list(self.positions):
            reason = self.liquidate or EOD
            self._close(index, self.cols[index].close[last], reason, self.instants[last])
        self.buys = []

    def _result(self) -> DayResult:
        today = self.trades[self.first_trade :]
        return DayResult(
            day=self.session.day,
            symbols=tuple(cols.symbol for cols in self.cols),
            trades=len(today),
            wins=sum(trade.won for trade in today),
            net_pnl=sum(trade.pnl for trade in today),
            start_equity=self.start_equity,
            end_equity=self.account.cash,
            halt_reason=self.day_halt,
        )
