"""The post-close building blocks on hand-made data: metrics, regime, replay, suggestions, chart."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from day_trader.signals import EntryParams
from exit_manager.rules import ExitParams
from market.clock import ET
from phases import report
from phases.metrics import DayMetrics, compute, equity_curve, max_drawdown
from phases.regime import Regime, RegimeReading, classify
from phases.replay import DayBars, ParamValues, Replay
from phases.suggestions import Suggestion, applied, judge, suggest
from shared_state import ClosedPosition, ExitReason

DAY = date(2025, 11, 26)
CURRENT = ParamValues(
    profit_target_pct=1.2, stop_loss_pct=0.9, size_pct=10.0, recovery_target_pct=1.1
)


def _at(hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(2025, 11, 26, hour, minute, tzinfo=ET).astimezone(UTC)


def _closed(
    n: int, symbol: str, pnl: float, reason: ExitReason, opened: str, closed: str
) -> ClosedPosition:
    return ClosedPosition(
        id=n, position_id=n, trading_date=DAY, symbol=symbol, source="day_trader",
        entry_price=100.0, exit_price=100.0 + pnl / 100, quantity=100, exit_reason=reason,
        pnl=pnl, commissions=2.0, reentry_allowed=reason is ExitReason.STOP, is_recovery=False,
        entry_order_ref=None, exit_order_ref=None, opened_at=_at(opened), closed_at=_at(closed),
    )  # fmt: skip


# --------------------------------------------------------------------------- metrics


def test_metrics_of_a_mixed_day() -> None:
    trades = [
        _closed(1, "AAA", 300.0, ExitReason.TARGET, "09:40", "10:10"),
        _closed(2, "BBB", -100.0, ExitReason.STOP, "10:00", "10:20"),
        _closed(3, "CCC", -150.0, ExitReason.STOP, "10:30", "11:30"),
        _closed(4, "DDD", 50.0, ExitReason.EOD, "12:00", "15:55"),
    ]

    m = compute(trades, 100_000.0)

    assert (m.trades, m.wins, m.losses, m.win_rate_pct) == (4, 2, 2, 50.0)
    assert (m.net_pnl, m.gross_profit, m.gross_loss) == (100.0, 350.0, -250.0)
    assert m.profit_factor == pytest.approx(1.4)
    # Equity 100000 -> 100300 (peak) -> 100200 -> 100050 -> 100100: drawdown 250.
    assert m.max_drawdown == 250.0
    assert m.max_drawdown_pct == pytest.approx(250.0 / 100_300.0 * 100, abs=1e-4)
    assert m.avg_hold_minutes == pytest.approx((30 + 20 + 60 + 235) / 4, abs=0.1)
    assert m.sharpe_like is not None and m.sharpe_like > 0
    assert m.exits == {"target": 1, "stop": 2, "eod": 1}
    assert m.return_pct == pytest.approx(0.1)


def test_metrics_of_a_day_without_a_losing_trade_or_any_trade() -> None:
    one = compute([_closed(1, "AAA", 80.0, ExitReason.TARGET, "09:40", "10:00")], 50_000.0)
    none = compute([], None)

    assert one.profit_factor is None and one.sharpe_like is None and one.max_drawdown == 0.0
    assert none.trades == 0 and none.win_rate_pct is None and none.avg_hold_minutes is None
    assert none.return_pct is None and none.max_drawdown_pct is None


def test_max_drawdown_is_the_largest_fall_from_a_running_peak() -> None:
    assert max_drawdown([100, 120, 90, 130, 125]) == (30.0, 25.0)
    assert max_drawdown([100, 101, 102]) == (0.0, 0.0)


# --------------------------------------------------------------------------- regime


def _walk(daily_pct: list[float], start: float = 400.0) -> list[float]:
    closes = [start]
    for pct in daily_pct:
        closes.append(closes[-1] * (1 + pct / 100))
    return closes


@pytest.mark.parametrize(
    ("moves", "label"),
    [
        ([0.6, -0.1] * 10 + [0.6], Regime.TRENDING_UP),
        ([-0.6, 0.1] * 10 + [-0.6], Regime.TRENDING_DOWN),
        ([3.0, -2.8] * 10 + [1.0], Regime.HIGH_VOLATILITY),
        ([0.2, -0.2] * 10 + [0.1], Regime.LOW_VOLATILITY),
        ([1.0, -1.0] * 10 + [0.5], Regime.RANGING),
    ],
)
def test_regime_labels(moves: list[float], label: Regime) -> None:
    assert classify(_walk(moves)).label is label


def test_regime_is_unknown_without_enough_closes() -> None:
    reading = classify([400.0] * 10)
    assert reading.label is Regime.UNKNOWN and "only 10 daily closes" in reading.reason


# --------------------------------------------------------------------------- suggestions


def _metrics(**values: object) -> DayMetrics:
    base = dict(
        trades=0, wins=0, losses=0, win_rate_pct=None, net_pnl=0.0, gross_profit=0.0,
        gross_loss=0.0, commissions=0.0, profit_factor=None, max_drawdown=0.0,
        max_drawdown_pct=None, sharpe_like=None, avg_hold_minutes=None,
        starting_capital=100_000.0, return_pct=None, exits={},
    )  # fmt: skip
    base.update(values)
    return DayMetrics(**base)  # type: ignore[arg-type]


def test_suggestions_stay_within_bounds_and_one_per_parameter() -> None:
    near_top = ParamValues(2.9, 1.9, 9.5, 1.1)
    stops = _metrics(trades=4, exits={"stop": 3, "eod": 1}, net_pnl=-50.0)

    found = suggest(stops, Regime.TRENDING_UP, near_top)

    by_name = {s.parameter: s for s in found}
    assert by_name["stop_loss_pct"].proposed == 2.0  # 1.9 + 0.2 clipped to the bound
    assert by_name["profit_target_pct"].proposed == 3.0  # 2.9 + 0.3 clipped
    assert by_name["size_pct"].proposed == 8.5  # a losing day: -1
    assert len(found) == 3


def test_a_suggestion_that_would_put_the_stop_at_the_target_is_not_made() -> None:
    tight = ParamValues(
        profit_target_pct=1.0, stop_loss_pct=0.9, size_pct=5.0, recovery_target_pct=1.0
    )
    found = suggest(_metrics(), Regime.HIGH_VOLATILITY, tight)
    assert [s.parameter for s in found] == ["size_pct"]  # stop 1.2 would exceed target 1.0


# --------------------------------------------------------------------------- replay


def _gap_and_fade_day() -> DayBars:
    """A 6 % gapper: flat pre-market, +1.5 % in the first half hour, then -3 % and flat.

    Entry at the open (gap-and-go); a 1.2 % target is reached, a 2.0 % one is not and
    the price falls through the 0.9 % stop instead.
    """
    start = datetime(2025, 11, 26, 4, 0, tzinfo=ET)
    closes = [106.05 if i % 2 else 105.95 for i in range(330)]  # 04:00-09:29
    closes.append(106.0)  # 09:30: the entry bar
    closes += list(np.linspace(106.0, 107.6, 31)[1:])  # to 10:00
    closes += list(np.linspace(107.6, 102.8, 61)[1:])  # to 11:00
    closes += [102.8 + (0.02 if i % 2 else -0.02) for i in range(300)]  # to 16:00
    rows = []
    previous = closes[0]
    for i, close in enumerate(closes):
        rows.append(
            (start + timedelta(minutes=i), previous, max(previous, close), min(previous, close),
             close, 1000.0 if i < 330 else 20_000.0)
        )  # fmt: skip
        previous = close
    frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
    frame = frame.set_index(pd.DatetimeIndex(frame.pop("time")))
    return DayBars(DAY, "GAPR", frame, prior_close=100.0)


def _replay() -> Replay:
    return Replay(
        [_gap_and_fade_day()],
        capital=100_000.0,
        entry=EntryParams(),
        exits=ExitParams(),
        max_recovery_entries=1,
        max_order_notional=25_000.0,
    )


def test_the_replay_enters_at_the_open_and_exits_by_the_rules() -> None:
    replay = _replay()

    at_target = replay.run(CURRENT)
    at_stop = replay.run(CURRENT.changed("profit_target_pct", 2.0))

    (won,) = at_target.trades
    assert won.reason == "target" and won.entry_price == 106.0 and won.quantity == 94
    assert won.entry_time == datetime(2025, 11, 26, 9, 31, tzinfo=ET)
    assert won.exit_price == pytest.approx(106.0 * 1.012, abs=1e-6)
    assert won.pnl == pytest.approx((106.0 * 1.012 - 106.0) * 94 - 2.0, abs=0.01)
    assert [t.reason for t in at_stop.trades][0] == "stop"
    assert at_stop.net_pnl < 0 < at_target.net_pnl


def test_a_suggestion_that_loses_on_the_replay_is_rejected_with_the_figures() -> None:
    replay = _replay()
    losing = Suggestion("profit_target_pct", 1.2, 2.0, "test: let winners run")
    winning = Suggestion("profit_target_pct", 1.2, 1.4, "test: a little more")

    base, verdicts = judge([losing, winning], CURRENT, replay)

    rejected, accepted = verdicts
    assert not rejected.accepted and accepted.accepted
    assert rejected.candidate["net_pnl"] < rejected.current["net_pnl"] == base.net_pnl
    assert rejected.text.startswith("rejected: replay of 1 days")
    assert f"{rejected.candidate['net_pnl']:+.2f}" in rejected.text
    assert f"{base.net_pnl:+.2f}" in rejected.text
    values, why = applied(verdicts, CURRENT, replay, base)  # type: ignore[misc]
    assert values.profit_target_pct == 1.4 and "profit_target_pct changed" in why


def test_nothing_is_applied_when_every_suggestion_loses() -> None:
    replay = _replay()
    losing = Suggestion("profit_target_pct", 1.2, 2.0, "test")
    base, verdicts = judge([losing], CURRENT, replay)
    assert applied(verdicts, CURRENT, replay, base) is None


# --------------------------------------------------------------------------- chart


def _report(trades: list[ClosedPosition]) -> report.DailyReport:
    m = compute(trades, 100_000.0)
    minutes = pd.date_range(_at("09:30"), periods=390, freq="min").tz_convert(ET)
    prices = pd.DataFrame({"close": np.linspace(100, 101, 390)}, index=minutes)
    return report.DailyReport(
        trading_date=DAY, generated_at=_at("16:10"), metrics=m,
        equity=equity_curve(trades, 100_000.0, _at("09:30")), trades=trades,
        regime=RegimeReading(Regime.RANGING, "SPY", 1.0, 0.0, 0.0, "test"), insights=[],
        insights_source="rules", verdicts=[], replay=None, next_parameters=None,
        current_parameters={"profit_target_pct": 1.8}, watchlist=[], phases=[],
        prices={t.symbol: prices for t in trades},
    )  # fmt: skip


def _green(path: Path) -> int:
    image = imread(path)[:, :, :3]
    return int((np.abs(image - np.array([0, 0xB0 / 255, 0])).max(axis=2) < 0.12).sum())


def test_the_chart_marks_trades_and_a_day_without_trades_has_no_marker(tmp_path: Path) -> None:
    traded = _report([_closed(1, "AAA", 50.0, ExitReason.TARGET, "10:00", "11:00")])
    quiet = _report([])

    report.chart(traded, tmp_path / "traded.png")
    report.chart(quiet, tmp_path / "quiet.png")

    assert _green(tmp_path / "traded.png") > 40
    assert _green(tmp_path / "quiet.png") == 0
