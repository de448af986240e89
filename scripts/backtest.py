"""Backtest the live entry and exit rules over 1-min bars of a date range.

    uv run scripts/backtest.py --start 2025-11-03 --end 2025-11-26 --symbols AAPL,NVDA
    uv run scripts/backtest.py --start 2025-11-03 --end 2025-11-26 --watchlist-size 8 --json
    uv run scripts/backtest.py --start 2025-11-03 --end 2025-11-26 --symbols AAPL,NVDA \\
        --sweep 'profit_target_pct=1.2,1.8,2.4;stop_loss_pct=0.6,0.9' --jobs 4

Bars come from the simulator's synthetic market (``--seed``, default SIM_SEED) or from
a folder of CSV files in the simulator's format (``--data``, default SIM_DATA_DIR; the
format is documented in ``broker/simulator/market_data.py``). Parameters are the
settings (``.env`` and environment), changed with ``--set name=value``. The fill model
and its rules are documented in ``backtest/fills.py``.

``--parity-db DB`` backtests the virtual day recorded in a shared-state database (its
validated watchlist and starting capital) and compares the fills, keyed by (symbol,
side, minute), with the live ones (``backtest/parity.py``).

Exit codes: 0 done; 1 ``--parity-db`` found a difference no fill rule explains; 2 bad
arguments, settings or data (the message says what is wrong and what is allowed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

# A script's sys.path starts at its own folder (scripts/); the packages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backtest.config import (  # noqa: E402
    STRATEGY_SETTINGS,
    BacktestConfig,
    config_from_settings,
    with_overrides,
)
from backtest.data import (  # noqa: E402
    MarketSource,
    Watchlist,
    fixed_watchlist,
    scanner_watchlist,
)
from backtest.engine import TradingDay, prepare_day, run_backtest  # noqa: E402
from backtest.fills import FillModel  # noqa: E402
from backtest.parity import (  # noqa: E402
    LiveDay,
    ParityReport,
    backtest_fills,
    compare,
    read_live_day,
)
from backtest.report import render_text, to_json, write_png  # noqa: E402
from backtest.sweep import (  # noqa: E402
    RANKINGS,
    SweepError,
    SweepResult,
    parse_grid,
    plan,
    render_ranking,
    run_sweep,
)
from broker.simulator.market_data import (  # noqa: E402
    EPOCH,
    CsvMarket,
    MarketData,
    SyntheticMarket,
)
from config.settings import Settings, load_settings  # noqa: E402
from market.calendar import Session, is_trading_day, session  # noqa: E402

EXIT_OK = 0
EXIT_DIFFERENT = 1  # --parity-db: a difference no fill rule explains
EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad arguments, settings or data; the message says what is wrong and what is allowed."""


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--start", type=_day, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", type=_day, required=True, help="last day, YYYY-MM-DD")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--symbols", help="comma-separated watchlist, e.g. AAPL,NVDA")
    which.add_argument(
        "--watchlist-size",
        type=_positive_int,
        help="each day, the top N pre-market gainers at 07:30 ET (default: MAX_POSITIONS)",
    )
    parser.add_argument("--data", type=Path, help="folder of <SYMBOL>.csv 1-min bar files")
    parser.add_argument("--seed", type=int, help="synthetic market seed (default: SIM_SEED)")
    parser.add_argument(
        "--capital",
        type=float,
        help="starting capital (default: SIM_STARTING_CASH, or the day's with --parity-db)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override a setting for this run; names: {', '.join(STRATEGY_SETTINGS)}",
    )
    parser.add_argument(
        "--intrabar",
        choices=("path", "stop-first"),
        default="path",
        help="order of a bar's high and low (fill rule F6; default: the simulator's path)",
    )
    parser.add_argument("--spread-bps", type=float, help="quote every symbol with this spread")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--png", type=Path, help="write the equity curve to this PNG file")
    parser.add_argument("--sweep", help="grid 'name=v1,v2;name2=v3,v4' to run and rank")
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes of a sweep (default: every core)",
    )
    parser.add_argument(
        "--rank-by",
        choices=tuple(RANKINGS),
        default="net_pnl",
        help="metric a sweep is ranked by (max_drawdown: smallest first)",
    )
    parser.add_argument(
        "--parity-db",
        type=Path,
        help="compare with the virtual day in this shared-state DB (its watchlist and "
        "starting capital; --start = --end); exit 1 on an unexplained difference",
    )
    parser.add_argument(
        "--parity-minutes",
        type=int,
        default=1,
        help="fills this many minutes apart count as shifted (rules F1/F7; default 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    args = parser.parse_args(argv)
    if args.sweep and args.png:
        parser.error("--png draws one run's equity curve; it cannot be combined with --sweep")
    if args.parity_db and (args.sweep or args.symbols or args.watchlist_size):
        parser.error("--parity-db takes the watchlist from the database; it cannot be combined "
                     "with --sweep, --symbols or --watchlist-size")  # fmt: skip
    if args.parity_db and args.start != args.end:
        parser.error("--parity-db compares one virtual day: give the same --start and --end")
    if args.parity_minutes < 0:
        parser.error(f"--parity-minutes {args.parity_minutes} must be 0 or more")
    return args


# --------------------------------------------------------------------------- inputs


def load_base_settings(args: argparse.Namespace) -> Settings:
    """Return the settings with every ``--set`` applied."""
    try:
        settings = load_settings(env_file=args.env_file)
    except ValueError as exc:  # SettingsError names the variable and what is allowed
        raise InputError(f"settings error: {exc}") from None
    if not args.set:
        return settings
    try:
        return with_overrides(settings, _set_pairs(args.set))
    except ValueError as exc:
        raise InputError(f"--set: {exc}") from None


def _set_pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise InputError(f"--set {item!r} is not NAME=VALUE")
        pairs[name.strip().lower()] = value.strip()
    return pairs


def build_market(args: argparse.Namespace, settings: Settings) -> MarketData:
    """Return the CSV market (no synthetic fallback: a missing file is an error) or synthetic."""
    data_dir = args.data if args.data is not None else settings.sim_data_dir
    if data_dir is not None:
        try:
            return CsvMarket(Path(data_dir))
        except ValueError as exc:  # CsvFormatError names the file and line
            raise InputError(f"--data {data_dir}: {exc}") from None
    seed = settings.sim_seed if args.seed is None else args.seed
    return SyntheticMarket(seed=seed, gap_share=settings.sim_gap_share)


def sessions_between(start: date, end: date, market: MarketData) -> list[Session]:
    """Return the NYSE sessions from ``start`` to ``end``; raise InputError if there are none."""
    if start > end:
        raise InputError(f"--start {start} is after --end {end}")
    if isinstance(market, SyntheticMarket) and start < EPOCH:
        raise InputError(f"--start {start}: the synthetic history starts on {EPOCH}")
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    try:
        sessions = [session(d) for d in days if is_trading_day(d)]
    except Exception as exc:  # exchange_calendars refuses days outside its range
        raise InputError(f"--start/--end outside the exchange calendar: {exc}") from None
    if not sessions:
        raise InputError(f"no NYSE trading day from {start} to {end}")
    return sessions


def build_watchlist(args: argparse.Namespace, settings: Settings, market: MarketData) -> Watchlist:
    """Return the day's watchlist: ``--symbols`` checked against the market, or the scanner."""
    known = market.symbols()
    if args.symbols:
        symbols = list(dict.fromkeys(s.strip().upper() for s in args.symbols.split(",")))
        unknown = [s for s in symbols if not s or market.info(s) is None]
        if unknown:
            raise InputError(
                f"--symbols: unknown {', '.join(repr(s) for s in unknown)}; "
                f"the market has {len(known)}: {_sample(known)}"
            )
        return fixed_watchlist(symbols)
    size = args.watchlist_size or settings.max_positions
    if size > len(known):
        raise InputError(f"--watchlist-size {size}: the market has only {len(known)} symbols")
    return scanner_watchlist(market, size)


def _sample(symbols: list[str], shown: int = 30) -> str:
    more = f", ... ({len(symbols) - shown} more)" if len(symbols) > shown else ""
    return ", ".join(symbols[:shown]) + more


def build_config(
    args: argparse.Namespace, settings: Settings, capital: float | None = None
) -> BacktestConfig:
    """Return the run's configuration: settings, fill model options, starting capital."""
    intrabar = "stop_first" if args.intrabar == "stop-first" else "path"
    try:
        fill = FillModel(intrabar=intrabar, spread_bps=args.spread_bps)
        starting = args.capital if args.capital is not None else capital
        return config_from_settings(settings, starting_capital=starting, fill=fill)
    except ValueError as exc:
        raise InputError(f"--capital/--spread-bps: {exc}") from None


# --------------------------------------------------------------------------- running


def trading_days(
    market: MarketData, sessions: list[Session], watchlist: Watchlist, progress: Any
) -> Iterator[TradingDay]:
    """Yield each session's prepared watchlist bars, ticking ``progress`` per day."""
    source = MarketSource(market)
    for s in sessions:
        try:
            yield prepare_day(s, source.day(s, watchlist(s.day)))
        except ValueError as exc:  # e.g. a synthetic day outside the exchange calendar
            raise InputError(f"bars of {s.day}: {exc}") from None
        progress.update(1)


def _progress(args: argparse.Namespace, total: int, unit: str) -> Any:
    from tqdm import tqdm

    # No monitor thread: the sweep forks worker processes, and forking threads is unsafe.
    tqdm.monitor_interval = 0
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=args.no_progress or None)


