"""Phase ``post_close`` (after the close): how did the day go, and what changes tomorrow?

1. Metrics of the day's closed round trips (``metrics``), against the day's starting
   capital (``daily_state``).
2. Market data through the broker: each symbol's 1-minute bars over the last
   ``REPLAY_DAYS`` days plus one (the replay and the price charts), SPY's daily bars
   (the regime). Without the broker the report is still written, without them.
3. The market regime label (``regime``).
4. Insights: DeepSeek when a key is set and the daily cap allows, else a few
   rule-based lines; the source is recorded.
5. Parameter suggestions (``suggestions``) judged by a replay (``replay``) of the last
   ``REPLAY_DAYS`` days: accepted ones are written to ``param_sets`` for the next
   trading day, rejected ones are kept with their figures.
6. The report: ``REPORTS_DIR/<date>.md``, ``.json`` and ``.png`` (``report``), and the
   evaluation row in ``daily_evaluations``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from broker.adapter import BrokerAdapter
from day_trader.signals import EntryParams
from exit_manager.rules import ExitParams
from market.calendar import next_trading_day, session, trading_days_back
from phases import report as report_files
from phases.daily_bars import to_daily_bars
from phases.llm import LlmClient, Prompt
from phases.metrics import DayMetrics, compute, equity_curve
from phases.regime import PROXY, RegimeReading, classify
from phases.replay import DayBars, ParamValues, Replay
from phases.runner import PhaseContext, PhaseError, PhaseResult, Progress, jsonable
from phases.suggestions import Verdict, applied, judge, suggest
from shared_state import ClosedPosition
from shared_state.phase_data import Evaluation, ParameterSet, SuggestionRecord

#: Capital the replay sizes with when the day has no recorded starting capital.
DEFAULT_REPLAY_CAPITAL = 100_000.0
#: Daily bars asked for the regime (IBKR counts "45 D" in calendar days: ~31 sessions).
REGIME_COUNT = 45

INSIGHTS_PROMPT = Prompt(
    system=(
        "You review one day of an unattended intraday trading system for US stocks "
        "(gap-and-go and VWAP momentum entries, fixed profit target and stop, flat by the "
        "close). Give at most 5 short insights a trader can act on, one sentence each, "
        "each grounded in the figures given. No generic advice."
    ),
    user=(
        "Trading date: $trading_date\nMarket regime: $regime\n"
        "Metrics (JSON): $metrics\nTrades (JSON): $trades"
    ),
)


class Insights(BaseModel):
    """Insights about the trading day."""

    insights: list[str] = Field(description="at most 5 one-sentence insights")


@dataclass
class Market:
    """What the broker told us: bars per symbol, the replay days, the proxy's closes."""

    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    replay_days: list[DayBars] = field(default_factory=list)
    proxy_closes: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- parameters


def current_parameters(ctx: PhaseContext) -> tuple[ParamValues, str]:
    """Return the parameters in force today and where they come from."""
    found = ctx.data.parameters_for(ctx.trading_date)
    if found is not None:
        values = ParamValues(
            found.profit_target_pct, found.stop_loss_pct, found.size_pct, found.recovery_target_pct
        )
        return values, f"param_sets of {found.effective_date} (decided {found.decided_on})"
    s = ctx.settings
    values = ParamValues(
        s.profit_target_pct, s.stop_loss_pct, round(s.allocation * 100.0, 4), s.recovery_target_pct
    )
    return values, "settings"


def entry_params(ctx: PhaseContext) -> EntryParams:
    s = ctx.settings
    return EntryParams(
        gap_min_pct=s.gap_min_pct,
        rsi_max=s.rsi_max,
        atr_min_pct=s.atr_min_pct,
        midday_filter=s.midday_filter,
    )


def exit_params(ctx: PhaseContext, values: ParamValues) -> ExitParams:
    s = ctx.settings
    return ExitParams(
        profit_target_pct=values.profit_target_pct,
        recovery_target_pct=values.recovery_target_pct,
        stop_loss_pct=values.stop_loss_pct,
        eod_flatten_minutes=s.eod_flatten_minutes,
        daily_target_pct=s.daily_target_pct,
        daily_loss_limit_pct=s.daily_loss_limit_pct,
    )


