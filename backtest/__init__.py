"""Backtest: the live entry and exit functions replayed over 1-min bars.

Modules, in the order data flows through them:

- ``data``: one symbol-day of bars (from the simulator's markets, CSV or synthetic, or
  from a DataFrame) and the per-day watchlist.
- ``series``: the indicator snapshot of every bar of a day at once, the same formulas
  as ``market.indicators.snapshot`` computed incrementally (O(n), not O(n^2) per day).
- ``fills``: the documented fill model (rules F1-F12) that mirrors the simulator's
  exchange as closely as 1-min bars allow.
- ``config``: the backtest's parameters, built from the validated ``Settings``.
- ``engine``: the event loop over bars; every decision is a call to the live pure
  functions (``day_trader.signals``, ``day_trader.sizing``, ``exit_manager.rules``).
- ``report``: metrics, the per-day table, JSON, the PNG equity curve.
- ``sweep``: a parameter grid over all cores, ranked.
- ``parity``: fills keyed by (symbol, side, minute) and the comparison with a live day.

The product never imports backtesting.py (AGPL); only tests and the benchmark do.
"""
