"""Run the exchange simulator: ``python -m broker.simulator --port P [options]``.

Prints ``listening on 127.0.0.1:P`` and then ``control on 127.0.0.1:C`` once both
listeners are bound (``--port 0`` picks a free port; the control port defaults to P + 1,
or to a free port as well when P is 0). SIGTERM/SIGINT close every socket and exit 0.

Clock: ``--start`` gives a virtual clock (``--speed`` times real time); otherwise the
``TRADING_CLOCK`` environment variable (see ``market.clock``); otherwise the wall clock.

``--starting-cash`` is the cash of a *new* account file (an existing one keeps its own).
Started by the supervisor (``SUPERVISOR_PARENT`` set), the simulator exits 0 by itself
once that supervisor is gone, like every other child (``supervision.parent``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from broker.simulator.types import ExchangeConfig
from market.clock import (
    CLOCK_ENV,
    ET,
    Clock,
    ClockSpecError,
    LiveClock,
    VirtualClock,
    clock_from_env,
)

if TYPE_CHECKING:
    from broker.simulator.account import AccountStore
    from broker.simulator.market_data import ControllableMarket
    from broker.simulator.server import SimServer

log = logging.getLogger("broker.simulator")

DEFAULT_DB = Path("data/simulator.db")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0-65535)")
    return value


def _start(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=ET)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _speed(text: str) -> float:
    value = float(text)
    if not 0.001 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{text} must be between 0.001 and 100000")
    return value


def _paper_account(text: str) -> str:
    if not (text.startswith("DU") and text[2:].isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a paper account id (DU + digits)")
    return text


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(prog="python -m broker.simulator", description=__doc__)
    p.add_argument("--port", type=_port, required=True, help="API port on 127.0.0.1 (0: free)")
    p.add_argument("--control-port", type=_port, help="control port (default: port + 1)")
    p.add_argument("--start", type=_start, help="virtual clock start, ISO (naive = ET)")
    p.add_argument("--speed", type=_speed, default=1.0, help="virtual clock speed factor")
    p.add_argument("--seed", type=int, default=7, help="synthetic market seed")
    p.add_argument("--data", type=_directory, help="directory of <SYMBOL>.csv 1-min bars")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="account database file")
    p.add_argument("--gap-share", type=_share, default=0.1, help="share of gapping symbols")
    p.add_argument(
        "--quote-interval", type=_positive, default=0.25, help="real seconds per quote step"
    )
    p.add_argument(
        "--account-id", type=_paper_account, default=ExchangeConfig.account_id, help="DU..."
    )
    p.add_argument(
        "--starting-cash",
        type=_positive,
        default=ExchangeConfig.starting_cash,
        help="cash of a new account file, USD (an existing file keeps its balance)",
    )
    p.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper
    )
    return p


def make_clock(args: argparse.Namespace) -> Clock:
    """Return the clock the arguments ask for."""
    if args.start is not None:
        return VirtualClock(args.start, args.speed)
    if os.environ.get(CLOCK_ENV):
        return clock_from_env()
    return LiveClock()


def _control_port(args: argparse.Namespace, api_port: int) -> int:
    if args.control_port is not None:
        return args.control_port
    return 0 if args.port == 0 else api_port + 1


def build(
    args: argparse.Namespace, clock: Clock
) -> tuple[SimServer, ControllableMarket, AccountStore]:
    """Return the protocol server, its market and the account store the arguments describe."""
    # Imported here, not at the top, so that bad arguments fail before pandas and the
    # exchange calendar load (a second or more).
    from broker.simulator.account import AccountStore
    from broker.simulator.exchange import Exchange
    from broker.simulator.market_data import build_market
    from broker.simulator.scanner import most_active, top_gainers
    from broker.simulator.server import ServerConfig, SimServer

    config = ExchangeConfig(account_id=args.account_id, starting_cash=args.starting_cash)
    market = build_market(args.seed, args.data, args.gap_share)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    account = AccountStore(args.db, config)
    exchange = Exchange(account, market, clock, config)

    def scanner(code: str, now: datetime, n: int) -> list[str]:
        if code == "MOST_ACTIVE":
            return most_active(market, now, n)
        return top_gainers(market, now, n, premarket=True)

    server_config = ServerConfig(port=args.port, quote_interval=args.quote_interval)
    return SimServer(exchange, market, clock, config, server_config, scanner), market, account


async def serve(args: argparse.Namespace, clock: Clock) -> int:
    """Run the simulator until a signal or the control ``shutdown``; return the exit code."""
    from broker.simulator.control import ControlServer

    sim, market, account = build(args, clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    control = ControlServer(sim, market, stop.set)
    watcher = _watch_supervisor(stop)
    try:
        port = await sim.start()
        print(f"listening on 127.0.0.1:{port}", flush=True)
        control_port = await control.start(_control_port(args, port))
        print(f"control on 127.0.0.1:{control_port}", flush=True)
        log.info("simulator up: account %s, clock %s, db %s", sim.account_id, clock.spec(), args.db)
        await stop.wait()
        log.info("shutting down")
    finally:
        if watcher is not None:
            watcher.cancel()
        await control.stop()
        await sim.stop()
        account.close()
    return 0


def _watch_supervisor(stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Set ``stop`` once the supervisor in SUPERVISOR_PARENT is gone (None: no supervisor)."""
    from supervision.parent import parent_from_env, wait_parent_gone

    parent = parent_from_env()
    if parent is None:
        return None

    async def watch() -> None:
        log.warning("stopping: %s", await wait_parent_gone(parent))
        stop.set()

    return asyncio.create_task(watch(), name="supervisor-watch")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the simulator, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        clock = make_clock(args)
    except ClockSpecError as exc:
        parser.error(f"{CLOCK_ENV}: {exc}")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(serve(args, clock))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
