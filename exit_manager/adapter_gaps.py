"""The one thing the exit manager needs from the broker adapter that it does not offer yet.

After a reconnect, a sell that the new connection's full snapshot shows no trace of (no
open order, no completed order, no execution) never reached the broker, and the exit
manager sends the remainder again under a new order_ref. The adapter's own order book,
however, keeps the lost order as unfinished, so its pre-trade guard (a sell may not
exceed the position minus the sells still working) would refuse that new sell forever.

``forget_lost_order`` marks the lost order cancelled in the adapter's book, with the
reason. Evidence rules still hold: should the broker report the order after all, its
fills are still counted (a done order's filled quantity can only grow).

Needed in ``broker.adapter.BrokerAdapter`` (then this module goes away):
``forget_order(order_ref: str, reason: str) -> OrderView | None``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from broker.adapter import BrokerAdapter
from broker.models import OrderStatus, OrderView

log = logging.getLogger("exit_manager.adapter_gaps")


def forget_lost_order(adapter: BrokerAdapter, order_ref: str, reason: str) -> OrderView | None:
    """Mark ``order_ref`` cancelled in the adapter's book (it never reached the broker)."""
    forget = getattr(adapter, "forget_order", None)
    if forget is not None:  # the adapter grew the real thing
        return forget(order_ref, reason)
    book = getattr(adapter, "_orders", None)
    view = adapter.order(order_ref)
    if book is None or view is None or view.is_done:
        return view
    log.warning("order %s: marked cancelled in the adapter's book: %s", order_ref, reason)
    return book.update(replace(view, status=OrderStatus.CANCELLED, error=reason, source="local"))
