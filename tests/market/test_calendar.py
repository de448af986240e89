"""Calendar: holidays, early closes, DST, and answers independent of the host time zone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from market.calendar import (
    NotATradingDay,
    Phase,
    is_market_open,
    is_trading_day,
    latest_completed_session,
    next_trading_day,
    phase_times,
    previous_trading_day,
    session,
    trading_days_back,
)
from market.clock import ET

ROOT = Path(__file__).resolve().parents[2]


def test_thanksgiving_2025_is_a_holiday() -> None:
    assert not is_trading_day(date(2025, 11, 27))
    with pytest.raises(NotATradingDay, match="2025-11-27"):
        session("2025-11-27")
    with pytest.raises(NotATradingDay):
        phase_times("2025-11-27")


def test_day_after_thanksgiving_2025_closes_at_13_00() -> None:
    s = session("2025-11-28")
    assert s.is_early_close
    assert s.close == datetime(2025, 11, 28, 13, 0, tzinfo=ET)
    times = phase_times("2025-11-28", eod_flatten_minutes=5)
    assert times[Phase.EOD_CUTOFF] == datetime(2025, 11, 28, 12, 55, tzinfo=ET)
    assert times[Phase.POST_CLOSE] > times[Phase.CLOSE]


def test_normal_day_opens_0930_and_closes_1600() -> None:
    s = session("2025-11-26")
    assert not s.is_early_close
    assert (s.open.hour, s.open.minute, s.close.hour) == (9, 30, 16)


@pytest.mark.parametrize(
    ("day", "utc_open_hour"),
    [
        ("2025-03-07", 14),  # EST: 09:30 ET = 14:30 UTC
        ("2025-03-10", 13),  # first Monday of EDT: 09:30 ET = 13:30 UTC
        ("2025-10-31", 13),  # last Friday of EDT
        ("2025-11-03", 14),  # first Monday back on EST
    ],
)
def test_open_is_0930_et_across_dst_switches(day: str, utc_open_hour: int) -> None:
    s = session(day)
    assert (s.open.hour, s.open.minute) == (9, 30)
    assert s.open.astimezone(UTC).hour == utc_open_hour
    assert phase_times(day)[Phase.UNIVERSE].astimezone(ET).hour == 6


def test_phases_are_in_schedule_order() -> None:
    times = phase_times("2025-11-03")
    instants = list(times.values())
    assert list(times) == list(Phase)
    assert instants == sorted(instants)
    assert times[Phase.UNIVERSE] == datetime(2025, 11, 3, 6, 55, tzinfo=ET)
    assert times[Phase.PREMARKET] == datetime(2025, 11, 3, 9, 0, tzinfo=ET)


def test_weekend_and_neighbours() -> None:
    assert not is_trading_day("2025-11-29")
    assert previous_trading_day("2025-12-01") == date(2025, 11, 28)
    assert next_trading_day("2025-11-26") == date(2025, 11, 28)
    back = trading_days_back("2025-12-01", 3)
    assert back == [date(2025, 11, 26), date(2025, 11, 28), date(2025, 12, 1)]
    assert trading_days_back("2025-11-29", 2) == [date(2025, 11, 26), date(2025, 11, 28)]


def test_latest_completed_session_before_and_after_close() -> None:
    before_close = datetime(2025, 11, 26, 15, 59, tzinfo=ET)
    after_close = datetime(2025, 11, 26, 16, 0, tzinfo=ET)
    assert latest_completed_session(before_close) == date(2025, 11, 25)
    assert latest_completed_session(after_close) == date(2025, 11, 26)
    assert latest_completed_session(datetime(2025, 11, 27, 12, 0, tzinfo=ET)) == date(2025, 11, 26)


def test_market_open_boundaries() -> None:
    s = session("2025-11-28")
    assert is_market_open(s.open)
    assert not is_market_open(s.open - timedelta(seconds=1))
    assert not is_market_open(s.close)


_DUMP = """
import json
from market.calendar import phase_times
out = {}
for day in ["2025-03-10", "2025-11-03", "2025-11-28", "2025-07-03"]:
    out[day] = {p.value: t.isoformat() for p, t in phase_times(day).items()}
print(json.dumps(out))
"""


def _phase_times_under(tz: str) -> dict:
    env = {**os.environ, "TZ": tz}
    out = subprocess.run(
        [sys.executable, "-c", _DUMP],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def test_phase_instants_identical_under_tokyo_and_los_angeles_host_time() -> None:
    tokyo = _phase_times_under("Asia/Tokyo")
    los_angeles = _phase_times_under("America/Los_Angeles")
    assert tokyo == los_angeles
    assert tokyo["2025-11-28"]["close"] == "2025-11-28T13:00:00-05:00"
    assert tokyo["2025-07-03"]["close"] == "2025-07-03T13:00:00-04:00"
    assert tokyo["2025-03-10"]["universe"] == "2025-03-10T06:55:00-04:00"
