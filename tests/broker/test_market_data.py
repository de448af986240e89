"""The simulator's market: synthetic bars, quotes inside a minute, CSV replay, scanners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from broker.simulator.market_data import (
    CsvFormatError,
    CsvMarket,
    DayCharacter,
    SyntheticMarket,
    UnknownSymbolError,
    build_market,
    write_csv,
)
from broker.simulator.scanner import most_active, top_gainers
from broker.simulator.universe import UNIVERSE, by_symbol
from market.calendar import trading_days_back
from market.clock import ET

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2025, 11, 26)  # an ordinary Wednesday
HOLIDAY = date(2025, 11, 27)  # Thanksgiving
EARLY_CLOSE = date(2025, 11, 28)  # closes at 13:00
DST_MONDAY = date(2025, 3, 10)  # first session after the spring clock change


def at(day: date, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=ET)


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(seed=7)


# --------------------------------------------------------------------------- determinism

# Prints a fingerprint of bars, daily bars, quotes and prior closes; argv[1] = seed,
# argv[2] = "reverse" to make the same requests in the opposite order.
_FINGERPRINT = r"""
import hashlib, json, sys
from datetime import date, datetime
from broker.simulator.market_data import SyntheticMarket
from market.clock import ET

m = SyntheticMarket(seed=int(sys.argv[1]))
jobs = [(s, d) for s in ("MARA", "AAPL", "SPY")
        for d in (date(2025, 11, 26), date(2025, 11, 28), date(2025, 3, 10))]
if sys.argv[2] == "reverse":
    jobs.reverse()
out = {}
for s, d in jobs:
    moments = [datetime(d.year, d.month, d.day, h, mi, se, tzinfo=ET)
               for h, mi, se in ((4, 0, 0), (7, 31, 17), (9, 30, 5), (12, 59, 59))]
    text = repr((m.intraday_bars(s, d), m.daily_bars(s, d, 5), m.prior_close(s, d),
                 [m.quote_at(s, t) for t in moments]))
    out[f"{s} {d}"] = hashlib.sha256(text.encode()).hexdigest()
