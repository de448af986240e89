"""Test control and fault injection for a running simulator, over loopback.

Protocol: JSON lines over TCP on ``127.0.0.1:<control port>`` (default: the API port + 1,
or ``--control-port``). Each request is one line, a JSON object with ``"cmd"`` and the
command's parameters; each answer is one line, ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. A connection may send any number of requests.

Commands (parameters in brackets):

``drop_connections``
    Close every API client socket (clients see the peer close the connection).
``refuse_connections`` [seconds]
    Close the API listener for ``seconds``: new connections are refused, existing ones
    stay up; then listen again on the same port.
``connectivity`` [code, seconds=1.0]
    Send error 1100 (connectivity lost, reqId -1) to every client and stop market data;
    with code 1101 or 1102, send that code ``seconds`` later and resume (1101, "data
    lost", also drops every market data subscription, as TWS does). Code 1100 alone
    leaves connectivity lost until a later 1101/1102.
``withhold_acks`` [on]
    New orders stay PendingSubmit with no acknowledgement until turned off (the
    exchange then acknowledges and matches them).
``ack_delay`` [seconds]
    Deliver the events of each placeOrder (and everything after them) ``seconds`` late.
``reject_next_order`` [code=201, reason]
    The next placeOrder (new or modification) is rejected with ``code``.
``stall_market_data`` [on]
    Stop (or resume) sending ticks, real-time bars, bar updates and scanner pushes;
    orders keep matching.
``halt`` [symbol, on]
    Halt or resume a symbol: quotes freeze and say halted; nothing fills.
``set_price`` [symbol, price (null to unpin)]
    Pin a symbol's last/bid/ask.
``roll_back_next_valid_id`` [client_id, to]
    Make the next nextValidId for ``client_id`` be ``to`` (even below ids already used).
``status``
    Connected client ids, open order count, positions, the simulator clock's now.
``shutdown``
    Stop the simulator (it exits 0).

``SimControl(port)`` is a small synchronous client with one method per command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from broker.simulator.server import SimServer

log = logging.getLogger("broker.simulator.control")

Reply = dict[str, Any]


class ControlError(RuntimeError):
    """The simulator refused or failed a control command."""


@dataclass(frozen=True)
class _Params:
    """Typed access to a command's parameters, with errors that name the parameter."""

    raw: dict[str, Any]

    def get(self, name: str, kind: type, default: Any = ...) -> Any:
        if name not in self.raw or self.raw[name] is None:
            if default is ...:
                raise ValueError(f"missing parameter {name!r}")
            return default
        value = self.raw[name]
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        raise ValueError(f"parameter {name!r} must be {kind.__name__}, got {value!r}")