# --------------------------------------------------------------------------- market data


def replay_symbols(
    ctx: PhaseContext, days: Sequence[date], traded: set[str]
) -> dict[date, list[str]]:
    """Return each day's symbols: its validated watchlist, else today's, else today's trades."""
    today = [w.symbol for w in ctx.store.watchlist(ctx.trading_date, validated_only=True)]
    fallback = today or sorted(traded)
    chosen = {}
    for day in days:
        listed = [w.symbol for w in ctx.store.watchlist(day, validated_only=True)]
        chosen[day] = listed or fallback
    return chosen


def split_days(symbol: str, frame: pd.DataFrame, days: Sequence[date]) -> list[DayBars]:
    """Return ``frame``'s bars per day of ``days``, each with the prior session's close."""
    if frame.empty:
        return []
    dates = frame.index.date
    found = []
    for day in days:
        bars = frame.loc[dates == day]
        before = frame.loc[dates < day]
        if bars.empty or before.empty:
            continue
        prior_day = before.index[-1].date()
        close_at = pd.Timestamp(session(prior_day).close)
        regular = before.loc[(before.index.date == prior_day) & (before.index < close_at)]
        if regular.empty:
            continue
        found.append(DayBars(day, symbol, bars, float(regular["close"].iloc[-1])))
    return found


async def minute_bars(adapter: BrokerAdapter, symbol: str, days: Sequence[date]) -> pd.DataFrame:
    """Return ``symbol``'s 1-min bars (pre-market included) of ``days``, one request a day.

    One "1 D" request per day: IBKR documents 1-minute bars for durations up to a day,
    and a missing day costs only that day.
    """
    frames = [await adapter.bars_1min(symbol, day, include_premarket=True) for day in days]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames).sort_index() if frames else pd.DataFrame()


async def load_market(ctx: PhaseContext, traded: set[str], notes: list[str]) -> Market:
    """Fetch the bars the replay, the charts and the regime need (notes say what failed)."""
    market = Market()
    try:
        adapter = await ctx.broker.get()
    except PhaseError as exc:
        notes.append(f"no market data: {exc}")
        return market
    days = trading_days_back(ctx.trading_date, ctx.settings.replay_days)
    by_day = replay_symbols(ctx, days, traded)
    symbols = sorted(set().union(*by_day.values()) | traded)
    # One session more than replayed: the first replayed day needs its prior close.
    wanted = trading_days_back(ctx.trading_date, ctx.settings.replay_days + 1)
    progress = Progress(ctx.log, "post_close: 1-min bars", len(symbols))
    try:
        for symbol in symbols:
            try:
                market.frames[symbol] = await minute_bars(adapter, symbol, wanted)
            except Exception as exc:  # noqa: BLE001 - one symbol missing leaves the others
                notes.append(f"no 1-min bars of {symbol}: {type(exc).__name__}: {exc}")
            progress.step(symbol)
    finally:
        progress.close()
    for day in days:
        for symbol in by_day[day]:
            if symbol in market.frames:
                market.replay_days += split_days(symbol, market.frames[symbol], [day])
    try:
        frame = await adapter.daily_bars(PROXY, REGIME_COUNT, end_day=ctx.trading_date)
        market.proxy_closes = [
            b.close for b in to_daily_bars(frame, next_trading_day(ctx.trading_date))
        ]
    except Exception as exc:  # noqa: BLE001 - the regime is then 'unknown', with the reason
        notes.append(f"no daily bars of {PROXY}: {type(exc).__name__}: {exc}")
    return market


def chart_prices(market: Market, day: date, symbols: set[str]) -> dict[str, pd.DataFrame]:
    """Return each traded symbol's regular-session bars of ``day``."""
    s = session(day)
    prices = {}
    for symbol in symbols:
        frame = market.frames.get(symbol)
        if frame is None or frame.empty:
            continue
        keep = (frame.index >= pd.Timestamp(s.open)) & (frame.index < pd.Timestamp(s.close))
        prices[symbol] = frame.loc[keep]
    return prices


