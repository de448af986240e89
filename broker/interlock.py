"""The account interlock (design section 9): which connected accounts may receive orders.

Paper accounts at IBKR start with ``DU``. Orders are refused when

- ``IB_ACCOUNT`` is set and the connected account is a different one, or
- the account is not a paper account, unless ``TRADING_MODE=live`` *and*
  ``LIVE_TRADING_CONFIRM`` carries the documented phrase.

The check is a pure function of the managed accounts and the configuration, so it is
tested without a broker, and the adapter runs it on every (re)connect and before
every order.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.errors import InterlockError
from config.settings import LIVE_CONFIRM_PHRASE

PAPER_PREFIX = "DU"


def trading_account(
    managed: Sequence[str], expected: str, trading_mode: str, live_confirm: str
) -> str:
    """Return the account orders may go to, or raise ``InterlockError`` naming the rule.

    ``managed`` is what the gateway reports (``ib.managedAccounts()``); ``expected`` is
    IB_ACCOUNT (empty: any single account).
    """
    accounts = [a.strip() for a in managed if a and a.strip()]
    if not accounts:
        raise InterlockError("interlock: the gateway reported no managed account")
    account = _pick(accounts, expected)
    if account.startswith(PAPER_PREFIX):
        return account
    if trading_mode != "live":
        raise InterlockError(
            f"interlock: account {account} is not a paper account ({PAPER_PREFIX}...) and "
            f"TRADING_MODE={trading_mode!r}; live trading needs TRADING_MODE=live"
        )
    if live_confirm != LIVE_CONFIRM_PHRASE:
        raise InterlockError(
            f"interlock: account {account} is a live account and LIVE_TRADING_CONFIRM "
            "does not carry the documented confirmation value"
        )
    return account


def _pick(accounts: list[str], expected: str) -> str:
    if expected:
        if expected not in accounts:
            raise InterlockError(
                f"interlock: IB_ACCOUNT={expected} but the gateway is logged in to "
                f"{', '.join(accounts)}"
            )
        return expected
    if len(accounts) > 1:
        raise InterlockError(
            f"interlock: the gateway manages several accounts ({', '.join(accounts)}); "
            "set IB_ACCOUNT to the one to trade"
        )
    return accounts[0]
