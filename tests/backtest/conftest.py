"""Fixtures of the backtest tests; helper modules of this folder are importable by name."""

from __future__ import annotations

import sys
from pathlib import Path

# Test modules share the bar builders (``backtest_bars``) and the backtesting.py
# strategy (``reference_strategy``) by plain import, as the benchmark does.
sys.path.insert(0, str(Path(__file__).resolve().parent))
