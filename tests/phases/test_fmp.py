"""The optional FMP screener against a local server: symbols offered, failures reported."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fake_fmp import FakeFmp
from phase_fixtures import settings_for

from phases import fmp

KEY = "fmp-FAKE-key-9f8e7d6c5b4a"


def test_the_screener_offers_its_symbols_with_the_universe_filters(tmp_path: Path) -> None:
    server = FakeFmp([{"symbol": "msft", "price": 400.0}, {"symbol": "NVDA"}, {"bad": 1}])
    settings = settings_for(tmp_path, FMP_API_KEY=KEY, FMP_BASE_URL=server.url)
    try:
        screen = asyncio.run(fmp.screen(settings))
    finally:
        server.close()

    assert screen.symbols == ("MSFT", "NVDA") and screen.error is None
    (query,) = server.queries
    assert query["apikey"] == KEY and query["priceMoreThan"] == "5"
    assert query["priceLowerThan"] == "500" and query["volumeMoreThan"] == "1000000"


def test_a_refused_key_is_reported_without_the_key(tmp_path: Path) -> None:
    server = FakeFmp([], status=401)
    settings = settings_for(tmp_path, FMP_API_KEY=KEY, FMP_BASE_URL=server.url)
    try:
        screen = asyncio.run(fmp.screen(settings))
    finally:
        server.close()

    assert screen.symbols == ()
    assert screen.error is not None and "401" in screen.error
    assert KEY not in screen.error and "[redacted]" in screen.error
