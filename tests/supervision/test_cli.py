"""supervisor.py's own options: --date/--speed go through the settings' validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "supervisor.py"), "--env-file", str(tmp_path / "none"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DB_PATH": str(tmp_path / "t.db"), **env},
        timeout=60,
    )


def test_speed_out_of_range_is_refused_naming_sim_speed(tmp_path: Path) -> None:
    result = _run(tmp_path, "--speed", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("settings error: SIM_SPEED=")
    assert "Traceback" not in result.stderr


def test_check_shows_the_date_and_speed_given_on_the_command_line(tmp_path: Path) -> None:
    result = _run(tmp_path, "--check", "--date", "2025-11-26", "--speed", "250")
    assert result.returncode == 0, result.stderr
    assert "SIM_DATE" in result.stdout and "2025-11-26" in result.stdout
    assert "250.0" in result.stdout


def test_sim_only_options_are_refused_with_a_real_gateway(tmp_path: Path) -> None:
    result = _run(tmp_path, "--date", "2025-11-26", BROKER="ibkr")
    assert result.returncode == 2
    assert "--date can only be used with BROKER=sim" in result.stderr


def test_badly_written_date_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "--date", "26/11/2025")
    assert result.returncode == 2
    assert "is not a date as YYYY-MM-DD" in result.stderr
