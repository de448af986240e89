"""The restart policy's pure functions, case by case (design 5)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from supervision.policy import (
    Decision,
    HeartbeatSeen,
    RestartPolicy,
    StartRule,
    StartVerdict,
    Verdict,
    backoff_delay,
    decide,
    heartbeat_stale,
    is_flapping,
    observe_heartbeat,
    recent_crashes,
    start_verdict,
)

P = RestartPolicy(
    backoff_base_s=1.0, backoff_factor=2.0, backoff_cap_s=10.0, flap_crashes=3, flap_window_s=60.0
)
KEEP = RestartPolicy(1.0, 2.0, 10.0, 3, 60.0, keep_alive_while_positions=True)


@pytest.mark.parametrize(
    ("attempt", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (50, 10.0)]
)
def test_backoff_grows_geometrically_up_to_the_cap(attempt: int, delay: float) -> None:
    assert backoff_delay(P, attempt) == delay


def test_backoff_of_a_huge_attempt_stays_at_the_cap_without_overflow() -> None:
    assert backoff_delay(P, 10**9) == 10.0


def test_backoff_with_factor_one_is_constant() -> None:
    flat = RestartPolicy(0.5, 1.0, 0.5, 3, 60.0)
    assert [backoff_delay(flat, n) for n in (1, 2, 9)] == [0.5, 0.5, 0.5]


def test_backoff_attempt_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(P, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff_base_s": 0},
        {"backoff_factor": 0.5},
        {"backoff_base_s": 5, "backoff_cap_s": 1},
        {"flap_crashes": 0},
        {"flap_window_s": 0},
    ],
)
def test_policy_with_impossible_parameters_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)


def test_start_rule_with_impossible_parameters_is_refused() -> None:
    with pytest.raises(ValueError):
        StartRule(startsecs=-1)
    with pytest.raises(ValueError):
        StartRule(ready_timeout_s=0)


def test_recent_crashes_forget_those_outside_the_window() -> None:
    assert recent_crashes([0.0, 30.0, 70.0, 100.0], now=100.0, window_s=60.0) == (70.0, 100.0)


def test_recent_crashes_keep_one_exactly_at_the_window_edge() -> None:
    assert recent_crashes([40.0], now=100.0, window_s=60.0) == (40.0,)


def test_recent_crashes_ignore_times_in_the_future() -> None:
    assert recent_crashes([101.0], now=100.0, window_s=60.0) == ()


@pytest.mark.parametrize(
    ("times", "flapping"),
    [([], False), ([90.0, 95.0], False), ([80.0, 90.0, 100.0], True), ([10.0, 90.0, 100.0], False)],
)
def test_flapping_needs_n_crashes_inside_the_window(times: list[float], flapping: bool) -> None:
    assert is_flapping(P, times, now=100.0) is flapping


def test_first_crash_restarts_after_the_base_delay() -> None:
    d = decide(P, crash_times=[100.0], now=100.0, clean_exit=False, positions_open=False)
    assert d == Decision(Verdict.RESTART, 1.0, 1, None)


def test_second_crash_in_the_window_waits_twice_as_long() -> None:
    d = decide(P, crash_times=[90.0, 100.0], now=100.0, clean_exit=False, positions_open=False)
    assert (d.verdict, d.delay_s, d.crashes) == (Verdict.RESTART, 2.0, 2)


def test_crash_after_a_quiet_window_starts_the_backoff_again() -> None:
    d = decide(P, crash_times=[0.0, 10.0, 100.0], now=100.0, clean_exit=False, positions_open=False)
    assert (d.verdict, d.delay_s, d.crashes) == (Verdict.RESTART, 1.0, 1)


def test_n_crashes_in_the_window_is_fatal_with_an_alert() -> None:
    d = decide(P, crash_times=[80.0, 90.0, 100.0], now=100.0, clean_exit=False, positions_open=True)
    assert d.verdict is Verdict.FATAL
    assert d.alert is not None and "3 crashes in 1 min" in d.alert


def test_keep_alive_child_in_a_crash_loop_with_positions_keeps_restarting_at_the_cap() -> None:
    d = decide(
        KEEP, crash_times=[70.0, 80.0, 90.0, 100.0], now=100.0, clean_exit=False,
        positions_open=True,
    )  # fmt: skip
    assert (d.verdict, d.delay_s) == (Verdict.RESTART, 10.0)
    assert d.alert is not None and "positions are open" in d.alert


def test_keep_alive_child_in_a_crash_loop_without_positions_goes_fatal() -> None:
    d = decide(KEEP, crash_times=[80.0, 90.0, 100.0], now=100.0, clean_exit=False,
               positions_open=False)  # fmt: skip
    assert d.verdict is Verdict.FATAL


def test_keep_alive_child_below_the_threshold_backs_off_normally() -> None:
    d = decide(KEEP, crash_times=[100.0], now=100.0, clean_exit=False, positions_open=True)
    assert (d.verdict, d.delay_s, d.alert) == (Verdict.RESTART, 1.0, None)


def test_clean_exit_is_left_alone() -> None:
    d = decide(P, crash_times=[], now=100.0, clean_exit=True, positions_open=True)
    assert d.verdict is Verdict.LEAVE


def test_clean_exit_of_keep_alive_child_with_positions_is_restarted() -> None:
    d = decide(KEEP, crash_times=[], now=100.0, clean_exit=True, positions_open=True)
    assert (d.verdict, d.delay_s) == (Verdict.RESTART, 1.0)


def test_clean_exit_of_keep_alive_child_without_positions_is_left_alone() -> None:
    d = decide(KEEP, crash_times=[], now=100.0, clean_exit=True, positions_open=False)
    assert d.verdict is Verdict.LEAVE


RULE = StartRule(startsecs=2.0, ready_timeout_s=10.0)


@pytest.mark.parametrize(
    ("ready_at", "now", "verdict"),
    [
        (None, 1.0, StartVerdict.WAIT),
        (None, 9.9, StartVerdict.WAIT),
        (None, 10.0, StartVerdict.TIMED_OUT),
        (3.0, 4.9, StartVerdict.WAIT),  # ready, but not yet up startsecs since then
        (3.0, 5.0, StartVerdict.RUNNING),
        (9.5, 11.0, StartVerdict.WAIT),  # ready before the timeout: no timeout any more
        (9.5, 11.5, StartVerdict.RUNNING),
    ],
)
def test_start_verdict(ready_at: float | None, now: float, verdict: StartVerdict) -> None:
    assert start_verdict(RULE, spawned_at=0.0, ready_at=ready_at, now=now) is verdict


def test_startsecs_zero_means_running_as_soon_as_ready() -> None:
    rule = StartRule(startsecs=0.0, ready_timeout_s=5.0)
    assert start_verdict(rule, spawned_at=0.0, ready_at=1.0, now=1.0) is StartVerdict.RUNNING


T1 = datetime(2025, 11, 26, 15, 0, tzinfo=UTC)
T2 = datetime(2025, 11, 26, 15, 0, 1, tzinfo=UTC)


def test_heartbeat_change_time_moves_only_when_the_value_changes() -> None:
    seen = HeartbeatSeen(T1, changed_at=10.0)
    assert observe_heartbeat(seen, T1, now=20.0) == seen
    assert observe_heartbeat(seen, T2, now=20.0) == HeartbeatSeen(T2, 20.0)


def test_heartbeat_appearing_for_the_first_time_counts_as_a_change() -> None:
    assert observe_heartbeat(HeartbeatSeen(None, 0.0), T1, now=5.0) == HeartbeatSeen(T1, 5.0)


@pytest.mark.parametrize(("now", "stale"), [(10.0, False), (15.0, False), (15.01, True)])
def test_heartbeat_is_stale_after_the_timeout_of_no_change(now: float, stale: bool) -> None:
    assert heartbeat_stale(HeartbeatSeen(T1, changed_at=10.0), now, timeout_s=5.0) is stale


def test_a_virtual_clock_racing_ahead_does_not_make_a_heartbeat_fresh_or_stale() -> None:
    # Timestamps a day apart (a fast virtual clock) still count only as "changed".
    later = datetime(2025, 11, 27, 15, 0, tzinfo=UTC)
    seen = observe_heartbeat(HeartbeatSeen(T1, 0.0), later, now=1.0)
    assert not heartbeat_stale(seen, now=2.0, timeout_s=5.0)
    assert heartbeat_stale(seen, now=6.5, timeout_s=5.0)
