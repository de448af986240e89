"""Bars in: the simulator's CSV format replays exactly what the synthetic market made."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.config import config_from_settings
from backtest.data import (
    DataError,
    MarketSource,
    scanner_watchlist,
    symbol_day_from_frame,
)
from backtest.engine import BacktestResult, prepare_day, run_backtest
from broker.simulator.market_data import CsvMarket, SyntheticMarket, write_csv
from broker.simulator.scanner import top_gainers
from config.settings import load_settings
from market.calendar import session, trading_days_back

DAYS = trading_days_back(date(2025, 11, 7), 3)


def test_csv_replay_of_synthetic_bars_gives_the_same_backtest(tmp_path: Path) -> None:
    synthetic = SyntheticMarket(seed=7, gap_share=0.3)
    for symbol in ("ACHR", "AMC"):
        write_csv(synthetic, symbol, DAYS, tmp_path)
    settings = load_settings(environ={"ATR_MIN_PCT": "0.1"}, env_file=None)

    def run(source: MarketSource) -> BacktestResult:
        days = [prepare_day(session(d), source.day(session(d), ("ACHR", "AMC"))) for d in DAYS]
        return run_backtest(days, config_from_settings(settings))

    from_csv, from_synthetic = run(MarketSource(CsvMarket(tmp_path))), run(MarketSource(synthetic))
    assert len(from_synthetic.trades) > 0
    assert from_csv.trades == from_synthetic.trades


def test_symbol_without_bars_that_day_is_left_out_of_the_watchlist(tmp_path: Path) -> None:
    write_csv(SyntheticMarket(seed=7), "AMC", DAYS[:1], tmp_path)
    source = MarketSource(CsvMarket(tmp_path))
    assert [b.symbol for b in source.day(session(DAYS[0]), ["AMC"])] == ["AMC"]
    assert source.day(session(DAYS[1]), ["AMC"]) == []


def frame(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    index = pd.DatetimeIndex([pd.Timestamp(t, tz="America/New_York") for t, _, _ in rows])
    prices = np.array([p for _, p, _ in rows])
    return pd.DataFrame(
        {"open": prices, "high": prices, "low": prices, "close": prices,
         "volume": [v for _, _, v in rows]},
        index=index,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("2025-06-02 09:31", 10.0, 1), ("2025-06-02 09:30", 10.0, 1)], "strictly increase"),
        ([("2025-06-02 09:30", 0.0, 1)], "positive finite"),
        ([("2025-06-02 16:00", 10.0, 1)], "before the close"),
        ([("2025-06-02 03:59", 10.0, 1)], "from 04:00"),
    ],
)
def test_bad_bars_are_refused_naming_the_symbol_and_day(
    rows: list[tuple[str, float, float]], message: str
) -> None:
    with pytest.raises(DataError, match=f"XYZ 2025-06-02: .*{message}"):
        symbol_day_from_frame("XYZ", session(date(2025, 6, 2)), frame(rows), 10.0)


def test_watchlist_size_takes_the_scanner_top_gainers_at_0730() -> None:
    market = SyntheticMarket(seed=7)
    day = DAYS[0]
    picked = scanner_watchlist(market, 5)(day)
    assert len(picked) == 5
    at = session(day).premarket_start.replace(hour=7, minute=30)
    assert picked == top_gainers(market, at, n=5)
