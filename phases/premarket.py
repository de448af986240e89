"""Phase ``premarket`` (09:00 ET): gap, momentum, gap-and-go flags and the final ranking.

For every validated watchlist symbol, from today's 1-minute bars since 04:00 ET that
started before the open:

- gap %: the last pre-market price against the prior close (``day_trader.signals``);
- pre-market change %: last price against the first pre-market bar's open;
- above VWAP: the last price at or above the pre-market VWAP (the gap is holding);
- relative volume: pre-market shares over 10 % of the 20-session average volume;
- momentum (-1..1) = 0.40 * gap part + 0.25 * change part + 0.15 * VWAP part
  + 0.20 * volume part, where the gap part is gap / (2 * GAP_MIN_PCT), the change
  part change / 2 %, both clipped to -1..1, the VWAP part +1 above and -1 below, the
  volume part relative volume clipped to 0..1;
- gap and go: gap >= ``GAP_MIN_PCT`` and above the pre-market VWAP.

Final score (0..1.1) = half the watchlist score / 100, half (momentum + 1) / 2, plus
0.1 for a gap-and-go: the day trader watches the list in this order. Symbols that did
not validate stay below the validated ones, unranked by momentum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from day_trader.signals import gap_pct
from market.calendar import session
from phases.runner import PhaseContext, PhaseError, PhaseResult, Progress
from shared_state import WatchlistItem
from shared_state.phase_data import PremarketSnapshot
from telemetry.tracing import span

GAP_AND_GO_BONUS = 0.1
NEUTRAL_MOMENTUM = 0.0


@dataclass(frozen=True)
class Figures:
    """The pre-market figures of one symbol."""

    last: float | None
    gap_pct: float | None
    change_pct: float | None
    above_vwap: bool | None
    volume: float
    rel_volume: float | None
    momentum: float | None
    gap_and_go: bool
    reason: str


def _clip(value: float, low: float = -1.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


def figures(
    bars: pd.DataFrame, prior_close: float | None, avg_volume: float | None, gap_min_pct: float
) -> Figures:
    """Return the pre-market figures of ``bars`` (pre-market 1-min bars, oldest first)."""
    if bars.empty or prior_close is None:
        why = "no pre-market trades" if bars.empty else "no prior close"
        return Figures(None, None, None, None, 0.0, None, None, False, why)
    last = float(bars["close"].iloc[-1])
    gap = gap_pct(prior_close, last)
    change = gap_pct(float(bars["open"].iloc[0]), last)
    volume = float(bars["volume"].sum())
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    vwap = float((typical * bars["volume"]).sum() / volume) if volume > 0 else last
    above = last >= vwap
    rel = volume / (0.1 * avg_volume) if avg_volume else None
    momentum = (
        0.40 * _clip(gap / (2.0 * max(gap_min_pct, 0.5)))
        + 0.25 * _clip(change / 2.0)
        + 0.15 * (1.0 if above else -1.0)
        + 0.20 * _clip(rel or 0.0, 0.0, 1.0)
    )
    go = gap >= gap_min_pct and above
    reason = (
        f"gap {gap:+.2f}%, pre-market {change:+.2f}%, {'above' if above else 'below'} VWAP "
        f"{vwap:.2f}, volume {volume:,.0f}"
        + (f" ({rel:.2f}x of 10% avg)" if rel is not None else "")
        + f", momentum {momentum:+.2f}"
        + (", GAP-AND-GO" if go else "")
    )
    return Figures(last, gap, change, above, volume, rel, round(momentum, 4), go, reason)


def final_score(watchlist_score: float, f: Figures) -> float:
    """Return the final ranking score of a validated symbol (see the module docstring)."""
    momentum = f.momentum if f.momentum is not None else NEUTRAL_MOMENTUM
    score = 0.5 * _clip(watchlist_score / 100.0, 0.0, 1.0) + 0.5 * (momentum + 1.0) / 2.0
    return round(score + (GAP_AND_GO_BONUS if f.gap_and_go else 0.0), 4)


async def premarket_bars(ctx: PhaseContext, symbol: str) -> pd.DataFrame:
    """Return today's completed 1-min bars of ``symbol`` that started before the open."""
    adapter = await ctx.broker.get()
    with span("broker.bars_1min", symbol=symbol):
        bars = await adapter.bars_1min(symbol, include_premarket=True)
    start = session(ctx.trading_date)
    if bars.empty:
        return bars
    index = bars.index
    keep = (index >= pd.Timestamp(start.premarket_start)) & (index < pd.Timestamp(start.open))
    return bars.loc[keep]


