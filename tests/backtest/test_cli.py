"""scripts/backtest.py as a user runs it: a subprocess, its output, its exit code.

Runs use the synthetic market (no files needed) over a few days, with ATR_MIN_PCT
lowered through ``--set`` so that trades happen. Bad input must exit 2 with a message
that names what is wrong and what is allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.settings import SPECS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "backtest.py"
RANGE = ["--start", "2025-11-03", "--end", "2025-11-05"]
SYMBOLS = ["--symbols", "ACHR,AMC,AFRM"]
TRADING = ["--set", "atr_min_pct=0.1", "--no-progress"]


def backtest(*args: str, module: bool = False, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the CLI from ``cwd`` with no .env and no inherited settings."""
    settings = {spec.env for spec in SPECS}
    env = {k: v for k, v in os.environ.items() if k not in settings and k != "PYTHONPATH"}
    command = [sys.executable, "-m", "scripts.backtest"] if module else [sys.executable, SCRIPT]
    return subprocess.run(
        [*map(str, command), *args, "--env-file", "/nonexistent/.env"],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def json_run() -> dict[str, Any]:
    done = backtest(*RANGE, *SYMBOLS, *TRADING, "--json", module=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_module_run_prints_json_whose_summary_matches_its_trades(json_run: dict[str, Any]) -> None:
    trades = json_run["trades"]
    assert json_run["summary"]["trades"] == len(trades) > 0
    assert json_run["summary"]["net_pnl"] == pytest.approx(sum(t["pnl"] for t in trades))
    assert [d["day"] for d in json_run["days"]] == ["2025-11-03", "2025-11-04", "2025-11-05"]
    assert {t["symbol"] for t in trades} <= {"ACHR", "AMC", "AFRM"}
    assert json_run["parameters"]["atr_min_pct"] == 0.1


def test_script_run_from_another_folder_prints_tables_and_writes_the_png(
    tmp_path: Path, json_run: dict[str, Any]
) -> None:
    png = tmp_path / "equity.png"
    done = backtest(*RANGE, *SYMBOLS, *TRADING, "--png", str(png), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Backtest 2025-11-03..2025-11-05")
    assert "## Per day" in done.stdout
    assert f"| trades (wins)       | {json_run['summary']['trades']} " in done.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_csv_folder_replays_to_the_same_trades(tmp_path: Path, json_run: dict[str, Any]) -> None:
    from datetime import date

    from broker.simulator.market_data import SyntheticMarket, write_csv

    days = [date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 5)]
    for symbol in ("ACHR", "AMC", "AFRM"):
        write_csv(SyntheticMarket(seed=7, gap_share=0.1), symbol, days, tmp_path)
    done = backtest(*RANGE, *SYMBOLS, *TRADING, "--json", "--data", str(tmp_path))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trades"] == json_run["trades"]


def test_sweep_ranks_every_valid_combination_and_lists_the_skipped(tmp_path: Path) -> None:
    grid = "profit_target_pct=1.2,2.0;stop_loss_pct=0.5,1.5"  # 1.5 >= 1.2 is refused
    done = backtest(*RANGE, *SYMBOLS, *TRADING, "--sweep", grid, "--jobs", "2", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["rows"]) == 3 and len(result["skipped"]) == 1
    pnls = [row["summary"]["net_pnl"] for row in result["rows"]]
    assert pnls == sorted(pnls, reverse=True)
    assert result["workers"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2025-13-01", "--end", "2025-11-05"], "'2025-13-01' is not a date"),
        (["--start", "2025-11-05", "--end", "2025-11-03"], "--start 2025-11-05 is after --end"),
        (["--start", "2025-11-27", "--end", "2025-11-27"], "no NYSE trading day"),
        (["--start", "2019-12-02", "--end", "2019-12-03"], "synthetic history starts on 2020"),
        ([*RANGE, "--symbols", "AAPL,NOPE"], "unknown 'NOPE'; the market has 141: AAPL"),
        ([*RANGE, "--set", "stop_loss_pct=abc"], "STOP_LOSS_PCT='abc' is not allowed: a number"),
        ([*RANGE, "--sweep", "take_profit=1"], "'take_profit' is unknown; allowed: allocation"),
        ([*RANGE, "--data", "/nonexistent/bars"], "does not exist"),
        ([*RANGE, "--sweep", "rsi_max=50", "--png", "x.png"], "cannot be combined with --sweep"),
    ],
)
def test_bad_input_exits_2_naming_what_is_wrong(args: list[str], message: str) -> None:
    done = backtest(*args, "--no-progress")
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""
