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

Start-up also sets up the spans (``telemetry.tracing``: SPANS_DB_PATH, OTLP when asked)
and reads today's accepted parameter set (``exit_manager.params``).
"""

from __future__ import annotations

import asyncio

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.guards import Role
from day_trader.params import trader_params
from day_trader.trader import DayTrader
from exit_manager.params import in_force, load_param_set
from market.clock import now_et
from supervision.child import ChildRuntime, run_child
from telemetry.tracing import setup_tracing


async def main(rt: ChildRuntime) -> int:
    """Build the adapter and the trader from the settings and today's set; run the day."""
    settings = rt.settings
    tracing = setup_tracing(rt.name, settings, clock=rt.clock)
    try:
        today = now_et(rt.clock).date()
        param_set = await asyncio.to_thread(load_param_set, settings.db_path, today)
        adapter = BrokerAdapter(
            AdapterConfig.from_settings(settings),
            rt.clock,
            settings.ib_client_id_day_trader,
            role=Role.DAY_TRADER,
        )
        params = trader_params(settings, rt.clock, param_set)
        trader = DayTrader(rt, adapter, params, parameters=in_force(settings, param_set))
        return await trader.run()
    finally:
        await asyncio.to_thread(tracing.shutdown)


if __name__ == "__main__":
    raise SystemExit(run_child("day_trader", main))
