"""The optional Financial Modeling Prep screener: more symbols for the universe.

Asked only when ``FMP_API_KEY`` is set. It offers symbols; the universe phase filters
every candidate on IBKR's own daily bars, whatever offered it. A failure (no network,
a bad key, a quota) is returned as text: the universe carries on without FMP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from config.settings import Settings
from telemetry.logs import scrub
from telemetry.tracing import span

log = logging.getLogger("phases.fmp")

SCREENER_PATH = "/stable/company-screener"
TIMEOUT_S = 15.0
ROWS = 100


@dataclass(frozen=True)
class FmpScreen:
    """Symbols the screener offered (by its order), or why there are none."""

    symbols: tuple[str, ...]
    error: str | None = None


def screener_params(settings: Settings) -> dict[str, str]:
    """Return the screener query (without the key) for the universe filters."""
    return {
        "priceMoreThan": f"{settings.universe_min_price:g}",
        "priceLowerThan": f"{settings.universe_max_price:g}",
        "volumeMoreThan": f"{settings.universe_min_avg_volume:.0f}",
        "isEtf": "false",
        "isFund": "false",
        "isActivelyTrading": "true",
        "country": "US",
        "limit": str(ROWS),
    }


async def screen(settings: Settings) -> FmpScreen:
    """Return the symbols FMP's screener offers; never raise for a service failure."""
    key = settings.fmp_api_key.reveal()
    url = settings.fmp_base_url.rstrip("/") + SCREENER_PATH
    params = {**screener_params(settings), "apikey": key}
    with span("fmp.screen", rows=ROWS) as current:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                response = await client.get(url, params=params)
                response.raise_for_status()
                rows = response.json()
            symbols = tuple(
                str(row["symbol"]).upper()
                for row in rows
                if isinstance(row, dict) and isinstance(row.get("symbol"), str)
            )
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            # httpx puts the URL, key included, into its messages: scrub, and name only
            # the kind of failure.
            error = scrub(f"{type(exc).__name__}: {exc}")
            if key:
                error = error.replace(key, "[redacted]")
            current.set_attribute("outcome", "error")
            log.warning("FMP screener unavailable: %s", error)
            return FmpScreen((), error)
        current.set_attribute("outcome", "ok")
        return FmpScreen(symbols)
