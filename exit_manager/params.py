"""The trading processes' parameters: ``Settings`` (+ today's parameter set) -> frozen objects.

The one place where the settings and the post-close evaluation's accepted parameter set
(``shared_state.phase_data``: ``param_sets``, read with ``parameters_for(day)``) are
merged. The exit manager builds its ``ExitParams`` and ``ManagerConfig`` here; the day
trader (``day_trader.params``) imports ``exit_params``, ``in_force`` and
``fill_timeout_real_s`` from here instead of repeating them.

Parameters in force (``in_force``): a set for today (the latest on or before the trading
date) replaces PROFIT_TARGET_PCT, STOP_LOSS_PCT, RECOVERY_TARGET_PCT and ALLOCATION (its
``size_pct`` is ALLOCATION in percent); without one, or with one that breaks the
settings' own rules, the settings apply. They set the target and stop of positions
opened (or adopted) from now on; an open position keeps the levels written on its row.

Units (``config.settings`` says the rule): an order-fill timeout is set in market seconds
and made real here at the clock's speed, never below ``ORDER_FILL_FLOOR_S`` real seconds
(``fill_timeout_real_s``). Every other interval here is real time (``time.monotonic``),
never the virtual clock.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from config.settings import Settings
from exit_manager.rules import ExitParams
from market.clock import Clock
from shared_state.phase_data import ParameterSet, PhaseData

log = logging.getLogger("exit_manager.params")

#: Least real time an order gets to fill before it is replaced or cancelled, however fast
#: the clock runs: a network round trip and a few quote steps.
ORDER_FILL_FLOOR_S = 0.5

#: Floor of the real-time wait before an unfilled exit order is replaced.
MIN_REPLACE_TIMEOUT_S = ORDER_FILL_FLOOR_S

#: Commands are picked up and new positions protected within this many real seconds.
MAX_PASS_INTERVAL_S = 0.5

#: ``InForce.source`` when no usable parameter set is in force.
FROM_SETTINGS = "settings"


@dataclass(frozen=True)
class ManagerConfig:
    """Timings of the exit manager's own machinery (real seconds)."""

    #: Period of the periodic pass: commands, EOD, daily P&L, order timeouts, drift.
    pass_interval_s: float = MAX_PASS_INTERVAL_S
    #: Give up (exit non-zero, not ready) when the broker is not reachable this long.
    connect_deadline_s: float = 60.0
    #: Wait this long after an order's final status for its commission reports.
    commission_wait_s: float = 2.0
    #: A cancel with no final status after this long makes the order be looked up again.
    cancel_timeout_s: float = 5.0
    #: While an exit order is UNKNOWN, ask the broker for a fresh snapshot this often.
    unknown_reconcile_s: float = 5.0
    #: A broker/DB difference must last this long before it is acted on (fills and
    #: position reports arrive in separate messages; a snapshot between them lies).
    discrepancy_grace_s: float = 3.0
    #: After the adapter refused a sell (collar, cap...), wait this long before retrying.
    refusal_cooldown_s: float = 2.0
    #: After an exit failed for good (rejections), the position waits this long.
    failure_cooldown_s: float = 30.0
    #: Rejected sells of one exit before it is given up (alert, position back to OPEN).
    max_rejections: int = 3
    #: Publish the status detail at most this often.
    status_interval_s: float = 2.0
    #: Attempts of the start-up reconciliation before the process gives up.
    reconcile_attempts: int = 3


@dataclass(frozen=True)
class InForce:
    """The target, stop and size a process trades with today, and where they come from."""

    source: str  # FROM_SETTINGS, or "param_sets of <effective date> (decided <date>)"
    profit_target_pct: float
    stop_loss_pct: float
    recovery_target_pct: float
    allocation: float  # fraction of ExcessLiquidity (ALLOCATION)
    reason: str = ""  # why the evaluation chose the set, or why it was not used

    def detail(self) -> dict[str, object]:
        """Return the fields for the ``params_in_force`` event."""
        return asdict(self)


