"""The day's report under ``REPORTS_DIR``: ``<date>.md`` for people, ``<date>.json`` for
programs, ``<date>.png``: the equity curve on top, then each traded symbol's 1-minute
price with every trade on it (entry: green triangle up, exit: red triangle down, a
line between them). Charts are drawn with matplotlib's Agg canvas directly (no pyplot
state), so a report can be written from any thread or process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from market.clock import ET
from phases.metrics import DayMetrics
from phases.regime import RegimeReading
from phases.runner import jsonable
from phases.suggestions import Verdict
from shared_state import ClosedPosition, PhaseRun, WatchlistItem

ENTRY_COLOR = "#00b000"
EXIT_COLOR = "#e00000"
PRICE_COLOR = "#4a6fa5"
EQUITY_COLOR = "#333333"
MAX_PANELS = 12


@dataclass(frozen=True)
class DailyReport:
    """Everything the report shows."""

    trading_date: date
    generated_at: datetime
    metrics: DayMetrics
    equity: Sequence[tuple[datetime, float]]
    trades: Sequence[ClosedPosition]
    regime: RegimeReading
    insights: Sequence[str]
    insights_source: str
    verdicts: Sequence[Verdict]
    replay: Mapping[str, Any] | None
    next_parameters: Mapping[str, Any] | None
    current_parameters: Mapping[str, Any]
    watchlist: Sequence[WatchlistItem]
    phases: Sequence[PhaseRun]
    notes: Sequence[str] = ()
    prices: Mapping[str, pd.DataFrame] = field(default_factory=dict)  # symbol -> 1-min bars


def _et(moment: datetime) -> str:
    return moment.astimezone(ET).strftime("%H:%M:%S")


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


def _number(value: float | None, suffix: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


# --------------------------------------------------------------------------- JSON


def as_json(report: DailyReport) -> dict[str, Any]:
    """Return the report as JSON-able data."""
    return {
        "trading_date": report.trading_date.isoformat(),
        "generated_at": report.generated_at.astimezone(ET).isoformat(),
        "metrics": report.metrics.as_dict(),
        "equity_curve": [[t.astimezone(ET).isoformat(), round(v, 2)] for t, v in report.equity],
        "trades": [_trade_json(t) for t in report.trades],
        "regime": report.regime.as_dict(),
        "insights": {"source": report.insights_source, "items": list(report.insights)},
        "current_parameters": dict(report.current_parameters),
        "suggestions": [_verdict_json(v) for v in report.verdicts],
        "replay": dict(report.replay) if report.replay is not None else None,
        "next_parameters": dict(report.next_parameters) if report.next_parameters else None,
        "watchlist": [_watch_json(w) for w in report.watchlist],
        "phases": [
            {"phase": r.phase, "status": str(r.status), "detail": r.detail} for r in report.phases
        ],
        "charted_symbols": sorted(report.prices),
        "notes": list(report.notes),
    }


def _trade_json(t: ClosedPosition) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "opened_at": t.opened_at.astimezone(ET).isoformat(),
        "closed_at": t.closed_at.astimezone(ET).isoformat(),
        "entry_price": t.entry_price,
        "exit_price": t.exit_price,
        "quantity": t.quantity,
        "exit_reason": str(t.exit_reason),
        "pnl": t.pnl,
        "commissions": t.commissions,
        "is_recovery": t.is_recovery,
    }


def _verdict_json(v: Verdict) -> dict[str, Any]:
    s = v.suggestion
    return {
        "parameter": s.parameter,
        "current": s.current,
        "proposed": s.proposed,
        "reason": s.reason,
        "accepted": v.accepted,
        "replay_current": v.current,
        "replay_proposed": v.candidate,
        "verdict": v.text,
    }


def _watch_json(w: WatchlistItem) -> dict[str, Any]:
    return {
        "rank": w.rank,
        "symbol": w.symbol,
        "source": str(w.source),
        "score": w.score,
        "gap_pct": w.gap_pct,
        "validated": w.validated,
        "reason": w.reason,
    }


# --------------------------------------------------------------------------- Markdown


def as_markdown(report: DailyReport, png_name: str) -> str:
    """Return the report as Markdown."""
    lines = [f"# Trading day {report.trading_date.isoformat()}", ""]
    lines += [f"Generated {report.generated_at.astimezone(ET):%Y-%m-%d %H:%M} ET.", ""]
    lines += _summary(report) + _trades_table(report) + _regime(report) + _insights(report)
    lines += _suggestions(report) + _watchlist(report) + _phases(report)
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    lines += [f"![equity and trades]({png_name})", ""]
    return "\n".join(lines)


def _summary(report: DailyReport) -> list[str]:
    m = report.metrics
    rows = [
        ("Trades", f"{m.trades} ({m.wins} won, {m.losses} lost)"),
        ("Win rate", _number(m.win_rate_pct, " %", 1)),
        ("Net P&L", f"{_money(m.net_pnl)} ({_number(m.return_pct, ' %', 3)} of capital)"),
        ("Gross profit / loss", f"{_money(m.gross_profit)} / {_money(m.gross_loss)}"),
        ("Profit factor", _number(m.profit_factor) if m.profit_factor else "n/a (no loss)"),
        ("Max drawdown", f"{m.max_drawdown:,.2f} ({_number(m.max_drawdown_pct, ' %', 3)})"),
        ("Sharpe-like ratio", _number(m.sharpe_like)),
        ("Average hold", _number(m.avg_hold_minutes, " min", 1)),
        ("Commissions", f"{m.commissions:,.2f}"),
        ("Exits", ", ".join(f"{k} {v}" for k, v in sorted(m.exits.items())) or "none"),
    ]
    return ["## Summary", "", "| | |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]


def _trades_table(report: DailyReport) -> list[str]:
    lines = ["## Trades", ""]
    if not report.trades:
        return lines + ["No trade today.", ""]
    lines += [
        "| symbol | in (ET) | entry | out (ET) | exit | shares | reason | P&L |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in sorted(report.trades, key=lambda t: t.opened_at):
        lines.append(
            f"| {t.symbol}{' (recovery)' if t.is_recovery else ''} | {_et(t.opened_at)} | "
            f"{t.entry_price:.2f} | {_et(t.closed_at)} | {t.exit_price:.2f} | {t.quantity} | "
            f"{t.exit_reason} | {_money(t.pnl)} |"
        )
    return lines + [""]


def _regime(report: DailyReport) -> list[str]:
    r = report.regime
    return ["## Market regime", "", f"**{r.label}**: {r.reason}.", ""]


def _insights(report: DailyReport) -> list[str]:
    lines = ["## Insights", "", f"Source: {report.insights_source}.", ""]
    return lines + [f"- {i}" for i in report.insights] + [""]


def _suggestions(report: DailyReport) -> list[str]:
    lines = ["## Parameter suggestions", ""]
    current = report.current_parameters
    lines.append(
        "In force today: "
        + ", ".join(f"{k} {v:g}" for k, v in current.items() if isinstance(v, int | float))
        + "."
    )
    if report.replay is not None:
        lines.append(
            f"Replay with them over {report.replay.get('days')} days: net "
            f"{_money(report.replay.get('net_pnl'))} in {report.replay.get('trades')} trades."
        )
    lines.append("")
    if not report.verdicts:
        lines += ["No suggestion today.", ""]
    else:
        lines += ["| parameter | now | proposed | why | verdict |", "|---|---|---|---|---|"]
        for v in report.verdicts:
            s = v.suggestion
            lines.append(
                f"| {s.parameter} | {s.current:g} | {s.proposed:g} | {s.reason} | {v.text} |"
            )
        lines.append("")
    nxt = report.next_parameters
    if nxt:
        lines += [f"**Applied from {nxt['effective_date']}:** {nxt['reason']}.", ""]
    else:
        lines += ["Nothing applied: the parameters in force stay.", ""]
    return lines


def _watchlist(report: DailyReport) -> list[str]:
    lines = ["## Watchlist", ""]
    if not report.watchlist:
        return lines + ["No watchlist recorded.", ""]
    lines += [
        "| # | symbol | source | score | gap % | valid | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in report.watchlist:
        lines.append(
            f"| {w.rank} | {w.symbol} | {w.source} | {w.score:.1f} | "
            f"{_number(w.gap_pct)} | {'yes' if w.validated else 'no'} | {w.reason} |"
        )
    return lines + [""]


def _phases(report: DailyReport) -> list[str]:
    lines = ["## Phases", "", "| phase | status | detail |", "|---|---|---|"]
    lines += [f"| {r.phase} | {r.status} | {r.detail or ''} |" for r in report.phases]
    return lines + [""]


# --------------------------------------------------------------------------- chart


def _naive_et(moment: datetime | pd.Timestamp) -> datetime:
    # matplotlib plots naive datetimes as given: plot ET wall-clock times.
    return pd.Timestamp(moment).tz_convert(ET).tz_localize(None).to_pydatetime()


def chart(report: DailyReport, path: Path) -> None:
    """Draw the equity curve and each traded symbol's price with its trades into ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    symbols = sorted({t.symbol for t in report.trades})[:MAX_PANELS]
    rows = 1 + math.ceil(len(symbols) / 2)
    figure = Figure(figsize=(12, 3.2 * rows), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, 2)
    axes = figure.add_subplot(grid[0, :])
    _equity_axes(axes, report)
    for i, symbol in enumerate(symbols):
        panel = figure.add_subplot(grid[1 + i // 2, i % 2])
        _symbol_axes(panel, symbol, report)
    for ax in figure.axes:
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")


def _equity_axes(ax: Any, report: DailyReport) -> None:
    times = [_naive_et(t) for t, _ in report.equity]
    values = [v for _, v in report.equity]
    ax.step(times, values, where="post", color=EQUITY_COLOR, linewidth=1.5)
    ax.set_title(
        f"{report.trading_date}  equity (net {report.metrics.net_pnl:+,.2f}, "
        f"{report.metrics.trades} trades, regime {report.regime.label})"
    )
    ax.set_ylabel("USD")
    if report.metrics.trades == 0:
        ax.text(0.5, 0.5, "no trade today", transform=ax.transAxes, ha="center")


def _symbol_axes(ax: Any, symbol: str, report: DailyReport) -> None:
    bars = report.prices.get(symbol)
    if bars is not None and not bars.empty:
        ax.plot([_naive_et(t) for t in bars.index], bars["close"], color=PRICE_COLOR, lw=0.8)
    trades = [t for t in report.trades if t.symbol == symbol]
    for t in trades:
        start, end = _naive_et(t.opened_at), _naive_et(t.closed_at)
        ax.plot([start, end], [t.entry_price, t.exit_price], color="#888888", lw=1, ls="--")
        ax.scatter([start], [t.entry_price], marker="^", s=140, color=ENTRY_COLOR, zorder=5)
        ax.scatter([end], [t.exit_price], marker="v", s=140, color=EXIT_COLOR, zorder=5)
    pnl = sum(t.pnl for t in trades)
    ax.set_title(f"{symbol}: {len(trades)} trade(s), {pnl:+,.2f}")


def write(report: DailyReport, directory: Path) -> list[Path]:
    """Write ``<date>.md``, ``<date>.json`` and ``<date>.png`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = report.trading_date.isoformat()
    png = directory / f"{stem}.png"
    chart(report, png)
    md = directory / f"{stem}.md"
    md.write_text(as_markdown(report, png.name), encoding="utf-8")
    js = directory / f"{stem}.json"
    data = jsonable(as_json(report))
    js.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
    return [md, js, png]
