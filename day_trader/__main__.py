"""``python -m day_trader``: the only process that buys.

Run by the supervisor after the exit manager is ready (or by hand). Environment: every
setting (``config.settings``: DB_PATH, BROKER, SIM_PORT / IB_PORT,
IB_CLIENT_ID_DAY_TRADER, LOOP_INTERVAL_S, ...), ``TRADING_CLOCK`` (the shared clock) and,
under the supervisor, ``SUPERVISOR_CHILD`` / ``SUPERVISOR_PARENT``.

Contract with the supervisor (``supervision.child``): heartbeat every
HEARTBEAT_INTERVAL_S from the runtime; ready once connected to the broker, synced and
recovered (its own unfinished entries resolved at the broker); exit 0 when the session
is over with nothing pending, or when asked to stop (SIGTERM/SIGINT/CTRL_BREAK); exit 1
on a crash; exit 2 on a settings error.
"""

from __future__ import annotations

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.guards import Role
from day_trader.params import trader_params
from day_trader.trader import DayTrader
from supervision.child import ChildRuntime, run_child


async def main(rt: ChildRuntime) -> int:
    """Build the broker adapter and the trader from the runtime's settings; run the day."""
    settings = rt.settings
    adapter = BrokerAdapter(
        AdapterConfig.from_settings(settings),
        rt.clock,
        settings.ib_client_id_day_trader,
        role=Role.DAY_TRADER,
    )
    return await DayTrader(rt, adapter, trader_params(settings)).run()


if __name__ == "__main__":
    raise SystemExit(run_child("day_trader", main))
