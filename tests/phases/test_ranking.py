"""The watchlist's pure parts: rules ranking, answer validation, the prompt file, the filters."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from phases.llm import Prompt, table
from phases.premarket import figures, final_score
from phases.rules_ranking import CandidateView, rank
from phases.universe import Filters, judge
from phases.watchlist import PROMPT_PATH, Pick, WatchlistAnswer, validate_picks
from shared_state.phase_data import DailyBar


def _view(symbol: str, atr: float, volume: float, trend: str, gainer: int | None) -> CandidateView:
    return CandidateView(symbol, 50.0, volume, atr, trend, 1.0, gainer, None, ())


def test_rules_prefer_volatile_liquid_rising_gappers_and_break_ties_by_symbol() -> None:
    views = [
        _view("QUIET", 0.4, 200_000, "down", None),
        _view("GAPPER", 3.0, 20_000_000, "up", 1),
        _view("BBB", 1.5, 2_000_000, "flat", None),
        _view("AAA", 1.5, 2_000_000, "flat", None),
    ]

    ranked = rank(views, atr_min_pct=1.0, limit=3)

    assert [r.symbol for r in ranked] == ["GAPPER", "AAA", "BBB"]
    assert ranked[0].score == 100.0
    assert (
        ranked[0].reason.startswith("rules 100.0: ATR 3.00%")
        and "top gainer #1" in ranked[0].reason
    )


def _answer(*symbols: str, score: float = 50.0) -> WatchlistAnswer:
    return WatchlistAnswer(picks=[Pick(symbol=s, score=score, reason="r") for s in symbols])


def test_an_answer_is_valid_only_with_known_unique_symbols_within_max_positions() -> None:
    known = {"AAA", "BBB", "CCC"}

    ok, none = validate_picks(_answer("aaa", " BBB"), known, 2)
    _, problems = validate_picks(_answer("AAA", "AAA", "ZZZ"), known, 2)
    _, empty = validate_picks(_answer(), known, 2)
    _, scores = validate_picks(_answer("AAA", score=140), known, 2)

    assert none == [] and [r.symbol for r in ok] == ["AAA", "BBB"]
    assert problems == [
        "not candidates: ZZZ",
        "listed twice: AAA",
        "3 picks, more than MAX_POSITIONS=2",
    ]
    assert empty == ["no picks"]
    assert scores == ["score outside 0-100: AAA"]


def test_the_prompt_file_renders_every_field() -> None:
    prompt = Prompt.load(PROMPT_PATH)
    values = {
        "trading_date": "2025-11-26", "max_positions": 8, "gap_min_pct": 5, "atr_min_pct": 1,
        "rsi_max": 60, "profit_target_pct": 1.8, "stop_loss_pct": 0.9, "candidate_count": 1,
        "candidates": table([{"symbol": "AAA", "ATR %": "2.00"}]),
    }  # fmt: skip

    (_, system), (_, user) = prompt.render(values)

    assert "$" not in system + user
    assert "At most 8 picks" in system and "+1.8 %" in system
    assert "| AAA | 2.00 |" in user and "Trading date: 2025-11-26." in user
    assert "Fields:" not in system  # the notes above '# System' are for people only


def test_universe_filters_on_last_close_and_average_volume() -> None:
    filters = Filters(min_price=5.0, max_price=500.0, min_avg_volume=1e6)
    day = date(2025, 11, 25)

    def bars(close: float, volume: float) -> list[DailyBar]:
        return [DailyBar(day, close, close, close, close, volume)] * 20

    assert judge(bars(50.0, 2e6), filters)[0]
    assert judge(bars(3.0, 2e6), filters)[1].startswith("price below 5")
    assert judge(bars(900.0, 2e6), filters)[1].startswith("price above 500")
    assert judge(bars(50.0, 1e5), filters)[1].startswith("avg volume below 1,000,000")
    assert judge([], filters) == (False, "no daily bars", None, None)


def test_premarket_gap_and_go_needs_the_gap_and_the_price_above_vwap() -> None:
    index = pd.date_range("2025-11-26 04:00", periods=4, freq="min", tz="America/New_York")

    def frame(closes: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {"open": closes, "high": closes, "low": closes, "close": closes,
             "volume": [1000.0] * 4},
            index=index,
        )  # fmt: skip

    holding = figures(frame([105.0, 105.5, 106.0, 107.0]), 100.0, 1e6, 5.0)
    fading = figures(frame([109.0, 108.0, 107.0, 106.0]), 100.0, 1e6, 5.0)
    small = figures(frame([101.0, 101.5, 102.0, 103.0]), 100.0, 1e6, 5.0)
    empty = figures(frame([1.0] * 4).iloc[:0], 100.0, 1e6, 5.0)

    assert holding.gap_and_go and holding.gap_pct == pytest.approx(7.0) and holding.above_vwap
    assert not fading.gap_and_go and not fading.above_vwap  # gapped but selling off
    assert not small.gap_and_go
    assert empty.momentum is None and empty.reason == "no pre-market trades"
    assert final_score(80.0, holding) > final_score(80.0, fading)
    assert final_score(80.0, empty) == 0.5 * 0.8 + 0.5 * 0.5  # neutral momentum
