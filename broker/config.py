"""The adapter's frozen configuration, built once from the validated Settings."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from broker.pacing import DEFAULT_BURST, HISTORY_REPEAT_WINDOW_S, MAX_MESSAGES_PER_SECOND


@dataclass(frozen=True)
class AdapterConfig:
    """Everything the broker adapter needs to know; real-time seconds unless named market."""

    host: str = "127.0.0.1"
    port: int = 7499
    #: IB_ACCOUNT: orders are refused when the connected account differs (empty: any).
    account: str = ""
    trading_mode: str = "paper"
    live_trading_confirm: str = ""
    max_order_notional: float = 25_000.0
    price_collar_pct: float = 3.0
    #: Market seconds after which a quote counts as stale.
    quote_max_age_s: float = 15.0
    #: 1 = live market data (falls back to 3 on 354/10089/10168...), 3 = delayed.
    market_data_type: int = 1
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    #: An order with no acknowledgement after this long is UNKNOWN (never "cancelled").
    ack_timeout_s: float = 5.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    backoff_jitter: float = 0.3
    #: Wait at least this long after error 326 (client id in use) before trying again.
    client_id_in_use_delay_s: float = 2.0
    #: Give up (state FATAL) after this many failed attempts in a row; None: never.
    max_connect_attempts: int | None = None
    #: At most this many API messages in any one second (TWS allows 50)...
    messages_per_second: float = MAX_MESSAGES_PER_SECOND
    #: ...of which this many may go at once; the sustained rate is the difference.
    message_burst: float = DEFAULT_BURST
    history_repeat_window_s: float = HISTORY_REPEAT_WINDOW_S

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> AdapterConfig:
        """Return the config of a ``config.settings.Settings`` object, with ``overrides``."""
        base = cls(
            host=settings.broker_host,
            port=settings.broker_port,
            account=settings.ib_account,
            trading_mode=settings.trading_mode,
            live_trading_confirm=settings.live_trading_confirm,
            max_order_notional=settings.max_order_notional,
            price_collar_pct=settings.price_collar_pct,
            quote_max_age_s=settings.quote_max_age_s,
        )
        return replace(base, **overrides)

    @classmethod
    def coerce(cls, config: Any) -> AdapterConfig:
        """Return ``config`` itself when it is an AdapterConfig, else build one from Settings."""
        return config if isinstance(config, cls) else cls.from_settings(config)

    def __repr__(self) -> str:
        # The confirmation phrase is not a secret, but it has no business in logs either.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["live_trading_confirm"] = "(set)" if self.live_trading_confirm else ""
        return "AdapterConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"
