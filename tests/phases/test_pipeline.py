"""The pre-market phases against the real simulator, in the day's order, each run twice.

One simulator whose virtual clock starts at 07:00 ET on 2025-11-26 (pre-market: its
synthetic market has gapped a share of symbols by 5 % or more), one Store file. The
module fixture runs universe, data, watchlist, validate and premarket in order; each
phase runs a second time right after the first, and the tests check what each wrote,
and that the second run did nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_fmp import FakeFmp
from phase_fixtures import (
    DAY,
    PREMARKET_START,
    Run,
    run,
    settings_for,
    start_simulator,
    table_counts,
)

from phases.daily_bars import MIN_SESSIONS
from phases.runner import EXIT_OK
from shared_state import PhaseStatus, Store, WatchlistItem, WatchlistSource
from shared_state.phase_data import PhaseData
from shared_state.spans import SpanStore
from telemetry.tracing import setup_tracing

ORDER = ("universe", "data", "watchlist", "validate", "premarket")
#: F trades near $10 in the synthetic market: below the minimum price set here.
STATIC = "AAPL,F,NOSUCH"
MIN_PRICE = 15.0
FMP_KEY = "fmp-FAKE-pipeline-key-1234"


@dataclass
class Day:
    tmp: Path
    first: dict[str, Run] = field(default_factory=dict)
    again: dict[str, Run] = field(default_factory=dict)
    counts_before: dict[str, dict[str, int]] = field(default_factory=dict)
    counts_after: dict[str, dict[str, int]] = field(default_factory=dict)
    watch_before: dict[str, list[WatchlistItem]] = field(default_factory=dict)
    watch_after: dict[str, list[WatchlistItem]] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.tmp / "state.db"


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    tmp = tmp_path_factory.mktemp("pipeline")
    sim = start_simulator(tmp, PREMARKET_START)
    screener = FakeFmp([{"symbol": "MSFT"}, {"symbol": "SOFI"}])
    settings = settings_for(
        tmp,
        sim.port,
        UNIVERSE_STATIC_LIST=STATIC,
        UNIVERSE_MIN_PRICE=MIN_PRICE,
        FMP_API_KEY=FMP_KEY,
        FMP_BASE_URL=screener.url,
    )
    tracing = setup_tracing("phase_tests", settings, clock=sim.clock(), environ={}, batch=False)
    store = Store(settings.db_path, process="phase_tests")
    result = Day(tmp)
    try:
        for name in ORDER:
            clock = sim.clock()
            if name == "validate":
                _add_unknown_symbol(store)
            result.first[name] = run(name, settings, clock, store)
            result.counts_before[name] = table_counts(result.db)
            result.watch_before[name] = store.watchlist(DAY)
            result.again[name] = run(name, settings, clock, store)
            result.counts_after[name] = table_counts(result.db)
            result.watch_after[name] = store.watchlist(DAY)
        yield result
    finally:
        tracing.shutdown()
        store.close()
        screener.close()
        sim.stop()


def _add_unknown_symbol(store: Store) -> None:
    """Put a symbol IBKR does not know on the list, as if it were delisted overnight."""
    rows = store.watchlist(DAY)
    ghost = WatchlistItem("NOSUCH", len(rows) + 1, 1.0, "test: delisted", WatchlistSource.RULES)
    store.replace_watchlist(DAY, [*rows, ghost])


def _data(day: Day) -> PhaseData:
    return PhaseData(day.db)


def test_every_phase_finishes_done_against_the_simulator(day: Day) -> None:
    for name in ORDER:
        assert day.first[name].outcome.status == "done", (name, day.first[name].outcome)
        assert day.first[name].outcome.exit_code == EXIT_OK
    runs = {r.phase: r for r in Store(day.db).phase_runs(DAY)}
    assert all(runs[name].status is PhaseStatus.DONE for name in ORDER)
    assert "passed the filters" in (runs["universe"].detail or "")


def test_universe_offers_scanner_and_static_symbols_and_filters_price_and_volume(day: Day) -> None:
    data = _data(day)
    candidates = {c.symbol: c for c in data.candidates(DAY)}
    sources = {tag.split("#")[0] for c in candidates.values() for tag in c.sources}
    assert {"static", "scan:TOP_PERC_GAIN", "scan:MOST_ACTIVE", "fmp"} <= sources
    assert "fmp" in candidates["MSFT"].sources
    assert candidates["AAPL"].passed
    assert not candidates["F"].passed and "price below 15" in candidates["F"].reason
    assert (
        not candidates["NOSUCH"].passed and "unknown at the broker" in candidates["NOSUCH"].reason
    )
    for c in candidates.values():
        if c.passed:
            assert c.price is not None and MIN_PRICE <= c.price <= 500.0
            assert c.avg_volume is not None and c.avg_volume >= 1_000_000
    data.close()


def test_data_phase_reuses_the_stored_bars_and_records_each_candidates_figures(day: Day) -> None:
    data = _data(day)
    passed = [c.symbol for c in data.candidates(DAY, passed_only=True)]
    snapshots = {s.symbol: s for s in data.snapshots(DAY)}
    assert set(snapshots) == set(passed)
    for symbol, snap in snapshots.items():
        bars = data.daily_bars(DAY, symbol)
        assert snap.ok and snap.sessions == len(bars) >= MIN_SESSIONS
        assert all(b.bar_date < DAY for b in bars)  # nothing of the trading date itself
        assert snap.prior_close == bars[-1].close
        assert snap.atr_pct is not None and snap.atr_pct > 0
        assert snap.trend in ("up", "down", "flat")
    (event,) = [
        e
        for e in Store(day.db).events(kind="phase_result", limit=1000)
        if e.detail["phase"] == "data"
    ]
    assert event.detail["bar_requests"] == 0  # the universe phase stored them already
    data.close()


def test_watchlist_without_a_key_comes_from_the_rules_and_says_why(day: Day) -> None:
    rows = day.watch_before["watchlist"]
    data = _data(day)
    usable = {s.symbol for s in data.snapshots(DAY, ok_only=True)}
    assert 1 <= len(rows) <= 8
    assert {r.symbol for r in rows} <= usable
    assert all(r.source is WatchlistSource.RULES for r in rows)
    assert all(r.extra["fallback_reason"] == "no DEEPSEEK_API_KEY set" for r in rows)
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    assert data.llm_calls(DAY) == []  # no key: not even a reserved call
    data.close()


def test_validate_keeps_tradable_symbols_and_drops_an_unknown_one_with_the_reason(
    day: Day,
) -> None:
    rows = {r.symbol: r for r in day.watch_before["validate"]}
    assert not rows["NOSUCH"].validated
    assert "not a US stock at IBKR" in rows["NOSUCH"].extra["validation"]
    kept = [r for r in rows.values() if r.symbol != "NOSUCH"]
    assert kept and all(r.validated and r.extra["validation"] == "ok" for r in kept)
    assert all(r.extra["primary_exchange"] in ("NASDAQ", "NYSE", "ARCA") for r in kept)
    dropped = Store(day.db).events(kind="symbol_dropped")
    assert [e.symbol for e in dropped] == ["NOSUCH"]


def test_premarket_measures_gaps_flags_gap_and_go_and_ranks_by_final_score(day: Day) -> None:
    rows = day.watch_before["premarket"]
    validated = [r for r in rows if r.validated]
    data = _data(day)
    snaps = {p.symbol: p for p in data.premarket(DAY)}
    assert set(snaps) == {r.symbol for r in validated}
    assert [r.symbol for r in validated] == [p.symbol for p in data.premarket(DAY)]
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1].symbol == "NOSUCH"  # not validated: below the validated ones
    finals = [snaps[r.symbol].final_score for r in validated]
    assert finals == sorted(finals, reverse=True)
    for r in validated:
        p = snaps[r.symbol]
        assert r.gap_pct == p.gap_pct and p.gap_pct is not None
        above = "above VWAP" in p.reason
        assert p.gap_and_go == (p.gap_pct >= 5.0 and above), p.reason
    # The watchlist favours top gainers; the simulator gapped some of them by >= 5 %.
    assert any(p.gap_and_go for p in snaps.values())
    data.close()


@pytest.mark.parametrize("name", ORDER)
def test_a_second_run_on_the_same_date_does_no_work(day: Day, name: str) -> None:
    again = day.again[name]
    assert again.outcome.status == "already_done" and again.outcome.exit_code == EXIT_OK
    assert again.connections == 0  # no broker connection, so no scan and no bar request
    assert day.counts_after[name] == day.counts_before[name]  # no row written, no event
    assert day.watch_after[name] == day.watch_before[name]


def test_each_phase_left_a_span_with_its_trading_date(day: Day) -> None:
    store = SpanStore(day.tmp / "spans.db")
    for name in ORDER:
        spans = store.find(f"phase.{name}")
        assert len(spans) == 1, name  # the second run made no span: it did nothing
        assert spans[0].attributes["trading_date"] == DAY.isoformat()
        assert spans[0].attributes["market.time"].startswith("2025-11-26T07:")
    assert store.find("broker.scan", attributes={"code": "TOP_PERC_GAIN"})
    store.close()


def test_no_file_the_phases_wrote_holds_the_fmp_key(day: Day) -> None:
    for path in day.tmp.rglob("*"):
        if path.is_file():
            assert FMP_KEY.encode() not in path.read_bytes(), path
