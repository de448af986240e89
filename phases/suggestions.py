"""Parameter suggestions after the close, and the replay that accepts or rejects them.

Suggestions come from two tables (one per parameter at most; the day's own figures
come before the regime), each a step from the parameter in force today:

==========================  ==============================================  ============
when                        why                                             change
==========================  ==============================================  ============
>= 2 trades, half stopped   the stop is too tight for the day's swings     stop +0.2
>= 2 trades, half at EOD,   the target is out of reach                     target -0.3
no target hit
>= 3 trades, win rate >=    a strong day: a little more size               size +1
60 %, profit factor >= 1.5
>= 3 trades, net P&L < 0    a losing day: a little less size               size -1
trending up                 trends carry: let winners run                  target +0.3
trending down               a falling market: smaller positions            size -2
high volatility             swings need room / smaller positions           stop +0.3,
                                                                            size -1
low volatility              small ranges: take profits sooner              target -0.3
ranging                     moves fade: take profits sooner                target -0.2
==========================  ==============================================  ============

Every proposed value is clipped to its bounds (target 0.8-3.0 %, stop 0.5-2.0 %, size
3-10 %) and must keep the stop below the target. A suggestion is **accepted** only if
the replay of the last ``REPLAY_DAYS`` days with it makes more net P&L than with the
parameters in force (by at least one cent); otherwise it is **rejected**, and both
figures are recorded either way. Accepted changes are applied together for the next
trading day if together they still beat the current parameters, else only the best one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from phases.metrics import DayMetrics
from phases.regime import Regime
from phases.replay import Parameter, ParamValues, Replay, ReplayResult

BOUNDS: dict[str, tuple[float, float]] = {
    "profit_target_pct": (0.8, 3.0),
    "stop_loss_pct": (0.5, 2.0),
    "size_pct": (3.0, 10.0),
}
MIN_GAIN = 0.01  # dollars a candidate must beat the current parameters by

Rule = tuple[Callable[[DayMetrics], bool], Parameter, float, str]


def _share(metrics: DayMetrics, reason: str) -> float:
    return metrics.exits.get(reason, 0) / metrics.trades if metrics.trades else 0.0


METRIC_RULES: tuple[Rule, ...] = (
    (
        lambda m: m.trades >= 2 and _share(m, "stop") >= 0.5,
        "stop_loss_pct",
        +0.2,
        "half the trades or more hit the stop: the stop is too tight for the day's swings",
    ),
    (
        lambda m: m.trades >= 2 and _share(m, "eod") >= 0.5 and not m.exits.get("target"),
        "profit_target_pct",
        -0.3,
        "half the trades or more ended at the close without a target hit: target out of reach",
    ),
    (
        lambda m: (
            m.trades >= 3
            and (m.win_rate_pct or 0) >= 60
            and (m.profit_factor is None or m.profit_factor >= 1.5)
        ),
        "size_pct",
        +1.0,
        "a strong day (win rate >= 60%, profit factor >= 1.5): a little more size",
    ),
    (
        lambda m: m.trades >= 3 and m.net_pnl < 0,
        "size_pct",
        -1.0,
        "a losing day: a little less size",
    ),
)

REGIME_RULES: dict[Regime, tuple[tuple[Parameter, float, str], ...]] = {
    Regime.TRENDING_UP: (("profit_target_pct", +0.3, "trending up: let winners run"),),
    Regime.TRENDING_DOWN: (("size_pct", -2.0, "trending down: smaller positions"),),
    Regime.HIGH_VOLATILITY: (
        ("stop_loss_pct", +0.3, "high volatility: stops need more room"),
        ("size_pct", -1.0, "high volatility: smaller positions"),
    ),
    Regime.LOW_VOLATILITY: (
        ("profit_target_pct", -0.3, "low volatility: small ranges, take profits sooner"),
    ),
    Regime.RANGING: (("profit_target_pct", -0.2, "ranging: moves fade, take profits sooner"),),
    Regime.UNKNOWN: (),
}


@dataclass(frozen=True)
class Suggestion:
    parameter: Parameter
    current: float
    proposed: float
    reason: str


@dataclass(frozen=True)
class Verdict:
    """A suggestion with the replay figures of the current and the proposed parameters."""

    suggestion: Suggestion
    accepted: bool
    current: dict[str, float | int]
    candidate: dict[str, float | int]
    text: str


def clip(parameter: str, value: float) -> float:
    """Return ``value`` within the parameter's bounds, rounded to 0.01."""
    low, high = BOUNDS[parameter]
    return round(min(high, max(low, value)), 2)


def _consistent(values: ParamValues) -> bool:
    return values.stop_loss_pct < values.profit_target_pct


def suggest(metrics: DayMetrics, regime: Regime, current: ParamValues) -> list[Suggestion]:
    """Return the day's suggestions (see the module docstring), at most one per parameter."""
    wanted: list[tuple[Parameter, float, str]] = [
        (parameter, step, why) for test, parameter, step, why in METRIC_RULES if test(metrics)
    ]
    wanted += list(REGIME_RULES.get(regime, ()))
    found: dict[str, Suggestion] = {}
    for parameter, step, why in wanted:
        if parameter in found:
            continue
        now = getattr(current, parameter)
        proposed = clip(parameter, now + step)
        if abs(proposed - now) < 1e-9 or not _consistent(current.changed(parameter, proposed)):
            continue
        found[parameter] = Suggestion(parameter, now, proposed, why)
    return list(found.values())


def judge(
    suggestions: Sequence[Suggestion], current: ParamValues, replay: Replay
) -> tuple[ReplayResult, list[Verdict]]:
    """Replay the current parameters and each suggestion; return the verdict on each."""
    base = replay.run(current)
    verdicts = []
    for s in suggestions:
        result = replay.run(current.changed(s.parameter, s.proposed))
        gain = result.net_pnl - base.net_pnl
        accepted = bool(gain >= MIN_GAIN)
        text = (
            f"{'accepted' if accepted else 'rejected'}: replay of {replay.days} days "
            f"({replay.symbol_days} symbol-days) made {result.net_pnl:+.2f} in "
            f"{len(result.trades)} trades with {s.parameter}={s.proposed:g} against "
            f"{base.net_pnl:+.2f} in {len(base.trades)} trades with {s.current:g}"
        )
        verdicts.append(Verdict(s, accepted, base.summary(), result.summary(), text))
    return base, verdicts


def applied(
    verdicts: Sequence[Verdict], current: ParamValues, replay: Replay, base: ReplayResult
) -> tuple[ParamValues, str] | None:
    """Return the parameters for the next day and why, or None when nothing is accepted."""
    accepted = [v for v in verdicts if v.accepted]
    if not accepted:
        return None
    together = current
    for v in accepted:
        together = together.changed(v.suggestion.parameter, v.suggestion.proposed)
    combined = replay.run(together)
    if combined.net_pnl - base.net_pnl >= MIN_GAIN and _consistent(together):
        names = ", ".join(v.suggestion.parameter for v in accepted)
        return together, (
            f"{names} changed: replay {combined.net_pnl:+.2f} against {base.net_pnl:+.2f}"
        )
    best = max(accepted, key=lambda v: float(v.candidate["net_pnl"]))
    values = current.changed(best.suggestion.parameter, best.suggestion.proposed)
    return (
        values,
        f"only {best.suggestion.parameter} changed (together they did worse): {best.text}",
    )
