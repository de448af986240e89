"""Settings: ``.env`` over documented defaults, parsed once into a frozen, validated object.

Every setting is one row of ``SPECS``: its environment variable, type, default, allowed
range and meaning. ``.env.example`` documents the same rows (a test keeps them in
step). Precedence, highest first: the process environment, the ``.env`` file, the
default. A bad value raises ``SettingsError`` naming the variable, the value and what
is allowed; secret values are never echoed, not even in errors.

Units of time (design 6). A duration that measures the *market* is in market seconds,
read on the trading clock: how old a quote may be (QUOTE_MAX_AGE_S) and how long the
market gets to fill an order (ENTRY_ORDER_TIMEOUT_S, EXIT_ORDER_TIMEOUT_S). At 100x
speed ten real seconds are 1000 market seconds, so a fill timeout in real seconds
would never replace an exit within a simulated day. A fill timeout is made real at the
clock's speed (``exit_manager.params.fill_timeout_real_s``) and never drops below 0.5
real seconds, a network round trip and a few quote steps. A duration that measures
*our machinery* is in real seconds (``time.monotonic``), never the virtual clock:
intervals, heartbeats and their timeouts, order acknowledgement and network timeouts,
backoff, PHASE_TIMEOUT_S, LLM_TIMEOUT_S.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

#: The value LIVE_TRADING_CONFIRM must carry before real-money trading is allowed.
LIVE_CONFIRM_PHRASE = "I-ACCEPT-REAL-MONEY-RISK"

_MASK = "********"


class SettingsError(ValueError):
    """A setting has a value that is not allowed; the message says which and what is."""

    def __init__(self, variable: str, shown_value: str, allowed: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}={shown_value} is not allowed: {allowed}")


class Secret:
    """A string that never shows itself in repr, str, logs or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the real value, for the one call that needs it (an API client)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('" + (_MASK if self._value else "") + "')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------- parsers
# Each parser takes the raw text and returns the typed value or raises ValueError with
# the "allowed" text; ``_parse_one`` turns that into a SettingsError.

Parser = Callable[[str], Any]


def _number(kind: type, lo: float | None, hi: float | None) -> Parser:
    span = _span_text(kind, lo, hi)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(span) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(span)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(span)
        return value

    return parse


def _span_text(kind: type, lo: float | None, hi: float | None) -> str:
    noun = "a whole number" if kind is int else "a number"
    if lo is not None and hi is not None:
        return f"{noun} from {lo} to {hi}"
    if lo is not None:
        return f"{noun} of at least {lo}"
    return noun


def _choice(*options: str) -> Parser:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    return parse


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false (also 1/0, yes/no, on/off)")


def _text(pattern: str | None = None, allowed: str = "") -> Parser:
    def parse(text: str) -> str:
        value = text.strip()
        if pattern and value and not re.fullmatch(pattern, value):
            raise ValueError(allowed)
        return value

    return parse


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("a non-empty file or folder path")
    return Path(text.strip())


def _optional_path(text: str) -> Path | None:
    return Path(text.strip()) if text.strip() else None


def _date_or_empty(text: str) -> str:
    value = text.strip()
    if value and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a date as YYYY-MM-DD, or empty for the latest completed session")
    return value


def _secret(text: str) -> Secret:
    return Secret(text.strip())


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Spec:
    """One setting: where it comes from, how it is parsed, and what it means."""

    env: str
    attr: str
    default: str
    parse: Parser
    doc: str
    secret: bool = False


def _s(env: str, default: str, parse: Parser, doc: str, secret: bool = False) -> Spec:
    return Spec(env, env.lower(), default, parse, doc, secret)


_PCT = _number(float, 0.01, 50.0)

