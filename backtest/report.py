"""What a backtest run says: metrics, the per-day table, JSON, console text and a PNG chart.

Definitions (all P&L net of commissions):

- win rate: winning trades (P&L > 0) over all trades;
- profit factor: gross profit over gross loss; None when there is no losing trade;
- max drawdown: the largest fall of account equity from a previous peak, with equity
  marked at every regular-session bar close (the run's starting capital is the first
  peak), in dollars and in percent of that peak.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from backtest.engine import BacktestResult, DayResult, Trade
from market.clock import ET


@dataclass(frozen=True)
class Summary:
    """The headline figures of one run."""

    days: int
    bars: int
    trades: int
    wins: int
    win_rate: float | None  # None without trades
    net_pnl: float
    gross_profit: float
    gross_loss: float  # <= 0
    profit_factor: float | None  # None without losing trades
    commissions: float
    max_drawdown: float  # dollars, >= 0
    max_drawdown_pct: float
    starting_capital: float
    ending_equity: float
    return_pct: float
    exit_reasons: dict[str, int]
    entry_kinds: dict[str, int]


def summarize(result: BacktestResult) -> Summary:
    """Return the headline figures of ``result``."""
    trades = result.trades
    pnls = [t.pnl for t in trades]
    profit = sum(p for p in pnls if p > 0)
    loss = sum(p for p in pnls if p < 0)
    wins = sum(t.won for t in trades)
    start = result.config.starting_capital
    end = result.days[-1].end_equity if result.days else start
    drawdown, drawdown_pct = max_drawdown(np.concatenate(([start], result.equity)))
    return Summary(
        days=len(result.days),
        bars=result.bars,
        trades=len(trades),
        wins=wins,
        win_rate=wins / len(trades) if trades else None,
        net_pnl=sum(pnls),
        gross_profit=profit,
        gross_loss=loss,
        profit_factor=profit / -loss if loss < 0 else None,
        commissions=sum(t.commission for t in trades),
        max_drawdown=drawdown,
        max_drawdown_pct=drawdown_pct,
        starting_capital=start,
        ending_equity=end,
        return_pct=(end - start) / start * 100.0,
        exit_reasons=dict(Counter(t.exit_reason for t in trades).most_common()),
        entry_kinds=dict(Counter(t.entry_kind for t in trades).most_common()),
    )


def max_drawdown(equity: np.ndarray) -> tuple[float, float]:
    """Return the largest peak-to-trough fall of ``equity`` in dollars and in % of the peak."""
    if len(equity) == 0:
        return 0.0, 0.0
    peaks = np.maximum.accumulate(equity)
    falls = peaks - equity
    worst = int(np.argmax(falls))
    pct = falls[worst] / peaks[worst] * 100.0 if peaks[worst] > 0 else 0.0
    return float(falls[worst]), float(pct)


# --------------------------------------------------------------------------- JSON


def to_json(result: BacktestResult) -> dict[str, Any]:
    """Return the run as JSON-ready data: parameters, summary, days and trades."""
    fill = result.config.fill
    return {
        "parameters": {
            **result.config.values,
            "starting_capital": result.config.starting_capital,
            "intrabar": fill.intrabar,
            "spread_bps": fill.spread_bps,
        },
        "summary": asdict(summarize(result)),
        "days": [_day_json(day) for day in result.days],
        "trades": [_trade_json(trade) for trade in result.trades],
    }


def _day_json(day: DayResult) -> dict[str, Any]:
    data = asdict(day)
    data["day"] = day.day.isoformat()
    data["symbols"] = list(day.symbols)
    return data


def _trade_json(trade: Trade) -> dict[str, Any]:
    data = asdict(trade)
    data["day"] = trade.day.isoformat()
    data["entry_time"] = trade.entry_time.isoformat()
    data["exit_time"] = trade.exit_time.isoformat()
    return data


# --------------------------------------------------------------------------- text


def render_text(result: BacktestResult, title: str) -> str:
    """Return the console/Markdown report: summary, exit reasons, per-day table."""
    s = summarize(result)
    rows = [
        ("days / bars", f"{s.days} / {s.bars:,}"),
        ("trades (wins)", f"{s.trades} ({s.wins})"),
        ("win rate", _pct(s.win_rate * 100 if s.win_rate is not None else None)),
        ("net P&L", _money(s.net_pnl)),
        ("gross profit / loss", f"{_money(s.gross_profit)} / {_money(s.gross_loss)}"),
        ("profit factor", "n/a" if s.profit_factor is None else f"{s.profit_factor:.2f}"),
        ("commissions", _money(s.commissions)),
        ("max drawdown", f"{_money(s.max_drawdown)} ({s.max_drawdown_pct:.2f}%)"),
        ("equity", f"{_money(s.starting_capital)} -> {_money(s.ending_equity)}"),
        ("return", _pct(s.return_pct)),
        ("exits", _counts(s.exit_reasons)),
        ("entries", _counts(s.entry_kinds)),
    ]
    parts = [f"# {title}", "", tabulate(rows, tablefmt="github", headers=("", ""))]
    parts += ["", "## Per day", "", day_table(result.days)]
    return "\n".join(parts)


def day_table(days: tuple[DayResult, ...]) -> str:
    """Return the per-day table: trades, wins, P&L, end equity, why the day ended early."""
    rows = [
        (
            d.day.isoformat(),
            d.trades,
            d.wins,
            _money(d.net_pnl),
            _money(d.end_equity),
            d.halt_reason or "",
        )
        for d in days
    ]
    headers = ("day", "trades", "wins", "net P&L", "end equity", "halted")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}%"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


# --------------------------------------------------------------------------- chart


def write_png(result: BacktestResult, path: Path, title: str) -> Path:
    """Draw the equity curve (every bar close) and the daily P&L into ``path``; return it."""
    # The object API needs no GUI backend, so this works headless and on any OS.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 1))
    times = [datetime.fromtimestamp(int(t), UTC).astimezone(ET) for t in result.equity_times]
    # Plot against the bar number: nights and weekends would otherwise be long flat lines.
    top.plot(range(len(times)), result.equity, linewidth=0.9)
    top.set_title(title)
    top.set_ylabel("equity ($)")
    _day_ticks(top, times)
    days = result.days
    colors = ["tab:green" if d.net_pnl >= 0 else "tab:red" for d in days]
    bottom.bar(range(len(days)), [d.net_pnl for d in days], color=colors)
    bottom.set_ylabel("day P&L ($)")
    step = _tick_step(len(days))
    labels = [d.day.isoformat() for d in days][::step]
    bottom.set_xticks(range(0, len(days), step), labels, rotation=20, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _day_ticks(axes: Any, times: list[datetime]) -> None:
    starts = [i for i, t in enumerate(times) if i == 0 or t.date() != times[i - 1].date()]
    chosen = starts[:: _tick_step(len(starts))]
    labels = [times[i].date().isoformat() for i in chosen]
    axes.set_xticks(chosen, labels, rotation=20, fontsize=8)


def _tick_step(count: int, most: int = 8) -> int:
    """Return every how many days to label so that at most ``most`` labels show."""
    return max(1, math.ceil(count / most))
