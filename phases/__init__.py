"""The scheduled one-shot jobs: ``python -m phases <name> [--date YYYY-MM-DD]``.

In the day's order (ET times from ``market.calendar``; the supervisor runs each once):

- ``universe`` (06:55): candidates from the IBKR scanners, the static list and FMP,
  filtered on price and average volume (``universe.py``).
- ``data`` (07:00): daily bars, prior close, average volume, ATR %, trend (``data.py``).
- ``watchlist`` (07:30): the LLM's picks, or the rule-based ranking (``watchlist.py``).
- ``validate`` (08:15): each symbol qualified at IBKR (``validate.py``).
- ``premarket`` (09:00): gap %, momentum, gap-and-go flags, final rank (``premarket.py``).
- ``post_close`` (after the close): metrics, regime, insights, suggestions judged by a
  replay, the report under ``reports/`` (``post_close.py``).

``runner.py`` gives every phase the same frame: once per trading date (``phase_runs``),
a timeout, progress lines, a span, and a record of what it decided.
"""

#: Every phase, in the day's order (the CLI's valid names).
PHASE_NAMES: tuple[str, ...] = (
    "universe",
    "data",
    "watchlist",
    "validate",
    "premarket",
    "post_close",
)
