"""Phase ``validate`` (08:15 ET): is each watchlist symbol a tradable US stock at IBKR?

A symbol is kept (``validated``) when IBKR qualifies it as a stock in USD whose primary
exchange is a US listing exchange. Anything else is dropped with the reason: unknown
at IBKR, another currency, an OTC/foreign primary exchange, or no answer in time
(a symbol that cannot be confirmed is not traded). Dropped rows stay on the list,
unvalidated, so the record shows what was dropped and why; the day trader reads the
validated ones only.
"""

from __future__ import annotations

from dataclasses import replace

from broker.errors import BrokerError, SymbolError
from broker.models import ContractInfo
from phases.runner import PhaseContext, PhaseError, PhaseResult, Progress
from shared_state import WatchlistItem
from telemetry.tracing import span

#: Primary exchanges of US-listed stocks and ETFs (IBKR's codes).
US_EXCHANGES = frozenset(
    {"NASDAQ", "NYSE", "ARCA", "AMEX", "BATS", "IEX", "NYSENAT", "BYX", "EDGX", "EDGA", "PSX"}
)


def judge(info: ContractInfo) -> str | None:
    """Return why a qualified contract is not tradable here (None: it is)."""
    if info.currency != "USD":
        return f"currency {info.currency}, not USD"
    if info.primary_exchange.upper() not in US_EXCHANGES:
        return f"primary exchange {info.primary_exchange or '?'} is not a US listing exchange"
    return None


async def check(ctx: PhaseContext, symbol: str) -> tuple[ContractInfo | None, str | None]:
    """Return the contract and None, or what is wrong with ``symbol``."""
    adapter = await ctx.broker.get()
    with span("broker.qualify", symbol=symbol) as current:
        try:
            info = await adapter.qualify(symbol)
        except SymbolError as exc:
            current.set_attribute("outcome", "unknown")
            return None, f"not a US stock at IBKR ({exc})"
        except (BrokerError, TimeoutError) as exc:
            current.set_attribute("outcome", "no_answer")
            return None, f"not confirmed: {type(exc).__name__}: {exc}"
        problem = judge(info)
        current.set_attribute("outcome", "ok" if problem is None else "refused")
        return info, problem


def checked_item(
    item: WatchlistItem, info: ContractInfo | None, problem: str | None
) -> WatchlistItem:
    """Return the row with its validated flag and the finding in ``extra``."""
    extra = dict(item.extra)
    if info is not None:
        extra.update(con_id=info.con_id, primary_exchange=info.primary_exchange)
    extra["validation"] = problem or "ok"
    return replace(item, validated=problem is None, extra=extra)


async def run(ctx: PhaseContext) -> PhaseResult:
    """Qualify every watchlist symbol and record which are tradable."""
    listed = ctx.store.watchlist(ctx.trading_date)
    if not listed:
        raise PhaseError(f"no watchlist for {ctx.trading_date}: the watchlist phase has not run")
    progress = Progress(ctx.log, "validate", len(listed))
    rows = []
    try:
        for item in listed:
            info, problem = await check(ctx, item.symbol)
            rows.append(checked_item(item, info, problem))
            if problem is not None:
                ctx.event("symbol_dropped", symbol=item.symbol, reason=problem)
            progress.step(item.symbol)
    finally:
        progress.close()
    ctx.store.replace_watchlist(ctx.trading_date, rows)
    kept = [r.symbol for r in rows if r.validated]
    dropped = {r.symbol: r.extra["validation"] for r in rows if not r.validated}
    summary = f"{len(kept)} of {len(rows)} symbols tradable" + (
        f"; dropped {', '.join(f'{s} ({why})' for s, why in dropped.items())}" if dropped else ""
    )
    if not kept:
        raise PhaseError(summary)
    return PhaseResult(summary, {"validated": kept, "dropped": dropped})
