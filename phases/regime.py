"""The market regime label of a day, from a market proxy's daily closes (pure functions).

The proxy is SPY (the S&P 500 ETF). Over the last 20 sessions:

- volatility: the standard deviation of daily close-to-close returns, in %;
- 20-session return, in %; the close against its 20-session mean.

First match wins:

1. ``high_volatility``: volatility >= 2.0 % (big daily swings, whatever the direction);
2. ``trending_up``: return >= +4 % and the close above its mean;
3. ``trending_down``: return <= -4 % and the close below its mean;
4. ``low_volatility``: volatility <= 0.7 %;
5. ``ranging``: anything else.

``unknown`` when there are fewer than 21 closes: the label is never guessed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

PROXY = "SPY"
SESSIONS = 20
HIGH_VOLATILITY_PCT = 2.0
LOW_VOLATILITY_PCT = 0.7
TREND_PCT = 4.0


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    HIGH_VOLATILITY = "high_volatility"
    LOW_VOLATILITY = "low_volatility"
    RANGING = "ranging"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RegimeReading:
    """The label and the figures it was read from."""

    label: Regime
    proxy: str
    volatility_pct: float | None
    return_20d_pct: float | None
    close_vs_mean_pct: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["label"] = str(self.label)
        return data


def classify(closes: Sequence[float], proxy: str = PROXY) -> RegimeReading:
    """Return the regime of the last ``SESSIONS`` sessions of ``closes`` (oldest first)."""
    if len(closes) < SESSIONS + 1:
        reason = f"only {len(closes)} daily closes of {proxy}; {SESSIONS + 1} needed"
        return RegimeReading(Regime.UNKNOWN, proxy, None, None, None, reason)
    window = list(closes[-(SESSIONS + 1) :])
    returns = [(b / a - 1.0) * 100.0 for a, b in zip(window, window[1:], strict=False)]
    volatility = statistics.stdev(returns)
    change = (window[-1] / window[0] - 1.0) * 100.0
    mean = statistics.fmean(window[1:])
    versus = (window[-1] / mean - 1.0) * 100.0
    label = _label(volatility, change, versus)
    reason = (
        f"{proxy} over {SESSIONS} sessions: daily volatility {volatility:.2f}%, "
        f"return {change:+.2f}%, close {versus:+.2f}% vs its mean"
    )
    return RegimeReading(
        label, proxy, round(volatility, 4), round(change, 4), round(versus, 4), reason
    )


def _label(volatility: float, change: float, versus: float) -> Regime:
    if volatility >= HIGH_VOLATILITY_PCT:
        return Regime.HIGH_VOLATILITY
    if change >= TREND_PCT and versus > 0:
        return Regime.TRENDING_UP
    if change <= -TREND_PCT and versus < 0:
        return Regime.TRENDING_DOWN
    if volatility <= LOW_VOLATILITY_PCT:
        return Regime.LOW_VOLATILITY
    return Regime.RANGING
