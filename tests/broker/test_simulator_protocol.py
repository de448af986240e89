"""The real client libraries against the simulator subprocess: sessions, contracts, data.

Connection tests run for both ib_async and ib_insync; the market data, scanner and
account tests use ib_async only (the wire layouts are checked for both libraries in
test_simulator_codec.py).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

ET = ZoneInfo("America/New_York")
ACCOUNT = "DU1234567"


def _error_codes(ib: Any) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, *rest: codes.append(code)
    return codes


# --------------------------------------------------------------------------- sessions


def test_connect_reports_paper_account_and_version_176(sim, client_lib, connect) -> None:
    started = time.monotonic()
    ib = connect(client_lib, sim.port, 11, timeout=10)
    # Every startup request got its end marker: a missing one costs the full timeout.
    assert time.monotonic() - started < 5
    assert ib.isConnected()
    assert ib.managedAccounts() == [ACCOUNT]
    assert ib.client.serverVersion() == 176
    assert ib.reqCurrentTime().date() == date(2025, 11, 26)


def test_readonly_connect_synchronises_account(sim, client_lib, connect) -> None:
    ib = connect(client_lib, sim.port, 12, readonly=True)
    assert ib.isConnected()
    tags = {v.tag for v in ib.accountValues()}
    assert {"NetLiquidation", "ExcessLiquidity", "BuyingPower"} <= tags


def test_duplicate_client_id_is_refused_while_first_stays_connected(
    sim, client_lib, connect, raw_client
) -> None:
    first = connect(client_lib, sim.port, 13)
    raw = raw_client(sim.port, 13)
    assert raw.wait_error(326)[2] == "-1"
    assert raw.wait_closed()
    with pytest.raises((TimeoutError, ConnectionError, OSError)):
        connect(client_lib, sim.port, 13, timeout=2)
    assert first.isConnected()
    assert first.reqCurrentTime().year == 2025
    assert 13 in sim.control.status()["clients"]


def test_client_id_is_free_again_after_disconnect(sim, client_lib, connect, wait_until) -> None:
    ib = connect(client_lib, sim.port, 14)
    ib.disconnect()
    wait_until(ib, lambda: 14 not in sim.control.status()["clients"], what="clientId freed")
    again = connect(client_lib, sim.port, 14)
    assert again.isConnected()


# --------------------------------------------------------------------------- contracts


def test_qualify_fills_con_id_and_primary_exchange(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 21)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    assert ib.qualifyContracts(aapl) == [aapl]
    assert (aapl.conId, aapl.primaryExchange, aapl.exchange) == (265598, "NASDAQ", "SMART")
    by_id = ib.reqContractDetails(ib_lib.Contract(conId=265598))
    assert [d.contract.symbol for d in by_id] == ["AAPL"]
    assert by_id[0].minTick == 0.01


def test_unknown_symbol_is_not_qualified_and_gets_error_200(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 22)
    codes = _error_codes(ib)
    assert ib.qualifyContracts(ib_lib.Stock("NOSUCH", "SMART", "USD")) == [None]
    assert 200 in codes
    assert ib.reqContractDetails(ib_lib.Stock("NOSUCH", "SMART", "USD")) == []


# --------------------------------------------------------------------------- history


def test_minute_bars_without_rth_start_in_the_premarket_and_end_before_now(
    sim, ib_lib, connect
) -> None:
    ib = connect(ib_lib, sim.port, 31)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    bars = ib.reqHistoricalData(aapl, "", "1 D", "1 min", "TRADES", useRTH=False, formatDate=1)
    now = ib.reqCurrentTime()
    first, last = bars[0].date, bars[-1].date
    assert first.astimezone(ET).replace(tzinfo=None) == datetime(2025, 11, 26, 4, 0)
    assert last + timedelta(minutes=1) <= now
    assert now - last < timedelta(minutes=3)
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
    assert [b.date for b in bars] == sorted({b.date for b in bars})


def test_minute_bars_with_rth_start_at_the_open(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 32)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    bars = ib.reqHistoricalData(aapl, "", "1 D", "1 min", "TRADES", useRTH=True, formatDate=2)
    assert bars[0].date == datetime(2025, 11, 26, 14, 30, tzinfo=UTC)  # 09:30 ET
    hour = ib.reqHistoricalData(aapl, "", "3600 S", "5 mins", "TRADES", useRTH=False)
    assert hour and all(b.date.minute % 5 == 0 for b in hour)
    assert hour[-1].date - hour[0].date <= timedelta(minutes=60)


def test_two_days_of_minute_bars_span_two_sessions(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 33)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    bars = ib.reqHistoricalData(aapl, "", "2 D", "1 min", "TRADES", useRTH=True)
    days = sorted({b.date.astimezone(ET).date() for b in bars})
    assert days == [date(2025, 11, 25), date(2025, 11, 26)]
    assert sum(1 for b in bars if b.date.astimezone(ET).date() == date(2025, 11, 25)) == 390


def test_daily_bars_cover_sixty_sessions_and_a_year(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 34)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    sixty = ib.reqHistoricalData(aapl, "", "60 D", "1 day", "TRADES", useRTH=True)
    quarter = ib.reqHistoricalData(aapl, "", "3 M", "1 day", "TRADES", useRTH=True, formatDate=2)
    year = ib.reqHistoricalData(aapl, "", "1 Y", "1 day", "TRADES", useRTH=True)
    assert len(sixty) == 60
    assert len(quarter) >= 60
    assert len(year) >= 250
    assert all(isinstance(b.date, date) for b in sixty)
    assert sixty[-1].date == date(2025, 11, 26)  # today so far
    assert sixty[-2].date == date(2025, 11, 25)
    assert date(2025, 11, 27) not in {b.date for b in year}  # Thanksgiving, and the future


def test_bars_never_come_from_the_future(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 35)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    future = datetime(2025, 11, 28, 12, 0, tzinfo=UTC)
    bars = ib.reqHistoricalData(aapl, future, "1 D", "1 min", "TRADES", useRTH=False)
    assert bars and bars[-1].date < ib.reqCurrentTime()


def test_keep_up_to_date_pushes_the_forming_bar(sim, ib_lib, connect, wait_until) -> None:
    ib = connect(ib_lib, sim.port, 36)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    bars = ib.reqHistoricalData(
        aapl, "", "1800 S", "1 min", "TRADES", useRTH=True, keepUpToDate=True
    )
    count = len(bars)
    updates: list[Any] = []
    bars.updateEvent += lambda bar_list, has_new_bar: updates.append(bar_list[-1])
    wait_until(ib, lambda: len(updates) >= 2, timeout=15, what="historicalDataUpdate")
    assert len(bars) >= count
    assert bars[-1].date >= updates[0].date
    ib.cancelHistoricalData(bars)


# --------------------------------------------------------------------------- market data


def test_streaming_ticks_update_a_ticker(sim, ib_lib, connect, wait_until) -> None:
    ib = connect(ib_lib, sim.port, 41)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    ib.qualifyContracts(aapl)
    ticker = ib.reqMktData(aapl)
    wait_until(ib, lambda: ticker.bid > 0 and ticker.ask > 0 and ticker.last > 0, what="quote")
    assert ticker.marketDataType == 1
    assert ticker.bid <= ticker.ask
    assert ticker.bidSize > 0 and ticker.askSize > 0 and ticker.volume > 0
    assert ticker.close > 0 and ticker.minTick == 0.01
    seen = {(ticker.bid, ticker.ask, ticker.last, ticker.volume)}
    wait_until(
        ib,
        lambda: seen.add((ticker.bid, ticker.ask, ticker.last, ticker.volume)) or len(seen) >= 3,
        timeout=15,
        what="ticker updates",
    )
    ib.cancelMktData(aapl)


def test_delayed_market_data_fills_the_ticker_with_type_3(sim, ib_lib, connect, wait_until) -> None:
    ib = connect(ib_lib, sim.port, 42)
    msft = ib_lib.Stock("MSFT", "SMART", "USD")
    ib.qualifyContracts(msft)
    ib.reqMarketDataType(3)
    ticker = ib.reqMktData(msft)
    wait_until(ib, lambda: ticker.last > 0 and ticker.bid > 0, what="delayed quote")
    assert ticker.marketDataType == 3
    assert ticker.volume > 0 and ticker.close > 0


def test_snapshot_request_ends_with_tick_snapshot_end(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 43)
    aapl, msft = ib_lib.Stock("AAPL", "SMART", "USD"), ib_lib.Stock("MSFT", "SMART", "USD")
    ib.qualifyContracts(aapl, msft)
    tickers = ib.reqTickers(aapl, msft)
    assert [t.contract.symbol for t in tickers] == ["AAPL", "MSFT"]
    assert all(t.bid > 0 and t.ask > 0 and t.last > 0 for t in tickers)


def test_real_time_bars_arrive_every_five_seconds(sim, ib_lib, connect, wait_until) -> None:
    ib = connect(ib_lib, sim.port, 44)
    aapl = ib_lib.Stock("AAPL", "SMART", "USD")
    ib.qualifyContracts(aapl)
    bars = ib.reqRealTimeBars(aapl, 5, "TRADES", False)
    wait_until(ib, lambda: len(bars) >= 2, timeout=20, what="two real-time bars")
    assert bars[1].time - bars[0].time == timedelta(seconds=5)
    assert all(b.low <= b.open_ <= b.high and b.low <= b.close <= b.high for b in bars)
    ib.cancelRealTimeBars(bars)


def test_scanner_returns_ranked_gainers_and_most_active(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 45)
    assert "TOP_PERC_GAIN" in ib.reqScannerParameters()
    gainers = ib.reqScannerData(
        ib_lib.ScannerSubscription(
            instrument="STK", locationCode="STK.US.MAJOR", scanCode="TOP_PERC_GAIN",
            numberOfRows=10,
        )
    )  # fmt: skip
    assert [row.rank for row in gainers] == list(range(10))
    symbols = [row.contractDetails.contract.symbol for row in gainers]
    assert len(set(symbols)) == 10
    assert all(row.contractDetails.contract.conId > 0 for row in gainers)
    active = ib.reqScannerData(
        ib_lib.ScannerSubscription(
            instrument="STK", locationCode="STK.US.MAJOR", scanCode="MOST_ACTIVE", numberOfRows=3
        )
    )
    contracts = [row.contractDetails.contract for row in active]
    # Prices and volumes move on between the scan and these snapshots: allow a little.
    volumes = [t.volume for t in ib.reqTickers(*contracts)]
    assert len(volumes) == 3 and volumes[0] >= 0.9 * volumes[-1] > 0
    top, tenth = ib.reqTickers(
        gainers[0].contractDetails.contract, gainers[-1].contractDetails.contract
    )
    assert top.last / top.close >= tenth.last / tenth.close - 0.005


# --------------------------------------------------------------------------- account


def test_account_values_and_summary_are_numeric_usd(sim, ib_lib, connect) -> None:
    ib = connect(ib_lib, sim.port, 51)
    values = {v.tag: v for v in ib.accountValues() if v.currency == "USD"}
    tags = ("NetLiquidation", "ExcessLiquidity", "BuyingPower", "TotalCashValue")
    tags += ("AvailableFunds", "GrossPositionValue", "UnrealizedPnL", "RealizedPnL")
    for tag in tags:
        assert math.isfinite(float(values[tag].value)), tag
        assert values[tag].account == ACCOUNT
    assert float(values["NetLiquidation"].value) > 0
    assert float(values["BuyingPower"].value) >= float(values["ExcessLiquidity"].value)
    summary = {v.tag: v.value for v in ib.accountSummary()}
    assert float(summary["NetLiquidation"]) > 0 and "BuyingPower" in summary
