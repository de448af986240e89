"""The fill model against the simulator's own exchange: the same orders, the same fills.

Every order of a backtest over synthetic days is placed again, in time order, on the
simulator's real ``Exchange`` (in-process, over the same ``SyntheticMarket``, with a
manual clock), the way the live processes would place it: a buy limit at
``buy_limit(ask)`` at the fill instant, a sell limit at ``exit_limit(bid)`` when the
simulator's streamed price first reaches the exit. This checks fill rules F2, F3, F5,
F6 and F9 against the component the whole system trades with; what remains is the
end-to-end virtual day (see ``test_parity.py``).

Tolerances: entries and exits at a bar's open fill at exactly the same price and
commission. A stop or target inside a bar triggers in the same minute; the simulator
streams the price in one-second steps rounded to the cent, so its trigger price can be
beyond the level by up to one step (rule F6): the fill may differ by that step plus a
cent of rounding, never more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from backtest.config import config_from_settings
from backtest.data import MarketSource
from backtest.engine import Trade, prepare_day, run_backtest
from broker.simulator.account import AccountStore
from broker.simulator.exchange import Exchange
from broker.simulator.market_data import SyntheticMarket
from broker.simulator.types import Action, ExchangeConfig, FillEvent, OrderRequest
from config.settings import load_settings
from exit_manager.rules import ExitParams, exit_limit, stop_price, target_price
from market.calendar import session, trading_days_back
from market.clock import ET
from market.pricing import buy_limit

SYMBOLS = ("ACHR", "AMC", "AFRM", "NVDA", "TSLA", "AMD")


@dataclass
class ManualClock:
    instant: datetime

    def now(self) -> datetime:
        return self.instant

    def to_real_seconds(self, market_seconds: float) -> float:
        return market_seconds

    def spec(self) -> str:
        return "manual"


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(seed=7, gap_share=0.3)


@pytest.fixture(scope="module")
def trades(market: SyntheticMarket) -> tuple[Trade, ...]:
    settings = load_settings(environ={"ATR_MIN_PCT": "0.1", "RSI_MAX": "65"}, env_file=None)
    source = MarketSource(market)
    sessions = [session(d) for d in trading_days_back(date(2025, 11, 26), 3)]
    days = [prepare_day(s, source.day(s, SYMBOLS)) for s in sessions]
    result = run_backtest(days, config_from_settings(settings))
    assert len(result.trades) >= 20, "too few trades to say anything"
    return result.trades


class Replay:
    """Places orders on a fresh simulator exchange and returns their single fill."""

    def __init__(self, market: SyntheticMarket, path: Path) -> None:
        config = ExchangeConfig(starting_cash=10_000_000.0)
        self.market = market
        self.clock = ManualClock(datetime(2025, 1, 1, tzinfo=ET))
        self.exchange = Exchange(AccountStore(path, config), market, self.clock, config)
        self.next_id = 1

    def fill(self, symbol: str, action: Action, quantity: int, at: datetime) -> FillEvent:
        self.clock.instant = at
        quote = self.market.quote_at(symbol, at)
        assert quote is not None
        if action is Action.BUY:
            limit = buy_limit(quote.ask, 0.5)
        else:
            limit = exit_limit(quote.bid, 0, ExitParams())
        info = self.market.info(symbol)
        assert info is not None
        request = OrderRequest(
            1, self.next_id, symbol, info.con_id, action, float(quantity), "LMT", limit
        )
        self.next_id += 1
        fills = [e for e in self.exchange.place(request) if isinstance(e, FillEvent)]
        assert len(fills) == 1, f"{action} {symbol} at {at}: {len(fills)} fills"
        return fills[0]


def exit_instant(market: SyntheticMarket, trade: Trade) -> tuple[datetime, float]:
    """Return when the simulator's stream first reaches the trade's exit, and its last step.

    At the bar's open for exits decided there (EOD, daily, a gap through a level);
    otherwise the first second of the exit minute at or beyond the stop or target.
    """
    levels = ExitParams()
    stop = stop_price(trade.entry_price, levels)
    target = target_price(trade.entry_price, trade.is_recovery, levels)
    prices = [
        market.quote_at(trade.symbol, trade.exit_time + timedelta(seconds=s)).last
        for s in range(60)
    ]
    if trade.exit_reason not in ("stop", "target") or not stop < prices[0] < target:
        return trade.exit_time, 0.0
    for second, price in enumerate(prices):
        if price <= stop or price >= target:
            step = abs(price - prices[second - 1]) if second else 0.0
            return trade.exit_time + timedelta(seconds=second), step
    raise AssertionError(f"the simulator's price never reached the exit of {trade}")


def test_backtest_fills_equal_the_simulator_exchange_fills(
    market: SyntheticMarket, trades: tuple[Trade, ...], tmp_path: Path
) -> None:
    replay = Replay(market, tmp_path / "account.db")
    events = sorted(
        [(t.entry_time, 0, t) for t in trades] + [(t.exit_time, 1, t) for t in trades],
        key=lambda e: (e[0], e[1], e[2].symbol),
    )
    for _, is_exit, trade in events:
        if not is_exit:
            bought = replay.fill(trade.symbol, Action.BUY, trade.quantity, trade.entry_time)
            assert bought.execution.price == trade.entry_price, trade
            continue
        at, step = exit_instant(market, trade)
        sold = replay.fill(trade.symbol, Action.SELL, trade.quantity, at)
        assert at.replace(second=0) == trade.exit_time, "the exit minute differs"
        assert sold.execution.price == pytest.approx(trade.exit_price, abs=step + 0.01 + 1e-9)
        if step == 0.0:
            assert sold.execution.price == trade.exit_price, trade
        commissions = bought_and_sold_commission(replay, trade)
        assert commissions == pytest.approx(trade.commission, abs=step * trade.quantity * 0.01)


def bought_and_sold_commission(replay: Replay, trade: Trade) -> float:
    """Return the exchange's commissions on the trade's two orders."""
    executions = replay.exchange.executions()
    mine = [e for e in executions if e.symbol == trade.symbol]
    return sum(e.commission for e in mine[-2:])