class ControlServer:
    """Serve control commands for one ``SimServer``."""

    def __init__(self, sim: SimServer, market: Any, on_shutdown: Callable[[], None]) -> None:
        self.sim = sim
        self.market = market
        self._on_shutdown = on_shutdown
        self._listener: asyncio.Server | None = None
        self.port = 0
        self._commands: dict[str, Callable[[_Params], Awaitable[Reply] | Reply]] = {
            "drop_connections": self._drop_connections,
            "refuse_connections": self._refuse_connections,
            "connectivity": self._connectivity,
            "withhold_acks": self._withhold_acks,
            "ack_delay": self._ack_delay,
            "reject_next_order": self._reject_next_order,
            "stall_market_data": self._stall_market_data,
            "halt": self._halt,
            "set_price": self._set_price,
            "roll_back_next_valid_id": self._roll_back_next_valid_id,
            "status": self._status,
            "shutdown": self._shutdown,
        }

    async def start(self, port: int, host: str = "127.0.0.1") -> int:
        """Listen on loopback; return the bound port."""
        self._listener = await asyncio.start_server(self._serve, host, port)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            self._listener.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self.execute(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def execute(self, line: bytes) -> Reply:
        """Run one JSON command line and return the reply object."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a command must be a JSON object")
            name = request.pop("cmd", None)
            command = self._commands.get(name)
            if command is None:
                raise ValueError(f"unknown command {name!r}; known: {sorted(self._commands)}")
            log.info("control: %s %s", name, request)
            result = command(_Params(request))
            if asyncio.iscoroutine(result):
                result = await result
            return {"ok": True, **result}
        except Exception as exc:  # the answer carries the failure; the server stays up
            log.warning("control command failed: %s", exc)
            return {"ok": False, "error": str(exc)}

    # ----------------------------------------------------------------------- commands

    def _drop_connections(self, p: _Params) -> Reply:
        return {"dropped": self.sim.drop_connections()}

    async def _refuse_connections(self, p: _Params) -> Reply:
        await self.sim.refuse_connections(p.get("seconds", float))
        return {}

    def _connectivity(self, p: _Params) -> Reply:
        self.sim.connectivity(p.get("code", int), p.get("seconds", float, 1.0))
        return {}

    def _withhold_acks(self, p: _Params) -> Reply:
        self.sim.withhold_acks(p.get("on", bool))
        return {}

    def _ack_delay(self, p: _Params) -> Reply:
        seconds = p.get("seconds", float)
        if seconds < 0:
            raise ValueError("parameter 'seconds' must be >= 0")
        self.sim.ack_delay = seconds
        return {}

    def _reject_next_order(self, p: _Params) -> Reply:
        code = p.get("code", int, 201)
        self.sim.exchange.reject_next_order(code, p.get("reason", str, "simulated rejection"))
        return {}

    def _stall_market_data(self, p: _Params) -> Reply:
        self.sim.market_data_stalled = p.get("on", bool)
        return {}

    def _halt(self, p: _Params) -> Reply:
        symbol = self._known_symbol(p)
        self.market.set_halted(symbol, p.get("on", bool, True))
        return {}

    def _set_price(self, p: _Params) -> Reply:
        symbol = self._known_symbol(p)
        self.market.set_price(symbol, p.get("price", float, None))
        return {}

    def _known_symbol(self, p: _Params) -> str:
        symbol = p.get("symbol", str).upper()
        if self.sim.contracts.by_symbol(symbol) is None:
            raise ValueError(f"unknown symbol {symbol!r}")
        return symbol

    def _roll_back_next_valid_id(self, p: _Params) -> Reply:
        self.sim.exchange.roll_back_next_valid_id(p.get("client_id", int), p.get("to", int))
        return {}

    def _status(self, p: _Params) -> Reply:
        return self.sim.status()

    def _shutdown(self, p: _Params) -> Reply:
        # Reply first; the process stops right after this answer is written.
        asyncio.get_running_loop().call_soon(self._on_shutdown)
        return {}


class SimControl:
    """A synchronous control client for tests and scripts (one TCP connection, reused)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def __enter__(self) -> SimControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, cmd: str, **params: Any) -> Reply:
        """Send one command; return its reply, or raise ControlError when it failed."""
        line = json.dumps({"cmd": cmd, **params}).encode() + b"\n"
        try:
            reply = self._exchange(line)
        except TimeoutError:
            self.close()
            raise  # the command may have run: do not send it twice
        except OSError:
            self.close()  # a connection the simulator closed (e.g. it restarted): retry once
            reply = self._exchange(line)
        if not reply.get("ok"):
            raise ControlError(f"{cmd}: {reply.get('error')}")
        return reply

    def _exchange(self, line: bytes) -> Reply:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._file = self._sock.makefile("rb")
        self._sock.sendall(line)
        answer = self._file.readline()
        if not answer:
            raise ConnectionError("control connection closed")
        return json.loads(answer)

    def drop_connections(self) -> int:
        """Close every API client socket; return how many."""
        return int(self.call("drop_connections")["dropped"])

    def refuse_connections(self, seconds: float) -> None:
        """Refuse new API connections for ``seconds``."""
        self.call("refuse_connections", seconds=seconds)

    def connectivity(self, code: int, seconds: float = 1.0) -> None:
        """Send 1100 now and ``code`` (1101/1102) after ``seconds`` to every client."""
        self.call("connectivity", code=code, seconds=seconds)

    def withhold_acks(self, on: bool) -> None:
        """Withhold (True) or release (False) order acknowledgements."""
        self.call("withhold_acks", on=on)

    def ack_delay(self, seconds: float) -> None:
        """Delay the delivery of order events by ``seconds`` (0 turns it off)."""
        self.call("ack_delay", seconds=seconds)

    def reject_next_order(self, code: int = 201, reason: str = "simulated rejection") -> None:
        """Reject the next placeOrder with ``code``."""
        self.call("reject_next_order", code=code, reason=reason)

    def stall_market_data(self, on: bool) -> None:
        """Stop (True) or resume (False) streaming market data."""
        self.call("stall_market_data", on=on)

    def halt(self, symbol: str, on: bool = True) -> None:
        """Halt or resume ``symbol``."""
        self.call("halt", symbol=symbol, on=on)

    def set_price(self, symbol: str, price: float | None) -> None:
        """Pin ``symbol``'s price (None removes the pin)."""
        self.call("set_price", symbol=symbol, price=price)

    def roll_back_next_valid_id(self, client_id: int, to: int) -> None:
        """Make the next nextValidId of ``client_id`` be ``to``."""
        self.call("roll_back_next_valid_id", client_id=client_id, to=to)

    def status(self) -> Reply:
        """Return clients, open order count, positions and the simulator's now."""
        return self.call("status")

    def shutdown(self) -> None:
        """Stop the simulator process."""
        self.call("shutdown")
        self.close()
