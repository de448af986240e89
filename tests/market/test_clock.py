"""The one clock: live and virtual, and handing the same virtual clock to a child process."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market.clock import (
    CLOCK_ENV,
    ET,
    ClockSpecError,
    LiveClock,
    VirtualClock,
    clock_from_env,
    clock_from_spec,
    now_et,
    real_seconds_until,
    sleep_until,
)

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 11, 26, 9, 25, tzinfo=ET)


def test_live_clock_is_aware_utc_and_tracks_wall_time() -> None:
    now = LiveClock().now()
    assert now.tzinfo is UTC
    assert abs(now.timestamp() - time.time()) < 1.0


def test_virtual_clock_runs_speed_times_faster() -> None:
    clock = VirtualClock(start=START, speed=600.0, anchor=time.time())
    first = clock.now()
    time.sleep(0.1)
    elapsed = (clock.now() - first).total_seconds()
    assert 50 <= elapsed <= 150  # about 60 market seconds in 0.1 real seconds
    assert now_et(clock).tzinfo == ET


def test_virtual_clock_spec_round_trips_with_the_same_anchor() -> None:
    clock = VirtualClock(start=START, speed=60.0, anchor=1_700_000_000.25)
    again = clock_from_spec(clock.spec())
    assert again == clock


def test_child_process_reads_the_same_virtual_time_from_the_environment() -> None:
    clock = VirtualClock(start=START, speed=60.0)
    code = "from market.clock import clock_from_env; print(clock_from_env().now().timestamp())"
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={CLOCK_ENV: clock.spec(), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    parent_now = clock.now().timestamp()
    # The child printed a moment earlier; at 60x a second of real start-up is a minute.
    assert 0 <= parent_now - float(child.stdout) < 5 * 60


def test_unset_environment_means_live_clock() -> None:
    assert isinstance(clock_from_env({}), LiveClock)


@pytest.mark.parametrize(
    "spec",
    [
        "virtual",
        "virtual|not-a-date|60",
        "virtual|2025-11-26T09:25:00-05:00|fast",
        "sundial",
        "virtual|2025-11-26T09:25:00-05:00|0",
    ],
)
def test_bad_clock_spec_is_refused_with_the_spec_named(spec: str) -> None:
    with pytest.raises(ClockSpecError):
        clock_from_spec(spec)


def test_naive_start_in_spec_is_taken_as_new_york_time() -> None:
    clock = clock_from_spec("virtual|2025-11-26T09:25:00|1|0")
    assert clock.start == START


def test_sleep_until_waits_for_virtual_instant_in_real_time() -> None:
    clock = VirtualClock(start=START, speed=100.0)
    target = START + timedelta(seconds=20)  # 0.2 s real
    began = time.monotonic()
    sleep_until(clock, target, max_step=0.05)
    assert 0.15 <= time.monotonic() - began < 1.0
    assert clock.now() >= target
    assert real_seconds_until(clock, target) == 0.0


def test_virtual_time_holds_at_start_until_the_anchor_then_runs() -> None:
    clock = VirtualClock(start=START, speed=100.0, anchor=time.time() + 0.3)
    assert clock.now() == START.astimezone(UTC)
    target = START + timedelta(seconds=10)  # 0.1 s real after the anchor, 0.4 s from now
    assert 0.3 <= real_seconds_until(clock, target) <= 0.45
    time.sleep(0.45)
    assert clock.now() > START