# --------------------------------------------------------------------------- insights


def rule_insights(
    metrics: DayMetrics, regime: RegimeReading, trades: Sequence[ClosedPosition]
) -> list[str]:
    """Return a few plain observations (when the LLM is not used)."""
    if not trades:
        return [f"No trade today; the market was {regime.label}."]
    lines = [
        f"{metrics.trades} trades, {metrics.wins} won: net {metrics.net_pnl:+,.2f} "
        f"in a {regime.label} market.",
        "Exits: " + ", ".join(f"{k} {v}" for k, v in sorted(metrics.exits.items())) + ".",
    ]
    best = max(trades, key=lambda t: t.pnl)
    worst = min(trades, key=lambda t: t.pnl)
    lines.append(f"Best {best.symbol} {best.pnl:+,.2f}; worst {worst.symbol} {worst.pnl:+,.2f}.")
    return lines


async def insights(
    ctx: PhaseContext, metrics: DayMetrics, regime: RegimeReading, trades: Sequence[ClosedPosition]
) -> tuple[list[str], str]:
    """Return the day's insights and their source ('llm', or 'rules (why)')."""
    llm = LlmClient(ctx.settings, ctx.data, ctx.clock)
    trade_rows = [
        {"symbol": t.symbol, "reason": str(t.exit_reason), "pnl": t.pnl, "recovery": t.is_recovery}
        for t in trades
    ]
    messages = INSIGHTS_PROMPT.render(
        {
            "trading_date": ctx.trading_date.isoformat(),
            "regime": f"{regime.label} ({regime.reason})",
            "metrics": json.dumps(jsonable(metrics.as_dict())),
            "trades": json.dumps(trade_rows),
        }
    )
    answer = await llm.ask(ctx.trading_date, "insights", messages, Insights)
    if answer.ok:
        found = [i.strip() for i in answer.parsed.insights if i.strip()][:5]
        if found:
            return found, "llm"
        reason = "the LLM gave no insight"
    else:
        reason = answer.reason
    return rule_insights(metrics, regime, trades), f"rules (LLM not used: {reason})"


# --------------------------------------------------------------------------- suggestions


def records(verdicts: Sequence[Verdict]) -> list[SuggestionRecord]:
    return [
        SuggestionRecord(
            parameter=v.suggestion.parameter,
            current_value=v.suggestion.current,
            proposed_value=v.suggestion.proposed,
            reason=v.suggestion.reason,
            accepted=v.accepted,
            verdict=v.text,
            current_pnl=float(v.current["net_pnl"]) if v.current else None,
            candidate_pnl=float(v.candidate["net_pnl"]) if v.candidate else None,
            detail={"replay_current": v.current, "replay_proposed": v.candidate},
        )
        for v in verdicts
    ]


def evaluate_suggestions(
    ctx: PhaseContext,
    metrics: DayMetrics,
    regime: RegimeReading,
    current: ParamValues,
    market: Market,
) -> tuple[list[Verdict], dict[str, object] | None, dict[str, object] | None]:
    """Return the verdicts, the replay's figures with today's parameters, and what is applied."""
    suggestions = suggest(metrics, regime.label, current)
    capital = metrics.starting_capital or DEFAULT_REPLAY_CAPITAL
    replay = Replay(
        market.replay_days,
        capital=capital,
        entry=entry_params(ctx),
        exits=exit_params(ctx, current),
        max_recovery_entries=ctx.settings.max_recovery_entries,
        max_order_notional=ctx.settings.max_order_notional,
    )
    if replay.symbol_days == 0:
        verdicts = [
            Verdict(s, False, {}, {}, "rejected: no replay data (no 1-min bars)")
            for s in suggestions
        ]
        return verdicts, None, None
    base, verdicts = judge(suggestions, current, replay)
    chosen = applied(verdicts, current, replay, base)
    if chosen is None:
        return verdicts, base.summary(), None
    values, why = chosen
    effective = next_trading_day(ctx.trading_date)
    ctx.data.set_parameters(
        ParameterSet(
            effective_date=effective,
            profit_target_pct=values.profit_target_pct,
            stop_loss_pct=values.stop_loss_pct,
            size_pct=values.size_pct,
            recovery_target_pct=values.recovery_target_pct,
            decided_on=ctx.trading_date,
            created_at=ctx.clock.now(),
            reason=why,
        )
    )
    return verdicts, base.summary(), {**asdict(values), "effective_date": effective, "reason": why}


