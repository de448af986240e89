"""Settings (+ today's parameter set) -> the frozen parameter objects of the day trader.

Built once at start-up from the validated ``config.settings.Settings`` and the parameter
set the post-close evaluation accepted for today; everything below the entry point reads
these, never the settings object (freqtrade's untyped config dicts are what we avoid).
The merge of settings and parameter set (target, stop, recovery target, allocation) is
``exit_manager.params``'s, shared with the exit manager: ``exit_params`` and ``in_force``
come from there.

Units: percentages in percent, ``*_market_s`` in market seconds (the trading clock),
every other ``*_s`` in real seconds (``time.monotonic``). The entry's fill timeout is
made real with ``exit_manager.params.fill_timeout_real_s`` (at the clock's speed, never
below a real-time floor) where it is applied (``entries``).
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from day_trader.signals import EntryParams
from day_trader.sizing import GateParams
from exit_manager.params import exit_params, in_force
from exit_manager.rules import ExitParams
from market.clock import Clock
from shared_state.phase_data import ParameterSet

#: An identical skip event (symbol, reason) is recorded at most once per this many real s.
SKIP_EVENT_INTERVAL_S = 60.0
#: How often the "waiting for today's validated watchlist" line is logged (real s).
WAITING_LOG_INTERVAL_S = 60.0
#: How often the watchlist is read again while trading (real s).
WATCHLIST_POLL_S = 5.0
#: How often an order the broker does not acknowledge is looked up again (real s).
RECONCILE_INTERVAL_S = 10.0
#: A bar stream silent this long (market s) during the session is requested again.
BAR_STREAM_SILENCE_MARKET_S = 150.0


@dataclass(frozen=True)
class TraderParams:
    """Everything the day trader's loop and its rules need to know."""

    entry: EntryParams
    gate: GateParams
    exit: ExitParams
    allocation: float
    max_order_notional: float
    price_collar_pct: float
    limit_aggression_pct: float
    quote_max_age_s: float  # market seconds (the setting says so)
    max_recovery_entries: int
    max_trades_per_day: int
    max_positions: int
    #: Cancel an entry not filled after this many market seconds (ENTRY_ORDER_TIMEOUT_S),
    #: and never before ``exit_manager.params.ORDER_FILL_FLOOR_S`` real seconds.
    entry_order_timeout_market_s: float
    loop_interval_s: float
    eod_flatten_minutes: int
    skip_event_interval_s: float = SKIP_EVENT_INTERVAL_S
    waiting_log_interval_s: float = WAITING_LOG_INTERVAL_S
    watchlist_poll_s: float = WATCHLIST_POLL_S
    reconcile_interval_s: float = RECONCILE_INTERVAL_S
    bar_stream_silence_market_s: float = BAR_STREAM_SILENCE_MARKET_S


def entry_params(settings: Settings) -> EntryParams:
    """Return the entry-signal thresholds of ``settings``."""
    return EntryParams(
        gap_min_pct=settings.gap_min_pct,
        rsi_max=settings.rsi_max,
        atr_min_pct=settings.atr_min_pct,
        midday_filter=settings.midday_filter,
    )


def gate_params(settings: Settings) -> GateParams:
    """Return the entry-gate limits of ``settings`` (the cutoff is the EOD flatten time)."""
    return GateParams(
        max_trades_per_day=settings.max_trades_per_day,
        max_positions=settings.max_positions,
        heartbeat_max_age_s=settings.heartbeat_timeout_s,
        entry_cutoff_minutes=settings.eod_flatten_minutes,
    )


def trader_params(
    settings: Settings, clock: Clock | None = None, param_set: ParameterSet | None = None
) -> TraderParams:
    """Return the day trader's parameters: ``settings`` with today's ``param_set`` in force.

    The set decides the target and stop of the positions this process opens, and the
    allocation (its ``size_pct``); without one the settings do.
    """
    return TraderParams(
        entry=entry_params(settings),
        gate=gate_params(settings),
        exit=exit_params(settings, clock, param_set),
        allocation=in_force(settings, param_set).allocation,
        max_order_notional=settings.max_order_notional,
        price_collar_pct=settings.price_collar_pct,
        limit_aggression_pct=settings.limit_aggression_pct,
        quote_max_age_s=settings.quote_max_age_s,
        max_recovery_entries=settings.max_recovery_entries,
        max_trades_per_day=settings.max_trades_per_day,
        max_positions=settings.max_positions,
        entry_order_timeout_market_s=settings.entry_order_timeout_s,
        loop_interval_s=settings.loop_interval_s,
        eod_flatten_minutes=settings.eod_flatten_minutes,
    )


__all__ = [
    "TraderParams",
    "entry_params",
    "exit_params",
    "gate_params",
    "trader_params",
]
