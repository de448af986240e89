"""post_close on a seeded simulated day, against the real simulator after the close.

The day's trades are written through the Store the way the day trader and the exit
manager write them, at the synthetic market's own prices (seed 7), so the simulator's
1-minute bars (charts, replay) and SPY's daily bars (regime) match them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from phase_fixtures import (
    AFTER_CLOSE_START,
    DAY,
    Run,
    SeededTrade,
    run,
    seed_trades,
    settings_for,
    start_simulator,
)

from phases.regime import Regime
from phases.report import ENTRY_COLOR, EXIT_COLOR
from shared_state import ExitReason, PhaseStatus, Store, WatchlistItem, WatchlistSource
from shared_state.phase_data import PhaseData

NEXT_DAY = date(2025, 11, 28)  # Thanksgiving (27th) is a holiday
TRADES = [
    SeededTrade("AMD", "09:45", "10:30", ExitReason.STOP),
    SeededTrade("SNAP", "10:05", "11:10", ExitReason.STOP),
    SeededTrade("SNAP", "11:40", "13:00", ExitReason.EOD),  # a recovery trade after the stop
    SeededTrade("F", "12:00", "15:55", ExitReason.EOD),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Evaluated:
    tmp: Path
    first: Run
    again: Run
    pnls: list[float]
    report_mtimes: dict[str, float]

    @property
    def reports(self) -> Path:
        return self.tmp / "reports"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluated]:
    tmp = tmp_path_factory.mktemp("post_close")
    sim = start_simulator(tmp, AFTER_CLOSE_START)
    settings = settings_for(tmp, sim.port)
    store = Store(settings.db_path, process="test")
    try:
        pnls = seed_trades(store, TRADES)
        store.replace_watchlist(
            DAY,
            [
                WatchlistItem(s, i + 1, 50.0, "seeded", WatchlistSource.RULES, validated=True)
                for i, s in enumerate(("AMD", "SNAP", "F"))
            ],
        )
        first = run("post_close", settings, sim.clock(), store)
        mtimes = {p.name: p.stat().st_mtime for p in (tmp / "reports").glob("*")}
        again = run("post_close", settings, sim.clock(), store)
        yield Evaluated(tmp, first, again, pnls, mtimes)
    finally:
        store.close()
        sim.stop()


def test_post_close_finishes_done_and_writes_the_three_report_files(evaluated: Evaluated) -> None:
    assert evaluated.first.outcome.status == "done", evaluated.first.outcome
    names = sorted(p.name for p in evaluated.reports.iterdir())
    assert names == ["2025-11-26.json", "2025-11-26.md", "2025-11-26.png"]
    (run_row,) = Store(evaluated.tmp / "state.db").phase_runs(DAY)
    assert run_row.status is PhaseStatus.DONE and "4 trades" in (run_row.detail or "")


def test_the_json_report_holds_the_days_metrics_trades_and_regime(evaluated: Evaluated) -> None:
    report = json.loads((evaluated.reports / "2025-11-26.json").read_text())
    metrics = report["metrics"]
    pnls = evaluated.pnls
    assert metrics["trades"] == 4 == len(report["trades"])
    assert metrics["net_pnl"] == pytest.approx(sum(pnls), abs=0.01)
    assert metrics["wins"] == sum(p > 0 for p in pnls)
    assert metrics["exits"] == {"stop": 2, "eod": 2}
    assert metrics["avg_hold_minutes"] > 0 and metrics["starting_capital"] == 100_000.0
    assert report["regime"]["label"] in {r.value for r in Regime} - {"unknown"}
    assert report["regime"]["proxy"] == "SPY"
    assert report["charted_symbols"] == ["AMD", "F", "SNAP"]
    assert report["insights"]["source"].startswith("rules (LLM not used: no DEEPSEEK_API_KEY")
    assert report["equity_curve"][0][1] == 100_000.0
    assert report["equity_curve"][-1][1] == pytest.approx(100_000.0 + sum(pnls), abs=0.01)


def test_the_markdown_report_lists_every_trade_and_the_regime(evaluated: Evaluated) -> None:
    text = (evaluated.reports / "2025-11-26.md").read_text()
    assert text.startswith("# Trading day 2025-11-26")
    for heading in ("## Summary", "## Trades", "## Market regime", "## Parameter suggestions"):
        assert heading in text
    rows = [line for line in text.splitlines() if line.startswith(("| AMD", "| SNAP", "| F "))]
    trade_rows = [r for r in rows if r.count("|") == 9]
    assert len(trade_rows) == 4
    assert "| SNAP (recovery) |" in text
    assert "![equity and trades](2025-11-26.png)" in text


def _pixels_near(image: np.ndarray, color: str, tolerance: float = 0.12) -> int:
    rgb = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    distance = np.abs(image[:, :, :3] - rgb).max(axis=2)
    return int((distance < tolerance).sum())


def test_the_png_opens_and_shows_each_trades_entry_and_exit(evaluated: Evaluated) -> None:
    path = evaluated.reports / "2025-11-26.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    height, width = image.shape[:2]
    assert width == 1200 and height >= 900  # the equity row and two rows of symbol panels
    # Entry markers (green) and exit markers (red) sit in the symbol panels, below the
    # equity curve (the top third).
    panels = image[height // 3 :]
    assert _pixels_near(panels, ENTRY_COLOR) > 4 * 40
    assert _pixels_near(panels, EXIT_COLOR) > 4 * 40
    assert _pixels_near(image[: height // 4], ENTRY_COLOR) == 0  # none on the equity curve


def test_each_suggestion_is_accepted_only_if_it_beat_the_current_parameters_on_the_replay(
    evaluated: Evaluated,
) -> None:
    data = PhaseData(evaluated.tmp / "state.db")
    records = data.suggestions(DAY)
    assert records, "a losing day with two stops and two EOD exits yields suggestions"
    # The synthetic market (seed 7) is deterministic: on this day a wider stop and a
    # nearer target both lose on the replay, and are refused.
    assert any(not r.accepted and r.candidate_pnl < r.current_pnl for r in records)
    for r in records:
        assert r.current_pnl is not None and r.candidate_pnl is not None
        assert r.accepted == (r.candidate_pnl - r.current_pnl >= 0.01), r.verdict
        assert f"{r.candidate_pnl:+.2f}" in r.verdict and f"{r.current_pnl:+.2f}" in r.verdict
        assert r.verdict.startswith("accepted" if r.accepted else "rejected")
        low, high = {"profit_target_pct": (0.8, 3.0), "stop_loss_pct": (0.5, 2.0)}.get(
            r.parameter, (3.0, 10.0)
        )
        assert low <= r.proposed_value <= high
    applied = data.parameters_for(NEXT_DAY)
    if any(r.accepted for r in records):
        assert applied is not None and applied.decided_on == DAY
    else:
        assert applied is None
    assert data.parameters_for(DAY) is None  # never for the day already traded
    evaluation = data.evaluation(DAY)
    assert evaluation is not None and len(evaluation.report_files) == 3
    events = Store(evaluated.tmp / "state.db").events(limit=10_000)
    judged = [e for e in events if e.kind in ("suggestion_accepted", "suggestion_rejected")]
    assert len(judged) == len(records)
    data.close()


def test_a_second_post_close_on_the_same_date_does_nothing(evaluated: Evaluated) -> None:
    again = evaluated.again
    assert again.outcome.status == "already_done" and again.connections == 0
    mtimes = {p.name: p.stat().st_mtime for p in evaluated.reports.glob("*")}
    assert mtimes == evaluated.report_mtimes
