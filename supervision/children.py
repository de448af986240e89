"""THE table of managed children and scheduled phase jobs: change it here, nowhere else.

``TABLE`` lists the long-running children in start order (stop order is the reverse)
and the phase jobs the supervisor runs at their ET times. A child is described by data
only: what to run, whether others depend on it, how it proves it is ready, how long it
may take to start and to stop, and its restart policy.

What runs is ``python -m <target>`` (a module under the repository root) or
``python <target>`` (a ``.py`` path), with ``args(context)`` after it, in the
repository root, with the environment of ``supervision.environment``.

Tests and rehearsals replace the table with ``supervisor.py --children-table REF``
(``path/to/file.py`` or ``package.module``, optionally ``:ATTRIBUTE``, default
``TABLE``): the stand-in children of ``tests/supervision/`` come in that way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from types import ModuleType

from config.settings import Settings
from market.calendar import Phase
from supervision.policy import RestartPolicy, StartRule

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LaunchContext:
    """What an argument builder may use."""

    settings: Settings
    trading_date: date
    root: Path = ROOT


ArgsBuilder = Callable[[LaunchContext], tuple[str, ...]]


def no_args(_context: LaunchContext) -> tuple[str, ...]:
    """Build no arguments."""
    return ()


def always(_settings: Settings) -> bool:
    """Enable a child in every mode."""
    return True


class ReadyBy(StrEnum):
    """How the supervisor learns that a starting child is ready."""

    DB_FLAG = "db_flag"  # the child's ``processes.ready`` flag (ChildRuntime.report_ready)
    STDOUT_LINE = "stdout_line"  # a line containing ``ready_line`` in its console output


@dataclass(frozen=True)
class ChildSpec:
    """One long-running child process."""

    name: str  # its ``processes`` row and log file names
    title: str  # for people: "exit manager"
    target: str  # module name, or a path to a .py file
    args: ArgsBuilder = no_args
    # Critical: the children after it are started only once it is RUNNING, and are
    # stopped if it goes FATAL (no buying without the seller, no trading without a broker).
    critical: bool = False
    ready_by: ReadyBy = ReadyBy.DB_FLAG
    ready_line: str = ""
    start: StartRule = field(default_factory=StartRule)
    stop_deadline_s: float = 15.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    heartbeat: bool = True  # False: only the OS process is watched (the simulator)
    enabled: Callable[[Settings], bool] = always

    def __post_init__(self) -> None:
        if self.ready_by is ReadyBy.STDOUT_LINE and not self.ready_line:
            raise ValueError(f"child {self.name}: ready_by=stdout_line needs a ready_line")
        if not self.stop_deadline_s > 0:
            raise ValueError(f"child {self.name}: stop_deadline_s must be > 0")


PhaseArgs = Callable[[LaunchContext, Phase], tuple[str, ...]]


@dataclass(frozen=True)
class PhaseJob:
    """A one-shot job run at a phase's time: exit 0 when done (or already done), else not."""

    phase: Phase
    target: str
    args: PhaseArgs
    # Real seconds before it is killed and marked FAILED; None: PHASE_TIMEOUT_S (the
    # phase's own timeout) plus a grace period for it to record its failure itself.
    deadline_s: float | None = None