def in_force(settings: Settings, param_set: ParameterSet | None) -> InForce:
    """Return the parameters in force: ``param_set`` over ``settings`` (see the module doc)."""
    if param_set is None:
        return _from_settings(settings, "")
    problem = set_problem(param_set)
    if problem is not None:
        return _from_settings(settings, f"param_sets of {param_set.effective_date} {problem}")
    return InForce(
        source=f"param_sets of {param_set.effective_date} (decided {param_set.decided_on})",
        profit_target_pct=param_set.profit_target_pct,
        stop_loss_pct=param_set.stop_loss_pct,
        recovery_target_pct=param_set.recovery_target_pct,
        allocation=param_set.size_pct / 100.0,
        reason=param_set.reason,
    )


def _from_settings(settings: Settings, reason: str) -> InForce:
    return InForce(
        source=FROM_SETTINGS,
        profit_target_pct=settings.profit_target_pct,
        stop_loss_pct=settings.stop_loss_pct,
        recovery_target_pct=settings.recovery_target_pct,
        allocation=settings.allocation,
        reason=reason,
    )


def set_problem(param_set: ParameterSet) -> str | None:
    """Return why ``param_set`` must not be traded with (the settings' own rules), or None."""
    pcts = {
        "profit_target_pct": param_set.profit_target_pct,
        "stop_loss_pct": param_set.stop_loss_pct,
        "recovery_target_pct": param_set.recovery_target_pct,
    }
    for name, value in pcts.items():
        if not (math.isfinite(value) and 0.01 <= value <= 50.0):
            return f"breaks the settings' range: {name}={value!r} (0.01 to 50)"
    if not (math.isfinite(param_set.size_pct) and 0.1 <= param_set.size_pct <= 100.0):
        return f"breaks the settings' range: size_pct={param_set.size_pct!r} (0.1 to 100)"
    if param_set.stop_loss_pct >= param_set.profit_target_pct:
        return "breaks the settings' rule: the stop must be below the target"
    if param_set.recovery_target_pct > param_set.profit_target_pct:
        return "breaks the settings' rule: the recovery target must not exceed the target"
    return None


def load_param_set(db_path: Path, day: date) -> ParameterSet | None:
    """Return the parameter set in force on ``day`` (blocking: run it in a thread).

    None when there is none, and when it cannot be read: that is logged, and the
    settings apply (an unreadable evaluation must never keep a process from trading
    safely with its documented defaults).
    """
    try:
        data = PhaseData(db_path)
        try:
            return data.parameters_for(day)
        finally:
            data.close()
    except Exception as exc:  # noqa: BLE001 - any failure here means "use the settings"
        log.warning("parameter sets in %s not readable (%s): the settings apply", db_path, exc)
        return None


def fill_timeout_real_s(market_seconds: float, clock: Clock | None) -> float:
    """Return the real seconds an order gets to fill: ``market_seconds`` at the clock's speed.

    Never below ``ORDER_FILL_FLOOR_S``. ``clock`` None is the wall clock (1:1).
    """
    real = market_seconds if clock is None else clock.to_real_seconds(market_seconds)
    return max(ORDER_FILL_FLOOR_S, real)


def exit_params(
    settings: Settings, clock: Clock | None = None, param_set: ParameterSet | None = None
) -> ExitParams:
    """Return the exit rules' parameters: ``settings`` with today's ``param_set`` in force.

    EXIT_ORDER_TIMEOUT_S (market seconds) becomes ``replace_timeout_s`` in real seconds
    (``fill_timeout_real_s``).
    """
    chosen = in_force(settings, param_set)
    return ExitParams(
        profit_target_pct=chosen.profit_target_pct,
        recovery_target_pct=chosen.recovery_target_pct,
        stop_loss_pct=chosen.stop_loss_pct,
        eod_flatten_minutes=settings.eod_flatten_minutes,
        daily_target_pct=settings.daily_target_pct,
        daily_loss_limit_pct=settings.daily_loss_limit_pct,
        limit_aggression_pct=settings.limit_aggression_pct,
        replace_steps=settings.exit_replace_steps,
        replace_timeout_s=fill_timeout_real_s(settings.exit_order_timeout_s, clock),
    )


def manager_config(settings: Settings, connect_deadline_s: float = 60.0) -> ManagerConfig:
    """Return the manager's timings; the pass runs at LOOP_INTERVAL_S, at most 0.5 s apart."""
    return ManagerConfig(
        pass_interval_s=min(settings.loop_interval_s, MAX_PASS_INTERVAL_S),
        connect_deadline_s=connect_deadline_s,
        status_interval_s=max(settings.heartbeat_interval_s, 0.5),
    )
