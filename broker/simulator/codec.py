"""The TWS API wire format, both directions, as tables (server version 176).

The client libraries decode with a table from message id to handler and field types
(``decoder.py``); this module is the same kind of table run the other way:

- framing: the raw ``API\\0`` greeting, then 4-byte big-endian length prefixes around
  NUL-terminated UTF-8 fields (``FrameBuffer``, ``encode_message``);
- field encoding: None/UNSET -> empty, bools 0/1, ints without decimals, floats as
  Python ``str``, ``math.inf`` -> ``Infinite`` (``encode_field``);
- incoming: ``REQUESTS`` maps a request id to its name and field layout;
  ``decode_request`` cuts a message into a ``Request``; placeOrder, being long and
  partly variable, has its own decoder (``decode_place_order``);
- outgoing: one encoder per message (``open_order``, ``exec_details``...), each
  returning the exact field list of shared/docs/tws-protocol.md section 5.

Every layout here is the one the doc verified against ib_insync 0.9.86 and
ib_async 2.1.0 at server version 176.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from broker.simulator.types import (
    Action,
    Execution,
    OrderRequest,
    SimOrder,
    SymbolInfo,
)

SERVER_VERSION = 176
MIN_CLIENT_VERSION = 157

API_GREETING = b"API\0"
UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = sys.float_info.max
#: Java's spelling of Double.MAX_VALUE, what TWS sends for an unset double.
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
_LENGTH = struct.Struct(">I")
#: A sane upper bound for one message; a larger prefix means a broken stream.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ProtocolError(ValueError):
    """The peer sent bytes that are not the TWS API protocol."""


class _Unset:
    """Marker for a field that is deliberately sent as TWS's 'unset double'."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


# --------------------------------------------------------------------------- framing


def encode_field(value: object) -> str:
    """Return the wire text of one field value."""
    if value is None:
        return ""
    if value is UNSET:
        return UNSET_DOUBLE_TEXT
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return "" if value == UNSET_INTEGER else str(value)
    if isinstance(value, float):
        if value == UNSET_DOUBLE:
            return ""
        if math.isinf(value):
            return "Infinite" if value > 0 else "-Infinite"
        return str(value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def encode_payload(fields: Sequence[object]) -> bytes:
    """Return the NUL-terminated UTF-8 payload of ``fields`` (no length prefix)."""
    return b"".join(encode_field(f).encode() + b"\0" for f in fields)


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its 4-byte big-endian length."""
    return _LENGTH.pack(len(payload)) + payload


def encode_message(fields: Sequence[object]) -> bytes:
    """Return one complete, length-prefixed message."""
    return frame(encode_payload(fields))


def split_payload(payload: bytes) -> list[str]:
    """Return the fields of one payload (the trailing NUL gives no extra field)."""
    text = payload.decode("utf-8", errors="backslashreplace")
    parts = text.split("\0")
    if parts and parts[-1] == "":
        parts.pop()
    return parts


class FrameBuffer:
    """Reassemble length-prefixed messages from a byte stream split at any point."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append bytes as they arrived from the socket."""
        self._buffer.extend(data)

    def take_raw(self, count: int) -> bytes | None:
        """Remove and return exactly ``count`` unframed bytes, or None if not yet buffered."""
        if len(self._buffer) < count:
            return None
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def next_payload(self) -> bytes | None:
        """Remove and return the next complete payload, or None if it is not complete yet."""
        if len(self._buffer) < _LENGTH.size:
            return None
        (size,) = _LENGTH.unpack_from(self._buffer)
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message length {size} exceeds {MAX_MESSAGE_BYTES}")
        end = _LENGTH.size + size
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[_LENGTH.size : end])
        del self._buffer[:end]
        return payload

    def messages(self) -> Iterator[list[str]]:
        """Yield the fields of every complete message buffered so far."""
        while (payload := self.next_payload()) is not None:
            yield split_payload(payload)


# --------------------------------------------------------------------------- handshake


@dataclass(frozen=True)
class VersionRange:
    """What the client offered in its greeting: ``v157..176`` plus optional connect options."""

    min_version: int
    max_version: int
    options: str = ""


def parse_version_range(payload: bytes) -> VersionRange:
    """Parse the greeting payload ``v157..176[ +OPTIONS]``; raise ProtocolError otherwise."""
    text = payload.decode("utf-8", errors="replace").rstrip("\0")
    head, _, options = text.partition(" ")
    if not head.startswith("v"):
        raise ProtocolError(f"bad version range {text!r}")
    low, sep, high = head[1:].partition("..")
    try:
        min_version = int(low)
        max_version = int(high) if sep else min_version
    except ValueError:
        raise ProtocolError(f"bad version range {text!r}") from None
    return VersionRange(min_version, max_version, options.strip())


