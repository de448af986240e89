"""Codec unit tests: framing, field encoding, request decoding, and every encoder as the
real ib_async / ib_insync decoders read it (no sockets, no simulator process)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from broker.simulator import codec
from broker.simulator.codec import BarRow, StockContract
from broker.simulator.types import (
    Action,
    Execution,
    OrderRequest,
    OrderStatus,
    SimOrder,
    SymbolInfo,
)

LIBRARIES = ("ib_async", "ib_insync")
AAPL = StockContract(265598, "AAPL", "NASDAQ", trading_class="NMS")
AAPL_INFO = SymbolInfo("AAPL", 265598, "Apple Inc", "NASDAQ", 0.01, "Technology")


@pytest.fixture(autouse=True)
def event_loop_set() -> Iterator[None]:
    """Give the thread an event loop: the libraries' event objects look one up on creation."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


# --------------------------------------------------------------------------- framing


def test_fields_encode_as_the_clients_expect() -> None:
    assert codec.encode_field(None) == ""
    assert codec.encode_field(True) == "1"
    assert codec.encode_field(False) == "0"
    assert codec.encode_field(100) == "100"
    assert codec.encode_field(-1) == "-1"
    assert codec.encode_field(codec.UNSET_INTEGER) == ""
    assert codec.encode_field(150.0) == "150.0"
    assert codec.encode_field(codec.UNSET_DOUBLE) == ""
    assert codec.encode_field(math.inf) == "Infinite"
    assert codec.encode_field(codec.UNSET) == "1.7976931348623157E308"
    assert float(codec.encode_field(codec.UNSET)) == codec.UNSET_DOUBLE
    assert codec.encode_field(OrderStatus.FILLED) == "Filled"


def test_message_round_trips_through_frame_buffer() -> None:
    fields: list[object] = [4, 2, -1, 2104, "Market data farm is OK:usfarm ünïcode", ""]
    data = codec.encode_message(fields)
    assert data[:4] == (len(data) - 4).to_bytes(4, "big")
    buffer = codec.FrameBuffer()
    buffer.feed(data)
    assert list(buffer.messages()) == [[codec.encode_field(f) for f in fields]]
    assert buffer.next_payload() is None


def test_messages_split_across_packets_are_reassembled() -> None:
    stream = b"".join(codec.encode_message([n, 1, f"value-{n}"]) for n in range(3))
    buffer = codec.FrameBuffer()
    received: list[list[str]] = []
    for i in range(len(stream)):  # one byte per "packet"
        buffer.feed(stream[i : i + 1])
        received += buffer.messages()
        if i < 10:
            assert received == []  # nothing before the first message is complete
    assert received == [["0", "1", "value-0"], ["1", "1", "value-1"], ["2", "1", "value-2"]]


def test_several_messages_in_one_packet_all_come_out() -> None:
    buffer = codec.FrameBuffer()
    buffer.feed(codec.encode_message([61, 1]) + codec.encode_message([5, 1]) + b"\x00\x00")
    assert list(buffer.messages()) == [["61", "1"], ["5", "1"]]
    buffer.feed(b"\x00\x03" + b"62\x00")
    assert list(buffer.messages()) == [["62"]]


def test_absurd_length_prefix_is_a_protocol_error() -> None:
    buffer = codec.FrameBuffer()
    buffer.feed(b"\xff\xff\xff\xff")
    with pytest.raises(codec.ProtocolError):
        buffer.next_payload()


@pytest.mark.parametrize(
    ("greeting", "expected"),
    [
        (b"v157..176", 176),
        (b"v157..178", 176),
        (b"v157..176 +PACEAPI", 176),
        (b"v157..170", 170),
        (b"v177..178", None),
        (b"v100..150", None),
    ],
)
def test_version_negotiation_answers_176_or_the_clients_max(
    greeting: bytes, expected: int | None
) -> None:
    assert codec.negotiate_version(codec.parse_version_range(greeting)) == expected


def test_garbage_greeting_is_a_protocol_error() -> None:
    with pytest.raises(codec.ProtocolError):
        codec.parse_version_range(b"GET / HTTP/1.1")


def test_handshake_reply_has_exactly_two_fields() -> None:
    reply = codec.handshake_reply(176, datetime(2025, 11, 26, 15, 0, tzinfo=UTC))
    buffer = codec.FrameBuffer()
    buffer.feed(reply)
    assert list(buffer.messages()) == [["176", "20251126 15:00:00 UTC"]]


