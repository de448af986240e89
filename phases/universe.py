"""Phase ``universe`` (06:55 ET): which symbols may be considered today, and why.

Sources, in this order of preference (a symbol offered twice keeps every source):

1. ``UNIVERSE_STATIC_LIST``: the user's own symbols;
2. the IBKR scanners (``UNIVERSE_SCAN_ROWS`` rows each): pre-market top % gainers,
   then most active;
3. the FMP screener, when ``FMP_API_KEY`` is set.

Filters, on IBKR daily bars of the sessions before the trading date (stored for the
data phase, see ``daily_bars``): last close within ``UNIVERSE_MIN_PRICE`` ..
``UNIVERSE_MAX_PRICE`` and 20-session average volume of at least
``UNIVERSE_MIN_AVG_VOLUME``. The first ``UNIVERSE_MAX_CANDIDATES`` that pass are kept.
Every offered symbol is written to ``phase_candidates`` with its sources and the
reason it passed or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.adapter import ScanCode
from phases import fmp
from phases.daily_bars import ensure_daily_bars
from phases.runner import PhaseContext, PhaseError, PhaseResult
from shared_state.phase_data import Candidate, DailyBar
from telemetry.tracing import span

SCANS = (ScanCode.TOP_PERC_GAIN, ScanCode.MOST_ACTIVE)
AVG_VOLUME_SESSIONS = 20


@dataclass
class Offers:
    """Offered symbols in first-offered order, each with every source that offered it."""

    sources: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, symbols: Sequence[str], source: str, ranked: bool = False) -> None:
        for rank, symbol in enumerate(symbols, start=1):
            tag = f"{source}#{rank}" if ranked else source
            self.sources.setdefault(symbol.strip().upper(), []).append(tag)


@dataclass(frozen=True)
class Filters:
    min_price: float
    max_price: float
    min_avg_volume: float


def static_symbols(text: str) -> list[str]:
    """Return the symbols of a comma-separated list, upper-cased, without blanks."""
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def judge(
    bars: Sequence[DailyBar], filters: Filters
) -> tuple[bool, str, float | None, float | None]:
    """Return (passed, reason, last close, average volume) of one symbol's daily bars."""
    if not bars:
        return False, "no daily bars", None, None
    price = bars[-1].close
    recent = bars[-AVG_VOLUME_SESSIONS:]
    avg_volume = sum(b.volume for b in recent) / len(recent)
    figures = f"close {price:.2f}, avg volume {avg_volume:,.0f} ({len(recent)} sessions)"
    if price < filters.min_price:
        return False, f"price below {filters.min_price:g}: {figures}", price, avg_volume
    if price > filters.max_price:
        return False, f"price above {filters.max_price:g}: {figures}", price, avg_volume
    if avg_volume < filters.min_avg_volume:
        reason = f"avg volume below {filters.min_avg_volume:,.0f}: {figures}"
        return False, reason, price, avg_volume
    return True, f"passed: {figures}", price, avg_volume


async def collect(ctx: PhaseContext) -> Offers:
    """Return the symbols every configured source offers (failures become notes)."""
    offers = Offers()
    offers.add(static_symbols(ctx.settings.universe_static_list), "static")
    rows = ctx.settings.universe_scan_rows
    if rows > 0:
        adapter = await ctx.broker.get()
        for code in SCANS:
            with span("broker.scan", code=str(code), rows=rows):
                try:
                    found = await adapter.scan(code, rows=rows)
                except Exception as exc:  # noqa: BLE001 - one scanner down leaves the others
                    offers.notes.append(f"scanner {code} failed: {type(exc).__name__}: {exc}")
                    continue
            offers.add(found, f"scan:{code}", ranked=True)
            ctx.log.info("universe: scanner %s offered %d symbols", code, len(found))
    if ctx.settings.fmp_api_key:
        screen = await fmp.screen(ctx.settings)
        if screen.error is not None:
            offers.notes.append(f"FMP screener not used: {screen.error}")
        offers.add(screen.symbols, "fmp")
    return offers


def decide(
    offers: Offers,
    bars: dict[str, list[DailyBar]],
    errors: dict[str, str],
    filters: Filters,
    max_candidates: int,
) -> list[Candidate]:
    """Return every offered symbol as a Candidate, passed or not, with the reason."""
    rows: list[Candidate] = []
    kept = 0
    for position, (symbol, sources) in enumerate(offers.sources.items()):
        if symbol in errors:
            passed, reason, price, volume = False, errors[symbol], None, None
        else:
            passed, reason, price, volume = judge(bars.get(symbol, []), filters)
        if passed and kept >= max_candidates:
            passed, reason = False, f"beyond UNIVERSE_MAX_CANDIDATES ({max_candidates}); {reason}"
        kept += passed
        rows.append(Candidate(symbol, position, tuple(sources), price, volume, passed, reason))
    return rows


async def run(ctx: PhaseContext) -> PhaseResult:
    """Collect, filter and record the day's candidates."""
    offers = await collect(ctx)
    if not offers.sources:
        raise PhaseError("no symbol offered by any source; " + "; ".join(offers.notes or ["-"]))
    fetched = await ensure_daily_bars(ctx, list(offers.sources), "universe")
    s = ctx.settings
    filters = Filters(s.universe_min_price, s.universe_max_price, s.universe_min_avg_volume)
    rows = decide(offers, fetched.bars, fetched.errors, filters, s.universe_max_candidates)
    ctx.data.replace_candidates(ctx.trading_date, rows)
    passed = [r.symbol for r in rows if r.passed]
    by_source = _count_sources(rows)
    for note in offers.notes:
        ctx.log.warning("universe: %s", note)
    offered_by = ", ".join(f"{k} {v}" for k, v in by_source.items())
    summary = f"{len(passed)} of {len(rows)} offered symbols passed the filters ({offered_by})"
    if not passed:
        raise PhaseError(summary + "; no candidate left")
    return PhaseResult(
        summary,
        {
            "offered": len(rows),
            "passed": passed,
            "sources": by_source,
            "rejected": {r.symbol: r.reason for r in rows if not r.passed},
            "bar_requests": fetched.requests,
            "notes": offers.notes,
        },
    )


def _count_sources(rows: Sequence[Candidate]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        for source in {tag.split("#")[0] for tag in row.sources}:
            counts[source] = counts.get(source, 0) + 1
    return counts
