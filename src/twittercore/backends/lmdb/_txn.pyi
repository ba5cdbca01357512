"""Stubs of the compiled ``_txn`` module (``_txn.pyx``)."""

from typing import Any

from twittercore._types import Event

LAYOUT_OK: bool

def get_many(txn: Any, db: Any, keys: list[bytes]) -> list[bytes | None]:
    """The value of each key in table ``db`` of ``txn``, or None where absent."""

def get_heads(txn: Any, following: Any, logs: Any, sink_key: bytes, tag: bytes) -> tuple[bytes, list[bytes | None]]:
    """The packed 8-byte sources of ``sink_key`` in ``following`` and each one's ``source + tag`` value in ``logs``."""

def get_events(txn: Any, db: Any, ids: list[int]) -> list[Event]:
    """The events ``ids`` from the ``events`` table ``db``, in order (LookupError where one is missing)."""