# --------------------------------------------------------------------------- the phase


async def run(ctx: PhaseContext) -> PhaseResult:
    """Evaluate the day, judge the suggestions, write the report."""
    day = ctx.trading_date
    trades = ctx.store.closed_today(day)
    daily = ctx.store.daily_state(day)
    metrics = compute(trades, daily.starting_capital if daily else None)
    current, current_source = current_parameters(ctx)
    notes: list[str] = []
    traded = {t.symbol for t in trades}
    market = await load_market(ctx, traded, notes)
    regime = classify(market.proxy_closes)
    found_insights, insights_source = await insights(ctx, metrics, regime, trades)
    verdicts, replay_figures, next_params = await asyncio.to_thread(
        evaluate_suggestions, ctx, metrics, regime, current, market
    )
    ctx.data.replace_suggestions(day, records(verdicts))
    start = session(day).open
    report = report_files.DailyReport(
        trading_date=day,
        generated_at=ctx.clock.now(),
        metrics=metrics,
        equity=equity_curve(trades, metrics.starting_capital or 0.0, start),
        trades=trades,
        regime=regime,
        insights=found_insights,
        insights_source=insights_source,
        verdicts=verdicts,
        replay=replay_figures,
        next_parameters=next_params,
        current_parameters={**asdict(current), "source": current_source},
        watchlist=ctx.store.watchlist(day),
        phases=ctx.store.phase_runs(day),
        notes=notes,
        prices=chart_prices(market, day, traded),
    )
    files = await asyncio.to_thread(report_files.write, report, ctx.settings.reports_dir)
    record_evaluation(ctx, report, files)
    return result_of(report, files)


def record_evaluation(
    ctx: PhaseContext, report: report_files.DailyReport, files: Sequence[Path]
) -> None:
    """Write the day's evaluation row and one event per judged suggestion."""
    ctx.data.put_evaluation(
        Evaluation(
            trading_date=report.trading_date,
            created_at=ctx.clock.now(),
            metrics=jsonable(report.metrics.as_dict()),
            regime=str(report.regime.label),
            regime_detail=jsonable(report.regime.as_dict()),
            insights=list(report.insights),
            insights_source=report.insights_source,
            report_files=[str(f) for f in files],
        )
    )
    for v in report.verdicts:
        kind = "suggestion_accepted" if v.accepted else "suggestion_rejected"
        ctx.event(
            kind, parameter=v.suggestion.parameter, proposed=v.suggestion.proposed, verdict=v.text
        )


def result_of(report: report_files.DailyReport, files: Sequence[Path]) -> PhaseResult:
    """Return the phase's summary line and detail."""
    m, verdicts, applied_from = report.metrics, report.verdicts, report.next_parameters
    accepted = sum(v.accepted for v in verdicts)
    summary = (
        f"{m.trades} trades, net {m.net_pnl:+,.2f}, regime {report.regime.label}; "
        f"{len(verdicts)} suggestions, {accepted} accepted"
        + (f", applied from {applied_from['effective_date']}" if applied_from else "")
        + f"; report {files[0].parent}/{report.trading_date}.*"
    )
    return PhaseResult(
        summary,
        {
            "metrics": m.as_dict(),
            "regime": str(report.regime.label),
            "insights_source": report.insights_source,
            "suggestions": [v.text for v in verdicts],
            "next_parameters": dict(applied_from) if applied_from else None,
            "report_files": [str(f) for f in files],
            "notes": list(report.notes),
        },
    )
