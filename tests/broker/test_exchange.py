"""The simulator's exchange: matching, fills, sessions, rejections, cancels, faults, restart.

Real AccountStore files in tmp_path; the market is a settable fake implementing the
MarketData protocol (the unit boundary), the clock a manual one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from broker.simulator.account import AccountStore
from broker.simulator.exchange import Exchange, order_commission
from broker.simulator.types import (
    Action,
    Bar,
    ExchangeConfig,
    ExchangeEvent,
    FillEvent,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Quote,
    SymbolInfo,
)
from market.calendar import is_trading_day, session
from market.clock import ET

TUESDAY = date(2025, 11, 25)
BLACK_FRIDAY = date(2025, 11, 28)  # early close 13:00 ET
FRIDAY = date(2025, 11, 21)
MONDAY = date(2025, 11, 24)


def et(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=ET)


# --------------------------------------------------------------------------- fakes


@dataclass
class ManualClock:
    """A clock that moves only when the test says so."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant

    def to_real_seconds(self, market_seconds: float) -> float:
        return market_seconds

    def spec(self) -> str:
        return "manual"

    def set(self, instant: datetime) -> datetime:
        self.instant = instant
        return instant


@dataclass
class FakeMarket:
    """Quotes set by hand from 04:00 ET to the close; 1-min bars of constant volume."""

    infos: dict[str, SymbolInfo] = field(default_factory=dict)
    quotes: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    volumes: dict[str, int] = field(default_factory=dict)
    halted: set[str] = field(default_factory=set)
    closes: dict[str, float] = field(default_factory=dict)

    def add(self, symbol: str, con_id: int, volume: int = 1_000_000) -> None:
        self.infos[symbol] = SymbolInfo(symbol, con_id, f"{symbol} INC", "NASDAQ", 0.01)
        self.volumes[symbol] = volume

    def set_quote(self, symbol: str, bid: float, ask: float, last: float | None = None) -> None:
        self.quotes[symbol] = (bid, ask, round((bid + ask) / 2, 4) if last is None else last)

    def set_halted(self, symbol: str, halted: bool) -> None:
        (self.halted.add if halted else self.halted.discard)(symbol)

    def symbols(self) -> list[str]:
        return sorted(self.infos)

    def info(self, symbol: str) -> SymbolInfo | None:
        return self.infos.get(symbol)

    def intraday_bars(self, symbol: str, day: date) -> list[Bar]:
        if not is_trading_day(day) or symbol not in self.infos:
            return []
        start = et(day, 4)
        count = int((session(day).close - start).total_seconds() // 60)
        price = self.quotes.get(symbol, (10.0, 10.0, 10.0))[2]
        volume = self.volumes[symbol]
        return [
            Bar(start + timedelta(minutes=i), price, price, price, price, volume)
            for i in range(count)
        ]

    def daily_bars(self, symbol: str, end_day: date, count: int) -> list[Bar]:
        return []

    def quote_at(self, symbol: str, instant: datetime) -> Quote | None:
        day = instant.astimezone(ET).date()
        if symbol not in self.quotes or not is_trading_day(day):
            return None
        if not (et(day, 4) <= instant < session(day).close):
            return None
        bid, ask, last = self.quotes[symbol]
        halted = symbol in self.halted
        return Quote(symbol, instant, bid, ask, last, 100, 100, 100, 0, halted)

    def prior_close(self, symbol: str, day: date) -> float:
        return self.closes.get(symbol, 0.0)


@dataclass
class Sim:
    exchange: Exchange
    market: FakeMarket
    clock: ManualClock
    store: AccountStore
    path: Path
    config: ExchangeConfig

    def restart(self) -> Sim:
        """Drop the exchange and its store, and open new ones over the same file."""
        self.store.close()
        store = AccountStore(self.path, self.config)
        exchange = Exchange(store, self.market, self.clock, self.config)
        return Sim(exchange, self.market, self.clock, store, self.path, self.config)

    def step(self, instant: datetime) -> list[ExchangeEvent]:
        return self.exchange.on_market(self.clock.set(instant))


def make_sim(tmp_path: Path, at: datetime | None = None, **config: object) -> Sim:
    market = FakeMarket()
    market.add("AAPL", 265598)
    market.add("MSFT", 272093)
    market.set_quote("AAPL", 99.99, 100.01)
    market.set_quote("MSFT", 399.95, 400.05)
    clock = ManualClock(at or et(TUESDAY, 10))
    cfg = ExchangeConfig(**config)  # type: ignore[arg-type]
    path = tmp_path / "sim_account.db"
    store = AccountStore(path, cfg)
    return Sim(Exchange(store, market, clock, cfg), market, clock, store, path, cfg)


def order(
    order_id: int,
    action: Action = Action.BUY,
    quantity: float = 100,
    limit: float | None = 100.05,
    *,
    client_id: int = 1,
    symbol: str = "AAPL",
    tif: str = "DAY",
    outside_rth: bool = False,
    ref: str = "",
) -> OrderRequest:
    return OrderRequest(
        client_id=client_id,
        order_id=order_id,
        symbol=symbol,
        con_id=0,
        action=action,
        quantity=quantity,
        order_type="MKT" if limit is None else "LMT",
        limit_price=limit,
        tif=tif,
        outside_rth=outside_rth,
        order_ref=ref or f"ref-{client_id}-{order_id}",
    )


def fills(events: list[ExchangeEvent]) -> list[FillEvent]:
    return [e for e in events if isinstance(e, FillEvent)]


def updates(events: list[ExchangeEvent]) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate)]


