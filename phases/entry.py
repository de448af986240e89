"""The edge of a phase process: settings, clock, store, tracing, then ``run_phase``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date

from market.clock import now_et
from phases.runner import body_of, open_context, run_phase
from supervision.child import ChildRuntime
from telemetry.logs import redact
from telemetry.tracing import setup_tracing


def phase_main(name: str, day: date | None) -> Callable[[ChildRuntime], Awaitable[int]]:
    """Return the child ``main`` that runs phase ``name`` for ``day`` (default: today, ET)."""

    async def main(rt: ChildRuntime) -> int:
        settings = rt.settings
        redact(settings.deepseek_api_key.reveal(), settings.fmp_api_key.reveal())
        # httpx logs every request URL at INFO; FMP's carries the key (scrubbed anyway).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        tracing = setup_tracing(rt.name, settings, clock=rt.clock)
        trading_date = day or now_et(rt.clock).date()
        ctx = open_context(name, trading_date, settings, rt.clock, rt.store, process=rt.name)
        try:
            outcome = await run_phase(ctx, body_of(name), stop=rt.wait_stop)
        finally:
            ctx.data.close()
            tracing.shutdown()
        print(f"{name} {trading_date}: {outcome.status}: {outcome.detail}", flush=True)
        return outcome.exit_code

    return main
