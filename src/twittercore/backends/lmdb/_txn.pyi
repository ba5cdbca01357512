"""Stubs of the compiled ``_txn`` module (``_txn.pyx``)."""

from typing import Any

LAYOUT_OK: bool

def get_many(txn: Any, db: Any, keys: list[bytes]) -> list[bytes | None]:
    """The value of each key in table ``db`` of ``txn``, or None where absent."""
