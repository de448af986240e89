"""The backtest's parameters: the live rules' parameter objects, built from ``Settings``.

Parameters come from the same validated settings the live processes load, so a value
the live system would refuse (a stop at or above the target, a percentage out of
range) is refused here with the same message. ``with_overrides`` is how the CLI and
the sweep change settings: through ``load_settings``, never around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backtest.fills import FillModel
from config.settings import SPECS, Settings, load_settings
from day_trader.params import TraderParams, entry_params, exit_params, gate_params
from day_trader.signals import EntryParams
from day_trader.sizing import GateParams
from exit_manager.rules import ExitParams

#: Settings a backtest (and a sweep) may vary: the ones the decision rules read.
STRATEGY_SETTINGS: tuple[str, ...] = (
    "allocation",
    "max_positions",
    "profit_target_pct",
    "stop_loss_pct",
    "recovery_target_pct",
    "max_recovery_entries",
    "daily_target_pct",
    "daily_loss_limit_pct",
    "max_trades_per_day",
    "max_order_notional",
    "price_collar_pct",
    "limit_aggression_pct",
    "rsi_max",
    "atr_min_pct",
    "gap_min_pct",
    "midday_filter",
    "eod_flatten_minutes",
)

_ENV_NAME = {spec.attr: spec.env for spec in SPECS}
# The loop's timing parameters mean nothing to a backtest: orders fill at once (F3).
_UNUSED_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class BacktestConfig:
    """Everything one backtest run decides with."""

    entry: EntryParams
    exit: ExitParams
    gate: GateParams
    allocation: float
    max_order_notional: float
    price_collar_pct: float
    max_recovery_entries: int
    quote_max_age_s: float
    starting_capital: float
    fill: FillModel = field(default_factory=FillModel)
    #: The settings values of ``STRATEGY_SETTINGS``, for reports and sweep rankings.
    values: Mapping[str, object] = field(default_factory=dict)
    #: The day trader's own parameter object, derived from the fields above (so that
    #: ``dataclasses.replace`` of any of them keeps it in step): ``decide_entry`` reads it.
    trader: TraderParams = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        trader = TraderParams(
            entry=self.entry,
            gate=self.gate,
            exit=self.exit,
            allocation=self.allocation,
            max_order_notional=self.max_order_notional,
            price_collar_pct=self.price_collar_pct,
            limit_aggression_pct=self.exit.limit_aggression_pct,
            quote_max_age_s=self.quote_max_age_s,
            max_recovery_entries=self.max_recovery_entries,
            max_trades_per_day=self.gate.max_trades_per_day,
            max_positions=self.gate.max_positions,
            entry_order_timeout_market_s=_UNUSED_TIMEOUT_S,
            loop_interval_s=_UNUSED_TIMEOUT_S,
            eod_flatten_minutes=self.exit.eod_flatten_minutes,
        )
        object.__setattr__(self, "trader", trader)


def config_from_settings(
    settings: Settings, *, starting_capital: float | None = None, fill: FillModel | None = None
) -> BacktestConfig:
    """Return the backtest configuration the live processes would run with ``settings``."""
    capital = settings.sim_starting_cash if starting_capital is None else starting_capital
    if not capital > 0:
        raise ValueError(f"starting capital must be positive, got {capital!r}")
    # The day trader's own settings -> parameters mapping, so both read settings alike.
    return BacktestConfig(
        entry=entry_params(settings),
        exit=exit_params(settings),
        gate=gate_params(settings),
        allocation=settings.allocation,
        max_order_notional=settings.max_order_notional,
        price_collar_pct=settings.price_collar_pct,
        max_recovery_entries=settings.max_recovery_entries,
        quote_max_age_s=settings.quote_max_age_s,
        starting_capital=float(capital),
        fill=fill or FillModel(),
        values={name: getattr(settings, name) for name in STRATEGY_SETTINGS},
    )


def with_overrides(settings: Settings, overrides: Mapping[str, str]) -> Settings:
    """Return ``settings`` with ``overrides`` (lower-case setting name -> text) applied.

    Raise ``ValueError`` naming an unknown or non-strategy setting, and ``SettingsError``
    (a ``ValueError``) for a value the settings refuse.
    """
    unknown = sorted(set(overrides) - set(STRATEGY_SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(STRATEGY_SETTINGS)}"
        )
    environ = {
        spec.env: _as_text(getattr(settings, spec.attr)) for spec in SPECS if not spec.secret
    }
    environ.update({_ENV_NAME[name]: text for name, text in overrides.items()})
    return load_settings(environ=environ, env_file=None)


def _as_text(value: object) -> str:
    """Return a setting's value as the text ``load_settings`` parses back to it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # numbers, choices and paths read back from their str()
