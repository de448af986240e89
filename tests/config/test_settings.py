"""Settings: defaults, precedence, every kind of bad value, and secrets kept secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import (
    LIVE_CONFIRM_PHRASE,
    SPECS,
    Secret,
    SettingsError,
    load_settings,
    render_env_example,
)

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = "sk-SENTINEL-7f3a9c-never-print-me"

# (variable, bad value) -> exit 2 naming the variable. The value is set alone over defaults.
BAD_VALUES = [
    ("BROKER", "paper"),
    ("BROKER", "ib"),
    ("IB_PORT", "abc"),
    ("IB_PORT", "0"),
    ("IB_PORT", "70000"),
    ("IB_PORT", "4002.5"),
    ("IB_HOST", "local host"),
    ("IB_CLIENT_ID_DAY_TRADER", "-1"),
    ("IB_CLIENT_ID_DAY_TRADER", "11"),  # same as the exit manager's
    ("IB_ACCOUNT", "U1234567"),  # a live account in paper mode
    ("IB_ACCOUNT", "not an account"),
    ("TRADING_MODE", "real"),
    ("TRADING_MODE", "live"),  # without the confirmation (and with BROKER=sim)
    ("ALLOCATION", "0"),
    ("ALLOCATION", "1.5"),
    ("ALLOCATION", "ten percent"),
    ("MAX_POSITIONS", "0"),
    ("MAX_POSITIONS", "8.5"),
    ("PROFIT_TARGET_PCT", "-1"),
    ("PROFIT_TARGET_PCT", "nan"),
    ("STOP_LOSS_PCT", "2.5"),  # not below the default target of 1.8
    ("RECOVERY_TARGET_PCT", "2.0"),  # above the default target
    ("MAX_RECOVERY_ENTRIES", "9"),
    ("DAILY_TARGET_PCT", "inf"),
    ("RSI_MAX", "150"),
    ("GAP_MIN_PCT", "-5"),
    ("LIMIT_AGGRESSION_PCT", "7"),
    ("EOD_FLATTEN_MINUTES", "0"),
    ("MAX_ORDER_NOTIONAL", "0"),
    ("MIDDAY_FILTER", "maybe"),
    ("HEARTBEAT_TIMEOUT_S", "3"),  # not above twice the 2 s interval
    ("LOG_LEVEL", "verbose"),
    ("SIM_DATE", "26/11/2025"),
    ("SIM_SPEED", "0"),
    ("SIM_GAP_SHARE", "2"),
    ("DEEPSEEK_BASE_URL", "ftp://example"),
]


def run_check(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "SYSTEMROOT": "", **env_overrides}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "supervisor.py"),
            "--check",
            "--env-file",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def test_defaults_are_safe_and_valid() -> None:
    s = load_settings(environ={}, env_file=None)
    assert s.broker == "sim"
    assert s.trading_mode == "paper"
    assert s.allocation == pytest.approx(0.10)
    assert s.max_positions == 8
    assert (s.profit_target_pct, s.stop_loss_pct, s.recovery_target_pct) == (1.8, 0.9, 1.1)
    assert s.broker_port == s.sim_port
    assert len(set(s.client_ids().values())) == len(s.client_ids())


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: value}, env_file=None)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}=")
    assert "not allowed" in str(info.value)


def test_bad_value_table_covers_at_least_twenty_variables() -> None:
    assert len({v for v, _ in BAD_VALUES}) >= 20


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES[:6] + BAD_VALUES[-4:])
def test_check_command_exits_2_with_one_line_naming_the_variable(
    variable: str, value: str, tmp_path: Path
) -> None:
    result = run_check({variable: value}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_check_command_prints_settings_and_exits_0(tmp_path: Path) -> None:
    result = run_check({}, tmp_path)
    assert result.returncode == 0, result.stderr
    for spec in SPECS:
        assert spec.env in result.stdout


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_POSITIONS=5\nRSI_MAX=55\n# comment\nIB_PORT=\n")
    s = load_settings(environ={"RSI_MAX": "50"}, env_file=env_file)
    assert s.max_positions == 5  # from the file
    assert s.rsi_max == 50  # the environment wins over the file
    assert s.ib_port == 4002  # empty assignment means the default


def test_bad_value_in_env_file_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STOP_LOSS_PCT=lots\n")
    with pytest.raises(SettingsError, match="STOP_LOSS_PCT"):
        load_settings(environ={}, env_file=env_file)


def test_live_mode_needs_ibkr_and_the_exact_confirmation() -> None:
    base = {"TRADING_MODE": "live", "BROKER": "ibkr", "IB_ACCOUNT": "U7654321"}
    with pytest.raises(SettingsError, match="LIVE_TRADING_CONFIRM"):
        load_settings(environ={**base, "LIVE_TRADING_CONFIRM": "yes"}, env_file=None)
    s = load_settings(environ={**base, "LIVE_TRADING_CONFIRM": LIVE_CONFIRM_PHRASE}, env_file=None)
    assert s.trading_mode == "live"


def test_secret_never_appears_in_repr_or_display() -> None:
    s = load_settings(
        environ={"DEEPSEEK_API_KEY": SENTINEL, "FMP_API_KEY": SENTINEL}, env_file=None
    )
    assert s.deepseek_api_key.reveal() == SENTINEL
    assert SENTINEL not in repr(s)
    assert SENTINEL not in str(s.deepseek_api_key)
    assert SENTINEL not in repr(s.display_rows())
    assert SENTINEL not in f"{s.fmp_api_key}"


def test_secret_never_appears_in_printed_settings_or_errors(tmp_path: Path) -> None:
    result = run_check({"DEEPSEEK_API_KEY": SENTINEL}, tmp_path)
    assert result.returncode == 0
    assert SENTINEL not in result.stdout + result.stderr
    assert "DEEPSEEK_API_KEY" in result.stdout
    failing = run_check({"DEEPSEEK_API_KEY": SENTINEL, "IB_PORT": "x"}, tmp_path)
    assert failing.returncode == 2
    assert SENTINEL not in failing.stdout + failing.stderr


def test_secret_in_an_exception_message_stays_masked() -> None:
    secret = Secret(SENTINEL)
    try:
        raise RuntimeError(f"failed with key {secret}")
    except RuntimeError as exc:
        assert SENTINEL not in str(exc)


def test_env_example_documents_every_setting_with_its_default() -> None:
    committed = (ROOT / ".env.example").read_text()
    assert committed == render_env_example(), "regenerate .env.example from config/settings.py"
    for spec in SPECS:
        assert f"\n{spec.env}={spec.default}\n" in committed
