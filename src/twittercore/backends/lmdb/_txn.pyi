"""Stubs of the compiled ``_txn`` module (``_txn.pyx``)."""

from typing import Any

from twittercore._types import Event

LAYOUT_OK: bool

def get_many(txn: Any, db: Any, keys: list[bytes]) -> list[bytes | None]:
    """The value of each key in table ``db`` of ``txn``, or None where absent."""

def get_events(txn: Any, db: Any, ids: list[int]) -> list[Event]:
    """The events ``ids`` from the ``events`` table ``db``, in order (LookupError where one is missing)."""
