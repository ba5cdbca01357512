"""Argument checks shared by every store.

They run before a store changes anything, so a rejected call changes nothing.
The fast path is one ``type() is`` test; the slow path exists to build a
message that says what was wrong and how to fix it.
"""

from __future__ import annotations

import operator
import threading as _threading
from typing import Any

from ._types import MAX_LIMIT, MAX_NODE, MAX_PAYLOAD
from .errors import InvalidArgumentError, PayloadTooLargeError


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def uint64(value: Any, what: str) -> int:
    """Return ``value`` as an int in [0, 2**64), or raise InvalidArgumentError."""
    if type(value) is int and 0 <= value <= MAX_NODE:
        return value
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidArgumentError(
            f"{what}: expected an unsigned 64-bit int, got {_describe(value)} (ids are integers in [0, 2**64))"
        )
    try:
        as_int = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"{what}: expected an unsigned 64-bit int, got {_describe(value)} "
            "(ids are integers in [0, 2**64); convert strings with int())"
        ) from None
    if not 0 <= as_int <= MAX_NODE:
        raise InvalidArgumentError(f"{what}: {as_int} is out of range (ids are integers in [0, 2**64))")
    return as_int


def optional_uint64(value: Any, what: str) -> int | None:
    return None if value is None else uint64(value, what)


def limit(value: Any) -> int:
    """Return a page size in [1, MAX_LIMIT], or raise InvalidArgumentError."""
    if type(value) is int and 0 < value <= MAX_LIMIT:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"limit: expected an int, got {_describe(value)} (pass e.g. limit=20)")
    raise InvalidArgumentError(
        f"limit: {value} is out of range (a page holds 1 to {MAX_LIMIT} events; page further with max_id)"
    )


def timeout(value: Any) -> float | None:
    """Return a wait in seconds (>= 0) or None (wait forever), or raise InvalidArgumentError.

    A wait longer than the platform's lock timeout (``math.inf`` included)
    means forever: the locks would refuse it with OverflowError.
    """
    if value is None or (not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 0):
        return None if value is not None and value > _threading.TIMEOUT_MAX else value
    raise InvalidArgumentError(f"timeout: expected seconds >= 0 or None, got {_describe(value)}")


def pair(value: Any, what: str) -> tuple[Any, Any]:
    """Unpack a 2-item pair; bytes and str are refused (``b"xy"`` is not the pair (120, 121))."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        raise InvalidArgumentError(f"{what}: expected a pair, got {_describe(value)} (pass a tuple such as (1, 2))")
    try:
        first, second = value
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{what}: expected a pair, got {_describe(value)}") from None
    return first, second


def items(value: Any, what: str) -> list[Any]:
    """``value`` as a list, or InvalidArgumentError when it is not an iterable of items."""
    if type(value) is list:
        return value
    if isinstance(value, (bytes, bytearray, memoryview, str)) or value is None:
        raise InvalidArgumentError(f"{what}: expected an iterable of pairs, got {_describe(value)}")
    try:
        return list(value)
    except TypeError:
        raise InvalidArgumentError(f"{what}: expected an iterable of pairs, got {_describe(value)}") from None


def payload(value: Any, what: str = "payload") -> bytes:
    """Return ``value`` as bytes of at most MAX_PAYLOAD, or raise."""
    if type(value) is not bytes:
        if isinstance(value, (bytearray, memoryview)):
            try:
                value = bytes(value)
            except ValueError:  # a released memoryview
                raise InvalidArgumentError(f"{what}: the memoryview was released (pass live bytes)") from None
        elif isinstance(value, str):
            raise InvalidArgumentError(
                f"{what}: expected bytes, got str (payloads are opaque bytes; encode text first, e.g. text.encode())"
            )
        else:
            raise InvalidArgumentError(f"{what}: expected bytes, got {_describe(value)} (payloads are opaque bytes)")
    if len(value) > MAX_PAYLOAD:
        raise PayloadTooLargeError(
            f"{what}: {len(value)} bytes is larger than the maximum of {MAX_PAYLOAD} "
            "(store large media elsewhere and publish a reference to it)"
        )
    checked: bytes = value  # exact bytes by now (the type test above)
    return checked


#: The longest idempotency key, in bytes (Stripe's and Mastodon's keys are
#: UUIDs or shorter; 255 leaves room for a client's own prefix).
MAX_KEY = 255


def key(value: Any, what: str = "key") -> bytes:
    """Return an idempotency key as 1 to MAX_KEY bytes (str is UTF-8 encoded), or raise."""
    if isinstance(value, str):
        try:
            value = value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                f"{what}: not valid text (a lone surrogate?); use bytes or well-formed str"
            ) from None
    elif isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    elif type(value) is not bytes:
        raise InvalidArgumentError(f"{what}: expected bytes or str, got {_describe(value)}")
    if not 1 <= len(value) <= MAX_KEY:
        raise InvalidArgumentError(f"{what}: {len(value)} bytes is outside 1 to {MAX_KEY} (a UUID is 36)")
    checked: bytes = value  # bytes by now (str encoded, buffers copied)
    return checked


def bounds(max_id: Any, since_id: Any, min_id: Any) -> tuple[int, int, bool]:
    """Turn Twitter/Mastodon paging arguments into ``(lo, hi, oldest)``.

    The page holds ids in ``(lo, hi]``.  ``oldest`` is True when ``min_id``
    was given: the page is then the oldest ``limit`` ids above ``lo``
    (Mastodon's ``min_id``), still returned newest first.
    """
    hi = MAX_NODE if max_id is None else uint64(max_id, "max_id")
    lo = 0 if since_id is None else uint64(since_id, "since_id")
    oldest = False
    if min_id is not None:
        lo = max(lo, uint64(min_id, "min_id"))
        oldest = True
    return lo, hi, oldest