def _title(args: argparse.Namespace, market: MarketData) -> str:
    what = args.symbols or f"top {args.watchlist_size or 'MAX_POSITIONS'} gainers"
    source = f"CSV {args.data}" if isinstance(market, CsvMarket) else "synthetic market"
    return f"Backtest {args.start}..{args.end}, {what}, {source}"


def run_single(args: argparse.Namespace, settings: Settings) -> int:
    market = build_market(args, settings)
    sessions = sessions_between(args.start, args.end, market)
    watchlist = build_watchlist(args, settings, market)
    config = build_config(args, settings)
    with _progress(args, len(sessions), "day") as progress:
        result = run_backtest(trading_days(market, sessions, watchlist, progress), config)
    if result.bars == 0:
        raise InputError(f"no bars for the watchlist from {args.start} to {args.end}")
    title = _title(args, market)
    if args.json:
        print(json.dumps(to_json(result), indent=2))
    else:
        print(render_text(result, title))
    if args.png:
        path = write_png(result, args.png, title)
        print(f"equity curve: {path}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def run_grid(args: argparse.Namespace, settings: Settings) -> int:
    try:
        grid = parse_grid(args.sweep)
    except SweepError as exc:
        raise InputError(str(exc)) from None
    market = build_market(args, settings)
    sessions = sessions_between(args.start, args.end, market)
    watchlist = build_watchlist(args, settings, market)
    base = build_config(args, settings)
    jobs, skipped = plan(settings, grid, starting_capital=base.starting_capital, fill=base.fill)
    with _progress(args, len(sessions), "day") as progress:
        days = list(trading_days(market, sessions, watchlist, progress))
    with _progress(args, len(jobs), "run") as progress:
        result = run_sweep(
            days,
            jobs,
            workers=args.jobs,
            rank_by=args.rank_by,
            skipped=skipped,
            on_done=lambda _: progress.update(1),
        )
    print(json.dumps(sweep_json(result), indent=2) if args.json else render_ranking(result))
    return EXIT_OK


def run_parity(args: argparse.Namespace, settings: Settings) -> int:
    """Backtest the virtual day recorded in ``--parity-db`` and compare the fills."""
    try:
        live = read_live_day(args.parity_db, args.start)
    except Exception as exc:  # a missing or foreign file: say which and why
        raise InputError(f"--parity-db {args.parity_db}: {exc}") from None
    if not live.symbols:
        raise InputError(f"--parity-db {args.parity_db}: no validated watchlist on {live.day}")
    market = build_market(args, settings)
    sessions = sessions_between(args.start, args.end, market)
    config = build_config(args, settings, live.starting_capital)
    with _progress(args, len(sessions), "day") as progress:
        days = trading_days(market, sessions, fixed_watchlist(live.symbols), progress)
        result = run_backtest(days, config)
    ours = backtest_fills(result.trades, live.day)
    report = compare(ours, list(live.fills), args.parity_minutes)
    if args.json:
        print(json.dumps(parity_json(report, live), indent=2))
    else:
        print(render_parity(report, live))
    return EXIT_OK if report.agrees else EXIT_DIFFERENT


def render_parity(report: ParityReport, live: LiveDay) -> str:
    """Return the parity verdict and one line per difference."""
    explained = len(report.differences) - len(report.unexplained)
    head = (
        f"# Parity {live.day} ({', '.join(live.symbols)}): {len(report.matched)} fills match, "
        f"{len(report.shifted)} shifted, {explained} other differences explained, "
        f"{len(report.unexplained)} unexplained"
    )
    return "\n".join([head, *report.explain(), "agrees" if report.agrees else "DIFFERS"])


def parity_json(report: ParityReport, live: LiveDay) -> dict[str, Any]:
    """Return the parity report as JSON-ready data."""
    return {
        "day": live.day.isoformat(),
        "symbols": list(live.symbols),
        "agrees": report.agrees,
        "matched": [str(k) for k in report.matched],
        "shifted": [[str(ours), str(theirs)] for ours, theirs in report.shifted],
        "differences": [
            {
                "where": d.where,
                "fill": str(d.record.key),
                "price": d.record.price,
                "rule": d.rule,
                "why": d.why,
            }
            for d in report.differences
        ],  # fmt: skip
    }


def sweep_json(result: SweepResult) -> dict[str, Any]:
    """Return the ranking as JSON-ready data."""
    return {
        "rank_by": result.rank_by,
        "workers": result.workers,
        "rows": [
            {"params": dict(r.params), "summary": asdict(r.summary), "worker_pid": r.worker_pid}
            for r in result.rows
        ],
        "skipped": [{"params": dict(combo), "reason": why} for combo, why in result.skipped],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_base_settings(args)
        if args.parity_db:
            return run_parity(args, settings)
        return run_grid(args, settings) if args.sweep else run_single(args, settings)
    except InputError as exc:
        print(f"backtest: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
