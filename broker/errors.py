"""Broker errors that say what to do: retry, stop trading but stay up, or skip the symbol.

Two halves:

- ``ERROR_TABLE`` classifies TWS error codes (what arrives through the client library's
  error event) into an ``ErrorAction``; ``classify`` reads it with sensible ranges for
  codes the table does not name.
- An exception hierarchy raised by the adapter itself, each class carrying its
  ``action`` so a caller can decide with one ``except BrokerError as exc: exc.action``.

Sources: TWS API "Message Codes" (IBKR campus), shared/docs/tws-protocol.md section 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ErrorAction(StrEnum):
    """What a caller should do about an error."""

    RETRY = "retry"  # temporary: try again later (with backoff)
    STOP_TRADING = "stop_trading"  # operational: no new entries, stay up, alert
    SKIP_SYMBOL = "skip_symbol"  # this symbol/order is unusable now; carry on with others
    INFO = "info"  # a notice; nothing to do


R, S, K, N = (
    ErrorAction.RETRY,
    ErrorAction.STOP_TRADING,
    ErrorAction.SKIP_SYMBOL,
    ErrorAction.INFO,
)

#: TWS error code -> (action, short meaning). Codes not listed go through ``classify``.
ERROR_TABLE: dict[int, tuple[ErrorAction, str]] = {
    # -- requests and pacing
    100: (R, "max rate of messages per second exceeded"),
    101: (K, "max number of market data tickers reached"),
    102: (R, "duplicate ticker id"),
    103: (R, "duplicate order id (send again only with a fresh id after reconciling)"),
    104: (N, "cannot modify a filled order"),
    105: (K, "order being modified does not match the original order"),
    106: (R, "cannot transmit order id"),
    107: (K, "cannot transmit incomplete order"),
    109: (K, "price out of the allowed percentage range"),
    110: (K, "price does not conform to the minimum price variation"),
    111: (K, "time in force and order type are incompatible"),
    116: (K, "order type not allowed for this exchange"),
    117: (K, "order type not allowed for this security"),
    135: (N, "cannot find order with this id"),
    136: (N, "order cannot be cancelled"),
    161: (N, "cancel attempted when the order is not in a cancellable state"),
    162: (R, "historical data service error (no data, pacing violation, query cancelled)"),
    165: (N, "historical data service query message"),
    166: (K, "historical data: invalid date or duration"),
    200: (K, "no security definition found"),
    201: (K, "order rejected"),
    202: (N, "order cancelled"),
    203: (K, "security not available or not allowed for this account"),
    300: (N, "cannot find the request id of a cancelled subscription"),
    309: (K, "max number of market depth requests reached"),
    316: (N, "market depth data halted"),
    317: (N, "market depth data reset"),
    320: (R, "server error reading an API request"),
    321: (K, "error validating an API request"),
    322: (R, "error processing an API request"),
    324: (K, "invalid contract for market depth"),
    326: (R, "client id already in use"),
    354: (K, "market data not subscribed"),
    366: (N, "no historical data query found for this request id"),
    382: (K, "order size exceeds the size limit"),
    383: (K, "order size exceeds the total value limit"),
    388: (K, "order size below the minimum"),
    399: (N, "order accepted with a warning"),
    404: (K, "shares not available for short sale"),
    420: (K, "invalid real-time query"),
    434: (K, "order size cannot be zero"),
    492: (N, "order accepted with a warning"),
    # -- connection (client side)
    502: (R, "could not connect to TWS"),
    503: (S, "TWS is out of date and must be upgraded"),
    504: (R, "not connected"),
    507: (R, "bad message length (socket problem)"),
    509: (R, "exception while processing a message"),
    # -- connectivity between TWS and IB (system notices, reqId -1)
    1100: (R, "connectivity between TWS and IB lost: entries paused"),
    1101: (N, "connectivity restored, market data lost: resubscribed"),
    1102: (N, "connectivity restored, data maintained"),
    1300: (R, "TWS socket port reset: reconnect"),
    # -- notices in 2100..2199 default to INFO; a few deserve a name
    2103: (N, "market data farm connection broken"),
    2104: (N, "market data farm connection OK"),
    2105: (N, "historical data farm connection broken"),
    2106: (N, "historical data farm connection OK"),
    2107: (N, "historical data farm inactive, available on demand"),
    2108: (N, "market data farm inactive, available on demand"),
    2109: (N, "outsideRth ignored for this order"),
    2110: (N, "connectivity between TWS and server broken, restored automatically"),
    2157: (N, "sec-def data farm connection broken"),
    2158: (N, "sec-def data farm connection OK"),
    # -- market data and orders, 10000+
    10089: (K, "market data requires an additional API subscription"),
    10090: (K, "part of the requested market data is not subscribed"),
    10147: (N, "order to cancel not found"),
    10148: (N, "order to cancel is already done"),
    10167: (N, "delayed market data is shown"),
    10168: (K, "market data not subscribed and delayed data not enabled"),
    10182: (R, "failed to request live updates (disconnected)"),
    10186: (K, "requested market data is not subscribed (delayed disabled)"),
    10197: (R, "no market data during a competing live session"),
    10225: (N, "bust event: subscription re-requested"),
}

del R, S, K, N

#: Codes that mean "live data unavailable; ask for delayed data instead".
LIVE_DATA_UNAVAILABLE = frozenset({354, 10089, 10090, 10168, 10186, 10197})

#: Order codes that end an order as rejected (the library marks the Trade Cancelled).
ORDER_REJECT_CODES = frozenset(
    {103, 105, 107, 109, 110, 111, 116, 117, 200, 201, 203, 321, 382, 383, 388, 434}
)


def classify(code: int) -> ErrorAction:
    """Return what to do about TWS error ``code``.

    Codes the table does not name: 2100-2199 are notices (INFO); anything else is an
    unknown error and stops trading until a person looks, because an unknown code must
    not be taken as harmless.
    """
    known = ERROR_TABLE.get(code)
    if known is not None:
        return known[0]
    if 2100 <= code < 2200:
        return ErrorAction.INFO
    return ErrorAction.STOP_TRADING


def meaning(code: int) -> str:
    """Return a short meaning of ``code`` ("unknown error code" when not in the table)."""
    known = ERROR_TABLE.get(code)
    return known[1] if known else "unknown error code"


@dataclass(frozen=True)
class BrokerErrorEvent:
    """One error or notice from the broker, classified; what the error callback receives."""

    code: int
    req_id: int
    message: str
    action: ErrorAction
    time: datetime
    symbol: str = ""
    order_ref: str = ""


# --------------------------------------------------------------------------- exceptions


class BrokerError(Exception):
    """Base of the adapter's own errors; ``action`` says what the caller should do."""

    action: ErrorAction = ErrorAction.STOP_TRADING


class TemporaryBrokerError(BrokerError):
    """Try again later: not connected, paced, timed out."""

    action = ErrorAction.RETRY


class NotConnectedError(TemporaryBrokerError):
    """The adapter is not connected (or not yet synced); the request was not sent."""


class OperationalBrokerError(BrokerError):
    """Stop trading, stay up, alert: the configuration or the account is not as expected."""

    action = ErrorAction.STOP_TRADING


class InterlockError(OperationalBrokerError):
    """The connected account may not be traded with this configuration (design section 9)."""


class RoleError(OperationalBrokerError):
    """The process's role does not allow this order side (buys and sells have one owner)."""


class SymbolError(BrokerError):
    """Skip this symbol: unknown contract, no data, or an order the rules refused."""

    action = ErrorAction.SKIP_SYMBOL


class OrderRefusedError(SymbolError):
    """An order failed a pre-trade rule (notional cap, price collar, bad price or size)."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        super().__init__(f"order refused by rule {rule}: {detail}")


@dataclass(frozen=True)
class OrderRefusal:
    """An order the adapter refused to send, and the rule that refused it (the refusal event)."""

    order_ref: str
    symbol: str
    action: str
    rule: str
    message: str
    error_action: ErrorAction
    time: datetime
