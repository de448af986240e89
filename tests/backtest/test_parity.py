"""Parity: fill records from backtest trades and from the live fills table, compared, explained.

The end-to-end run (``supervisor.py --date D --speed N``, then ``scripts/backtest.py
--parity-db``) takes minutes of real time, so it is not part of this suite; these tests
cover the comparison it relies on, and the CLI's parity mode on a database written the
way the live processes write it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from backtest_bars import GAPPER_PRIOR, MONDAY, DayBars, at, run_one, trading_config

from backtest.data import SymbolDay
from backtest.engine import Trade
from backtest.parity import (
    BUY,
    SELL,
    FillKey,
    FillRecord,
    backtest_fills,
    compare,
    live_fills,
    read_live_day,
)
from config.settings import SPECS
from shared_state.models import WatchlistItem
from shared_state.store import Store

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FakeFill:
    symbol: str
    side: str
    price: float
    time: datetime
    order_ref: str | None


def rec(symbol: str, side: str, hh: int, mm: int, price: float = 100.0, ss: int = 0) -> FillRecord:
    when = at(MONDAY, hh, mm) + timedelta(seconds=ss)
    return FillRecord(FillKey(symbol, side, at(MONDAY, hh, mm)), price, when)


def test_backtest_trade_becomes_a_buy_and_a_sell_at_their_minutes_and_prices() -> None:
    bars = DayBars(MONDAY).wick(10, 0, high=102.0)
    result = run_one([bars.symbol_day("GAP")], trading_config())

    assert backtest_fills(result.trades) == [
        rec("GAP", BUY, 9, 30, 100.0),
        rec("GAP", SELL, 10, 0, 101.8),
    ]
    assert backtest_fills(result.trades, MONDAY.day + timedelta(days=1)) == []


def test_partial_fills_of_one_order_count_once_at_the_first_execution() -> None:
    fills = [
        FakeFill("GAP", "BUY", 100.01, at(MONDAY, 9, 30) + timedelta(seconds=58), "e1"),
        FakeFill("GAP", "BUY", 100.05, at(MONDAY, 9, 31) + timedelta(seconds=3), "e1"),
        FakeFill("GAP", "SELL", 101.8, at(MONDAY, 10, 0) + timedelta(seconds=12), "x1"),
        FakeFill("GAP", "BUY", 99.0, at(MONDAY, 9, 30) - timedelta(days=3), "old"),  # other day
    ]
    assert live_fills(fills, MONDAY.day) == [
        rec("GAP", BUY, 9, 30, 100.01, ss=58),
        rec("GAP", SELL, 10, 0, 101.8, ss=12),
    ]


def test_same_keys_agree_and_a_one_minute_lag_is_a_shift() -> None:
    ours = [rec("GAP", BUY, 9, 30), rec("GAP", SELL, 10, 0)]
    live = [rec("GAP", BUY, 9, 30, ss=4), rec("GAP", SELL, 10, 1, ss=2)]

    report = compare(ours, live)

    assert report.agrees
    assert report.matched == (ours[0].key,)
    assert report.shifted == ((ours[1].key, live[1].key),)
    assert "F1/F7/F8" in report.explain()[0]


def test_exit_after_a_buy_filled_at_another_price_is_rule_f7_and_what_follows_too() -> None:
    ours = [rec("GAP", BUY, 9, 30, 100.0), rec("GAP", SELL, 9, 45), rec("GAP", BUY, 9, 50)]
    live = [rec("GAP", BUY, 9, 30, 100.2, ss=12), rec("GAP", SELL, 9, 31), rec("GAP", BUY, 9, 35)]

    report = compare(ours, live)

    assert report.agrees
    first, *rest = report.differences
    assert (first.where, first.record.key, first.rule) == ("live", live[1].key, "F7")
    assert "filled at 100.2 at 09:30:12" in first.why
    assert {d.rule for d in rest} == {"cascade"} and len(rest) == 3


def test_backtest_exit_the_live_day_makes_later_is_the_reaction_time_rule() -> None:
    ours = [rec("GAP", BUY, 9, 30), rec("GAP", SELL, 10, 0)]
    live = [rec("GAP", BUY, 9, 30), rec("GAP", SELL, 10, 4)]

    report = compare(ours, live)

    assert report.agrees
    assert [d.rule for d in report.differences] == ["F7", "cascade"]


def test_entry_at_another_minute_is_unexplained_and_so_is_what_follows() -> None:
    ours = [rec("GAP", BUY, 9, 30), rec("GAP", SELL, 10, 0), rec("AAA", BUY, 9, 30)]
    live = [rec("GAP", BUY, 9, 30), rec("GAP", SELL, 10, 0), rec("AAA", BUY, 9, 40)]

    report = compare(ours, live)

    assert not report.agrees
    assert [str(d.record.key) for d in report.unexplained] == [
        "BUY AAA 2025-06-02 09:30",
        "BUY AAA 2025-06-02 09:40",
    ]
    assert "unexplained" in report.explain()[-1]


def write_live_day(db: Path, trades: list[Trade], watchlist: list[str], shift_s: int) -> None:
    """Record a day the way the live processes do: watchlist, capital, executions."""
    store = Store(db, process="test")
    rows = [
        WatchlistItem(symbol, rank, 1.0, "test", "rules", validated=True)
        for rank, symbol in enumerate(watchlist, start=1)
    ]
    store.replace_watchlist(MONDAY.day, rows)
    store.ensure_daily_state(MONDAY.day, 100_000.0)
    for n, t in enumerate(trades):
        for side, price, when in (
            (BUY, t.entry_price, t.entry_time),
            (SELL, t.exit_price, t.exit_time),
        ):
            store.record_fill(
                f"x{n}{side}", order_ref=f"{side}{n}", symbol=t.symbol, side=side,
                quantity=t.quantity, price=price, commission=1.0,
                time=when + timedelta(seconds=shift_s),
            )  # fmt: skip
    store.close()


def test_live_day_is_read_back_from_the_shared_state_database(tmp_path: Path) -> None:
    result = run_one([DayBars(MONDAY).wick(10, 0, low=99.0).symbol_day("GAP")], trading_config())
    db = tmp_path / "trading_state.db"
    write_live_day(db, list(result.trades), ["GAP"], shift_s=7)

    live = read_live_day(db, MONDAY.day)

    assert (live.symbols, live.starting_capital) == (("GAP",), 100_000.0)
    assert len(live.fills) == 4
    assert compare(backtest_fills(result.trades, MONDAY.day), live.fills).agrees


def test_cli_parity_mode_agrees_on_a_day_recorded_from_the_same_bars(tmp_path: Path) -> None:
    """The CLI backtests the DB's watchlist on CSV bars and compares: exit 0, or 1."""
    symbol_day = DayBars(MONDAY).wick(10, 0, high=102.0).symbol_day("GAP")
    write_bar_csv(tmp_path / "bars", symbol_day)
    result = run_one([symbol_day], trading_config())
    agreeing, differing = tmp_path / "same.db", tmp_path / "other.db"
    write_live_day(agreeing, list(result.trades), ["GAP"], shift_s=3)
    write_live_day(differing, list(result.trades), ["GAP"], shift_s=-3600)

    runs = [cli_parity(db, tmp_path / "bars") for db in (agreeing, differing)]

    assert [r.returncode for r in runs] == [0, 1], [r.stderr for r in runs]
    assert json.loads(runs[0].stdout)["agrees"] is True
    assert json.loads(runs[1].stdout)["agrees"] is False


