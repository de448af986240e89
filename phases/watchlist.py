"""Phase ``watchlist`` (07:30 ET): the day's symbols, from DeepSeek or from the rules.

1. The candidates with usable data (data phase) become a table in the prompt
   ``config/watchlist_prompt.md``.
2. With a key and calls left under the daily cap, DeepSeek answers with structured
   picks (symbol, score 0-100, reason). The answer is used only if it is valid: at
   least one pick, every symbol a candidate, no symbol twice, at most ``MAX_POSITIONS``.
3. Otherwise (no key, the cap, a timeout, 401, 429, any error, an invalid answer) the
   rule-based ranking (``rules_ranking``) is used, and the reason is recorded.

The watchlist rows carry ``source`` (``llm`` or ``rules``); every row's ``extra`` and
the ``watchlist_decided`` event say why that source was used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from phases.llm import LlmAnswer, LlmClient, Prompt, table
from phases.rules_ranking import CandidateView, Ranked, rank
from phases.runner import PhaseContext, PhaseError, PhaseResult
from shared_state import WatchlistItem, WatchlistSource
from shared_state.phase_data import Candidate, SymbolSnapshot

PROMPT_PATH = Path(__file__).resolve().parents[1] / "config" / "watchlist_prompt.md"
REASON_MAX = 500


class Pick(BaseModel):
    """One watchlist symbol chosen by the model."""

    symbol: str = Field(description="a symbol from the candidates table")
    score: float = Field(description="confidence from 0 (worst) to 100 (best)")
    reason: str = Field(description="one short sentence a trader can check")


class WatchlistAnswer(BaseModel):
    """The day's watchlist, best first."""

    picks: list[Pick]


@dataclass(frozen=True)
class Choice:
    """The ranked watchlist and where it came from."""

    source: WatchlistSource
    ranked: list[Ranked]
    fallback_reason: str | None
    llm_call_id: int | None


def _scan_place(sources: Sequence[str], scan: str) -> int | None:
    for tag in sources:
        name, _, place = tag.partition("#")
        if name == f"scan:{scan}" and place.isdigit():
            return int(place)
    return None


def candidate_views(
    snapshots: Sequence[SymbolSnapshot], candidates: Sequence[Candidate]
) -> list[CandidateView]:
    """Join the data phase's snapshots with the universe's sources (usable ones only)."""
    sources = {c.symbol: c.sources for c in candidates}
    views = []
    for s in snapshots:
        if not (s.ok and s.prior_close and s.avg_volume and s.atr_pct is not None):
            continue
        tags = sources.get(s.symbol, ())
        views.append(
            CandidateView(
                symbol=s.symbol,
                prior_close=s.prior_close,
                avg_volume=s.avg_volume,
                atr_pct=s.atr_pct,
                trend=s.trend or "flat",
                return_20d_pct=s.return_20d_pct,
                gainer_rank=_scan_place(tags, "TOP_PERC_GAIN"),
                active_rank=_scan_place(tags, "MOST_ACTIVE"),
                sources=tuple(tags),
            )
        )
    return views


def prompt_values(ctx: PhaseContext, views: Sequence[CandidateView]) -> dict[str, object]:
    """Return the ``$name`` values of the watchlist prompt."""
    s = ctx.settings
    rows = [
        {
            "symbol": v.symbol,
            "prior close": f"{v.prior_close:.2f}",
            "avg volume": f"{v.avg_volume:,.0f}",
            "ATR %": f"{v.atr_pct:.2f}",
            "trend": v.trend,
            "20d return %": "-" if v.return_20d_pct is None else f"{v.return_20d_pct:.1f}",
            "top gainer #": v.gainer_rank or "-",
            "most active #": v.active_rank or "-",
        }
        for v in views
    ]
    return {
        "trading_date": ctx.trading_date.isoformat(),
        "max_positions": s.max_positions,
        "gap_min_pct": f"{s.gap_min_pct:g}",
        "atr_min_pct": f"{s.atr_min_pct:g}",
        "rsi_max": f"{s.rsi_max:g}",
        "profit_target_pct": f"{s.profit_target_pct:g}",
        "stop_loss_pct": f"{s.stop_loss_pct:g}",
        "candidate_count": len(views),
        "candidates": table(rows),
    }