@dataclass(frozen=True)
class ChildTable:
    """The children in start order, and the phase jobs (phases without one are markers)."""

    children: tuple[ChildSpec, ...]
    phase_jobs: tuple[PhaseJob, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")

    def active(self, settings: Settings) -> tuple[ChildSpec, ...]:
        """Return the children enabled in this configuration, in start order."""
        return tuple(c for c in self.children if c.enabled(settings))

    def job_for(self, phase: Phase) -> PhaseJob | None:
        """Return the job of ``phase``, or None for a phase the supervisor only records."""
        return next((j for j in self.phase_jobs if j.phase == phase), None)

    def missing(self, settings: Settings, root: Path = ROOT) -> list[str]:
        """Return one line per component that is not built yet (empty: all are)."""
        lines = []
        for child in self.active(settings):
            if (why := missing_reason(child.target, root)) is not None:
                lines.append(f"{child.title} ({describe(child.target)}): {why}")
        targets = sorted({j.target for j in self.phase_jobs})
        for target in targets:
            if (why := missing_reason(target, root)) is not None:
                lines.append(f"phases ({describe(target)}): {why}")
        return lines


# ------------------------------------------------------------------------- targets


def is_script(target: str) -> bool:
    return target.endswith(".py")


def command(python: str, target: str, args: tuple[str, ...]) -> list[str]:
    """Return the argv that runs ``target`` with ``python``."""
    head = [python, target] if is_script(target) else [python, "-m", target]
    return [*head, *args]


def describe(target: str) -> str:
    """Return how a person would type the command: ``python -m exit_manager``."""
    return f"python {target}" if is_script(target) else f"python -m {target}"


def missing_reason(target: str, root: Path = ROOT) -> str | None:
    """Return why ``target`` cannot run yet (no module, no ``__main__.py``), or None.

    Checked on the file system, without importing anything.
    """
    if is_script(target):
        path = Path(target) if Path(target).is_absolute() else root / target
        return None if path.is_file() else f"{path} does not exist"
    base = root.joinpath(*target.split("."))
    if base.is_dir():
        if (base / "__main__.py").is_file():
            return None
        return f"not built yet ({base.relative_to(root)}/__main__.py does not exist)"
    if base.with_suffix(".py").is_file():
        return None
    return f"not built yet (no module {target} under {root})"


def load_table(ref: str) -> ChildTable:
    """Return the table named by ``path/to/file.py[:ATTR]`` or ``module[:ATTR]``."""
    where, _, attribute = ref.partition(":")
    module = _load_module(where)
    table = getattr(module, attribute or "TABLE", None)
    if not isinstance(table, ChildTable):
        raise ValueError(f"{ref}: no ChildTable named {attribute or 'TABLE'}")
    return table


def _load_module(where: str) -> ModuleType:
    if not is_script(where):
        return importlib.import_module(where)
    path = Path(where).resolve()
    spec = importlib.util.spec_from_file_location(f"_children_table_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ValueError(f"{where}: no such file")
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: dataclasses in the file look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------- the table


def _simulator_args(ctx: LaunchContext) -> tuple[str, ...]:
    s = ctx.settings
    args = [
        "--port", str(s.sim_port),
        "--db", str((s.db_path.parent / "simulator.db").resolve()),
        "--seed", str(s.sim_seed),
        "--gap-share", str(s.sim_gap_share),
        "--starting-cash", repr(s.sim_starting_cash),
        "--log-level", s.log_level.upper(),
    ]  # fmt: skip
    if s.sim_data_dir is not None:
        args += ["--data", str(s.sim_data_dir.resolve())]
    return tuple(args)


def _phase_args(ctx: LaunchContext, phase: Phase) -> tuple[str, ...]:
    return (phase.value, "--date", ctx.trading_date.isoformat())


def _sim_only(settings: Settings) -> bool:
    return settings.broker == "sim"


SIMULATOR = ChildSpec(
    name="simulator",
    title="exchange simulator",
    target="broker.simulator",
    args=_simulator_args,
    critical=True,
    ready_by=ReadyBy.STDOUT_LINE,
    ready_line="listening on 127.0.0.1:",
    start=StartRule(startsecs=0.5, ready_timeout_s=90.0),
    stop_deadline_s=10.0,
    # Positions live at the broker: without it nothing can be sold.
    restart=RestartPolicy(1.0, 2.0, 30.0, 5, 300.0, keep_alive_while_positions=True),
    heartbeat=False,
    enabled=_sim_only,
)

EXIT_MANAGER = ChildSpec(
    name="exit_manager",
    title="exit manager",
    target="exit_manager",
    critical=True,
    # Readiness (connected, synced) is the real health gate; startsecs only catches a
    # child that dies right after it. A short first backoff: positions wait for it.
    start=StartRule(startsecs=1.0, ready_timeout_s=120.0),
    stop_deadline_s=20.0,
    restart=RestartPolicy(0.5, 2.0, 30.0, 5, 300.0, keep_alive_while_positions=True),
)

DAY_TRADER = ChildSpec(
    name="day_trader",
    title="day trader",
    target="day_trader",
    start=StartRule(startsecs=1.0, ready_timeout_s=120.0),
    stop_deadline_s=15.0,
    # Backoff 0.5 s, 1 s, then the 3rd crash in M = 10 minutes is FATAL (N = 3); the
    # exit manager is not touched.
    restart=RestartPolicy(0.5, 2.0, 60.0, 3, 600.0),
)

_JOB_PHASES = (
    Phase.UNIVERSE,
    Phase.DATA,
    Phase.WATCHLIST,
    Phase.VALIDATE,
    Phase.PREMARKET,
    Phase.POST_CLOSE,
)

TABLE = ChildTable(
    children=(SIMULATOR, EXIT_MANAGER, DAY_TRADER),
    phase_jobs=tuple(PhaseJob(phase, "phases", _phase_args) for phase in _JOB_PHASES),
)
