"""The import shim: the one place that imports the IBKR client library.

``ib_async`` (the maintained fork) is preferred; ``ib_insync`` has the same API and is
used when ``ib_async`` is absent. ``BROKER_CLIENT_LIB=ib_insync`` (or ``ib_async``)
forces one, so the test matrix can run both in one process: ``load(name)`` returns
either library's names as one ``IbLib`` namespace, and the module-level names are the
default library's.

Nothing outside ``broker/`` imports a client library; nothing inside it imports one
except through this module.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

#: Environment variable that forces one client library (``ib_async`` or ``ib_insync``).
LIB_ENV = "BROKER_CLIENT_LIB"

#: Libraries in order of preference.
SUPPORTED = ("ib_async", "ib_insync")


class ClientLibraryError(ImportError):
    """No supported IBKR client library can be imported (or the forced one cannot)."""


@dataclass(frozen=True)
class IbLib:
    """The names the adapter uses from one client library."""

    name: str
    version: str
    module: ModuleType
    IB: Any
    Stock: Any
    LimitOrder: Any
    ExecutionFilter: Any
    ScannerSubscription: Any
    Trade: Any
    Ticker: Any
    util: Any

    def done_states(self) -> frozenset[str]:
        """Return the order statuses this library treats as final."""
        return frozenset(self.module.OrderStatus.DoneStates)


@cache
def load(name: str | None = None) -> IbLib:
    """Return the names of client library ``name``, or of the preferred available one.

    ``name`` None means: ``$BROKER_CLIENT_LIB`` when set, else ``ib_async``, else
    ``ib_insync``. Raise ``ClientLibraryError`` when the chosen library is missing.
    """
    wanted = name or os.environ.get(LIB_ENV, "").strip() or None
    if wanted is not None and wanted not in SUPPORTED:
        raise ClientLibraryError(f"{LIB_ENV}={wanted!r}: expected one of {', '.join(SUPPORTED)}")
    candidates = (wanted,) if wanted else SUPPORTED
    errors = []
    for candidate in candidates:
        try:
            with warnings.catch_warnings():
                # eventkit asks for the thread's event loop at import time; under Python
                # 3.12 that warns when none is set. Harmless: the adapter runs in asyncio.
                warnings.filterwarnings("ignore", "There is no current event loop")
                module = importlib.import_module(candidate)
        except ImportError as exc:
            errors.append(f"{candidate}: {exc}")
            continue
        return _names(candidate, module)
    raise ClientLibraryError("no IBKR client library could be imported: " + "; ".join(errors))


def _names(name: str, module: ModuleType) -> IbLib:
    return IbLib(
        name=name,
        version=str(getattr(module, "__version__", "?")),
        module=module,
        IB=module.IB,
        Stock=module.Stock,
        LimitOrder=module.LimitOrder,
        ExecutionFilter=module.ExecutionFilter,
        ScannerSubscription=module.ScannerSubscription,
        Trade=module.Trade,
        Ticker=module.Ticker,
        util=module.util,
    )


def __getattr__(attr: str) -> Any:
    # Module-level names (``broker.ib.IB``, ``broker.ib.LIBRARY_NAME``...) resolve lazily to
    # the default library, so importing this module never imports a library by itself.
    if attr == "LIBRARY_NAME":
        return load().name
    if attr == "LIBRARY_VERSION":
        return load().version
    if attr in IbLib.__dataclass_fields__ and attr not in ("name", "version"):
        return getattr(load(), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
