"""Daily state, events, watchlist and phase runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from state_fixtures import DAY, T0

from shared_state import PhaseStatus, Store, WatchlistItem, WatchlistSource


def test_ensure_daily_state_is_idempotent_and_keeps_the_first_capital(store: Store) -> None:
    first = store.ensure_daily_state(DAY, 25_000.0)
    second = store.ensure_daily_state(DAY, 30_000.0)

    assert first == second
    assert (first.starting_capital, first.realized_pnl, first.trades_count) == (25_000.0, 0.0, 0)
    assert not first.halted and not first.daily_target_reached
    assert store.daily_state(DAY + timedelta(days=1)) is None


def test_capital_unknown_at_creation_is_filled_in_later(store: Store) -> None:
    store.set_halted(DAY, True, "manual", now=T0)  # creates the day without capital

    state = store.ensure_daily_state(DAY, 10_000.0)

    assert (state.starting_capital, state.halted, state.halt_reason) == (10_000.0, True, "manual")


def test_halt_and_resume_record_events_only_on_change(store: Store) -> None:
    store.set_halted(DAY, True, "loss limit", now=T0)
    store.set_halted(DAY, True, "loss limit", now=T0)
    resumed = store.set_halted(DAY, False, None, now=T0)

    assert not resumed.halted and resumed.halt_reason is None
    assert [e.kind for e in store.events()] == ["halted", "resumed"]


def test_daily_target_is_marked_once(store: Store) -> None:
    assert store.mark_daily_target_reached(DAY, now=T0) is True
    assert store.mark_daily_target_reached(DAY, now=T0) is False

    state = store.daily_state(DAY)
    assert state is not None and state.daily_target_reached
    assert len(store.events(kind="daily_target_reached")) == 1


def test_events_are_read_after_an_id_with_limit_and_filters(store: Store) -> None:
    ids = [
        store.record_event("day_trader", "signal", now=T0, symbol=s, detail={"n": n})
        for n, s in enumerate(["AAPL", "MSFT", "AAPL", None])
    ]

    assert [e.id for e in store.events()] == ids
    assert [e.detail["n"] for e in store.events(since_id=ids[1])] == [2, 3]
    assert [e.id for e in store.events(limit=2)] == ids[:2]
    assert [e.detail["n"] for e in store.events(symbol="aapl")] == [0, 2]
    first = store.events()[0]
    assert (first.process, first.kind, first.time, first.symbol) == (
        "day_trader",
        "signal",
        T0,
        "AAPL",
    )


def test_event_detail_must_be_json(store: Store) -> None:
    with pytest.raises(ValueError, match="detail"):
        store.record_event("x", "y", now=T0, detail={"when": T0})
    with pytest.raises(ValueError, match="detail"):
        store.record_event("x", "y", now=T0, detail={"v": float("nan")})
    assert store.events() == []


def _item(symbol: str, rank: int, **extra: object) -> WatchlistItem:
    return WatchlistItem(
        symbol=symbol,
        rank=rank,
        score=1.0 / rank,
        reason="gap up",
        source=WatchlistSource.RULES,
        gap_pct=3.5,
        **extra,
    )  # type: ignore[arg-type]


def test_watchlist_is_replaced_per_day_and_listed_by_rank(store: Store) -> None:
    store.replace_watchlist(DAY, [_item("OLD", 1)])
    written = store.replace_watchlist(
        DAY, [_item("MSFT", 2), _item("aapl", 1, extra={"float": 1e6})]
    )
    store.replace_watchlist(DAY + timedelta(days=1), [_item("TSLA", 1)])

    items = store.watchlist(DAY)
    assert written == 2 and [i.symbol for i in items] == ["AAPL", "MSFT"]
    assert items[0].extra == {"float": 1e6} and items[0].source is WatchlistSource.RULES
    assert [i.symbol for i in store.watchlist(DAY + timedelta(days=1))] == ["TSLA"]


def test_validated_only_lists_what_was_validated(store: Store) -> None:
    store.replace_watchlist(DAY, [_item("AAPL", 1), _item("MSFT", 2)])

    assert store.set_validated(DAY, "MSFT") is True
    assert store.set_validated(DAY, "NVDA") is False
    assert [i.symbol for i in store.watchlist(DAY, validated_only=True)] == ["MSFT"]


def test_watchlist_with_a_symbol_twice_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="at most once"):
        store.replace_watchlist(DAY, [_item("AAPL", 1), _item("aapl", 2)])


def test_watchlist_with_a_bad_source_names_the_row(store: Store) -> None:
    bad = WatchlistItem(symbol="AAPL", rank=1, score=1.0, reason="x", source="gpt")  # type: ignore[arg-type]

    with pytest.raises(ValueError, match=r"rows\[0\].source"):
        store.replace_watchlist(DAY, [bad])


def test_a_done_phase_is_not_started_again(store: Store) -> None:
    assert store.start_phase(DAY, "premarket_scan", T0) is True
    store.finish_phase(
        DAY, "premarket_scan", "DONE", now=T0 + timedelta(minutes=2), detail="12 symbols"
    )

    assert store.start_phase(DAY, "premarket_scan", T0 + timedelta(hours=1)) is False
    (run,) = store.phase_runs(DAY)
    assert (run.status, run.started_at, run.ended_at, run.detail) == (
        PhaseStatus.DONE,
        T0,
        T0 + timedelta(minutes=2),
        "12 symbols",
    )


@pytest.mark.parametrize("left", ["FAILED", "SKIPPED"])
def test_a_failed_or_skipped_phase_runs_again_after_a_restart(store: Store, left: str) -> None:
    store.start_phase(DAY, "validate", T0)
    store.finish_phase(DAY, "validate", left, now=T0)

    assert store.start_phase(DAY, "validate", T0 + timedelta(minutes=1)) is True
    (run,) = store.phase_runs(DAY)
    assert (run.status, run.ended_at) == (PhaseStatus.RUNNING, None)


def test_a_phase_left_running_by_a_dead_run_is_started_again(store: Store) -> None:
    store.start_phase(DAY, "validate", T0)

    assert store.start_phase(DAY, "validate", T0 + timedelta(minutes=1)) is True
    assert store.start_phase(DAY + timedelta(days=1), "validate", T0) is True


def test_a_phase_can_be_recorded_skipped_without_starting(store: Store) -> None:
    run = store.finish_phase(DAY, "llm_rank", "SKIPPED", now=T0, detail="no API key")

    assert (run.status, run.detail) == (PhaseStatus.SKIPPED, "no API key")
    with pytest.raises(ValueError, match="RUNNING"):
        store.finish_phase(DAY, "llm_rank", "RUNNING", now=T0)
