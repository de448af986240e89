"""Each control command, shown by its effect on a raw TWS API client (codec-level socket).

The adapter's behaviour under these faults is tested elsewhere; here we only check that
the simulator does what the command says, on the wire. ``shutdown`` is exercised by the
restart test in test_simulator_orders.py (it needs a simulator of its own).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from broker.simulator.control import ControlError

AAPL = [265598, "AAPL", "STK", "", 0.0, "", "", "SMART", "NASDAQ", "USD", "AAPL", "NMS"]


def _contract(symbol: str) -> list[object]:
    return [0, symbol, "STK", "", 0.0, "", "", "SMART", "", "USD", "", ""]


def place_order_fields(
    order_id: int, symbol: str, quantity: int, limit: float, ref: str = ""
) -> list[object]:
    """Return a 115-field placeOrder (doc 5.7) for a BUY limit order."""
    fields: list[object] = [""] * 115
    fields[0:2] = [3, order_id]
    fields[2:14] = _contract(symbol)
    fields[16:20] = ["BUY", quantity, "LMT", limit]
    fields[26] = ref
    fields[85] = 0  # whatIf
    return fields


def mkt_data_fields(req_id: int, contract: list[object]) -> list[object]:
    """Return reqMktData (doc 5.6) for a streaming stock subscription."""
    return [1, 11, req_id, *contract, 0, "", 0, 0, ""]


def _ticks(messages: list[list[str]], req_id: int) -> list[list[str]]:
    return [m for m in messages if m[0] in ("1", "2", "45", "46") and m[2] == str(req_id)]


def _started(raw: Any) -> int:
    """Wait for the startApi answer; return nextValidId."""
    return int(raw.wait_for(lambda m: m[0] == "9")[2])


def _ask(raw: Any, req_id: int) -> float:
    raw.send(mkt_data_fields(req_id, AAPL))
    message = raw.wait_for(lambda m: m[0] == "1" and m[2] == str(req_id) and m[3] == "2")
    raw.send([2, 2, req_id])
    return float(message[4])


def _status_of(order_id: int) -> Any:
    return lambda m: m[0] == "3" and m[1] == str(order_id)


def test_drop_connections_closes_every_client(sim, raw_client) -> None:
    raw = raw_client(sim.port, 301)
    _started(raw)
    assert sim.control.drop_connections() >= 1
    assert raw.wait_closed()
    deadline = time.monotonic() + 10
    while 301 in sim.control.status()["clients"]:
        assert time.monotonic() < deadline, "clientId not freed"
        time.sleep(0.05)


def test_refuse_connections_refuses_then_accepts_again(sim, raw_client) -> None:
    sim.control.refuse_connections(1.5)
    with pytest.raises(OSError):
        with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
            sock.sendall(b"API\0")
            if not sock.recv(1):  # accepted in the race, then closed: also a refusal
                raise ConnectionRefusedError("closed")
    deadline = time.monotonic() + 10
    while True:
        try:
            raw = raw_client(sim.port, 302)
            break
        except OSError:
            assert time.monotonic() < deadline, "listener never came back"
            time.sleep(0.1)
    assert _started(raw) >= 1


def test_connectivity_sends_lost_then_restored(sim, raw_client) -> None:
    raw = raw_client(sim.port, 303)
    _started(raw)
    sim.control.connectivity(1102, seconds=0.5)
    lost = raw.wait_error(1100)
    restored = raw.wait_error(1102)
    assert lost[2] == restored[2] == "-1"
    assert raw.messages.index(lost) < raw.messages.index(restored)
    assert sim.control.status()["connectivity_lost"] is False


def test_connectivity_1101_drops_market_data_subscriptions(sim, raw_client) -> None:
    raw = raw_client(sim.port, 304)
    _started(raw)
    raw.send(mkt_data_fields(41, AAPL))
    raw.wait_for(lambda m: m[0] == "1" and m[2] == "41")
    sim.control.connectivity(1100)
    raw.wait_error(1100)
    assert sim.control.status()["connectivity_lost"] is True
    sim.control.connectivity(1101, seconds=0.2)
    raw.wait_error(1101)
    seen = len(raw.messages)
    raw.collect(1.5)
    assert _ticks(raw.messages[seen:], 41) == []


def test_withhold_acks_keeps_orders_unacknowledged_until_released(sim, raw_client) -> None:
    raw = raw_client(sim.port, 305)
    order_id = _started(raw)
    limit = round(_ask(raw, 51) * 0.8, 2)
    sim.control.withhold_acks(True)
    try:
        raw.send(place_order_fields(order_id, "AAPL", 1, limit, "withheld"))
        seen = len(raw.messages)
        raw.collect(1.0)
        assert [m for m in raw.messages[seen:] if m[0] in ("3", "5")] == []
    finally:
        sim.control.withhold_acks(False)
    status = raw.wait_for(_status_of(order_id))
    assert status[2] == "Submitted"
    raw.send([4, 1, order_id, ""])
    raw.wait_for(lambda m: _status_of(order_id)(m) and m[2] == "Cancelled")


def test_ack_delay_delays_order_events(sim, raw_client) -> None:
    raw = raw_client(sim.port, 306)
    order_id = _started(raw)
    limit = round(_ask(raw, 61) * 0.8, 2)
    sim.control.ack_delay(1.0)
    try:
        sent = time.monotonic()
        raw.send(place_order_fields(order_id, "AAPL", 1, limit, "delayed"))
        raw.wait_for(_status_of(order_id))
        assert time.monotonic() - sent >= 0.9
    finally:
        sim.control.ack_delay(0)
    raw.send([4, 1, order_id, ""])
    raw.wait_for(lambda m: _status_of(order_id)(m) and m[2] == "Cancelled")


def test_reject_next_order_rejects_with_the_given_code(sim, raw_client) -> None:
    raw = raw_client(sim.port, 307)
    order_id = _started(raw)
    sim.control.reject_next_order(201, "simulated margin failure")
    raw.send(place_order_fields(order_id, "AAPL", 1, 100.0))
    error = raw.wait_error(201)
    assert error[2] == str(order_id) and "simulated margin failure" in error[4]
    assert raw.wait_for(_status_of(order_id))[2] == "Cancelled"


def test_stall_market_data_stops_and_resumes_ticks(sim, raw_client) -> None:
    raw = raw_client(sim.port, 308)
    _started(raw)
    raw.send(mkt_data_fields(71, AAPL))
    raw.wait_for(lambda m: m[0] == "1" and m[2] == "71")
    sim.control.stall_market_data(True)
    try:
        raw.collect(0.5)  # let ticks already in flight arrive
        seen = len(raw.messages)
        raw.collect(1.5)
        assert _ticks(raw.messages[seen:], 71) == []
    finally:
        sim.control.stall_market_data(False)
    seen = len(raw.messages)
    raw.wait_for(lambda m: m in raw.messages[seen:] and m[0] in ("1", "2") and m[2] == "71")


def test_halt_and_set_price_show_in_ticks(sim, raw_client) -> None:
    raw = raw_client(sim.port, 309)
    _started(raw)
    contract = _contract("CSCO")
    sim.control.set_price("CSCO", 12.34)
    sim.control.halt("CSCO", True)
    try:
        raw.send(mkt_data_fields(81, contract))
        raw.wait_for(lambda m: m[0] == "1" and m[2] == "81" and m[3] == "4" and m[4] == "12.34")
        raw.wait_for(lambda m: m[0] == "45" and m[2] == "81" and m[3] == "49" and m[4] == "1.0")
    finally:
        sim.control.halt("CSCO", False)
        sim.control.set_price("CSCO", None)
    raw.wait_for(lambda m: m[0] == "45" and m[2] == "81" and m[3] == "49" and m[4] == "0.0")
    raw.wait_for(lambda m: m[0] == "1" and m[2] == "81" and m[3] == "4" and m[4] != "12.34")


def test_roll_back_next_valid_id_changes_the_next_start(sim, raw_client) -> None:
    first = raw_client(sim.port, 310)
    order_id = _started(first)
    first.send(place_order_fields(order_id + 40, "AAPL", 1, 100.0))
    first.wait_for(_status_of(order_id + 40))
    first.send([4, 1, order_id + 40, ""])
    first.close()
    deadline = time.monotonic() + 10
    while 310 in sim.control.status()["clients"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sim.control.roll_back_next_valid_id(310, 3)
    assert _started(raw_client(sim.port, 310)) == 3


def test_status_and_bad_commands(sim) -> None:
    status = sim.control.status()
    assert set(status) >= {"clients", "open_orders", "positions", "now"}
    assert status["now"].startswith("2025-11-26T")
    with pytest.raises(ControlError, match="unknown command"):
        sim.control.call("no_such_command")
    with pytest.raises(ControlError, match="'seconds'"):
        sim.control.call("refuse_connections", seconds="soon")
    with pytest.raises(ControlError, match="unknown symbol"):
        sim.control.halt("NOSUCH", True)


def test_bad_argument_is_an_argparse_error_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broker.simulator", "--port", "0", "--speed", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--speed" in result.stderr