def write_bar_csv(folder: Path, symbol_day: SymbolDay) -> None:
    """Write the constructed bars as a CSV file, after a prior day closing at 94."""
    folder.mkdir(parents=True)
    prior = ",".join([repr(GAPPER_PRIOR)] * 4)
    lines = ["timestamp,open,high,low,close,volume", f"2025-05-30T15:59:00-04:00,{prior},100"]
    for k, minute in enumerate(symbol_day.minutes):
        ts = (MONDAY.premarket_start + timedelta(minutes=int(minute))).isoformat()
        prices = (symbol_day.open[k], symbol_day.high[k], symbol_day.low[k], symbol_day.close[k])
        lines.append(",".join([ts, *map(repr, map(float, prices)), "1000"]))
    (folder / f"{symbol_day.symbol}.csv").write_text("\n".join(lines) + "\n")


def cli_parity(db: Path, data: Path) -> subprocess.CompletedProcess:
    day = MONDAY.day.isoformat()
    settings = {spec.env for spec in SPECS}
    env = {k: v for k, v in os.environ.items() if k not in settings and k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "backtest.py"), "--start", day, "--end", day,
         "--parity-db", str(db), "--data", str(data), "--spread-bps", "0", "--json",
         "--no-progress", "--env-file", "/nonexistent/.env"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