def validate_picks(
    answer: WatchlistAnswer, candidates: set[str], max_positions: int
) -> tuple[list[Ranked], list[str]]:
    """Return the picks as a ranking, and every problem that makes the answer unusable."""
    problems: list[str] = []
    symbols = [p.symbol.strip().upper() for p in answer.picks]
    if not symbols:
        problems.append("no picks")
    unknown = sorted({s for s in symbols if s not in candidates})
    if unknown:
        problems.append(f"not candidates: {', '.join(unknown)}")
    twice = sorted({s for s in symbols if symbols.count(s) > 1})
    if twice:
        problems.append(f"listed twice: {', '.join(twice)}")
    if len(symbols) > max_positions:
        problems.append(f"{len(symbols)} picks, more than MAX_POSITIONS={max_positions}")
    bad_scores = [p.symbol for p in answer.picks if not 0.0 <= p.score <= 100.0]
    if bad_scores:
        problems.append(f"score outside 0-100: {', '.join(bad_scores)}")
    ranked = [
        Ranked(symbol, round(p.score, 2), "llm: " + (p.reason.strip() or "-")[:REASON_MAX])
        for symbol, p in zip(symbols, answer.picks, strict=True)
    ]
    return ranked, problems


async def choose(ctx: PhaseContext, views: Sequence[CandidateView], llm: LlmClient) -> Choice:
    """Return the LLM's valid picks, or the rules' ranking with the reason for falling back."""
    limit = ctx.settings.max_positions
    rules = rank(views, ctx.settings.atr_min_pct, limit)
    messages = Prompt.load(PROMPT_PATH).render(prompt_values(ctx, views))
    answer: LlmAnswer = await llm.ask(ctx.trading_date, "watchlist", messages, WatchlistAnswer)
    if not answer.ok:
        return Choice(WatchlistSource.RULES, rules, answer.reason, answer.call_id)
    ranked, problems = validate_picks(answer.parsed, {v.symbol for v in views}, limit)
    if problems:
        reason = "invalid answer: " + "; ".join(problems)
        if answer.call_id is not None:  # the call itself went well; its content did not
            ctx.data.finish_llm_call(
                answer.call_id,
                "invalid",
                now=ctx.clock.now(),
                latency_ms=answer.latency_ms or 0.0,
                reason=reason,
            )
        ctx.log.warning("watchlist: LLM answer rejected: %s", reason)
        return Choice(WatchlistSource.RULES, rules, reason, answer.call_id)
    # Best first whatever order the model used; its own order breaks ties.
    ranked = sorted(ranked, key=lambda r: -r.score)
    return Choice(WatchlistSource.LLM, ranked, None, answer.call_id)


def items(choice: Choice) -> list[WatchlistItem]:
    """Return the watchlist rows of a choice."""
    extra: dict[str, object] = {"source_reason": choice.fallback_reason or "valid LLM answer"}
    if choice.fallback_reason is not None:
        extra["fallback_reason"] = choice.fallback_reason
    return [
        WatchlistItem(r.symbol, rank, r.score, r.reason, choice.source, extra=dict(extra))
        for rank, r in enumerate(choice.ranked, start=1)
    ]


async def run(ctx: PhaseContext) -> PhaseResult:
    """Choose and write the day's watchlist."""
    views = candidate_views(
        ctx.data.snapshots(ctx.trading_date, ok_only=True), ctx.data.candidates(ctx.trading_date)
    )
    if not views:
        raise PhaseError(
            f"no candidate with usable data for {ctx.trading_date}: run universe and data first"
        )
    choice = await choose(ctx, views, LlmClient(ctx.settings, ctx.data, ctx.clock))
    rows = items(choice)
    ctx.store.replace_watchlist(ctx.trading_date, rows)
    symbols = [r.symbol for r in rows]
    ctx.event(
        "watchlist_decided",
        source=str(choice.source),
        fallback_reason=choice.fallback_reason,
        llm_call_id=choice.llm_call_id,
        symbols=symbols,
    )
    why = f" (LLM not used: {choice.fallback_reason})" if choice.fallback_reason else ""
    summary = f"{len(rows)} symbols from {choice.source}{why}: {', '.join(symbols)}"
    return PhaseResult(
        summary,
        {
            "source": str(choice.source),
            "fallback_reason": choice.fallback_reason,
            "symbols": symbols,
            "candidates": len(views),
        },
    )
