"""The simulated stock universe: real US tickers with 2025-like prices and behaviour.

Each row gives what the synthetic market needs to make a symbol look like itself:
an anchor price level (roughly where the stock traded in 2025), its primary exchange,
typical daily share volume and typical daily volatility. Prices wander around the
anchor (see ``market_data``), so the anchor is a level, not a quote.

Contract ids are stable across runs and hosts: a handful are the real IBKR conIds
(AAPL is 265598), the rest come from a hash of the symbol, so a client that caches
``conId`` between runs keeps working.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from broker.simulator.types import SymbolInfo


@dataclass(frozen=True)
class UniverseEntry:
    """One stock of the simulated universe."""

    symbol: str
    long_name: str
    primary_exchange: str  # NASDAQ, NYSE, ARCA
    anchor_price: float  # typical 2025 price level, dollars
    avg_volume: int  # typical shares traded per day
    daily_vol_pct: float  # typical daily move (standard deviation of returns), percent
    industry: str

    @property
    def con_id(self) -> int:
        return stable_con_id(self.symbol)

    def info(self) -> SymbolInfo:
        """Return the contract reference data of this stock."""
        return SymbolInfo(
            symbol=self.symbol,
            con_id=self.con_id,
            long_name=self.long_name,
            primary_exchange=self.primary_exchange,
            industry=self.industry,
        )


#: Real IBKR contract ids of a few well-known listings (nice for clients that hard-code them).
KNOWN_CON_IDS: dict[str, int] = {
    "AAPL": 265598,
    "MSFT": 272093,
    "AMZN": 3691937,
    "NVDA": 4815747,
    "TSLA": 76792991,
    "META": 107113386,
    "GOOG": 208813720,
    "GOOGL": 208813719,
    "AMD": 4391,
    "INTC": 270639,
    "NFLX": 15124833,
    "SPY": 756733,
    "QQQ": 320227571,
}

# Hash-derived ids live far above the real ids listed here and below 2**31 (conId is int32).
_HASHED_CON_ID_BASE = 1_000_000_000
_HASHED_CON_ID_SPAN = 1_000_000_000


def stable_con_id(symbol: str) -> int:
    """Return the contract id of ``symbol``: its real conId if listed, else a stable hash."""
    known = KNOWN_CON_IDS.get(symbol)
    if known is not None:
        return known
    digest = hashlib.blake2b(symbol.encode("ascii"), digest_size=8).digest()
    return _HASHED_CON_ID_BASE + int.from_bytes(digest, "big") % _HASHED_CON_ID_SPAN


def _e(
    symbol: str, name: str, exchange: str, price: float, volume_m: float, vol: float, industry: str
) -> UniverseEntry:
    return UniverseEntry(symbol, name, exchange, price, int(volume_m * 1_000_000), vol, industry)


_TECH = "Technology"
_SEMI = "Semiconductors"
_FIN = "Financial"
_HEALTH = "Healthcare"
_CONS = "Consumer"
_IND = "Industrial"
_ENERGY = "Energy"
_COMM = "Communications"
_CRYPTO = "Crypto mining and exchanges"
_SPEC = "Speculative growth"
_ETF = "Exchange traded fund"

# symbol, long name, primary exchange, 2025 price level, avg volume (millions), daily vol %
UNIVERSE: tuple[UniverseEntry, ...] = (
    # Mega and large cap technology
    _e("AAPL", "Apple Inc", "NASDAQ", 230.0, 55, 1.6, _TECH),
    _e("MSFT", "Microsoft Corp", "NASDAQ", 500.0, 20, 1.3, _TECH),
    _e("NVDA", "NVIDIA Corp", "NASDAQ", 180.0, 180, 2.8, _SEMI),
    _e("AMZN", "Amazon.com Inc", "NASDAQ", 225.0, 40, 1.9, _CONS),
    _e("GOOG", "Alphabet Inc Class C", "NASDAQ", 250.0, 25, 1.8, _COMM),
    _e("GOOGL", "Alphabet Inc Class A", "NASDAQ", 250.0, 35, 1.8, _COMM),
    _e("META", "Meta Platforms Inc", "NASDAQ", 700.0, 12, 2.2, _COMM),
    _e("TSLA", "Tesla Inc", "NASDAQ", 400.0, 95, 3.8, _CONS),
    _e("AVGO", "Broadcom Inc", "NASDAQ", 330.0, 22, 2.8, _SEMI),
    _e("AMD", "Advanced Micro Devices Inc", "NASDAQ", 220.0, 50, 3.2, _SEMI),
    _e("NFLX", "Netflix Inc", "NASDAQ", 112.0, 35, 2.0, _COMM),
    _e("ORCL", "Oracle Corp", "NYSE", 230.0, 12, 2.5, _TECH),
    _e("CRM", "Salesforce Inc", "NYSE", 245.0, 7, 2.0, _TECH),
    _e("ADBE", "Adobe Inc", "NASDAQ", 350.0, 4, 2.0, _TECH),
    _e("INTC", "Intel Corp", "NASDAQ", 35.0, 90, 3.2, _SEMI),
    _e("CSCO", "Cisco Systems Inc", "NASDAQ", 70.0, 20, 1.3, _TECH),
    _e("QCOM", "Qualcomm Inc", "NASDAQ", 165.0, 8, 2.0, _SEMI),
    _e("TXN", "Texas Instruments Inc", "NASDAQ", 170.0, 7, 1.8, _SEMI),
    _e("MU", "Micron Technology Inc", "NASDAQ", 200.0, 25, 3.5, _SEMI),
    _e("IBM", "International Business Machines Corp", "NYSE", 290.0, 5, 1.6, _TECH),
    _e("INTU", "Intuit Inc", "NASDAQ", 650.0, 2, 1.9, _TECH),
    _e("AMAT", "Applied Materials Inc", "NASDAQ", 200.0, 8, 2.6, _SEMI),
    _e("LRCX", "Lam Research Corp", "NASDAQ", 140.0, 12, 2.9, _SEMI),
    _e("KLAC", "KLA Corp", "NASDAQ", 1050.0, 1, 2.4, _SEMI),
    _e("ARM", "Arm Holdings PLC ADR", "NASDAQ", 150.0, 6, 4.0, _SEMI),
    _e("MRVL", "Marvell Technology Inc", "NASDAQ", 85.0, 15, 3.8, _SEMI),
    _e("ON", "ON Semiconductor Corp", "NASDAQ", 48.0, 8, 3.0, _SEMI),
    _e("SMCI", "Super Micro Computer Inc", "NASDAQ", 45.0, 25, 5.0, _TECH),
    _e("DELL", "Dell Technologies Inc", "NYSE", 130.0, 8, 3.0, _TECH),
    _e("ANET", "Arista Networks Inc", "NYSE", 135.0, 9, 3.0, _TECH),
    _e("PANW", "Palo Alto Networks Inc", "NASDAQ", 195.0, 6, 2.2, _TECH),
    _e("CRWD", "CrowdStrike Holdings Inc", "NASDAQ", 500.0, 3.5, 2.8, _TECH),
    _e("SNOW", "Snowflake Inc", "NYSE", 240.0, 5, 3.0, _TECH),
    _e("NOW", "ServiceNow Inc", "NYSE", 870.0, 1.3, 2.2, _TECH),
    _e("SHOP", "Shopify Inc", "NASDAQ", 150.0, 9, 3.2, _TECH),
    _e("UBER", "Uber Technologies Inc", "NYSE", 95.0, 18, 2.3, _TECH),
    _e("ABNB", "Airbnb Inc", "NASDAQ", 125.0, 5, 2.3, _CONS),
    _e("PYPL", "PayPal Holdings Inc", "NASDAQ", 68.0, 12, 2.1, _FIN),
    _e("XYZ", "Block Inc", "NYSE", 70.0, 8, 3.0, _FIN),
    _e("DDOG", "Datadog Inc", "NASDAQ", 150.0, 5, 3.0, _TECH),
    _e("NET", "Cloudflare Inc", "NYSE", 210.0, 4, 3.2, _TECH),
    _e("MDB", "MongoDB Inc", "NASDAQ", 330.0, 2, 3.5, _TECH),
    _e("ZS", "Zscaler Inc", "NASDAQ", 280.0, 1.8, 2.6, _TECH),
    _e("TTD", "The Trade Desk Inc", "NASDAQ", 45.0, 12, 3.8, _TECH),
    _e("DASH", "DoorDash Inc", "NASDAQ", 200.0, 4, 2.8, _CONS),
    _e("APP", "AppLovin Corp", "NASDAQ", 600.0, 6, 5.0, _TECH),
    # Financials
    _e("JPM", "JPMorgan Chase and Co", "NYSE", 300.0, 9, 1.4, _FIN),
    _e("BAC", "Bank of America Corp", "NYSE", 50.0, 38, 1.6, _FIN),
    _e("WFC", "Wells Fargo and Co", "NYSE", 82.0, 16, 1.7, _FIN),
    _e("GS", "Goldman Sachs Group Inc", "NYSE", 760.0, 2.2, 1.8, _FIN),
    _e("MS", "Morgan Stanley", "NYSE", 155.0, 6, 1.8, _FIN),
    _e("C", "Citigroup Inc", "NYSE", 100.0, 14, 1.9, _FIN),
    _e("V", "Visa Inc Class A", "NYSE", 340.0, 7, 1.2, _FIN),
    _e("MA", "Mastercard Inc Class A", "NYSE", 565.0, 3, 1.2, _FIN),
    _e("AXP", "American Express Co", "NYSE", 350.0, 3, 1.7, _FIN),
    _e("SCHW", "Charles Schwab Corp", "NYSE", 95.0, 9, 1.5, _FIN),
    _e("BLK", "BlackRock Inc", "NYSE", 1100.0, 0.7, 1.5, _FIN),
    # Healthcare
    _e("UNH", "UnitedHealth Group Inc", "NYSE", 330.0, 12, 2.2, _HEALTH),
    _e("JNJ", "Johnson and Johnson", "NYSE", 190.0, 8, 1.0, _HEALTH),
    _e("LLY", "Eli Lilly and Co", "NYSE", 950.0, 4, 2.1, _HEALTH),
    _e("PFE", "Pfizer Inc", "NYSE", 25.0, 40, 1.4, _HEALTH),
    _e("MRK", "Merck and Co Inc", "NYSE", 90.0, 12, 1.5, _HEALTH),
    _e("ABBV", "AbbVie Inc", "NYSE", 225.0, 6, 1.4, _HEALTH),
    _e("TMO", "Thermo Fisher Scientific Inc", "NYSE", 560.0, 2, 1.6, _HEALTH),
    _e("ISRG", "Intuitive Surgical Inc", "NASDAQ", 540.0, 2, 2.0, _HEALTH),
    _e("MRNA", "Moderna Inc", "NASDAQ", 25.0, 12, 4.0, _HEALTH),
    _e("HIMS", "Hims and Hers Health Inc", "NYSE", 45.0, 25, 6.0, _HEALTH),
    # Consumer
    _e("WMT", "Walmart Inc", "NYSE", 100.0, 18, 1.2, _CONS),
    _e("COST", "Costco Wholesale Corp", "NASDAQ", 920.0, 2, 1.3, _CONS),
    _e("HD", "Home Depot Inc", "NYSE", 370.0, 3.5, 1.4, _CONS),
    _e("MCD", "McDonalds Corp", "NYSE", 305.0, 3.5, 1.1, _CONS),
    _e("NKE", "Nike Inc Class B", "NYSE", 65.0, 14, 2.3, _CONS),
    _e("SBUX", "Starbucks Corp", "NASDAQ", 85.0, 10, 2.0, _CONS),
    _e("KO", "Coca-Cola Co", "NYSE", 70.0, 14, 0.9, _CONS),
    _e("PEP", "PepsiCo Inc", "NASDAQ", 145.0, 7, 1.1, _CONS),
    _e("PG", "Procter and Gamble Co", "NYSE", 150.0, 7, 1.0, _CONS),
    _e("DIS", "Walt Disney Co", "NYSE", 112.0, 9, 1.6, _COMM),
    _e("CMG", "Chipotle Mexican Grill Inc", "NYSE", 35.0, 25, 2.5, _CONS),
    _e("LULU", "Lululemon Athletica Inc", "NASDAQ", 170.0, 4, 3.0, _CONS),
    _e("TGT", "Target Corp", "NYSE", 90.0, 6, 2.0, _CONS),
    _e("CHWY", "Chewy Inc", "NYSE", 35.0, 6, 3.0, _CONS),
    _e("CELH", "Celsius Holdings Inc", "NASDAQ", 42.0, 5, 4.5, _CONS),
    # Industrials, energy, telecom
    _e("XOM", "Exxon Mobil Corp", "NYSE", 115.0, 15, 1.3, _ENERGY),
    _e("CVX", "Chevron Corp", "NYSE", 152.0, 8, 1.4, _ENERGY),
    _e("OXY", "Occidental Petroleum Corp", "NYSE", 42.0, 10, 2.0, _ENERGY),
    _e("ENPH", "Enphase Energy Inc", "NASDAQ", 30.0, 6, 4.5, _ENERGY),
    _e("FSLR", "First Solar Inc", "NASDAQ", 250.0, 3, 3.5, _ENERGY),
    _e("CAT", "Caterpillar Inc", "NYSE", 520.0, 2.5, 1.9, _IND),
    _e("BA", "Boeing Co", "NYSE", 200.0, 8, 2.2, _IND),
    _e("GE", "GE Aerospace", "NYSE", 300.0, 5, 1.8, _IND),
    _e("LMT", "Lockheed Martin Corp", "NYSE", 480.0, 1.3, 1.3, _IND),
    _e("DE", "Deere and Co", "NYSE", 470.0, 1.5, 1.6, _IND),
    _e("UPS", "United Parcel Service Inc Class B", "NYSE", 95.0, 6, 1.8, _IND),
    _e("F", "Ford Motor Co", "NYSE", 13.0, 60, 2.0, _CONS),
    _e("GM", "General Motors Co", "NYSE", 70.0, 9, 2.0, _CONS),
    _e("T", "AT&T Inc", "NYSE", 26.0, 35, 1.2, _COMM),
    _e("VZ", "Verizon Communications Inc", "NYSE", 41.0, 20, 1.1, _COMM),
    _e("CMCSA", "Comcast Corp Class A", "NASDAQ", 28.0, 25, 1.6, _COMM),
    # Volatile small and mid caps (the day trader's usual hunting ground)
    _e("PLTR", "Palantir Technologies Inc", "NASDAQ", 175.0, 60, 4.0, _TECH),
    _e("SOFI", "SoFi Technologies Inc", "NASDAQ", 28.0, 60, 4.5, _FIN),
    _e("RIVN", "Rivian Automotive Inc", "NASDAQ", 14.0, 35, 4.5, _CONS),
    _e("LCID", "Lucid Group Inc", "NASDAQ", 17.0, 12, 5.0, _CONS),
    _e("MARA", "MARA Holdings Inc", "NASDAQ", 15.0, 45, 6.0, _CRYPTO),
    _e("RIOT", "Riot Platforms Inc", "NASDAQ", 15.0, 25, 6.0, _CRYPTO),
    _e("CLSK", "CleanSpark Inc", "NASDAQ", 12.0, 30, 6.5, _CRYPTO),
    _e("COIN", "Coinbase Global Inc", "NASDAQ", 270.0, 10, 4.5, _CRYPTO),
    _e("HOOD", "Robinhood Markets Inc", "NASDAQ", 120.0, 40, 5.0, _FIN),
    _e("MSTR", "Strategy Inc", "NASDAQ", 180.0, 15, 5.0, _CRYPTO),
    _e("GME", "GameStop Corp", "NYSE", 22.0, 10, 3.5, _CONS),
    _e("AMC", "AMC Entertainment Holdings Inc", "NYSE", 2.6, 20, 5.0, _COMM),
    _e("UPST", "Upstart Holdings Inc", "NASDAQ", 42.0, 6, 6.0, _FIN),
    _e("AFRM", "Affirm Holdings Inc", "NASDAQ", 70.0, 8, 4.5, _FIN),
    _e("RBLX", "Roblox Corp", "NYSE", 100.0, 9, 3.5, _COMM),
    _e("U", "Unity Software Inc", "NYSE", 35.0, 10, 4.5, _TECH),
    _e("DKNG", "DraftKings Inc", "NASDAQ", 32.0, 10, 3.0, _CONS),
    _e("SNAP", "Snap Inc", "NYSE", 8.0, 35, 3.5, _COMM),
    _e("PINS", "Pinterest Inc", "NYSE", 26.0, 10, 2.8, _COMM),
    _e("ROKU", "Roku Inc", "NASDAQ", 100.0, 4, 3.5, _COMM),
    _e("CVNA", "Carvana Co", "NYSE", 330.0, 4, 4.5, _CONS),
    _e("IONQ", "IonQ Inc", "NYSE", 50.0, 30, 7.0, _SPEC),
    _e("RGTI", "Rigetti Computing Inc", "NASDAQ", 28.0, 50, 8.0, _SPEC),
    _e("QBTS", "D-Wave Quantum Inc", "NYSE", 25.0, 60, 8.0, _SPEC),
    _e("SOUN", "SoundHound AI Inc", "NASDAQ", 13.0, 50, 6.5, _SPEC),
    _e("BBAI", "BigBear.ai Holdings Inc", "NYSE", 6.0, 80, 8.0, _SPEC),
    _e("RKLB", "Rocket Lab Corp", "NASDAQ", 45.0, 25, 5.5, _SPEC),
    _e("ASTS", "AST SpaceMobile Inc", "NASDAQ", 60.0, 15, 6.5, _SPEC),
    _e("ACHR", "Archer Aviation Inc", "NYSE", 9.0, 40, 6.5, _SPEC),
    _e("JOBY", "Joby Aviation Inc", "NYSE", 14.0, 25, 5.5, _SPEC),
    _e("OKLO", "Oklo Inc", "NYSE", 100.0, 20, 7.0, _SPEC),
    _e("SMR", "NuScale Power Corp", "NYSE", 25.0, 20, 7.0, _SPEC),
    _e("OPEN", "Opendoor Technologies Inc", "NASDAQ", 7.0, 150, 9.0, _SPEC),
    _e("CRWV", "CoreWeave Inc", "NASDAQ", 80.0, 30, 7.0, _TECH),
    _e("CRCL", "Circle Internet Group Inc", "NYSE", 80.0, 15, 7.0, _CRYPTO),
    _e("NIO", "NIO Inc ADR", "NYSE", 6.0, 50, 4.5, _CONS),
    _e("PLUG", "Plug Power Inc", "NASDAQ", 2.2, 80, 7.0, _ENERGY),
    # Exchange traded funds
    _e("SPY", "SPDR S&P 500 ETF Trust", "ARCA", 660.0, 70, 0.9, _ETF),
    _e("QQQ", "Invesco QQQ Trust Series 1", "NASDAQ", 600.0, 45, 1.1, _ETF),
    _e("IWM", "iShares Russell 2000 ETF", "ARCA", 240.0, 30, 1.3, _ETF),
    _e("TQQQ", "ProShares UltraPro QQQ", "NASDAQ", 100.0, 60, 3.3, _ETF),
    _e("SOXL", "Direxion Daily Semiconductor Bull 3X Shares", "ARCA", 35.0, 80, 6.0, _ETF),
    _e("ARKK", "ARK Innovation ETF", "ARCA", 75.0, 10, 2.5, _ETF),
)


@lru_cache(maxsize=1)
def by_symbol() -> dict[str, UniverseEntry]:
    """Return the universe keyed by symbol (checked once: symbols and con ids are unique)."""
    table = {entry.symbol: entry for entry in UNIVERSE}
    if len(table) != len(UNIVERSE):
        raise ValueError("simulator universe lists a symbol twice")
    con_ids = {entry.con_id for entry in UNIVERSE}
    if len(con_ids) != len(UNIVERSE):
        raise ValueError("simulator universe has a con_id collision; adjust KNOWN_CON_IDS")
    return table