def negotiate_version(offer: VersionRange) -> int | None:
    """Return the server version to answer with, or None if the ranges do not meet."""
    version = min(SERVER_VERSION, offer.max_version)
    if version < max(MIN_CLIENT_VERSION, offer.min_version):
        return None
    return version


def handshake_reply(version: int, now: datetime) -> bytes:
    """Return the handshake answer: exactly two fields, version and connection time."""
    return encode_message([version, now.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")])


# --------------------------------------------------------------------------- incoming


class FieldType(Enum):
    """How one incoming field is read."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"
    CONTRACT = "contract"  # the 12 contract fields of client.py's Contract encoding


@dataclass(frozen=True)
class WireContract:
    """The 12 contract fields a client sends with reqMktData, placeOrder, and friends."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


CONTRACT_FIELD_COUNT = 12


def _read_int(text: str) -> int:
    return int(float(text)) if text else 0


def _read_float(text: str) -> float | None:
    if not text:
        return None
    if text in ("Infinite", "Infinity"):
        return math.inf
    return float(text)


def _read_bool(text: str) -> bool:
    return bool(_read_int(text))


def _read_contract(fields: Sequence[str]) -> WireContract:
    f = list(fields) + [""] * (CONTRACT_FIELD_COUNT - len(fields))
    return WireContract(
        con_id=_read_int(f[0]),
        symbol=f[1],
        sec_type=f[2],
        last_trade_date=f[3],
        strike=_read_float(f[4]),
        right=f[5],
        multiplier=f[6],
        exchange=f[7],
        primary_exchange=f[8],
        currency=f[9],
        local_symbol=f[10],
        trading_class=f[11],
    )


_READERS = {
    FieldType.INT: _read_int,
    FieldType.FLOAT: _read_float,
    FieldType.STR: str,
    FieldType.BOOL: _read_bool,
}


@dataclass(frozen=True)
class RequestLayout:
    """The name (the client.py method) and field layout of one request, after the id."""

    name: str
    fields: tuple[tuple[str, FieldType], ...]


@dataclass(frozen=True)
class Request:
    """One decoded client request: its id, name and named field values."""

    msg_id: int
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    raw: tuple[str, ...] = ()  # every field as received, for decoders of their own

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key`` or ``default`` when the client did not send it."""
        return self.values.get(key, default)


INT, FLOAT, STR, BOOL = FieldType.INT, FieldType.FLOAT, FieldType.STR, FieldType.BOOL
CONTRACT = FieldType.CONTRACT
_V = ("version", INT)
_REQ = ("req_id", INT)


def _layout(name: str, *fields: tuple[str, FieldType]) -> RequestLayout:
    return RequestLayout(name, tuple(fields))


#: Incoming request id -> layout (shared/docs/tws-protocol.md 5.6; client.py).
#: placeOrder (3) is decoded by ``decode_place_order``; its entry only names it.
REQUESTS: dict[int, RequestLayout] = {
    1: _layout(
        "reqMktData",
        _V,
        _REQ,
        ("contract", CONTRACT),
        ("delta_neutral", BOOL),
        ("generic_ticks", STR),
        ("snapshot", BOOL),
        ("regulatory_snapshot", BOOL),
        ("options", STR),
    ),
    2: _layout("cancelMktData", _V, _REQ),
    3: _layout("placeOrder", ("order_id", INT)),
    4: _layout("cancelOrder", _V, ("order_id", INT), ("manual_cancel_time", STR)),
    5: _layout("reqOpenOrders", _V),
    6: _layout("reqAccountUpdates", _V, ("subscribe", BOOL), ("account", STR)),
    7: _layout(
        "reqExecutions",
        _V,
        _REQ,
        ("client_id", INT),
        ("account", STR),
        ("time", STR),
        ("symbol", STR),
        ("sec_type", STR),
        ("exchange", STR),
        ("side", STR),
    ),
    8: _layout("reqIds", _V, ("num_ids", INT)),
    9: _layout(
        "reqContractDetails",
        _V,
        _REQ,
        ("contract", CONTRACT),
        ("include_expired", BOOL),
        ("sec_id_type", STR),
        ("sec_id", STR),
        ("issuer_id", STR),
    ),
    15: _layout("reqAutoOpenOrders", _V, ("auto_bind", BOOL)),
    16: _layout("reqAllOpenOrders", _V),
    20: _layout(
        "reqHistoricalData",
        _REQ,
        ("contract", CONTRACT),
        ("include_expired", BOOL),
        ("end", STR),
        ("bar_size", STR),
        ("duration", STR),
        ("use_rth", BOOL),
        ("what_to_show", STR),
        ("format_date", INT),
        ("keep_up_to_date", BOOL),
        ("chart_options", STR),
    ),
    22: _layout(
        "reqScannerSubscription",
        _REQ,
        ("rows", INT),
        ("instrument", STR),
        ("location", STR),
        ("scan_code", STR),
        ("above_price", FLOAT),
        ("below_price", FLOAT),
        ("above_volume", INT),
        ("market_cap_above", FLOAT),
        ("market_cap_below", FLOAT),
    ),
    23: _layout("cancelScannerSubscription", _V, _REQ),
    24: _layout("reqScannerParameters", _V),
    25: _layout("cancelHistoricalData", _V, _REQ),
    49: _layout("reqCurrentTime", _V),
    50: _layout(
        "reqRealTimeBars",
        _V,
        _REQ,
        ("contract", CONTRACT),
        ("bar_size", INT),
        ("what_to_show", STR),
        ("use_rth", BOOL),
        ("options", STR),
    ),
    51: _layout("cancelRealTimeBars", _V, _REQ),
    58: _layout("reqGlobalCancel", _V),
    59: _layout("reqMarketDataType", _V, ("market_data_type", INT)),
    61: _layout("reqPositions", _V),
    62: _layout("reqAccountSummary", _V, _REQ, ("group", STR), ("tags", STR)),
    63: _layout("cancelAccountSummary", _V, _REQ),
    64: _layout("cancelPositions", _V),
    71: _layout("startApi", _V, ("client_id", INT), ("optional_capabilities", STR)),
    76: _layout(
        "reqAccountUpdatesMulti",
        _V,
        _REQ,
        ("account", STR),
        ("model_code", STR),
        ("ledger_and_nlv", BOOL),
    ),
    77: _layout("cancelAccountUpdatesMulti", _V, _REQ),
    99: _layout("reqCompletedOrders", ("api_only", BOOL)),
}


def decode_request(fields: Sequence[str]) -> Request:
    """Cut one incoming message into a ``Request``.

    Missing trailing fields are left out of ``values`` (callers use ``get`` with a
    default); extra trailing fields are ignored, as the client decoders do. An id
    that is not in ``REQUESTS`` gives a Request named ``unknown``.
    """
    if not fields:
        raise ProtocolError("empty message")
    msg_id = _read_int(fields[0])
    layout = REQUESTS.get(msg_id)
    if layout is None:
        return Request(msg_id, "unknown", {}, tuple(fields))
    values: dict[str, Any] = {}
    pos = 1
    for name, kind in layout.fields:
        if kind is FieldType.CONTRACT:
            values[name] = _read_contract(fields[pos : pos + CONTRACT_FIELD_COUNT])
            pos += CONTRACT_FIELD_COUNT
            continue
        if pos >= len(fields):
            break
        values[name] = _READERS[kind](fields[pos])
        pos += 1
    return Request(msg_id, layout.name, values, tuple(fields))


# placeOrder (3) at server version 176 (doc 5.7): fixed indices of what we need.
_PO_ORDER_ID = 1
_PO_CONTRACT = 2
_PO_ACTION = 16
_PO_QUANTITY = 17
_PO_ORDER_TYPE = 18
_PO_LMT_PRICE = 19
_PO_AUX_PRICE = 20
_PO_TIF = 21
_PO_ACCOUNT = 23
_PO_ORDER_REF = 26
_PO_OUTSIDE_RTH = 33
_PO_DELTA_NEUTRAL_TYPE = 65  # the first index after which the layout varies
_PO_MIN_FIELDS = _PO_OUTSIDE_RTH + 1


@dataclass(frozen=True)
class PlacedOrder:
    """A decoded placeOrder: the exchange's request plus what only the server looks at."""

    request: OrderRequest
    contract: WireContract
    aux_price: float | None
    what_if: bool


def decode_place_order(fields: Sequence[str], client_id: int) -> PlacedOrder:
    """Decode placeOrder (3) as sent at server version 176 by the placing ``client_id``."""
    if len(fields) < _PO_MIN_FIELDS:
        raise ProtocolError(f"placeOrder has {len(fields)} fields, expected >= {_PO_MIN_FIELDS}")
    contract = _read_contract(fields[_PO_CONTRACT : _PO_CONTRACT + CONTRACT_FIELD_COUNT])
    action_text = fields[_PO_ACTION].upper()
    try:
        action = Action(action_text)
    except ValueError:
        raise ProtocolError(f"placeOrder action {action_text!r} is not BUY or SELL") from None
    request = OrderRequest(
        client_id=client_id,
        order_id=_read_int(fields[_PO_ORDER_ID]),
        symbol=contract.symbol.upper(),
        con_id=contract.con_id,
        action=action,
        quantity=_read_float(fields[_PO_QUANTITY]) or 0.0,
        order_type=fields[_PO_ORDER_TYPE].upper(),
        limit_price=_read_float(fields[_PO_LMT_PRICE]),
        tif=fields[_PO_TIF].upper() or "DAY",
        outside_rth=_read_bool(fields[_PO_OUTSIDE_RTH]),
        order_ref=fields[_PO_ORDER_REF],
        account=fields[_PO_ACCOUNT],
    )
    return PlacedOrder(
        request=request,
        contract=contract,
        aux_price=_read_float(fields[_PO_AUX_PRICE]),
        what_if=_place_order_what_if(fields, contract.sec_type),
    )


def _place_order_what_if(fields: Sequence[str], sec_type: str) -> bool:
    """Walk the variable middle of placeOrder (client.py) to find the whatIf flag.

    Combo (BAG) orders insert legs before index 35; they are not served, so their
    flag is not looked for.
    """
    if sec_type.upper() == "BAG" or len(fields) <= _PO_DELTA_NEUTRAL_TYPE:
        return False
    get = _Cursor(fields, _PO_DELTA_NEUTRAL_TYPE)
    if get():  # deltaNeutralOrderType
        get.skip(8)
    get.skip(4)  # deltaNeutralAuxPrice, continuousUpdate, referencePriceType, trailStopPrice
    get.skip(3)  # trailingPercent, scaleInitLevelSize, scaleSubsLevelSize
    increment = _read_float(get()) or 0.0
    if 0 < increment < UNSET_DOUBLE:
        get.skip(7)
    get.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if get():  # hedgeType
        get.skip(1)
    get.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if _read_bool(get()):  # deltaNeutralContract
        get.skip(3)
    if get():  # algoStrategy
        get.skip(2 * _read_int(get()))
    get.skip(1)  # algoId
    return _read_bool(get())


class _Cursor:
    """Read fields one by one; past the end, read empty strings."""

    def __init__(self, fields: Sequence[str], pos: int) -> None:
        self._fields = fields
        self._pos = pos

    def __call__(self) -> str:
        value = self._fields[self._pos] if self._pos < len(self._fields) else ""
        self._pos += 1
        return value

    def skip(self, count: int) -> None:
        self._pos += count


# --------------------------------------------------------------------------- contracts


class Out:
    """Outgoing message ids (decoder.py's handler table)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERROR = 4
    OPEN_ORDER = 5
    ACCOUNT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCOUNT_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCOUNTS = 15
    HISTORICAL_DATA = 17
    SCANNER_PARAMETERS = 19
    SCANNER_DATA = 20
    TICK_GENERIC = 45
    TICK_STRING = 46
    CURRENT_TIME = 49
    REAL_TIME_BAR = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCOUNT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    TICK_REQ_PARAMS = 81
    HISTORICAL_DATA_UPDATE = 90
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


@dataclass(frozen=True)
class StockContract:
    """A US stock as the server describes it in every outgoing message."""

    con_id: int
    symbol: str
    primary_exchange: str = ""
    exchange: str = "SMART"
    currency: str = "USD"
    trading_class: str = ""

    @classmethod
    def from_info(cls, info: SymbolInfo) -> StockContract:
        """Return the contract of a known symbol."""
        trading_class = "NMS" if info.primary_exchange == "NASDAQ" else info.symbol
        return cls(info.con_id, info.symbol, info.primary_exchange, trading_class=trading_class)

    def eleven(self) -> list[object]:
        """Return the 11 contract fields of openOrder/execDetails/position (no primaryExchange)."""
        return [
            self.con_id,
            self.symbol,
            "STK",
            "",
            0.0,
            "",
            "",
            self.exchange,
            self.currency,
            self.symbol,
            self.trading_class,
        ]

    def portfolio(self) -> list[object]:
        """Return updatePortfolio's 11 contract fields (primaryExchange in the exchange slot)."""
        fields = self.eleven()
        fields[7] = self.primary_exchange
        return fields


# --------------------------------------------------------------------------- outgoing: session


def managed_accounts(accounts: Sequence[str]) -> list[object]:
    """Return managedAccounts (15): exactly 3 fields."""
    return [Out.MANAGED_ACCOUNTS, 1, ",".join(accounts)]


def next_valid_id(order_id: int) -> list[object]:
    """Return nextValidId (9): exactly 3 fields."""
    return [Out.NEXT_VALID_ID, 1, order_id]


def error(req_id: int, code: int, text: str, advanced_json: str = "") -> list[object]:
    """Return errMsg (4); reqId -1 for notices, the order id for order errors."""
    return [Out.ERROR, 2, req_id, code, text, advanced_json]


def current_time(epoch_seconds: int) -> list[object]:
    """Return currentTime (49)."""
    return [Out.CURRENT_TIME, 1, int(epoch_seconds)]


# --------------------------------------------------------------------------- outgoing: market data


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> list[object]:
    """Return tickPrice (1): exactly 7 fields (attrib mask 0)."""
    return [Out.TICK_PRICE, 6, req_id, tick_type, price, size, 0]


def tick_size(req_id: int, tick_type: int, size: float) -> list[object]:
    """Return tickSize (2)."""
    return [Out.TICK_SIZE, 6, req_id, tick_type, size]


def tick_string(req_id: int, tick_type: int, value: str) -> list[object]:
    """Return tickString (46)."""
    return [Out.TICK_STRING, 6, req_id, tick_type, value]


def tick_generic(req_id: int, tick_type: int, value: float) -> list[object]:
    """Return tickGeneric (45)."""
    return [Out.TICK_GENERIC, 6, req_id, tick_type, value]


def tick_req_params(req_id: int, min_tick: float, bbo_exchange: str = "9c0001") -> list[object]:
    """Return tickReqParams (81): no version field."""
    return [Out.TICK_REQ_PARAMS, req_id, min_tick, bbo_exchange, 3]


def market_data_type(req_id: int, data_type: int) -> list[object]:
    """Return marketDataType (58): 1 live, 2 frozen, 3 delayed, 4 delayed-frozen."""
    return [Out.MARKET_DATA_TYPE, 1, req_id, data_type]


def tick_snapshot_end(req_id: int) -> list[object]:
    """Return tickSnapshotEnd (57)."""
    return [Out.TICK_SNAPSHOT_END, 1, req_id]


@dataclass(frozen=True)
class BarRow:
    """One bar as the wire carries it: ``date`` already formatted."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


def historical_data(req_id: int, start: str, end: str, bars: Sequence[BarRow]) -> list[object]:
    """Return historicalData (17): no version field; bar numbers must all be present."""
    fields: list[object] = [Out.HISTORICAL_DATA, req_id, start, end, len(bars)]
    for bar in bars:
        fields += [bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap]
        fields.append(int(bar.count))
    return fields


def historical_data_update(req_id: int, bar: BarRow) -> list[object]:
    """Return historicalDataUpdate (90): note the open, close, high, low order."""
    return [
        Out.HISTORICAL_DATA_UPDATE,
        req_id,
        int(bar.count),
        bar.date,
        bar.open,
        bar.close,
        bar.high,
        bar.low,
        bar.wap,
        bar.volume,
    ]


def realtime_bar(req_id: int, epoch_seconds: int, bar: BarRow) -> list[object]:
    """Return realtimeBar (50); ``epoch_seconds`` is the bar's start."""
    return [
        Out.REAL_TIME_BAR,
        3,
        req_id,
        int(epoch_seconds),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.wap,
        int(bar.count),
    ]


def scanner_parameters(xml: str) -> list[object]:
    """Return scannerParameters (19)."""
    return [Out.SCANNER_PARAMETERS, 1, xml]


def scanner_data(req_id: int, rows: Sequence[StockContract]) -> list[object]:
    """Return scannerData (20), ranks from 0; the client ends the batch by itself."""
    fields: list[object] = [Out.SCANNER_DATA, 3, req_id, len(rows)]
    for rank, c in enumerate(rows):
        fields += [rank, c.con_id, c.symbol, "STK", "", 0.0, "", c.exchange, c.currency]
        fields += [c.symbol, c.trading_class, c.trading_class, "", "", "", ""]
    return fields


# --------------------------------------------------------------------------- outgoing: contracts


def contract_details(
    req_id: int, c: StockContract, info: SymbolInfo, trading_hours: str = "", liquid_hours: str = ""
) -> list[object]:
    """Return contractDetails (10), the 42-field layout of doc 5.2 (one secId pair)."""
    long_name = info.long_name.encode("ascii", "replace").decode().replace("\\", "/")
    return [
        Out.CONTRACT_DATA,
        req_id,
        c.symbol,
        "STK",
        "",  # lastTradeDateOrContractMonth
        0.0,  # strike
        "",  # right
        c.exchange,
        c.currency,
        c.symbol,  # localSymbol
        c.trading_class,  # marketName
        c.trading_class,
        c.con_id,
        info.min_tick,
        "",  # multiplier
        "LMT,MKT,STP,STPLMT,TRAIL",  # orderTypes
        f"SMART,{c.primary_exchange},ISLAND,ARCA,BATS",  # validExchanges
        1,  # priceMagnifier
        0,  # underConId
        long_name,
        c.primary_exchange,
        "",  # contractMonth
        info.industry,
        "",  # category
        "",  # subcategory
        "US/Eastern",
        trading_hours,
        liquid_hours,
        "",  # evRule
        "",  # evMultiplier (int-typed: empty, never 0.0)
        1,  # secIdList count
        "ISIN",
        f"US{c.con_id:09d}0",
        1,  # aggGroup
        "",  # underSymbol
        "",  # underSecType
        "26",  # marketRuleIds
        "",  # realExpirationDate
        "ETF" if "fund" in info.industry.lower() else "COMMON",  # stockType
        0.0001,  # minSize
        0.0001,  # sizeIncrement
        100.0,  # suggestedSizeIncrement
    ]


def contract_details_end(req_id: int) -> list[object]:
    """Return contractDetailsEnd (52)."""
    return [Out.CONTRACT_DATA_END, 1, req_id]


# --------------------------------------------------------------------------- outgoing: orders


def _price(value: float | None) -> object:
    return UNSET if value is None else value


def order_status(order: SimOrder) -> list[object]:
    """Return orderStatus (3): no version field."""
    req = order.request
    return [
        Out.ORDER_STATUS,
        req.order_id,
        str(order.status),
        order.filled,
        max(order.remaining, 0.0),
        order.avg_fill_price,
        order.perm_id,
        0,  # parentId
        order.last_fill_price,
        req.client_id,
        order.why_held,
        0.0,  # mktCapPrice
    ]


def cancelled_status(order_id: int, client_id: int, quantity: float) -> list[object]:
    """Return the final orderStatus (3) ``Cancelled`` of an order the exchange never accepted."""
    fields: list[object] = [Out.ORDER_STATUS, order_id, "Cancelled", 0.0, quantity, 0.0]
    return [*fields, 0, 0, 0.0, client_id, "", 0.0]


def _order_head(order: SimOrder, c: StockContract, account: str) -> list[object]:
    """Return contract, action .. orderRef: the 22 fields openOrder and completedOrder share."""
    req = order.request
    return [
        *c.eleven(),
        str(req.action),
        req.quantity,
        req.order_type,
        _price(req.limit_price),
        UNSET,  # auxPrice
        req.tif,
        "",  # ocaGroup
        req.account or account,
        "O",  # openClose
        0,  # origin: customer
        req.order_ref,
    ]


def open_order(order: SimOrder, c: StockContract, account: str) -> list[object]:
    """Return openOrder (5): the 128-field layout of doc 5.4 for a plain stock order."""
    req = order.request
    return [
        Out.OPEN_ORDER,
        req.order_id,  # 1
        *_order_head(order, c, account),  # 2..23 (account at 20, orderRef at 23)
        req.client_id,  # 24
        order.perm_id,  # 25
        req.outside_rth,  # 26
        False,  # 27 hidden
        0.0,  # 28 discretionaryAmt
        "",  # 29 goodAfterTime
        "",  # 30 deprecated sharesAllocation
        "",  # 31 faGroup
        "",  # 32 faMethod
        "",  # 33 faPercentage
        "",  # 34 faProfile
        "",  # 35 modelCode
        "",  # 36 goodTillDate
        "",  # 37 rule80A
        None,  # 38 percentOffset
        "",  # 39 settlingFirm
        0,  # 40 shortSaleSlot
        "",  # 41 designatedLocation
        -1,  # 42 exemptCode
        0,  # 43 auctionStrategy
        *[None] * 5,  # 44-48 startingPrice .. stockRangeUpper
        0,  # 49 displaySize
        False,  # 50 blockOrder
        False,  # 51 sweepToFill
        False,  # 52 allOrNone
        None,  # 53 minQty
        0,  # 54 ocaType
        False,  # 55 eTradeOnly
        False,  # 56 firmQuoteOnly
        None,  # 57 nbboPriceCap
        0,  # 58 parentId
        0,  # 59 triggerMethod
        None,  # 60 volatility
        0,  # 61 volatilityType
        "",  # 62 deltaNeutralOrderType (empty: no 8 extra fields)
        None,  # 63 deltaNeutralAuxPrice
        False,  # 64 continuousUpdate
        0,  # 65 referencePriceType
        None,  # 66 trailStopPrice
        None,  # 67 trailingPercent
        None,  # 68 basisPoints
        None,  # 69 basisPointsType
        "",  # 70 comboLegsDescrip
        0,  # 71 comboLegs count
        0,  # 72 orderComboLegs count
        0,  # 73 smartComboRoutingParams count
        None,  # 74 scaleInitLevelSize
        None,  # 75 scaleSubsLevelSize
        None,  # 76 scalePriceIncrement (empty: no 7 extra fields)
        "",  # 77 hedgeType (empty: no hedgeParam)
        False,  # 78 optOutSmartRouting
        "",  # 79 clearingAccount
        "",  # 80 clearingIntent
        False,  # 81 notHeld
        0,  # 82 deltaNeutralContract present
        "",  # 83 algoStrategy (empty: no params)
        False,  # 84 solicited
        False,  # 85 whatIf
        str(order.status),  # 86
        *[""] * 9,  # 87-95 margin strings
        UNSET,  # 96 commission
        UNSET,  # 97 minCommission
        UNSET,  # 98 maxCommission
        "",  # 99 commissionCurrency
        "",  # 100 warningText
        False,  # 101 randomizeSize
        False,  # 102 randomizePrice
        0,  # 103 conditions count
        "",  # 104 adjustedOrderType
        UNSET,  # 105 triggerPrice
        UNSET,  # 106 trailStopPrice
        UNSET,  # 107 lmtPriceOffset
        UNSET,  # 108 adjustedStopPrice
        UNSET,  # 109 adjustedStopLimitPrice
        UNSET,  # 110 adjustedTrailingAmount
        0,  # 111 adjustableTrailingUnit
        "",  # 112 softDollarTier name
        "",  # 113 softDollarTier value
        "",  # 114 softDollarTier displayName
        UNSET,  # 115 cashQty
        False,  # 116 dontUseAutoPriceForHedge
        False,  # 117 isOmsContainer
        False,  # 118 discretionaryUpToLimitPrice
        False,  # 119 usePriceMgmtAlgo
        None,  # 120 duration
        None,  # 121 postToAts
        False,  # 122 autoCancelParent
        None,  # 123 minTradeQty
        None,  # 124 minCompeteSize
        None,  # 125 competeAgainstBestOffset
        None,  # 126 midOffsetAtWhole
        None,  # 127 midOffsetAtHalf
    ]


def what_if_order(order: SimOrder, c: StockContract, account: str, margin: float) -> list[object]:
    """Return the one openOrder answering a whatIf order: whatIf 1, numbers in the margins."""
    fields = open_order(order, c, account)
    fields[85] = True
    fields[87:96] = [f"{margin:.2f}"] * 9
    fields[96:99] = [1.0, 1.0, 1.0]
    fields[99] = "USD"
    return fields


def completed_order(order: SimOrder, c: StockContract, account: str, when: str) -> list[object]:
    """Return completedOrder (101): the 97-field layout of doc 5.5 (no orderId, no clientId)."""
    return [
        Out.COMPLETED_ORDER,
        *_order_head(order, c, account),  # 1..22 (account at 19, orderRef at 22)
        order.perm_id,  # 23
        order.request.outside_rth,  # 24
        False,  # 25 hidden
        0.0,  # 26 discretionaryAmt
        "",  # 27 goodAfterTime
        "",  # 28 faGroup
        "",  # 29 faMethod
        "",  # 30 faPercentage
        "",  # 31 faProfile
        "",  # 32 modelCode
        "",  # 33 goodTillDate
        "",  # 34 rule80A
        None,  # 35 percentOffset
        "",  # 36 settlingFirm
        0,  # 37 shortSaleSlot
        "",  # 38 designatedLocation
        -1,  # 39 exemptCode
        *[None] * 5,  # 40-44 startingPrice .. stockRangeUpper
        0,  # 45 displaySize
        False,  # 46 sweepToFill
        False,  # 47 allOrNone
        None,  # 48 minQty
        0,  # 49 ocaType
        0,  # 50 triggerMethod
        None,  # 51 volatility
        0,  # 52 volatilityType
        "",  # 53 deltaNeutralOrderType
        None,  # 54 deltaNeutralAuxPrice
        False,  # 55 continuousUpdate
        0,  # 56 referencePriceType
        None,  # 57 trailStopPrice
        None,  # 58 trailingPercent
        "",  # 59 comboLegsDescrip
        0,  # 60 comboLegs count
        0,  # 61 orderComboLegs count
        0,  # 62 smartComboRoutingParams count
        None,  # 63 scaleInitLevelSize
        None,  # 64 scaleSubsLevelSize
        None,  # 65 scalePriceIncrement
        "",  # 66 hedgeType
        "",  # 67 clearingAccount
        "",  # 68 clearingIntent
        False,  # 69 notHeld
        0,  # 70 deltaNeutralContract present
        "",  # 71 algoStrategy
        False,  # 72 solicited
        str(order.status),  # 73
        False,  # 74 randomizeSize
        False,  # 75 randomizePrice
        0,  # 76 conditions count
        UNSET,  # 77 trailStopPrice
        UNSET,  # 78 lmtPriceOffset
        UNSET,  # 79 cashQty
        False,  # 80 dontUseAutoPriceForHedge
        False,  # 81 isOmsContainer
        "",  # 82 autoCancelDate
        order.filled,  # 83 filledQuantity
        0,  # 84 refFuturesConId
        False,  # 85 autoCancelParent
        "",  # 86 shareholder
        False,  # 87 imbalanceOnly
        False,  # 88 routeMarketableToBbo
        0,  # 89 parentPermId
        when,  # 90 completedTime
        order.completed_status or str(order.status),  # 91 completedStatus
        None,  # 92 minTradeQty
        None,  # 93 minCompeteSize
        None,  # 94 competeAgainstBestOffset
        None,  # 95 midOffsetAtWhole
        None,  # 96 midOffsetAtHalf
    ]


def open_order_end() -> list[object]:
    """Return openOrderEnd (53)."""
    return [Out.OPEN_ORDER_END, 1]


def completed_orders_end() -> list[object]:
    """Return completedOrdersEnd (102): no version field."""
    return [Out.COMPLETED_ORDERS_END]


def format_exec_time(when: datetime) -> str:
    """Return an execution/completion time that both libraries parse as aware UTC."""
    return when.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")


def exec_details(req_id: int, ex: Execution, c: StockContract) -> list[object]:
    """Return execDetails (11): exactly 31 fields; reqId -1 for live fills."""
    return [
        Out.EXECUTION_DATA,
        req_id,
        ex.order_id,
        *c.eleven(),  # 3-13
        ex.exec_id,
        format_exec_time(ex.time),
        ex.account,
        ex.exchange,
        ex.side,
        ex.shares,
        ex.price,
        ex.perm_id,
        ex.client_id,
        0,  # liquidation
        ex.cum_qty,
        ex.avg_price,
        ex.order_ref,
        "",  # evRule
        None,  # evMultiplier
        "",  # modelCode
        1 if ex.side == "BOT" else 2,  # lastLiquidity: buys here take, sells add
    ]


def exec_details_end(req_id: int) -> list[object]:
    """Return execDetailsEnd (55)."""
    return [Out.EXECUTION_DATA_END, 1, req_id]


def commission_report(ex: Execution) -> list[object]:
    """Return commissionReport (59): exactly 8 fields; opening fills carry UNSET P&L."""
    realized = UNSET if ex.realized_pnl is None else ex.realized_pnl
    return [Out.COMMISSION_REPORT, 1, ex.exec_id, ex.commission, "USD", realized, UNSET, None]


# --------------------------------------------------------------------------- outgoing: account


def account_value(key: str, value: str, currency: str, account: str) -> list[object]:
    """Return updateAccountValue (6)."""
    return [Out.ACCOUNT_VALUE, 2, key, value, currency, account]


def portfolio_value(
    c: StockContract,
    position: float,
    market_price: float,
    market_value: float,
    average_cost: float,
    unrealized: float,
    realized: float,
    account: str,
) -> list[object]:
    """Return updatePortfolio (7): exactly 20 fields, all six numbers present."""
    numbers = [position, market_price, market_value, average_cost, unrealized, realized]
    return [Out.PORTFOLIO_VALUE, 8, *c.portfolio(), *(float(n) for n in numbers), account]


def account_time(hhmm: str) -> list[object]:
    """Return updateAccountTime (8)."""
    return [Out.ACCOUNT_TIME, 1, hhmm]


def account_download_end(account: str) -> list[object]:
    """Return accountDownloadEnd (54)."""
    return [Out.ACCOUNT_DOWNLOAD_END, 1, account]


def position(account: str, c: StockContract, quantity: float, avg_cost: float) -> list[object]:
    """Return position (61): exactly 16 fields."""
    return [Out.POSITION, 3, account, *c.eleven(), float(quantity), float(avg_cost)]


def position_end() -> list[object]:
    """Return positionEnd (62)."""
    return [Out.POSITION_END, 1]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[object]:
    """Return accountSummary (63)."""
    return [Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[object]:
    """Return accountSummaryEnd (64)."""
    return [Out.ACCOUNT_SUMMARY_END, 1, req_id]


def account_update_multi(
    req_id: int, account: str, key: str, value: str, currency: str
) -> list[object]:
    """Return accountUpdateMulti (73) with an empty model code."""
    return [Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, "", key, value, currency]


def account_update_multi_end(req_id: int) -> list[object]:
    """Return accountUpdateMultiEnd (74)."""
    return [Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id]