# --------------------------------------------------------------------------- requests


def _split(text: str) -> list[str]:
    return text.split(",")


def test_historical_data_request_decodes_bar_size_before_duration() -> None:
    contract = "265598,AAPL,STK,,0.0,,,SMART,NASDAQ,USD,AAPL,NMS"
    req = codec.decode_request(_split(f"20,507,{contract},0,,1 day,2 D,1,TRADES,1,0,"))
    assert req.name == "reqHistoricalData"
    assert req["req_id"] == 507
    assert req["contract"].con_id == 265598
    assert req["contract"].primary_exchange == "NASDAQ"
    assert (req["bar_size"], req["duration"], req["use_rth"]) == ("1 day", "2 D", True)
    assert (req["format_date"], req["keep_up_to_date"]) == (1, False)


def test_market_data_request_decodes_snapshot_flag() -> None:
    contract = "265598,AAPL,STK,,0.0,,,SMART,NASDAQ,USD,AAPL,NMS"
    req = codec.decode_request(_split(f"1,11,511,{contract},0,,1,0,"))
    assert (req.name, req["req_id"], req["snapshot"]) == ("reqMktData", 511, True)
    assert req["contract"].symbol == "AAPL"


def test_short_and_unknown_requests_decode_without_failing() -> None:
    assert codec.decode_request(["7", "3", "12"]).get("client_id", 0) == 0
    unknown = codec.decode_request(["999", "1"])
    assert unknown.name == "unknown" and unknown.raw == ("999", "1")


def _client_bytes(lib_name: str, call: str, *args: Any) -> list[str]:
    """Return the fields a real client library sends for ``Client.<call>(*args)``."""
    lib = importlib.import_module(lib_name)
    client = lib.client.Client(SimpleNamespace())
    client.connState = client.CONNECTED
    client._serverVersion = 176
    sent: list[str] = []
    client.sendMsg = sent.append
    getattr(client, call)(*args)
    assert len(sent) == 1
    return sent[0].split("\0")[:-1]


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_place_order_from_real_client_decodes_to_order_request(lib_name: str) -> None:
    lib = importlib.import_module(lib_name)
    contract = lib.Stock("AAPL", "SMART", "USD", conId=265598, primaryExchange="NASDAQ")
    order = lib.LimitOrder("BUY", 100, 150.25, orderRef="my-ref-1", account="DU1", tif="GTC")
    order.outsideRth = True
    fields = _client_bytes(lib_name, "placeOrder", 505, contract, order)
    assert len(fields) == 115  # doc 5.7
    placed = codec.decode_place_order(fields, client_id=7)
    assert placed.request == OrderRequest(
        client_id=7,
        order_id=505,
        symbol="AAPL",
        con_id=265598,
        action=Action.BUY,
        quantity=100.0,
        order_type="LMT",
        limit_price=150.25,
        tif="GTC",
        outside_rth=True,
        order_ref="my-ref-1",
        account="DU1",
    )
    assert placed.contract.primary_exchange == "NASDAQ"
    assert placed.what_if is False


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_market_what_if_order_from_real_client_is_recognised(lib_name: str) -> None:
    lib = importlib.import_module(lib_name)
    order = lib.MarketOrder("SELL", 50, orderRef="ref-2")
    order.whatIf = True
    fields = _client_bytes(lib_name, "placeOrder", 9, lib.Stock("AAPL", "SMART", "USD"), order)
    placed = codec.decode_place_order(fields, client_id=1)
    assert placed.request.limit_price is None
    assert (placed.request.action, placed.request.tif, placed.what_if) == (Action.SELL, "DAY", True)


def test_place_order_with_bad_action_is_a_protocol_error() -> None:
    fields = ["3", "1"] + [""] * 14 + ["HOLD"] + [""] * 20
    with pytest.raises(codec.ProtocolError):
        codec.decode_place_order(fields, client_id=1)


# --------------------------------------------------------------------------- encoders vs decoders


class Recorder:
    """A stand-in wrapper that records every call the decoder makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.ib = SimpleNamespace(TimezoneTWS=None)
        self.defaultTimezone = UTC

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def decode(lib_name: str, fields: list[object], caplog: pytest.LogCaptureFixture) -> Recorder:
    """Run ``fields`` through the library's own decoder; fail on any decoder error."""
    decoder_module = importlib.import_module(f"{lib_name}.decoder")
    recorder = Recorder()
    decoder = decoder_module.Decoder(recorder, 176)
    payload = codec.split_payload(codec.encode_payload(fields))
    with caplog.at_level(logging.ERROR):
        decoder.interpret(payload)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage()
    assert recorder.calls, f"{lib_name} dropped {fields[0]}"
    return recorder


