"""Exceptions of the shared-state store, each saying what the caller should do.

- ``ValueError`` (the built-in) for bad caller input: fix the caller; nothing was written.
- ``StoreBusyError``: temporary; the database stayed locked through every bounded retry.
  Retry the unit of work later (the store already waited ``busy_timeout`` several times).
- ``TransitionError``: the row is not in a state that allows the request (e.g. cancelling
  an entry that already has fills). Re-read the row and take the path its state allows.
- ``NotFoundError``: the row the request names does not exist.
- ``SchemaVersionError``: the file was written by another version of the code. Stop.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on its own account."""


class SchemaVersionError(StoreError):
    """The database file's schema version is not the one this code expects."""


class StoreBusyError(StoreError):
    """The database stayed locked through every retry; retry the unit of work later."""


class TransitionError(StoreError):
    """A lifecycle transition that the transition table does not allow."""


class NotFoundError(StoreError, LookupError):
    """The row a request names does not exist."""


class DuplicateKeyError(StoreError, ValueError):
    """A caller-supplied unique key (order_ref, ...) is already taken: a caller bug."""