def rejection(events: list[ExchangeEvent]) -> OrderRejected:
    (only,) = events
    assert isinstance(only, OrderRejected)
    return only


def buy_position(sim: Sim, order_id: int, quantity: float = 100) -> FillEvent:
    """Buy ``quantity`` AAPL at the current ask, all at once."""
    events = sim.exchange.place(order(order_id, quantity=quantity, limit=None))
    (fill,) = fills(events)
    assert fill.order.status is OrderStatus.FILLED
    return fill


# --------------------------------------------------------------------------- matching


def test_buy_limit_above_ask_fills_at_ask_at_once(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    events = sim.exchange.place(order(1, quantity=100, limit=100.05, ref="entry-AAPL-1"))

    first, second = events
    assert isinstance(first, OrderUpdate) and first.order.status is OrderStatus.SUBMITTED
    assert first.order.perm_id > 0
    assert isinstance(second, FillEvent)
    ex = second.execution
    assert (ex.side, ex.shares, ex.price, ex.cum_qty, ex.avg_price) == (
        "BOT",
        100,
        100.01,
        100,
        100.01,
    )
    assert ex.order_ref == "entry-AAPL-1" and ex.perm_id == first.order.perm_id
    assert ex.time == sim.clock.now() and ex.realized_pnl is None
    assert second.order.status is OrderStatus.FILLED and second.order.remaining == 0
    assert sim.exchange.open_orders() == []
    (pos,) = sim.exchange.positions()
    assert pos.quantity == 100
    assert pos.avg_cost == pytest.approx((100 * 100.01 + ex.commission) / 100)
    assert sim.store.cash() == pytest.approx(1_000_000 - 100 * 100.01 - ex.commission)


def test_market_sell_fills_at_bid(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1)
    sim.market.set_quote("AAPL", 101.10, 101.12)

    (fill,) = fills(sim.exchange.place(order(2, Action.SELL, 100, None)))

    assert (fill.execution.side, fill.execution.price) == ("SLD", 101.10)
    assert sim.exchange.positions() == []


def test_resting_buy_limit_fills_at_its_limit_when_a_later_ask_crosses(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    events = sim.exchange.place(order(1, limit=99.50))
    assert [type(e) for e in events] == [OrderUpdate]
    assert sim.step(et(TUESDAY, 10, 0, 1)) == []

    sim.market.set_quote("AAPL", 99.30, 99.40)
    (fill,) = fills(sim.step(et(TUESDAY, 10, 0, 2)))

    assert fill.execution.price == 99.50
    assert fill.order.status is OrderStatus.FILLED
    assert sim.step(et(TUESDAY, 10, 0, 3)) == []


def test_resting_sell_limit_fills_at_its_limit_when_a_later_bid_crosses(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1)
    sim.exchange.place(order(2, Action.SELL, 100, 101.00))
    sim.market.set_quote("AAPL", 101.20, 101.25)

    (fill,) = fills(sim.step(et(TUESDAY, 10, 1)))

    assert (fill.execution.side, fill.execution.price) == ("SLD", 101.00)


def test_large_order_fills_over_several_steps_with_consistent_cum_and_avg(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.market.volumes["AAPL"] = 400  # 25% of a 400-share bar: at most 100 per step
    asks = [100.01, 100.03, 100.02, 100.05]
    sim.market.set_quote("AAPL", 99.99, asks[0])
    got = fills(sim.exchange.place(order(1, quantity=350, limit=100.10)))
    for i, ask in enumerate(asks[1:], start=1):
        sim.market.set_quote("AAPL", ask - 0.02, ask)
        got += fills(sim.step(et(TUESDAY, 10, 0, i)))

    assert [f.execution.shares for f in got] == [100, 100, 100, 50]
    assert [f.execution.cum_qty for f in got] == [100, 200, 300, 350]
    assert [f.order.status for f in got] == [OrderStatus.SUBMITTED] * 3 + [OrderStatus.FILLED]
    running = 0.0
    for f in got:
        running += f.execution.shares * f.execution.price
        assert f.execution.avg_price == pytest.approx(running / f.execution.cum_qty)
        assert f.order.avg_fill_price == pytest.approx(f.execution.avg_price)
        assert f.order.filled == f.execution.cum_qty
    stored = sim.exchange.executions()
    assert [e.exec_id for e in stored] == [f.execution.exec_id for f in got]
    assert len({e.exec_id for e in stored}) == 4
    total_commission = sum(e.commission for e in stored)
    assert total_commission == pytest.approx(order_commission(350, running, sim.config))


def test_small_order_relative_to_bar_volume_fills_in_one_step(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.market.volumes["AAPL"] = 4_000  # cap 1,000 shares per step

    got = fills(sim.exchange.place(order(1, quantity=1_000, limit=100.05)))

    assert [f.execution.shares for f in got] == [1_000]


def test_tiny_bar_volume_still_fills_one_share_per_step(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.market.volumes["AAPL"] = 2  # floor(0.25 * 2) = 0 -> at least one share

    first = fills(sim.exchange.place(order(1, quantity=2, limit=100.05)))
    second = fills(sim.step(et(TUESDAY, 10, 0, 1)))

    assert [f.execution.shares for f in first + second] == [1, 1]
    assert second[0].order.status is OrderStatus.FILLED


def test_modifying_a_resting_order_to_a_marketable_price_fills_at_ask(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    (ack,) = sim.exchange.place(order(7, limit=99.00))

    events = sim.exchange.place(order(7, quantity=50, limit=100.05))

    update, fill = events
    assert isinstance(update, OrderUpdate) and isinstance(fill, FillEvent)
    assert update.order.perm_id == ack.order.perm_id  # type: ignore[union-attr]
    assert update.order.request.quantity == 50
    assert (fill.execution.shares, fill.execution.price) == (50, 100.01)


def test_halted_symbol_does_not_fill_until_resumed(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.market.set_halted("AAPL", True)

    events = sim.exchange.place(order(1, limit=100.05))
    assert [type(e) for e in events] == [OrderUpdate]
    assert sim.step(et(TUESDAY, 10, 0, 1)) == []
    sim.market.set_halted("AAPL", False)
    (fill,) = fills(sim.step(et(TUESDAY, 10, 0, 2)))

    assert fill.execution.price == 100.01


def test_ioc_remainder_is_cancelled_after_the_first_attempt(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.market.volumes["AAPL"] = 200  # 50 per step

    events = sim.exchange.place(order(1, quantity=80, limit=100.05, tif="IOC"))

    assert [f.execution.shares for f in fills(events)] == [50]
    final = updates(events)[-1].order
    assert final.status is OrderStatus.CANCELLED and final.filled == 50


def test_quotes_handed_in_are_matched_without_asking_the_market(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.place(order(1, limit=99.50))
    now = sim.clock.set(et(TUESDAY, 10, 0, 1))
    crossing = Quote("AAPL", now, 99.30, 99.40, 99.35, 100, 100, 100, 0)

    assert sim.exchange.on_market(now) == []
    (fill,) = fills(sim.exchange.on_market(now, {"AAPL": crossing}))

    assert fill.execution.price == 99.50


# --------------------------------------------------------------------------- sessions


def test_day_order_expires_at_the_close(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 15))
    sim.exchange.place(order(1, limit=90.00))

    assert sim.step(et(TUESDAY, 15, 59, 59)) == []
    (update,) = sim.step(et(TUESDAY, 16))

    assert isinstance(update, OrderUpdate)
    assert update.order.status is OrderStatus.CANCELLED
    assert "expired" in update.order.completed_status
    assert sim.exchange.open_orders() == []
    assert [o.perm_id for o in sim.exchange.completed_orders()] == [update.order.perm_id]


def test_day_order_expires_at_the_early_close_on_black_friday(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(BLACK_FRIDAY, 11))
    sim.exchange.place(order(1, limit=90.00))

    assert sim.step(et(BLACK_FRIDAY, 12, 59, 59)) == []
    (update,) = sim.step(et(BLACK_FRIDAY, 13))

    assert update.order.status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_day_order_expires_even_if_the_first_step_after_the_close_is_late(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 15))
    sim.exchange.place(order(1, limit=90.00))

    (update,) = sim.step(et(TUESDAY + timedelta(days=1), 9, 45))

    assert update.order.status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_gtc_order_survives_the_close_and_fills_next_session(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 15))
    sim.exchange.place(order(1, limit=99.00, tif="GTC"))

    assert sim.step(et(TUESDAY, 16, 30)) == []
    sim.market.set_quote("AAPL", 98.80, 98.90)
    assert sim.step(et(TUESDAY + timedelta(days=1), 8)) == []  # pre-market, not outside_rth
    (fill,) = fills(sim.step(et(TUESDAY + timedelta(days=1), 9, 30)))

    assert fill.execution.price == 99.00


def test_order_before_the_open_waits_presubmitted_then_fills_at_the_open(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 8))

    (ack,) = sim.exchange.place(order(1, limit=100.05))
    assert ack.order.status is OrderStatus.PRE_SUBMITTED  # type: ignore[union-attr]
    assert sim.step(et(TUESDAY, 9, 29, 59)) == []
    events = sim.step(et(TUESDAY, 9, 30))

    update, fill = events
    assert isinstance(update, OrderUpdate) and update.order.status is OrderStatus.SUBMITTED
    assert isinstance(fill, FillEvent) and fill.execution.price == 100.01  # the touch
    assert fill.execution.time == et(TUESDAY, 9, 30)


def test_outside_rth_order_fills_in_the_premarket(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 7))

    events = sim.exchange.place(order(1, limit=100.05, outside_rth=True))

    assert updates(events)[0].order.status is OrderStatus.SUBMITTED
    assert [f.execution.price for f in fills(events)] == [100.01]


def test_outside_rth_order_before_4am_activates_at_4am(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 3))
    (ack,) = sim.exchange.place(order(1, limit=100.05, outside_rth=True))
    assert ack.order.status is OrderStatus.PRE_SUBMITTED  # type: ignore[union-attr]

    assert sim.step(et(TUESDAY, 3, 59)) == []
    assert len(fills(sim.step(et(TUESDAY, 4)))) == 1


def test_day_order_placed_after_the_close_works_the_next_session(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(FRIDAY, 17))
    (ack,) = sim.exchange.place(order(1, limit=100.05))
    assert ack.order.status is OrderStatus.PRE_SUBMITTED  # type: ignore[union-attr]

    assert sim.step(et(date(2025, 11, 22), 12)) == []  # Saturday
    assert len(fills(sim.step(et(MONDAY, 9, 30)))) == 1


def test_nothing_fills_after_the_close(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 16, 30))

    events = sim.exchange.place(order(1, limit=100.05, tif="GTC", outside_rth=True))

    assert [type(e) for e in events] == [OrderUpdate]
    assert events[0].order.status is OrderStatus.PRE_SUBMITTED  # type: ignore[union-attr]


# --------------------------------------------------------------------------- rejections


def test_unknown_symbol_is_rejected_with_200(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)

    rej = rejection(sim.exchange.place(order(1, symbol="NOPE")))

    assert (rej.code, rej.message) == (200, "No security definition has been found for the request")
    assert rej.order is not None and rej.order.status is OrderStatus.CANCELLED
    assert rej.order.perm_id > 0
    (done,) = sim.exchange.completed_orders()  # found by reconciliation after a crash
    assert done.perm_id == rej.order.perm_id and done.completed_status.startswith("Rejected")
    assert rejection(sim.exchange.place(order(1))).code == 103  # the id stays used


def test_price_off_the_tick_is_rejected_with_110(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)

    rej = rejection(sim.exchange.place(order(1, limit=100.005)))

    assert rej.code == 110
    assert rej.message == (
        "The price does not conform to the minimum price variation for this contract."
    )
    assert sim.exchange.open_orders() == []


def test_price_on_the_tick_despite_float_noise_is_accepted(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)

    events = sim.exchange.place(order(1, limit=0.1 + 0.2 + 99.0))  # 99.30000000000001

    assert [type(e) for e in events] == [OrderUpdate]


@pytest.mark.parametrize("quantity", [0, -5, 1.5])
def test_bad_quantity_is_rejected_with_201(tmp_path: Path, quantity: float) -> None:
    sim = make_sim(tmp_path)

    rej = rejection(sim.exchange.place(order(1, quantity=quantity)))

    assert rej.code == 201 and rej.message.startswith("Order rejected - reason: ")


def test_buy_beyond_buying_power_is_rejected_with_201(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, starting_cash=10_000.0)  # buying power 40,000

    rej = rejection(sim.exchange.place(order(1, quantity=401, limit=100.00)))
    ok = sim.exchange.place(order(2, quantity=399, limit=99.00))

    assert (rej.code, rej.message) == (201, "Order rejected - reason: insufficient buying power")
    assert updates(ok)[0].order.status is OrderStatus.SUBMITTED


def test_open_buy_orders_reserve_buying_power(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, starting_cash=10_000.0)
    sim.exchange.place(order(1, quantity=300, limit=99.00))  # 29,700 resting

    rej = rejection(sim.exchange.place(order(2, quantity=120, limit=99.00)))

    assert rej.code == 201


def test_selling_more_than_held_is_rejected_with_201(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1, 100)

    too_many = rejection(sim.exchange.place(order(2, Action.SELL, 101, 101.00)))
    sim.exchange.place(order(3, Action.SELL, 60, 101.00))  # rests, reserves 60
    over_reserved = rejection(sim.exchange.place(order(4, Action.SELL, 50, 101.00)))

    assert too_many.code == 201 and "short selling" in too_many.message
    assert over_reserved.code == 201
    assert [o.request.order_id for o in sim.exchange.open_orders()] == [3]


def test_injected_rejection_refuses_only_the_next_order(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.reject_next_order(201, "simulated margin check")

    rej = rejection(sim.exchange.place(order(1)))
    ok = sim.exchange.place(order(2))

    assert (rej.code, rej.message) == (201, "Order rejected - reason: simulated margin check")
    assert len(fills(ok)) == 1


def test_reusing_the_id_of_a_done_order_is_rejected_as_duplicate(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1)

    rej = rejection(sim.exchange.place(order(1, quantity=10)))

    assert rej.code == 103
    assert len(sim.exchange.executions()) == 1


# --------------------------------------------------------------------------- cancels


def test_cancel_of_a_live_order_reports_cancelled(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.place(order(1, limit=99.00))

    (update,) = sim.exchange.cancel(1, 1)

    assert isinstance(update, OrderUpdate) and update.order.status is OrderStatus.CANCELLED
    assert sim.exchange.open_orders() == []
    sim.market.set_quote("AAPL", 98.00, 98.01)
    assert sim.step(et(TUESDAY, 10, 1)) == []


def test_cancel_of_an_unknown_order_is_refused_with_10147(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)

    rej = rejection(sim.exchange.cancel(1, 42))

    assert (rej.code, rej.message) == (10147, "OrderId 42 that needs to be cancelled is not found.")


def test_cancel_of_a_filled_order_is_refused_with_10148(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 5)

    rej = rejection(sim.exchange.cancel(1, 5))

    assert rej.code == 10148
    assert rej.message == (
        "OrderId 5 that needs to be cancelled cannot be cancelled, state: Filled."
    )


def test_global_cancel_cancels_every_clients_live_orders(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.place(order(1, limit=99.00, client_id=1))
    sim.exchange.place(order(1, limit=98.00, client_id=2))

    events = sim.exchange.global_cancel()

    assert [e.order.status for e in updates(events)] == [OrderStatus.CANCELLED] * 2
    assert sim.exchange.open_orders() == []


def test_two_clients_with_the_same_order_id_have_distinct_orders(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    (a,) = sim.exchange.place(order(1, limit=99.00, client_id=11))
    (b,) = sim.exchange.place(order(1, limit=98.00, client_id=22))
    assert a.order.perm_id != b.order.perm_id  # type: ignore[union-attr]

    sim.exchange.cancel(11, 1)

    (left,) = sim.exchange.open_orders()
    assert (left.request.client_id, left.request.limit_price) == (22, 98.00)
    assert sim.exchange.open_orders(11) == []
    assert rejection(sim.exchange.cancel(33, 1)).code == 10147


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("shares", "price", "expected"),
    [
        (100, 50.0, 1.00),  # 0.50 per share -> the $1 minimum
        (1_000, 50.0, 5.00),  # 0.005 per share
        (300, 0.20, 0.60),  # the 1% cap of a $60 trade wins over the minimum
        (10_000, 0.30, 30.00),  # 50.00 per share capped at 1% of $3,000
    ],
)
def test_commission_model(shares: float, price: float, expected: float) -> None:
    assert order_commission(shares, shares * price, ExchangeConfig()) == pytest.approx(expected)


def test_fill_commission_follows_the_config(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)

    small = buy_position(sim, 1, 100).execution
    large = buy_position(sim, 2, 1_000).execution

    assert small.commission == pytest.approx(1.00)
    assert large.commission == pytest.approx(5.00)


def test_closing_fill_reports_realized_pnl_net_of_both_commissions(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    opening = buy_position(sim, 1, 100).execution
    sim.market.set_quote("AAPL", 101.00, 101.02)

    (close,) = fills(sim.exchange.place(order(2, Action.SELL, 100, None)))

    cost = 100 * opening.price + opening.commission
    expected = 100 * 101.00 - close.execution.commission - cost
    assert close.execution.realized_pnl == pytest.approx(expected)
    assert sim.store.cash() == pytest.approx(1_000_000 + expected)
    (flat,) = sim.store.positions(include_flat=True)
    assert flat.quantity == 0 and flat.realized_pnl == pytest.approx(expected)
    assert sim.exchange.snapshot().realized_pnl == pytest.approx(expected)


def test_partial_close_keeps_avg_cost_and_realizes_the_closed_part(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1, 200)
    avg = sim.exchange.positions()[0].avg_cost
    sim.market.set_quote("AAPL", 102.00, 102.02)

    (close,) = fills(sim.exchange.place(order(2, Action.SELL, 50, None)))

    (pos,) = sim.exchange.positions()
    assert pos.quantity == 150 and pos.avg_cost == pytest.approx(avg)
    expected = 50 * (102.00 - avg) - close.execution.commission
    assert close.execution.realized_pnl == pytest.approx(expected)


def test_snapshot_marks_positions_at_last_price(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1, 100)
    sim.market.set_quote("AAPL", 100.40, 100.60, last=100.50)
    cash = sim.store.cash()
    avg = sim.exchange.positions()[0].avg_cost

    snap = sim.exchange.snapshot()

    value = 100 * 100.50
    assert snap.cash == pytest.approx(cash)
    assert snap.net_liquidation == pytest.approx(cash + value)
    assert snap.gross_position_value == pytest.approx(value)
    assert snap.unrealized_pnl == pytest.approx(100 * (100.50 - avg))
    assert snap.excess_liquidity == pytest.approx(cash + value - 0.25 * value)
    assert snap.buying_power == pytest.approx(4 * snap.excess_liquidity)
    assert snap.account == "DU1234567"


def test_snapshot_after_the_close_marks_at_the_last_seen_price(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 15, 59))
    buy_position(sim, 1, 100)
    sim.market.set_quote("AAPL", 100.70, 100.90, last=100.80)
    sim.exchange.snapshot()
    sim.market.set_quote("AAPL", 1.0, 1.02, last=1.01)  # no quotes after 16:00 anyway

    sim.clock.set(et(TUESDAY, 17))
    snap = sim.exchange.snapshot()

    assert snap.gross_position_value == pytest.approx(100 * 100.80)


# --------------------------------------------------------------------------- restart and ids


def test_restart_keeps_orders_positions_cash_and_resumes_matching(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1, 100)
    (ack,) = sim.exchange.place(order(2, limit=99.00, ref="entry-2"))
    cash = sim.store.cash()
    positions = sim.exchange.positions()

    sim = sim.restart()

    (live,) = sim.exchange.open_orders()
    assert live.perm_id == ack.order.perm_id  # type: ignore[union-attr]
    assert live.request.order_ref == "entry-2" and live.status is OrderStatus.SUBMITTED
    assert sim.exchange.positions() == positions
    assert sim.store.cash() == cash
    assert [o.request.order_id for o in sim.exchange.completed_orders()] == [1]
    sim.market.set_quote("AAPL", 98.90, 98.95)
    (fill,) = fills(sim.step(et(TUESDAY, 10, 5)))
    assert fill.execution.price == 99.00 and fill.order.perm_id == live.perm_id
    assert sim.exchange.positions()[0].quantity == 200
    (new,) = sim.exchange.place(order(3, limit=98.00))
    assert new.order.perm_id > live.perm_id  # type: ignore[union-attr]


def test_restart_keeps_partial_fill_commission_per_order(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.market.volumes["AAPL"] = 400  # 100 per step
    sim.exchange.place(order(1, quantity=300, limit=100.05))  # 100 filled, $1 minimum charged

    sim = sim.restart()
    sim.step(et(TUESDAY, 10, 0, 1))
    sim.step(et(TUESDAY, 10, 0, 2))

    stored = sim.exchange.executions()
    assert sum(e.shares for e in stored) == 300
    value = sum(e.shares * e.price for e in stored)
    assert sum(e.commission for e in stored) == pytest.approx(
        order_commission(300, value, sim.config)
    )


def test_restart_keeps_day_expiry(tmp_path: Path) -> None:
    sim = make_sim(tmp_path, at=et(TUESDAY, 15))
    sim.exchange.place(order(1, limit=90.00))

    sim = sim.restart()

    (update,) = sim.step(et(TUESDAY, 16))
    assert update.order.status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_next_valid_id_exceeds_every_id_the_client_used(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.place(order(5, limit=99.00))
    sim.exchange.place(order(9, symbol="NOPE"))  # rejected ids count as used too
    sim.exchange.place(order(3, limit=99.00, client_id=2))

    assert sim.exchange.next_valid_id(1) == 10
    assert sim.exchange.next_valid_id(2) == 4
    assert sim.exchange.next_valid_id(77) == 1
    assert sim.restart().exchange.next_valid_id(1) == 10


def test_rolled_back_next_valid_id_leads_to_duplicate_id_rejections(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1)
    buy_position(sim, 2)

    sim.exchange.roll_back_next_valid_id(1, to=1)
    sim = sim.restart()

    assert sim.exchange.next_valid_id(1) == 1
    assert rejection(sim.exchange.place(order(1))).code == 103
    assert sim.exchange.next_valid_id(1) == 2


# --------------------------------------------------------------------------- faults


def test_withheld_acknowledgement_stays_pending_then_releases_and_fills(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    assert sim.exchange.withhold_acknowledgements(True) == []

    assert sim.exchange.place(order(1, limit=100.05)) == []
    assert sim.step(et(TUESDAY, 10, 0, 1)) == []
    assert sim.exchange.open_orders() == []
    (pending,) = sim.exchange.open_orders(include_pending=True)
    assert pending.status is OrderStatus.PENDING_SUBMIT and pending.perm_id > 0
    events = sim.exchange.withhold_acknowledgements(False)

    update, fill = events
    assert isinstance(update, OrderUpdate) and update.order.status is OrderStatus.SUBMITTED
    assert isinstance(fill, FillEvent) and fill.order.perm_id == pending.perm_id
    assert fill.order.status is OrderStatus.FILLED


def test_withheld_order_left_by_a_restart_is_released_on_the_next_step(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.withhold_acknowledgements(True)
    sim.exchange.place(order(1, limit=99.00))

    sim = sim.restart()
    events = sim.step(et(TUESDAY, 10, 1))

    assert [e.order.status for e in updates(events)] == [OrderStatus.SUBMITTED]
    assert sim.exchange.open_orders()[0].request.order_id == 1


# --------------------------------------------------------------------------- queries


def test_executions_filter_by_client_and_time(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    sim.exchange.place(order(1, quantity=10, client_id=1))
    sim.clock.set(et(TUESDAY, 11))
    sim.exchange.place(order(1, quantity=10, client_id=2))

    assert [e.client_id for e in sim.exchange.executions()] == [1, 2]
    assert [e.client_id for e in sim.exchange.executions(client_id=0)] == [1, 2]
    assert [e.client_id for e in sim.exchange.executions(client_id=2)] == [2]
    assert [e.client_id for e in sim.exchange.executions(since=et(TUESDAY, 10, 30))] == [2]


def test_completed_orders_cover_the_last_24_hours_of_market_time(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    buy_position(sim, 1, 10)

    sim.clock.set(et(TUESDAY + timedelta(days=1), 9, 59))
    assert [o.request.order_id for o in sim.exchange.completed_orders()] == [1]
    sim.clock.set(et(TUESDAY + timedelta(days=1), 10, 1))
    assert sim.exchange.completed_orders() == []


def test_event_orders_are_snapshots_not_live_objects(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    (ack,) = sim.exchange.place(order(1, limit=99.00))

    sim.exchange.cancel(1, 1)

    assert ack.order.status is OrderStatus.SUBMITTED  # type: ignore[union-attr]


def test_on_market_with_many_resting_orders_reads_no_sqlite(tmp_path: Path) -> None:
    sim = make_sim(tmp_path)
    for i in range(1, 21):
        sim.exchange.place(order(i, quantity=1, limit=50.00 + i / 100))
    calls: list[str] = []
    sim.store._conn.set_trace_callback(calls.append)

    for s in range(1, 50):
        assert sim.step(et(TUESDAY, 10, 0, s)) == []

    assert calls == []
    assert len(sim.exchange.open_orders()) == 20