def _order(status: OrderStatus = OrderStatus.SUBMITTED, filled: float = 0.0) -> SimOrder:
    req = OrderRequest(7, 505, "AAPL", 265598, Action.BUY, 100.0, "LMT", 150.25, "DAY",
                       False, "ref-505", "")  # fmt: skip
    return SimOrder(
        req, 1_000_000_123, status, filled=filled, avg_fill_price=150.2 if filled else 0
    )


def _execution() -> Execution:
    return Execution(
        exec_id="0001f4e8.00000001.01.01",
        perm_id=1_000_000_123,
        order_id=505,
        client_id=7,
        symbol="AAPL",
        con_id=265598,
        side="BOT",
        shares=40.0,
        price=150.2,
        time=datetime(2025, 11, 26, 15, 0, 5, tzinfo=UTC),
        cum_qty=40.0,
        avg_price=150.2,
        order_ref="ref-505",
        account="DU1234567",
        commission=1.0,
        realized_pnl=None,
    )


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_open_order_carries_ref_perm_id_client_id_and_account(
    lib_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = codec.open_order(_order(), AAPL, "DU1234567")
    assert len(fields) == 128
    (name, (order_id, contract, order, state)) = decode(lib_name, fields, caplog).calls[0]
    assert (name, order_id, contract.conId, contract.symbol) == ("openOrder", 505, 265598, "AAPL")
    assert (order.orderRef, order.permId, order.clientId) == ("ref-505", 1_000_000_123, 7)
    assert (order.account, order.action, order.totalQuantity) == ("DU1234567", "BUY", 100.0)
    assert (order.orderType, order.lmtPrice, order.tif) == ("LMT", 150.25, "DAY")
    assert (state.status, order.whatIf) == ("Submitted", False)


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_completed_order_carries_ref_perm_id_and_status(
    lib_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    order = _order(OrderStatus.FILLED, filled=100.0)
    fields = codec.completed_order(order, AAPL, "DU1234567", "20251126 15:00:05 UTC")
    assert len(fields) == 97
    (name, (contract, decoded, state)) = decode(lib_name, fields, caplog).calls[0]
    assert (name, contract.symbol, decoded.orderRef) == ("completedOrder", "AAPL", "ref-505")
    assert (decoded.permId, decoded.filledQuantity, state.status) == (
        1_000_000_123,
        100.0,
        "Filled",
    )
    assert state.completedTime == "20251126 15:00:05 UTC"


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_exec_details_has_31_fields_and_an_aware_time(
    lib_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = codec.exec_details(-1, _execution(), AAPL)
    assert len(fields) == 31
    (name, (req_id, contract, ex)) = decode(lib_name, fields, caplog).calls[0]
    assert (name, req_id, contract.conId) == ("execDetails", -1, 265598)
    assert (ex.execId, ex.orderId, ex.permId, ex.clientId) == (
        "0001f4e8.00000001.01.01", 505, 1_000_000_123, 7,
    )  # fmt: skip
    assert (ex.side, ex.shares, ex.price, ex.orderRef) == ("BOT", 40.0, 150.2, "ref-505")
    assert ex.time == datetime(2025, 11, 26, 15, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_commission_report_of_opening_fill_has_unset_pnl(
    lib_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = codec.commission_report(_execution())
    assert len(fields) == 8
    (name, (report,)) = decode(lib_name, fields, caplog).calls[0]
    assert (name, report.execId, report.commission, report.currency) == (
        "commissionReport", "0001f4e8.00000001.01.01", 1.0, "USD",
    )  # fmt: skip
    assert report.realizedPNL in (0.0, codec.UNSET_DOUBLE)


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_order_status_has_no_version_field(lib_name: str, caplog: pytest.LogCaptureFixture) -> None:
    (name, args) = decode(lib_name, codec.order_status(_order(filled=40.0)), caplog).calls[0]
    assert name == "orderStatus"
    assert args[:6] == (505, "Submitted", 40.0, 60.0, 150.2, 1_000_000_123)
    assert args[8] == 7  # clientId
    (_, args) = decode(lib_name, codec.cancelled_status(506, 7, 10.0), caplog).calls[0]
    assert args[:4] == (506, "Cancelled", 0.0, 10.0) and args[8] == 7


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_position_and_portfolio_have_exact_field_counts(
    lib_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    position = codec.position("DU1234567", AAPL, 100.0, 150.21)
    assert len(position) == 16
    (name, (account, contract, qty, cost)) = decode(lib_name, position, caplog).calls[0]
    assert (name, account, contract.symbol, qty, cost) == (
        "position",
        "DU1234567",
        "AAPL",
        100,
        150.21,
    )
    portfolio = codec.portfolio_value(AAPL, 100, 151.0, 15100.0, 150.21, 79.0, 0.0, "DU1234567")
    assert len(portfolio) == 20
    (name, args) = decode(lib_name, portfolio, caplog).calls[0]
    assert name == "updatePortfolio"
    assert args[0].primaryExchange == "NASDAQ"
    assert args[1:] == (100.0, 151.0, 15100.0, 150.21, 79.0, 0.0, "DU1234567")


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_contract_details_fill_con_id_and_primary_exchange(
    lib_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = codec.contract_details(3, AAPL, AAPL_INFO, "20251126:0400-20251126:2000")
    assert len(fields) == 42
    (name, (req_id, details)) = decode(lib_name, fields, caplog).calls[0]
    c = details.contract
    assert (name, req_id, c.conId, c.primaryExchange, c.exchange) == (
        "contractDetails", 3, 265598, "NASDAQ", "SMART",
    )  # fmt: skip
    assert (details.minTick, details.longName, details.timeZoneId) == (
        0.01,
        "Apple Inc",
        "US/Eastern",
    )


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_historical_bars_and_update_decode(lib_name: str, caplog: pytest.LogCaptureFixture) -> None:
    bars = [
        BarRow("20251126 09:30:00 US/Eastern", 10.0, 10.5, 9.9, 10.2, 1000.0, 10.1, 12),
        BarRow("20251126 09:31:00 US/Eastern", 10.2, 10.3, 10.1, 10.3, 800.0, 10.2, 9),
    ]
    recorder = decode(lib_name, codec.historical_data(4, "a", "b", bars), caplog)
    data = [args[1] for name, args in recorder.calls if name == "historicalData"]
    assert [(b.open, b.high, b.low, b.close, b.volume, b.barCount) for b in data] == [
        (10.0, 10.5, 9.9, 10.2, 1000.0, 12),
        (10.2, 10.3, 10.1, 10.3, 800.0, 9),
    ]
    assert recorder.calls[-1][0] == "historicalDataEnd"
    (name, (req_id, bar)) = decode(
        lib_name, codec.historical_data_update(4, bars[0]), caplog
    ).calls[0]
    assert (name, bar.open, bar.high, bar.low, bar.close) == (
        "historicalDataUpdate",
        10.0,
        10.5,
        9.9,
        10.2,
    )


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_scanner_rows_rank_from_zero(lib_name: str, caplog: pytest.LogCaptureFixture) -> None:
    msft = StockContract(272093, "MSFT", "NASDAQ", trading_class="NMS")
    recorder = decode(lib_name, codec.scanner_data(8, [AAPL, msft]), caplog)
    rows = [
        (args[1], args[2].contract.symbol) for name, args in recorder.calls if name == "scannerData"
    ]
    assert rows == [(0, "AAPL"), (1, "MSFT")]
    assert recorder.calls[-1][0] == "scannerDataEnd"


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_ticks_errors_and_bars_decode(lib_name: str, caplog: pytest.LogCaptureFixture) -> None:
    tick = codec.tick_price(5, 1, 150.1, 300)
    assert len(tick) == 7
    assert decode(lib_name, tick, caplog).calls[0] == ("priceSizeTick", (5, 1, 150.1, 300.0))
    (name, args) = decode(lib_name, codec.error(505, 201, "Order rejected"), caplog).calls[0]
    assert (name, args[:3]) == ("error", (505, 201, "Order rejected"))
    bar = BarRow("", 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 3)
    (name, args) = decode(lib_name, codec.realtime_bar(6, 1764169200, bar), caplog).calls[0]
    assert (name, args) == ("realtimeBar", (6, 1764169200, 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 3))
    (name, args) = decode(lib_name, codec.tick_req_params(5, 0.01), caplog).calls[0]
    assert (name, args[:2]) == ("tickReqParams", (5, 0.01))