SPECS: tuple[Spec, ...] = (
    # Broker connection
    _s(
        "BROKER",
        "sim",
        _choice("sim", "ibkr"),
        "sim = built-in exchange simulator (no account); ibkr = IB Gateway / TWS",
    ),
    _s(
        "IB_HOST",
        "127.0.0.1",
        _text(r"[A-Za-z0-9.\-:]+", "a host name or IP address"),
        "host of IB Gateway / TWS (BROKER=ibkr)",
    ),
    _s(
        "IB_PORT",
        "4002",
        _number(int, 1, 65535),
        "API port of IB Gateway / TWS: 4002 Gateway paper, 4001 Gateway live, "
        "7497 TWS paper, 7496 TWS live",
    ),
    _s(
        "IB_CLIENT_ID_EXIT_MANAGER",
        "11",
        _number(int, 0, 999_999),
        "IBKR client id of the exit manager",
    ),
    _s(
        "IB_CLIENT_ID_DAY_TRADER",
        "12",
        _number(int, 0, 999_999),
        "IBKR client id of the day trader",
    ),
    _s(
        "IB_CLIENT_ID_PHASES",
        "13",
        _number(int, 0, 999_999),
        "IBKR client id of the pre-market phases",
    ),
    _s(
        "IB_CLIENT_ID_SCRIPTS",
        "14",
        _number(int, 0, 999_999),
        "IBKR client id of scripts (status, liquidation)",
    ),
    _s(
        "IB_CLIENT_ID_SUPERVISOR",
        "10",
        _number(int, 0, 999_999),
        "IBKR client id the supervisor reads status with",
    ),
    _s(
        "IB_ACCOUNT",
        "",
        _text(r"[A-Z]{1,3}\d{3,12}", "an IBKR account id such as DU1234567"),
        "expected account id; orders are refused when the connected account differs (empty: any)",
    ),
    _s(
        "TRADING_MODE",
        "paper",
        _choice("paper", "live"),
        "paper = only DU... paper accounts may trade; live needs LIVE_TRADING_CONFIRM too",
    ),
    _s(
        "LIVE_TRADING_CONFIRM",
        "",
        _text(),
        f"must be exactly {LIVE_CONFIRM_PHRASE} when TRADING_MODE=live",
    ),
    # Money and risk
    _s(
        "ALLOCATION",
        "0.10",
        _number(float, 0.001, 1.0),
        "fraction of ExcessLiquidity the day trader may use, split over the watchlist",
    ),
    _s("MAX_POSITIONS", "8", _number(int, 1, 50), "watchlist size and most positions at once"),
    _s("PROFIT_TARGET_PCT", "1.8", _PCT, "sell when a position gains this % (re-entry forbidden)"),
    _s(
        "STOP_LOSS_PCT",
        "0.9",
        _PCT,
        "sell when a position loses this % (recovery re-entry allowed)",
    ),
    _s("RECOVERY_TARGET_PCT", "1.1", _PCT, "profit target % of a recovery trade after a stop"),
    _s("MAX_RECOVERY_ENTRIES", "1", _number(int, 0, 5), "recovery entries per symbol per day"),
    _s(
        "DAILY_TARGET_PCT",
        "1.8",
        _PCT,
        "realized + unrealized P&L % of starting capital that liquidates all and ends the day",
    ),
    _s("DAILY_LOSS_LIMIT_PCT", "2.0", _PCT, "P&L loss % that liquidates all and halts entries"),
    _s("MAX_TRADES_PER_DAY", "20", _number(int, 1, 500), "entries allowed per trading day"),
    _s(
        "MAX_ORDER_NOTIONAL",
        "25000",
        _number(float, 1.0, 10_000_000.0),
        "largest value of one order in USD",
    ),
    _s(
        "PRICE_COLLAR_PCT",
        "3.0",
        _PCT,
        "refuse an order whose limit is further than this % from the last price",
    ),
    _s(
        "LIMIT_AGGRESSION_PCT",
        "0.5",
        _number(float, 0.0, 5.0),
        "buy limit = ask + this %, sell limit = bid - this %",
    ),
    # Signals
    _s("RSI_MAX", "60", _number(float, 1.0, 100.0), "no entry when RSI(14) is at or above this"),
    _s("ATR_MIN_PCT", "1.0", _number(float, 0.0, 20.0), "standard entry needs ATR(14) % of price"),
    _s(
        "GAP_MIN_PCT",
        "5",
        _number(float, 0.0, 100.0),
        "gap-and-go needs a pre-market gap of this %",
    ),
    _s("MIDDAY_FILTER", "false", _boolean, "skip new standard entries 11:30-13:30 ET"),
    # Timing
    _s(
        "EOD_FLATTEN_MINUTES",
        "5",
        _number(int, 1, 120),
        "flatten every position this many minutes before the close (early closes too)",
    ),
    _s(
        "ENTRY_ORDER_TIMEOUT_S",
        "30",
        _number(float, 1.0, 600.0),
        "cancel an unfilled entry after this many market seconds (at least 0.5 real seconds)",
    ),
    _s(
        "EXIT_ORDER_TIMEOUT_S",
        "10",
        _number(float, 1.0, 600.0),
        "replace an unfilled exit more aggressively after this many market seconds "
        "(at least 0.5 real seconds)",
    ),
    _s("EXIT_REPLACE_STEPS", "3", _number(int, 0, 10), "replacements of an exit before an alert"),
    _s(
        "QUOTE_MAX_AGE_S",
        "15",
        _number(float, 1.0, 600.0),
        "a quote older than this (market seconds) is stale: no entry",
    ),
    _s("LOOP_INTERVAL_S", "1.0", _number(float, 0.05, 60.0), "decision loop period, real seconds"),
    _s("HEARTBEAT_INTERVAL_S", "2.0", _number(float, 0.1, 60.0), "heartbeat period, real seconds"),
    _s(
        "HEARTBEAT_TIMEOUT_S",
        "30",
        _number(float, 1.0, 600.0),
        "a process silent this long (real seconds) is hung",
    ),
    _s("STATUS_INTERVAL_MIN", "5", _number(float, 0.1, 120.0), "status display period, minutes"),
    # Files
    _s("DB_PATH", "data/trading_state.db", _path, "the shared-state SQLite database"),
    _s("LOG_DIR", "logs", _path, "JSON-lines logs, one per process per day (sim: per date)"),
    _s("REPORTS_DIR", "reports", _path, "daily reports, Markdown, JSON, PNG (sim: per date)"),
    _s("LOG_LEVEL", "INFO", _choice("debug", "info", "warning", "error"), "log verbosity"),
    _s(
        "SPANS_DB_PATH",
        "data/spans.db",
        _optional_path,
        "local SQLite store of OpenTelemetry spans (a simulated day: data/sim/<date>/)",
    ),
    # Outside services
    _s(
        "DEEPSEEK_API_KEY",
        "",
        _secret,
        "DeepSeek key for the LLM watchlist (empty: rules only)",
        secret=True,
    ),
    _s(
        "DEEPSEEK_BASE_URL",
        "https://api.deepseek.com",
        _text(r"https?://\S+", "an http(s) URL"),
        "DeepSeek API base URL",
    ),
    _s("DEEPSEEK_MODEL", "deepseek-chat", _text(), "DeepSeek model name"),
    _s("LLM_TIMEOUT_S", "30", _number(float, 1.0, 300.0), "timeout of one LLM call"),
    _s("LLM_MAX_CALLS_PER_DAY", "5", _number(int, 0, 100), "LLM calls allowed per trading day"),
    _s(
        "FMP_API_KEY",
        "",
        _secret,
        "optional Financial Modeling Prep key for the universe screen",
        secret=True,
    ),
    _s(
        "FMP_BASE_URL",
        "https://financialmodelingprep.com",
        _text(r"https?://\S+", "an http(s) URL"),
        "Financial Modeling Prep API base URL",
    ),
    _s(
        "LLM_MAX_RETRIES",
        "1",
        _number(int, 0, 5),
        "retries of one LLM call after a timeout, 429 or connection error",
    ),
    # Pre-market phases and the post-close evaluation
    _s(
        "UNIVERSE_STATIC_LIST",
        "",
        _text(r"[A-Za-z0-9.\- ]+(,[A-Za-z0-9.\- ]+)*", "symbols separated by commas"),
        "symbols always offered to the watchlist, e.g. AAPL,MSFT (empty: none)",
    ),
    _s(
        "UNIVERSE_SCAN_ROWS",
        "25",
        _number(int, 0, 50),
        "rows taken from each IBKR scanner (top % gainers, most active); 0: no scanner",
    ),
    _s(
        "UNIVERSE_MIN_PRICE",
        "5",
        _number(float, 0.01, 100_000.0),
        "candidates must have closed at or above this price, USD",
    ),
    _s(
        "UNIVERSE_MAX_PRICE",
        "500",
        _number(float, 0.01, 100_000.0),
        "candidates must have closed at or below this price, USD",
    ),
    _s(
        "UNIVERSE_MIN_AVG_VOLUME",
        "1000000",
        _number(float, 0.0, 1e12),
        "candidates must trade at least this many shares a day (20-session average)",
    ),
    _s(
        "UNIVERSE_MAX_CANDIDATES",
        "40",
        _number(int, 1, 200),
        "candidates kept after the filters (the LLM and the rules rank these)",
    ),
    _s(
        "PHASE_TIMEOUT_S",
        "600",
        _number(float, 10.0, 3600.0),
        "a phase still running after this many real seconds fails",
    ),
    _s(
        "REPLAY_DAYS",
        "5",
        _number(int, 1, 20),
        "trading days the post-close replay tests a parameter suggestion on",
    ),
    # Simulator
    _s("SIM_PORT", "7499", _number(int, 1, 65535), "API port of the built-in simulator"),
    _s("SIM_SEED", "7", _number(int, 0, 2**31 - 1), "seed of the synthetic market"),
    _s(
        "SIM_DATA_DIR",
        "",
        _optional_path,
        "folder of 1-min bar CSV files to replay (empty: synthetic market)",
    ),
    _s(
        "SIM_SPEED",
        "100",
        _number(float, 1.0, 5000.0),
        "virtual-clock speed: market seconds per real second",
    ),
    _s("SIM_DATE", "", _date_or_empty, "trading day to simulate (empty: latest completed session)"),
    _s("SIM_GAP_SHARE", "0.1", _number(float, 0.0, 1.0), "share of symbols that gap >= 5%"),
    _s(
        "SIM_STARTING_CASH",
        "100000",
        _number(float, 1000.0, 100_000_000.0),
        "cash of a new simulator paper account, USD",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one process (see ``SPECS`` for meanings)."""

    broker: str
    ib_host: str
    ib_port: int
    ib_client_id_exit_manager: int
    ib_client_id_day_trader: int
    ib_client_id_phases: int
    ib_client_id_scripts: int
    ib_client_id_supervisor: int
    ib_account: str
    trading_mode: str
    live_trading_confirm: str
    allocation: float
    max_positions: int
    profit_target_pct: float
    stop_loss_pct: float
    recovery_target_pct: float
    max_recovery_entries: int
    daily_target_pct: float
    daily_loss_limit_pct: float
    max_trades_per_day: int
    max_order_notional: float
    price_collar_pct: float
    limit_aggression_pct: float
    rsi_max: float
    atr_min_pct: float
    gap_min_pct: float
    midday_filter: bool
    eod_flatten_minutes: int
    entry_order_timeout_s: float
    exit_order_timeout_s: float
    exit_replace_steps: int
    quote_max_age_s: float
    loop_interval_s: float
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    status_interval_min: float
    db_path: Path
    log_dir: Path
    reports_dir: Path
    log_level: str
    spans_db_path: Path | None
    deepseek_api_key: Secret
    deepseek_base_url: str
    deepseek_model: str
    llm_timeout_s: float
    llm_max_calls_per_day: int
    fmp_api_key: Secret
    fmp_base_url: str
    llm_max_retries: int
    universe_static_list: str
    universe_scan_rows: int
    universe_min_price: float
    universe_max_price: float
    universe_min_avg_volume: float
    universe_max_candidates: int
    phase_timeout_s: float
    replay_days: int
    sim_port: int
    sim_seed: int
    sim_data_dir: Path | None
    sim_speed: float
    sim_date: str
    sim_gap_share: float
    sim_starting_cash: float

    @property
    def broker_port(self) -> int:
        """Return the API port to connect to: the simulator's in sim mode, else IB_PORT."""
        return self.sim_port if self.broker == "sim" else self.ib_port

    @property
    def broker_host(self) -> str:
        return "127.0.0.1" if self.broker == "sim" else self.ib_host

    def client_ids(self) -> dict[str, int]:
        """Return the IBKR client id of each process, by process name."""
        return {
            "supervisor": self.ib_client_id_supervisor,
            "exit_manager": self.ib_client_id_exit_manager,
            "day_trader": self.ib_client_id_day_trader,
            "phases": self.ib_client_id_phases,
            "scripts": self.ib_client_id_scripts,
        }

    def display_rows(self) -> list[tuple[str, str]]:
        """Return (variable, shown value) pairs with secrets masked, in ``SPECS`` order."""
        rows = []
        for spec in SPECS:
            value = getattr(self, spec.attr)
            if spec.secret:
                shown = "(set, hidden)" if value else "(not set)"
            elif value is None or value == "":
                shown = "(empty)"
            else:
                shown = str(value)
            rows.append((spec.env, shown))
        return rows


assert [f.name for f in fields(Settings)] == [s.attr for s in SPECS], "Settings and SPECS differ"


# --------------------------------------------------------------------------- loading


def _shown(spec: Spec, raw: str) -> str:
    return "(hidden)" if spec.secret else repr(raw)


def _parse_one(spec: Spec, raw: str) -> Any:
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise SettingsError(spec.env, _shown(spec, raw), str(exc)) from None


def _check_consistency(s: Settings) -> None:
    """Raise SettingsError for values that are fine alone but wrong together."""
    if s.stop_loss_pct >= s.profit_target_pct:
        raise SettingsError(
            "STOP_LOSS_PCT",
            repr(str(s.stop_loss_pct)),
            f"must be below PROFIT_TARGET_PCT ({s.profit_target_pct})",
        )
    if s.recovery_target_pct > s.profit_target_pct:
        raise SettingsError(
            "RECOVERY_TARGET_PCT",
            repr(str(s.recovery_target_pct)),
            f"must not exceed PROFIT_TARGET_PCT ({s.profit_target_pct})",
        )
    if s.universe_min_price >= s.universe_max_price:
        raise SettingsError(
            "UNIVERSE_MIN_PRICE",
            repr(str(s.universe_min_price)),
            f"must be below UNIVERSE_MAX_PRICE ({s.universe_max_price})",
        )
    _check_client_ids(s)
    _check_live_interlock(s)
    if s.heartbeat_timeout_s <= 2 * s.heartbeat_interval_s:
        raise SettingsError(
            "HEARTBEAT_TIMEOUT_S",
            repr(str(s.heartbeat_timeout_s)),
            f"must exceed twice HEARTBEAT_INTERVAL_S ({s.heartbeat_interval_s})",
        )


def _check_client_ids(s: Settings) -> None:
    seen: dict[int, str] = {}
    for spec in SPECS:
        if not spec.env.startswith("IB_CLIENT_ID_"):
            continue
        cid = getattr(s, spec.attr)
        if cid in seen:
            raise SettingsError(
                spec.env,
                repr(str(cid)),
                f"must differ from {seen[cid]} (each process needs its own)",
            )
        seen[cid] = spec.env


def _check_live_interlock(s: Settings) -> None:
    if s.trading_mode == "live":
        if s.broker != "ibkr":
            raise SettingsError("TRADING_MODE", "'live'", "live needs BROKER=ibkr")
        if s.live_trading_confirm != LIVE_CONFIRM_PHRASE:
            raise SettingsError(
                "LIVE_TRADING_CONFIRM",
                repr(s.live_trading_confirm),
                f"TRADING_MODE=live needs LIVE_TRADING_CONFIRM={LIVE_CONFIRM_PHRASE}",
            )
    elif s.ib_account and not s.ib_account.startswith("DU"):
        raise SettingsError(
            "IB_ACCOUNT",
            repr(s.ib_account),
            "TRADING_MODE=paper needs a paper account (DU...); a live account needs "
            "TRADING_MODE=live and LIVE_TRADING_CONFIRM",
        )


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
) -> Settings:
    """Return the settings from ``environ`` over ``env_file`` over the defaults.

    ``environ`` defaults to ``os.environ``. Raise ``SettingsError`` on the first bad value.
    """
    import os

    env = dict(os.environ) if environ is None else dict(environ)
    file_values: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        file_values = dotenv_values(env_file)
    values = {}
    for spec in SPECS:
        raw = env.get(spec.env)
        if raw is None:
            raw = file_values.get(spec.env)
        if raw is None or not raw.strip():
            # An empty assignment (``IB_PORT=``) means "not set", as if the line were absent.
            raw = spec.default
        values[spec.attr] = _parse_one(spec, raw)
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


_ENV_EXAMPLE_HEADER = """\
# Settings of the day-trading system. Copy to .env and change what you need.
# Every line shows the default; an empty value (NAME=) also means the default.
# Precedence: the process environment, then .env, then these defaults.
# Validate with:  uv run supervisor.py --check
# Never commit .env: it may hold keys.
"""


def render_env_example() -> str:
    """Return the text of ``.env.example``: every setting with its meaning and default."""
    lines = [_ENV_EXAMPLE_HEADER]
    for spec in SPECS:
        allowed = _allowed_text(spec)
        lines.append(f"# {spec.doc}" + (f" [{allowed}]" if allowed else ""))
        lines.append(f"{spec.env}={spec.default}\n")
    return "\n".join(lines)


def _allowed_text(spec: Spec) -> str:
    """Return what a spec accepts, learned by asking its parser about an impossible value."""
    if spec.secret:
        return "secret; never logged"
    try:
        spec.parse("\x00not-a-valid-value\x00")
    except ValueError as exc:
        return str(exc)
    return ""
