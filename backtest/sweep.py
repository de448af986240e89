"""Parameter sweep: every combination of a grid of settings, over all cores, ranked.

A grid is written ``name=v1,v2;name2=v3,v4`` with lower-case setting names from
``config.STRATEGY_SETTINGS``. Each value is checked by the setting's own parser (a
value the live system would refuse stops the sweep before it starts); a combination
whose values are fine alone but not together (a stop at or above the target) is
skipped and listed, as the live start-up would refuse it.

The bars are prepared once in the parent and handed to each worker process once;
each combination is then one ``run_backtest`` in a worker.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from backtest.config import STRATEGY_SETTINGS, BacktestConfig, config_from_settings, with_overrides
from backtest.engine import TradingDay, run_backtest
from backtest.fills import FillModel
from backtest.report import Summary, summarize
from config.settings import SPECS, Settings, SettingsError

#: Metrics a sweep can rank by, and whether a higher value is better.
RANKINGS: dict[str, bool] = {
    "net_pnl": True,
    "profit_factor": True,
    "win_rate": True,
    "return_pct": True,
    "max_drawdown": False,
}

_PARSERS = {spec.attr: spec for spec in SPECS}

# Fresh interpreters, as on Windows (the usual host): forking a process that already
# runs threads (a progress bar, a previous pool) can deadlock the children.
_SPAWN = multiprocessing.get_context("spawn")


class SweepError(ValueError):
    """A grid cannot be run: the message names what is wrong and what is allowed."""


@dataclass(frozen=True)
class SweepRow:
    """One combination's outcome."""

    params: Mapping[str, str]
    summary: Summary
    worker_pid: int


@dataclass(frozen=True)
class SweepResult:
    """Every combination, best first, and the ones skipped."""

    rows: tuple[SweepRow, ...]
    skipped: tuple[tuple[Mapping[str, str], str], ...]
    rank_by: str
    workers: int  # distinct worker processes that ran combinations


def parse_grid(text: str) -> dict[str, tuple[str, ...]]:
    """Return the grid ``name=v1,v2;name2=v3`` as {name: values}; raise SweepError if bad."""
    grid: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, values = part.partition("=")
        name = name.strip().lower()
        if not sep:
            raise SweepError(f"--sweep part {part!r} is not name=value[,value...]")
        if name not in STRATEGY_SETTINGS:
            allowed = ", ".join(STRATEGY_SETTINGS)
            raise SweepError(f"--sweep parameter {name!r} is unknown; allowed: {allowed}")
        if name in grid:
            raise SweepError(f"--sweep parameter {name!r} is given twice")
        grid[name] = tuple(_checked_value(name, v.strip()) for v in values.split(","))
    if not grid:
        raise SweepError("--sweep is empty; expected name=v1,v2[;name2=v3,...]")
    return grid


def _checked_value(name: str, text: str) -> str:
    spec = _PARSERS[name]
    try:
        spec.parse(text)
    except ValueError as exc:
        raise SweepError(f"--sweep {name}={text!r} is not allowed: {exc}") from None
    return text


def combinations(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Return every combination of the grid's values, in grid order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def plan(
    base: Settings,
    grid: Mapping[str, Sequence[str]],
    *,
    starting_capital: float | None = None,
    fill: FillModel | None = None,
) -> tuple[list[tuple[dict[str, str], BacktestConfig]], list[tuple[dict[str, str], str]]]:
    """Return the runnable (combination, config) pairs and the skipped (combination, why)."""
    runnable, skipped = [], []
    for combo in combinations(grid):
        try:
            settings = with_overrides(base, combo)
        except SettingsError as exc:
            skipped.append((combo, str(exc)))
            continue
        config = config_from_settings(settings, starting_capital=starting_capital, fill=fill)
        runnable.append((combo, config))
    return runnable, skipped


# Each worker's copy of the prepared days, set once by the pool initializer.
_DAYS: list[TradingDay] = []
#: How long a worker waits for the others to start before it begins anyway.
_START_WAIT_S = 120.0


def _init_worker(days: list[TradingDay], started: Any) -> None:
    global _DAYS
    _DAYS = days
    # Wait until every worker is up: otherwise the first one to finish importing can take
    # all the short jobs before the others exist, and the sweep runs on one core.
    try:
        started.wait(_START_WAIT_S)
    except threading.BrokenBarrierError:
        pass


def _run_one(job: tuple[dict[str, str], BacktestConfig]) -> SweepRow:
    combo, config = job
    return SweepRow(combo, summarize(run_backtest(_DAYS, config)), os.getpid())


def run_sweep(
    days: list[TradingDay],
    jobs: Sequence[tuple[dict[str, str], BacktestConfig]],
    *,
    workers: int,
    rank_by: str = "net_pnl",
    skipped: Sequence[tuple[dict[str, str], str]] = (),
    on_done: Callable[[SweepRow], None] | None = None,
) -> SweepResult:
    """Run every job on ``workers`` processes; return the rows ranked by ``rank_by``."""
    if rank_by not in RANKINGS:
        raise SweepError(f"rank by {rank_by!r} is unknown; allowed: {', '.join(RANKINGS)}")
    rows: list[SweepRow] = []
    for row in _rows(days, jobs, workers):
        rows.append(row)
        if on_done is not None:
            on_done(row)
    return SweepResult(
        rows=tuple(rank(rows, rank_by)),
        skipped=tuple(skipped),
        rank_by=rank_by,
        workers=len({row.worker_pid for row in rows}),
    )


def _rows(
    days: list[TradingDay], jobs: Sequence[tuple[dict[str, str], BacktestConfig]], workers: int
) -> Iterator[SweepRow]:
    if workers <= 1 or len(jobs) <= 1:  # a pool would only add start-up time
        for combo, config in jobs:
            yield SweepRow(combo, summarize(run_backtest(days, config)), os.getpid())
        return
    processes = min(workers, len(jobs))
    started = _SPAWN.Barrier(processes)
    with _SPAWN.Pool(processes, _init_worker, (days, started)) as pool:
        yield from pool.imap(_run_one, jobs)


def rank(rows: Sequence[SweepRow], rank_by: str) -> list[SweepRow]:
    """Return ``rows`` best first by ``rank_by``; rows without the metric go last."""
    higher_is_better = RANKINGS[rank_by]

    def key(row: SweepRow) -> tuple[bool, float]:
        value = getattr(row.summary, rank_by)
        if value is None:
            return True, 0.0
        return False, -value if higher_is_better else value

    return sorted(rows, key=key)


def render_ranking(result: SweepResult) -> str:
    """Return the ranking as a table, best first, and the skipped combinations."""
    names = list(result.rows[0].params) if result.rows else []
    rows = [
        (
            place,
            *(row.params[name] for name in names),
            row.summary.trades,
            f"{row.summary.net_pnl:,.2f}",
            _maybe(row.summary.win_rate, 100.0, "%"),
            _maybe(row.summary.profit_factor, 1.0, ""),
            f"{row.summary.max_drawdown:,.2f}",
        )
        for place, row in enumerate(result.rows, start=1)
    ]
    headers = ("#", *names, "trades", "net P&L", "win rate", "profit factor", "max DD")
    text = [
        f"# Sweep: {len(result.rows)} combinations on {result.workers} worker process(es), "
        f"ranked by {result.rank_by}",
        "",
        tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
    ]
    for combo, why in result.skipped:
        text.append(f"skipped {combo}: {why}")
    return "\n".join(text)


def _maybe(value: float | None, scale: float, unit: str) -> str:
    return "n/a" if value is None else f"{value * scale:.2f}{unit}"