print(json.dumps(out, sort_keys=True))
"""


def _fingerprint(seed: int, order: str, extra_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra_env}
    done = subprocess.run(
        [sys.executable, "-c", _FINGERPRINT, str(seed), order],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_same_seed_gives_identical_bars_in_separate_processes_and_any_call_order() -> None:
    first = _fingerprint(7, "forward", {"PYTHONHASHSEED": "1"})
    second = _fingerprint(7, "reverse", {"PYTHONHASHSEED": "2"})
    other_seed = _fingerprint(8, "forward", {"PYTHONHASHSEED": "1"})

    assert first == second
    assert len(first) == 9
    assert all(first[key] != other_seed[key] for key in first)


def test_bars_do_not_depend_on_the_host_time_zone() -> None:
    new_york = _fingerprint(7, "forward", {"TZ": "America/New_York"})
    tokyo = _fingerprint(7, "forward", {"TZ": "Asia/Tokyo"})

    assert tokyo == new_york


# --------------------------------------------------------------------------- sessions


def test_ordinary_day_has_bars_from_four_am_to_the_close(market: SyntheticMarket) -> None:
    bars = market.intraday_bars("AAPL", DAY)

    assert len(bars) == (16 - 4) * 60
    assert bars[0].time == at(DAY, 4, 0)
    assert bars[-1].time == at(DAY, 15, 59)
    assert all(b.time - a.time == timedelta(minutes=1) for a, b in pairwise(bars))


def test_early_close_day_stops_at_one_pm(market: SyntheticMarket) -> None:
    bars = market.intraday_bars("TSLA", EARLY_CLOSE)

    assert bars[-1].time == at(EARLY_CLOSE, 12, 59)
    assert len(bars) == (13 - 4) * 60
    assert market.quote_at("TSLA", at(EARLY_CLOSE, 12, 59, 59)) is not None
    assert market.quote_at("TSLA", at(EARLY_CLOSE, 13, 0)) is None
    assert market.daily_bars("TSLA", EARLY_CLOSE, 1)[0].close == bars[-1].close


def test_holiday_has_no_bars_no_quotes_and_no_daily_bar(market: SyntheticMarket) -> None:
    assert market.intraday_bars("AAPL", HOLIDAY) == []
    assert market.quote_at("AAPL", at(HOLIDAY, 10, 0)) is None

    days = [bar.time.date() for bar in market.daily_bars("AAPL", EARLY_CLOSE, 3)]
    assert days == [date(2025, 11, 25), DAY, EARLY_CLOSE]


def test_no_quote_before_four_am_or_at_the_close(market: SyntheticMarket) -> None:
    assert market.quote_at("NVDA", at(DAY, 3, 59, 59)) is None
    assert market.quote_at("NVDA", at(DAY, 4, 0)) is not None
    assert market.quote_at("NVDA", at(DAY, 16, 0)) is None


def test_daylight_saving_day_still_opens_at_nine_thirty_new_york(market: SyntheticMarket) -> None:
    bars = market.intraday_bars("SPY", DST_MONDAY)

    assert bars[330].time == at(DST_MONDAY, 9, 30)
    assert bars[330].time.utcoffset() == timedelta(hours=-4)


# --------------------------------------------------------------------------- daily continuity


def test_prior_close_is_the_previous_sessions_last_bar_and_daily_close(
    market: SyntheticMarket,
) -> None:
    days = trading_days_back(EARLY_CLOSE, 25)
    for symbol in ("AAPL", "MARA", "KO"):
        daily = market.daily_bars(symbol, EARLY_CLOSE, 25)
        assert [bar.time.date() for bar in daily] == days
        for previous, bar in pairwise(daily):
            day = bar.time.date()
            intraday = market.intraday_bars(symbol, day)
            assert market.prior_close(symbol, day) == previous.close
            assert intraday[0].open == previous.close  # 04:00 starts where yesterday ended
            assert market.intraday_bars(symbol, previous.time.date())[-1].close == previous.close


def test_daily_bar_is_the_regular_session_with_the_whole_days_volume(
    market: SyntheticMarket,
) -> None:
    bars = market.intraday_bars("HOOD", DAY)
    regular = [b for b in bars if b.time >= at(DAY, 9, 30)]
    daily = market.daily_bars("HOOD", DAY, 1)[0]

    assert daily.time == at(DAY, 0, 0)
    assert daily.open == regular[0].open
    assert daily.high == max(b.high for b in regular)
    assert daily.low == min(b.low for b in regular)
    assert daily.close == regular[-1].close
    assert daily.volume == sum(b.volume for b in bars)


def test_daily_bars_count_back_over_weekends_and_holidays(market: SyntheticMarket) -> None:
    daily = market.daily_bars("AMD", date(2025, 11, 30), 60)  # a Sunday

    assert [bar.time.date() for bar in daily] == trading_days_back(EARLY_CLOSE, 60)


# --------------------------------------------------------------------------- gaps


def _gaps(market: SyntheticMarket, days: list[date]) -> list[float]:
    gaps = []
    for symbol in market.symbols():
        for day in days:
            open_bar = market.intraday_bars(symbol, day)[330]
            assert open_bar.time == at(day, 9, 30)
            gaps.append(open_bar.open / market.prior_close(symbol, day) - 1.0)
    return gaps


@pytest.mark.parametrize("gap_share", [0.1, 0.3])
def test_share_of_symbols_gapping_five_percent_matches_the_setting(gap_share: float) -> None:
    market = SyntheticMarket(seed=11, gap_share=gap_share)
    gaps = _gaps(market, trading_days_back(DAY, 4))
    big = [g for g in gaps if abs(g) >= 0.05]

    assert abs(len(big) / len(gaps) - gap_share) < 0.05
    assert sum(g > 0 for g in big) > 0.55 * len(big)  # mostly up
    assert sum(g < 0 for g in big) > 0  # some down
    assert all(abs(g) <= 0.02 + 1e-9 for g in gaps if abs(g) < 0.05)  # others stay modest


def test_gapper_premarket_drifts_from_prior_close_to_the_open(market: SyntheticMarket) -> None:
    day, symbol = next(
        (d, s)
        for d in trading_days_back(DAY, 10)
        for s in market.symbols()
        if (plan := market.day_plan(s, d)) is not None and plan.gapper and plan.gap_pct > 0
    )
    bars = market.intraday_bars(symbol, day)
    prior = market.prior_close(symbol, day)

    assert bars[0].open == prior
    assert bars[329].close == bars[330].open  # the open is where the pre-market ended
    assert bars[330].open / prior - 1.0 >= 0.05
    assert bars[60].close > prior  # most of the move is in by 05:00


def test_zero_gap_share_gives_no_five_percent_gaps() -> None:
    gaps = _gaps(SyntheticMarket(seed=3, gap_share=0.0), [DAY])

    assert max(abs(g) for g in gaps) <= 0.02 + 1e-9


# --------------------------------------------------------------------------- bar shape


def test_bars_are_on_the_tick_consistent_and_positive(market: SyntheticMarket) -> None:
    for symbol in market.symbols():
        for bar in market.intraday_bars(symbol, DAY):
            assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
            assert bar.low >= 0.01 and bar.volume >= 1
            for price in (bar.open, bar.high, bar.low, bar.close):
                assert abs(price * 100 - round(price * 100)) < 1e-6


def test_volume_is_u_shaped_and_thin_before_the_open(market: SyntheticMarket) -> None:
    first = last = midday = premarket = 0
    for symbol in market.symbols():
        bars = market.intraday_bars(symbol, DAY)
        regular = bars[330:]
        first += sum(b.volume for b in regular[:30])
        midday += sum(b.volume for b in regular[180:210])
        last += sum(b.volume for b in regular[-30:])
        premarket += sum(b.volume for b in bars[:330])

    assert first > 2 * midday
    assert last > 1.5 * midday
    assert premarket < 0.1 * (first + midday + last) * 13 / 3


def test_one_minute_moves_scale_with_the_symbols_daily_volatility(
    market: SyntheticMarket,
) -> None:
    def minute_spread(symbol: str) -> float:
        moves = []
        for day in trading_days_back(DAY, 5):
            closes = [b.close for b in market.intraday_bars(symbol, day)[330:]]
            moves += [abs(b / a - 1.0) for a, b in pairwise(closes)]
        return sum(moves) / len(moves)

    ko, opendoor = minute_spread("KO"), minute_spread("OPEN")  # 0.9% vs 9% a day
    assert 0.00003 < ko < 0.001
    assert opendoor > 4 * ko


def test_trend_days_mostly_close_in_their_direction(market: SyntheticMarket) -> None:
    outcomes: dict[DayCharacter, list[bool]] = {
        DayCharacter.TREND_UP: [],
        DayCharacter.TREND_DOWN: [],
    }
    for symbol in ("TSLA", "PLTR", "MARA", "COIN", "SOFI"):
        for day in trading_days_back(DAY, 40):
            plan = market.day_plan(symbol, day)
            assert plan is not None
            if plan.character in outcomes:
                outcomes[plan.character].append(plan.close > plan.open)

    assert sum(outcomes[DayCharacter.TREND_UP]) > 0.7 * len(outcomes[DayCharacter.TREND_UP])
    assert sum(outcomes[DayCharacter.TREND_DOWN]) < 0.3 * len(outcomes[DayCharacter.TREND_DOWN])


# --------------------------------------------------------------------------- quotes


@pytest.mark.parametrize(
    "symbol,hour,minute", [("AAPL", 10, 7), ("MARA", 9, 31), ("KO", 6, 15), ("TSLA", 15, 59)]
)
def test_quotes_inside_a_minute_touch_high_and_low_between_bid_and_ask(
    market: SyntheticMarket, symbol: str, hour: int, minute: int
) -> None:
    bar = next(b for b in market.intraday_bars(symbol, DAY) if b.time == at(DAY, hour, minute))
    quotes = [market.quote_at(symbol, at(DAY, hour, minute, s)) for s in range(60)]
    lasts = [q.last for q in quotes if q is not None]

    assert len(lasts) == 60
    assert max(lasts) == bar.high and min(lasts) == bar.low
    assert lasts[0] == bar.open
    ticks_in_range = round((bar.high - bar.low) * 100)
    assert len(set(lasts)) >= min(3, ticks_in_range + 1)  # the price moves within the minute
    for q in quotes:
        assert q is not None and 0 < q.bid < q.ask and q.bid <= q.last <= q.ask
    volumes = [q.day_volume for q in quotes if q is not None]
    assert volumes == sorted(volumes)


def test_large_cap_spread_is_a_few_basis_points(market: SyntheticMarket) -> None:
    quote = market.quote_at("MSFT", at(DAY, 11, 0, 30))
    assert quote is not None

    assert 0.01 <= quote.ask - quote.bid <= quote.last * 0.0005 + 1e-9


def test_day_volume_matches_the_bars_traded_so_far(market: SyntheticMarket) -> None:
    bars = market.intraday_bars("NVDA", DAY)
    quote = market.quote_at("NVDA", at(DAY, 10, 0))
    assert quote is not None

    assert quote.day_volume == sum(b.volume for b in bars if b.time < at(DAY, 10, 0))


def test_naive_instant_is_refused(market: SyntheticMarket) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        market.quote_at("AAPL", datetime(2025, 11, 26, 10, 0))


def test_unknown_symbol_raises_unknown_symbol_error(market: SyntheticMarket) -> None:
    assert market.info("NOPE") is None
    with pytest.raises(UnknownSymbolError):
        market.intraday_bars("NOPE", DAY)
    with pytest.raises(UnknownSymbolError):
        market.prior_close("NOPE", DAY)


# --------------------------------------------------------------------------- controls


def test_pinned_price_shows_in_quotes_until_removed() -> None:
    market = SyntheticMarket(seed=7)
    natural = market.quote_at("AMD", at(DAY, 10, 0, 10))
    market.set_price("AMD", 123.456)
    pinned = market.quote_at("AMD", at(DAY, 10, 5, 40))
    market.set_price("AMD", None)

    assert pinned is not None and pinned.last == 123.46
    assert pinned.bid < 123.46 <= pinned.ask or pinned.bid == 123.46 < pinned.ask
    assert market.quote_at("AMD", at(DAY, 10, 0, 10)) == natural


def test_halted_symbol_quotes_say_halted_and_freeze_until_resumed() -> None:
    market = SyntheticMarket(seed=7)
    market.set_halted("TSLA", True)
    first = market.quote_at("TSLA", at(DAY, 10, 0))
    later = market.quote_at("TSLA", at(DAY, 10, 30))
    market.set_halted("TSLA", False)
    resumed = market.quote_at("TSLA", at(DAY, 10, 30))

    assert first is not None and later is not None and resumed is not None
    assert first.halted and later.halted and not resumed.halted
    assert later.last == first.last and later.day_volume == first.day_volume
    assert resumed == SyntheticMarket(seed=7).quote_at("TSLA", at(DAY, 10, 30))


def test_symbols_halted_at_construction_are_halted() -> None:
    quote = SyntheticMarket(halted=["GME"]).quote_at("GME", at(DAY, 9, 45))

    assert quote is not None and quote.halted


# --------------------------------------------------------------------------- scanners


def test_scanner_ranks_a_pinned_symbol_first_among_gainers() -> None:
    market = SyntheticMarket(seed=7)
    instant = at(DAY, 9, 45)
    market.set_price("KO", market.prior_close("KO", DAY) * 1.6)

    assert top_gainers(market, instant, n=10)[0] == "KO"


def test_top_gainers_are_sorted_by_change_vs_prior_close(market: SyntheticMarket) -> None:
    instant = at(DAY, 8, 0)
    ranked = top_gainers(market, instant, n=20)

    def change(symbol: str) -> float:
        quote = market.quote_at(symbol, instant)
        assert quote is not None
        return quote.last / market.prior_close(symbol, DAY) - 1.0

    changes = [change(s) for s in ranked]
    assert len(ranked) == 20
    assert changes == sorted(changes, reverse=True)
    assert changes[-1] >= max(change(s) for s in market.symbols() if s not in ranked)


def test_regular_session_gainers_are_empty_before_the_open(market: SyntheticMarket) -> None:
    assert top_gainers(market, at(DAY, 8, 0), premarket=False) == []
    assert len(top_gainers(market, at(DAY, 10, 0), premarket=False)) == 50


def test_most_active_ranks_by_day_volume(market: SyntheticMarket) -> None:
    instant = at(DAY, 11, 0)
    ranked = most_active(market, instant, n=15)
    volumes = [market.quote_at(s, instant).day_volume for s in ranked]  # type: ignore[union-attr]

    assert volumes == sorted(volumes, reverse=True)
    assert len(ranked) == 15


def test_scanners_answer_nothing_on_a_holiday(market: SyntheticMarket) -> None:
    assert top_gainers(market, at(HOLIDAY, 10, 0)) == []
    assert most_active(market, at(HOLIDAY, 10, 0)) == []


# --------------------------------------------------------------------------- CSV replay


def test_csv_round_trip_gives_the_same_bars_quotes_and_closes(
    market: SyntheticMarket, tmp_path: Path
) -> None:
    days = [DAY, EARLY_CLOSE]
    written = write_csv(market, "MARA", days, tmp_path)
    replay = CsvMarket(tmp_path)

    assert written == tmp_path / "MARA.csv"
    assert replay.symbols() == ["MARA"]
    for day in days:
        assert replay.intraday_bars("MARA", day) == market.intraday_bars("MARA", day)
    assert replay.daily_bars("MARA", EARLY_CLOSE, 5) == market.daily_bars("MARA", EARLY_CLOSE, 2)
    assert replay.prior_close("MARA", EARLY_CLOSE) == market.prior_close("MARA", EARLY_CLOSE)
    for instant in (at(DAY, 4, 0), at(DAY, 7, 12, 33), at(EARLY_CLOSE, 12, 59, 59)):
        assert replay.quote_at("MARA", instant) == market.quote_at("MARA", instant)
    assert replay.info("MARA") == market.info("MARA")


def test_csv_market_takes_other_symbols_from_the_fallback(
    market: SyntheticMarket, tmp_path: Path
) -> None:
    other = SyntheticMarket(seed=99)
    write_csv(other, "AAPL", [DAY], tmp_path / "AAPL.csv")
    replay = build_market(seed=7, data_dir=tmp_path, gap_share=0.1)

    assert replay.intraday_bars("AAPL", DAY) == other.intraday_bars("AAPL", DAY)
    assert replay.intraday_bars("MSFT", DAY) == market.intraday_bars("MSFT", DAY)
    assert replay.symbols() == market.symbols()
    replay.set_price("MSFT", 1.23)
    quote = replay.quote_at("MSFT", at(DAY, 10, 0))
    assert quote is not None and quote.last == 1.23


def test_csv_naive_timestamps_mean_new_york_and_gaps_hold_the_last_price(tmp_path: Path) -> None:
    (tmp_path / "zzz.csv").write_text(
        "Timestamp,Open,High,Low,Close,Volume,Extra\n"
        "2025-11-26 09:30:00,10,10.5,9.9,10.2,1000,x\n"
        "2025-11-26 09:33:00,10.2,10.4,10.1,10.3,500,y\n"
        "2025-11-26T17:00:00,11,11,11,11,5,after-hours is ignored\n"
    )
    replay = CsvMarket(tmp_path)
    bars = replay.intraday_bars("ZZZ", DAY)

    assert [b.time for b in bars] == [at(DAY, 9, 30), at(DAY, 9, 33)]
    assert replay.quote_at("ZZZ", at(DAY, 9, 29)) is None
    quote = replay.quote_at("ZZZ", at(DAY, 9, 31, 30))
    assert quote is not None and quote.last == 10.2 and quote.day_volume == 1000
    info = replay.info("ZZZ")
    assert info is not None and info.symbol == "ZZZ" and info.con_id > 0
    assert replay.prior_close("ZZZ", DAY) == 10  # first day of data: its first price
    assert replay.daily_bars("ZZZ", DAY, 3)[0].volume == 1500


_GOOD = "2025-11-26T09:30:00-05:00,10,10.5,9.9,10.2,1000\n"


@pytest.mark.parametrize(
    "text,line,problem",
    [
        ("timestamp,open,high,low,close\n" + _GOOD, 1, "missing column(s) volume"),
        ("", 1, "empty file"),
        (
            "timestamp,open,high,low,close,volume\n"
            + _GOOD
            + "2025-11-26T09:31:00-05:00,10,ten,9.9,10.2,1000\n",
            3,
            "high 'ten' is not a number",
        ),
        (
            "timestamp,open,high,low,close,volume\n"
            "2025-11-26T09:30:00-05:00,10,9.8,9.9,9.85,1000\n",
            2,
            "high 9.8 is below low 9.9",
        ),
        (
            "timestamp,open,high,low,close,volume\n" + _GOOD + _GOOD,
            3,
            "is not after the previous row",
        ),
        (
            "timestamp,open,high,low,close,volume\n"
            "2025-11-27T10:00:00-05:00,10,10.5,9.9,10.2,1000\n",
            2,
            "2025-11-27 (ET) is not an NYSE trading day",
        ),
        (
            "timestamp,open,high,low,close,volume\n26/11/2025 09:30,10,10.5,9.9,10.2,1000\n",
            2,
            "is not ISO 8601",
        ),
        (
            "timestamp,open,high,low,close,volume\n"
            "2025-11-26T09:30:00-05:00,10,10.5,9.9,10.2,1.5\n",
            2,
            "not a whole number",
        ),
        ("timestamp,open,high,low,close,volume\n", 2, "no bars after the header"),
    ],
)
def test_bad_csv_is_refused_naming_file_line_and_problem(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    bad = tmp_path / "BAD.csv"
    bad.write_text(text)

    with pytest.raises(CsvFormatError) as caught:
        CsvMarket(tmp_path)

    message = str(caught.value)
    assert str(bad) in message and f"line {line}:" in message and problem in message
    assert caught.value.line == line


def test_missing_data_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        CsvMarket(tmp_path / "nowhere")


# --------------------------------------------------------------------------- universe and speed


def test_universe_has_the_required_tickers_with_unique_contract_ids() -> None:
    table = by_symbol()

    assert len(table) >= 110
    assert {
        "AAPL",
        "MSFT",
        "NVDA",
        "AMD",
        "TSLA",
        "META",
        "AMZN",
        "GOOG",
        "PLTR",
        "SOFI",
        "RIVN",
        "MARA",
        "RIOT",
        "COIN",
        "HOOD",
    } <= set(table)
    assert table["AAPL"].con_id == 265598
    assert len({e.con_id for e in UNIVERSE}) == len(UNIVERSE)
    for entry in UNIVERSE:
        assert entry.long_name.isascii() and "\\" not in entry.long_name
        assert entry.primary_exchange in {"NASDAQ", "NYSE", "ARCA"}
        assert entry.anchor_price > 0 and entry.avg_volume > 0 and entry.daily_vol_pct > 0


def test_history_and_scans_are_fast_once_warm() -> None:
    market = SyntheticMarket(seed=5)
    market.daily_bars("NVDA", DAY, 60)
    top_gainers(market, at(DAY, 8, 0))

    def best_ms(call: object) -> float:
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            call()  # type: ignore[operator]
            timings.append((time.perf_counter() - start) * 1000)
        return min(timings)

    assert best_ms(lambda: market.daily_bars("NVDA", DAY, 60)) < 50
    assert best_ms(lambda: top_gainers(market, at(DAY, 8, 0, 5))) < 100
    cold = [date(2025, 11, 20), date(2025, 11, 21), date(2025, 11, 24)]
    assert min(best_ms(lambda d=d: market.intraday_bars("TSLA", d)) for d in cold) < 20
