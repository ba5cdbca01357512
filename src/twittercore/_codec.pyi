"""Type stubs for the compiled record codecs (twin: ``twittercore._codec_py``)."""

from collections.abc import Sequence
from typing import Any

from ._types import Event

#: Tag of a stream's head chunk (logs and windows).
HEAD: bytes
#: A head holds SEAL..2*SEAL-1 ids; the oldest SEAL are sealed together.
SEAL: int

def head_keys(records: Any) -> list[bytes]:
    """Head keys for the sources in 16-byte ``(sink_be, source_be)`` records."""

def values_of(records: Any) -> list[int]:
    """Node ids from the value half of 16-byte ``(key_be, value_be)`` records."""

def encode_events(first_id: int, items: list[tuple[int, bytes]], time: float) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` records of the ``events`` table for a batch with consecutive ids."""

def group_ids(first_id: int, items: list[tuple[int, bytes]]) -> dict[int, list[int]]:
    """Source -> its ids in this batch (ascending)."""

def append_head(head: Any, ids: list[int]) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Append ascending ids to a head; returns the new head and the sealed ``(tag, chunk)`` pairs."""

def decode_event(id: int, value: Any) -> Event: ...
def be_keys(ids: Sequence[int]) -> list[bytes]:
    """Big-endian 8-byte keys of ids (the ``events`` table's keys)."""

def decode_values(ids: list[int], values: list[Any]) -> list[Event]:
    """Events from the values of ids' keys, in order; LookupError where one is None."""

def check_items(items: list[Any], max_payload: int) -> bool:
    """True when every item is an exact ``(int, bytes)`` tuple within limits."""
