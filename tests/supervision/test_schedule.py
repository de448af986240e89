"""The day's plan: date and clock per mode, holidays, early closes, what is due when."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from config.settings import load_settings
from market.calendar import Phase, phase_times
from market.clock import ET, LiveClock, VirtualClock
from supervision.schedule import (
    DAY_START,
    DEFAULT_WARMUP_S,
    NoSession,
    countdown,
    next_phase,
    plan_day,
    port_open,
    skip_reason,
    upcoming,
)

NOW = datetime(2025, 11, 30, 12, 0, tzinfo=UTC)  # a Sunday


def settings(**env: str):  # noqa: ANN201 - a Settings
    return load_settings(environ=env, env_file=None)


def test_sim_day_defaults_to_the_latest_completed_session() -> None:
    plan = plan_day(settings(), NOW)
    assert plan.trading_date == date(2025, 11, 28)  # Friday (Black Friday, early close)


def test_sim_clock_starts_at_0650_et_of_the_date_at_the_configured_speed() -> None:
    plan = plan_day(settings(SIM_DATE="2025-11-26", SIM_SPEED="250"), NOW)
    assert isinstance(plan.clock, VirtualClock)
    assert plan.clock.start == datetime(2025, 11, 26, 6, 50, tzinfo=ET)
    assert plan.clock.speed == 250.0
    assert plan.day_start.timetz().replace(tzinfo=None) == DAY_START


def test_sim_late_start_begins_the_clock_later() -> None:
    plan = plan_day(settings(SIM_DATE="2025-11-26"), NOW, start_at=time(9, 45))
    assert plan.clock.start == datetime(2025, 11, 26, 9, 45, tzinfo=ET)


@pytest.mark.parametrize("day", ["2025-12-25", "2025-11-27", "2025-11-29"])
def test_holiday_or_weekend_sim_date_raises_no_session_naming_it(day: str) -> None:
    with pytest.raises(NoSession, match=f"{day} .* is not an NYSE trading day"):
        plan_day(settings(SIM_DATE=day), NOW)


def test_live_mode_uses_the_wall_clock_and_today_in_new_york() -> None:
    # 02:00 UTC on Thursday is still Wednesday evening in New York.
    plan = plan_day(settings(BROKER="ibkr"), datetime(2025, 11, 27, 2, 0, tzinfo=UTC))
    assert isinstance(plan.clock, LiveClock)
    assert plan.trading_date == date(2025, 11, 26)


def test_live_mode_on_a_holiday_raises_no_session() -> None:
    with pytest.raises(NoSession):
        plan_day(settings(BROKER="ibkr"), datetime(2025, 12, 25, 15, 0, tzinfo=UTC))


def test_early_close_moves_eod_close_and_post_close() -> None:
    plan = plan_day(settings(SIM_DATE="2025-11-28", EOD_FLATTEN_MINUTES="5"), NOW)
    assert plan.early_close
    clock_of = {p: at.strftime("%H:%M") for p, at in plan.times.items()}
    assert (clock_of[Phase.EOD_CUTOFF], clock_of[Phase.CLOSE], clock_of[Phase.POST_CLOSE]) == (
        "12:55",
        "13:00",
        "13:10",
    )
    assert "early close" in plan.summary()


TIMES = phase_times("2025-11-26")


def at(hh: int, mm: int) -> datetime:
    return datetime(2025, 11, 26, hh, mm, tzinfo=ET)


def test_nothing_is_due_before_the_first_phase() -> None:
    assert next_phase(TIMES, set(), at(6, 54)) is None


def test_the_first_phase_is_due_at_its_time() -> None:
    assert next_phase(TIMES, set(), at(6, 55)) is Phase.UNIVERSE


def test_late_start_runs_missed_phases_one_after_the_other_in_order() -> None:
    finished: set[Phase] = set()
    order = []
    while (phase := next_phase(TIMES, finished, at(9, 45))) is not None:
        order.append(phase)
        finished.add(phase)
    assert order == [
        Phase.UNIVERSE, Phase.DATA, Phase.WATCHLIST, Phase.VALIDATE, Phase.PREMARKET, Phase.OPEN,
    ]  # fmt: skip


def test_a_phase_already_done_is_not_run_again() -> None:
    done = {Phase.UNIVERSE, Phase.DATA}
    assert next_phase(TIMES, done, at(7, 45)) is Phase.WATCHLIST


def test_the_day_is_over_when_every_phase_finished() -> None:
    assert next_phase(TIMES, set(TIMES), at(23, 0)) is None
    assert upcoming(TIMES, set(TIMES)) is None


def test_upcoming_names_the_next_unfinished_phase_and_its_time() -> None:
    assert upcoming(TIMES, {Phase.UNIVERSE}) == (Phase.DATA, at(7, 0))


def test_premarket_phases_are_skipped_when_started_after_the_close() -> None:
    assert skip_reason(Phase.WATCHLIST, TIMES, at(16, 5)) == "started after the close"
    assert skip_reason(Phase.WATCHLIST, TIMES, at(15, 59)) is None
    assert skip_reason(Phase.POST_CLOSE, TIMES, at(16, 30)) is None


def test_countdown_formats_hours_minutes_seconds_and_stops_at_zero() -> None:
    assert countdown(at(9, 0), at(7, 36)) == "1:24:00"
    assert countdown(at(9, 0), at(9, 30)) == "0:00:00"


def test_port_open_tells_a_listening_port_from_a_closed_one() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port, timeout=0.2)


def test_fast_sim_clock_holds_at_its_start_for_the_default_warm_up() -> None:
    plan = plan_day(settings(SIM_DATE="2025-11-26", SIM_SPEED="1000"), NOW)
    assert plan.clock.anchor == NOW.timestamp() + DEFAULT_WARMUP_S


def test_slow_sim_clock_has_no_warm_up_unless_asked() -> None:
    slow = settings(SIM_DATE="2025-11-26", SIM_SPEED="1")
    assert plan_day(slow, NOW).clock.anchor == NOW.timestamp()
    assert plan_day(slow, NOW, warmup_s=3.0).clock.anchor == NOW.timestamp() + 3.0


def test_held_clock_reads_its_start_until_the_anchor() -> None:
    now = datetime.now(UTC)
    plan = plan_day(settings(SIM_DATE="2025-11-26", SIM_SPEED="5000"), now, warmup_s=30.0)
    assert plan.clock.now() == datetime(2025, 11, 26, 6, 50, tzinfo=ET)
    assert 29.0 < plan.warmup_left <= 30.0
    assert "clock held at 06:50" in plan.summary()