def ranked_rows(
    items: list[WatchlistItem], found: dict[str, Figures]
) -> tuple[list[WatchlistItem], list[PremarketSnapshot]]:
    """Return the re-ranked watchlist rows and the pre-market snapshots."""
    validated = [i for i in items if i.validated]
    scores = {i.symbol: final_score(i.score, found[i.symbol]) for i in validated}
    validated.sort(key=lambda i: (-scores[i.symbol], i.rank))
    others = [i for i in items if not i.validated]
    rows, snapshots = [], []
    for rank, item in enumerate(validated + others, start=1):
        f = found.get(item.symbol)
        extra = dict(item.extra)
        if f is not None:
            extra.update(
                watchlist_rank=item.rank,
                momentum=f.momentum,
                gap_and_go=f.gap_and_go,
                premarket_last=f.last,
                premarket=f.reason,
                final_score=scores[item.symbol],
            )
            snapshots.append(
                PremarketSnapshot(
                    item.symbol,
                    rank,
                    f.last,
                    f.gap_pct,
                    f.momentum,
                    f.gap_and_go,
                    scores[item.symbol],
                    f.reason,
                    {"change_pct": f.change_pct, "rel_volume": f.rel_volume, "volume": f.volume},
                )
            )
        gap = f.gap_pct if f is not None and f.gap_pct is not None else item.gap_pct
        rows.append(replace(item, rank=rank, gap_pct=_finite(gap), extra=_finite_values(extra)))
    return rows, snapshots


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _finite_values(extra: dict[str, object]) -> dict[str, object]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in extra.items()}


async def run(ctx: PhaseContext) -> PhaseResult:
    """Measure the pre-market of each validated symbol and write the final ranking."""
    items = ctx.store.watchlist(ctx.trading_date)
    validated = [i for i in items if i.validated]
    if not validated:
        raise PhaseError(f"no validated watchlist symbol for {ctx.trading_date}")
    snaps = {s.symbol: s for s in ctx.data.snapshots(ctx.trading_date)}
    found: dict[str, Figures] = {}
    progress = Progress(ctx.log, "premarket", len(validated))
    try:
        for item in validated:
            snap = snaps.get(item.symbol)
            bars = await premarket_bars(ctx, item.symbol)
            found[item.symbol] = figures(
                bars,
                snap.prior_close if snap else None,
                snap.avg_volume if snap else None,
                ctx.settings.gap_min_pct,
            )
            progress.step(item.symbol)
    finally:
        progress.close()
    rows, snapshots = ranked_rows(items, found)
    ctx.data.replace_premarket(ctx.trading_date, snapshots)
    ctx.store.replace_watchlist(ctx.trading_date, rows)
    gappers = [s.symbol for s in snapshots if s.gap_and_go]
    order = [r.symbol for r in rows if r.validated]
    summary = f"final ranking {', '.join(order)}; gap-and-go: {', '.join(gappers) or 'none'}"
    return PhaseResult(
        summary,
        {
            "ranking": order,
            "gap_and_go": gappers,
            "gaps": {s.symbol: s.gap_pct for s in snapshots},
            "momentum": {s.symbol: s.momentum for s in snapshots},
        },
    )
