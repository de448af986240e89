"""The exit manager's parameters: ``Settings`` -> ``ExitParams`` (the rules) and ``ManagerConfig``.

Both are built once at start-up and passed down frozen.

Units: EXIT_ORDER_TIMEOUT_S is documented in market seconds (an exit order has had its
chance when the *market* has moved on), so it is converted to real seconds with the
clock's speed, with a floor: an order needs at least a network round trip and a few quote
steps to fill, however fast a simulated day runs. Every other interval here is real time
(``time.monotonic``), never the virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from exit_manager.rules import ExitParams
from market.clock import Clock

#: Floor of the real-time wait before an unfilled exit order is replaced.
MIN_REPLACE_TIMEOUT_S = 0.5

#: Commands are picked up and new positions protected within this many real seconds.
MAX_PASS_INTERVAL_S = 0.5


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


def exit_params(settings: Settings, clock: Clock) -> ExitParams:
    """Return the rules' parameters from the settings (EXIT_ORDER_TIMEOUT_S made real time)."""
    timeout = max(MIN_REPLACE_TIMEOUT_S, clock.to_real_seconds(settings.exit_order_timeout_s))
    return ExitParams(
        profit_target_pct=settings.profit_target_pct,
        recovery_target_pct=settings.recovery_target_pct,
        stop_loss_pct=settings.stop_loss_pct,
        eod_flatten_minutes=settings.eod_flatten_minutes,
        daily_target_pct=settings.daily_target_pct,
        daily_loss_limit_pct=settings.daily_loss_limit_pct,
        limit_aggression_pct=settings.limit_aggression_pct,
        replace_steps=settings.exit_replace_steps,
        replace_timeout_s=timeout,
    )


def manager_config(settings: Settings, connect_deadline_s: float = 60.0) -> ManagerConfig:
    """Return the manager's timings; the pass runs at LOOP_INTERVAL_S, at most 0.5 s apart."""
    return ManagerConfig(
        pass_interval_s=min(settings.loop_interval_s, MAX_PASS_INTERVAL_S),
        connect_deadline_s=connect_deadline_s,
        status_interval_s=max(settings.heartbeat_interval_s, 0.5),
    )
