"""The rule-based watchlist: used whenever the LLM is not (no key, cap, failure, bad answer).

Each candidate scores 0-100 as a weighted sum of four parts, each 0-1:

- volatility (35): ATR % over twice ``ATR_MIN_PCT``, capped at 1. The standard entry
  needs ATR of at least ``ATR_MIN_PCT``; more range makes the profit target reachable.
- pre-market move (25): rank on the pre-market top % gainers scanner, 1 for the top,
  falling by 1/25 per place; 0 when not on it. Gappers are what gap-and-go trades.
- liquidity (20): log10 of the 20-session average volume, 0 at 100 k shares, 1 at 10 M.
  Thin names fill badly and gap through stops.
- trend (20): 1 up, 0.5 flat, 0 down (daily trend from the data phase).

Ties are broken by symbol, so the ranking is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WEIGHTS = {"volatility": 35.0, "move": 25.0, "liquidity": 20.0, "trend": 20.0}
TREND_PART = {"up": 1.0, "flat": 0.5, "down": 0.0}
GAINER_RANK_SPAN = 25


@dataclass(frozen=True)
class CandidateView:
    """What the rankings (rules and LLM) know about one candidate."""

    symbol: str
    prior_close: float
    avg_volume: float
    atr_pct: float
    trend: str
    return_20d_pct: float | None
    gainer_rank: int | None  # place on the pre-market top % gainers scanner
    active_rank: int | None  # place on the most-active scanner
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Ranked:
    symbol: str
    score: float  # 0-100
    reason: str


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def parts(candidate: CandidateView, atr_min_pct: float) -> dict[str, float]:
    """Return the four 0-1 parts of a candidate's score."""
    volatility = _clip(candidate.atr_pct / max(2.0 * atr_min_pct, 0.5))
    move = 0.0
    if candidate.gainer_rank is not None:
        move = _clip(1.0 - (candidate.gainer_rank - 1) / GAINER_RANK_SPAN)
    liquidity = _clip((math.log10(max(candidate.avg_volume, 1.0)) - 5.0) / 2.0)
    return {
        "volatility": volatility,
        "move": move,
        "liquidity": liquidity,
        "trend": TREND_PART.get(candidate.trend, 0.5),
    }


def score(candidate: CandidateView, atr_min_pct: float) -> Ranked:
    """Return the candidate's rules score and the reason a person can check."""
    p = parts(candidate, atr_min_pct)
    total = sum(WEIGHTS[name] * value for name, value in p.items())
    gainer = f"top gainer #{candidate.gainer_rank}" if candidate.gainer_rank else "not a top gainer"
    reason = (
        f"rules {total:.1f}: ATR {candidate.atr_pct:.2f}% ({p['volatility']:.2f}), {gainer} "
        f"({p['move']:.2f}), avg volume {candidate.avg_volume / 1e6:.1f}M "
        f"({p['liquidity']:.2f}), trend {candidate.trend} ({p['trend']:.2f})"
    )
    return Ranked(candidate.symbol, round(total, 2), reason)


def rank(candidates: Sequence[CandidateView], atr_min_pct: float, limit: int) -> list[Ranked]:
    """Return the best ``limit`` candidates by rules score, best first."""
    scored = [score(c, atr_min_pct) for c in candidates]
    scored.sort(key=lambda r: (-r.score, r.symbol))
    return scored[:limit]
