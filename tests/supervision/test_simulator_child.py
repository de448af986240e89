"""The simulator as the supervisor's child: it stops with its supervisor, starts with its cash."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from broker.simulator.account import AccountStore
from broker.simulator.types import ExchangeConfig
from config.settings import load_settings
from supervision.children import SIMULATOR, LaunchContext
from supervision.environment import PARENT_ENV
from supervision.identity import ProcessIdentity

ROOT = Path(__file__).resolve().parents[2]


def _simulator(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker.simulator", "--port", "0", "--control-port", "0",
         "--db", str(tmp / "simulator.db"), *args],
        cwd=ROOT, env={**base, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the listener is bound (or the process died)
    assert line.startswith("listening on"), line
    return proc


def test_simulator_exits_0_once_its_supervisor_parent_is_gone(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    sim = None
    try:
        identity = ProcessIdentity.of(parent.pid)
        assert identity is not None
        sim = _simulator(tmp_path, env={PARENT_ENV: str(identity)})
        time.sleep(1.5)  # polled every second: a live parent keeps it up
        assert sim.poll() is None

        parent.kill()
        parent.wait(10)

        assert sim.wait(timeout=15) == 0
    finally:
        for proc in (parent, sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_new_simulator_account_starts_with_the_given_cash(tmp_path: Path) -> None:
    sim = _simulator(tmp_path, "--starting-cash", "25000")
    sim.terminate()
    assert sim.wait(timeout=15) == 0
    account = AccountStore(tmp_path / "simulator.db", ExchangeConfig())
    try:
        assert account.cash() == 25_000.0
    finally:
        account.close()


def test_supervisor_passes_sim_starting_cash_to_the_simulator() -> None:
    settings = load_settings(environ={"SIM_STARTING_CASH": "50000"}, env_file=None)
    args = SIMULATOR.args(LaunchContext(settings, date(2025, 11, 26)))
    assert args[args.index("--starting-cash") + 1] == "50000.0"
