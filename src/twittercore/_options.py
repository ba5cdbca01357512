"""Validation of :func:`twittercore.open` options, shared by every backend.

Each backend names the options it accepts; an unknown one (a typo such as
``fanuot=``) is refused before anything is opened, with the valid names in the
message.  The options every backend shares are checked here once, so the same
bad value gets the same error whichever backend it was meant for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from .errors import ConfigurationError

__all__ = ["FANOUTS", "COMMON", "check", "fanout", "bounded_int", "flag", "clock", "seconds", "progress", "strategy"]

FANOUTS = ("read", "write", "hybrid")
#: Options every backend accepts (the memory store accepts and checks them, and
#: answers alike whatever they say: G5).  ``progress`` is told how far a
#: rebuild of fan-out structures is; a backend that never rebuilds at open
#: (memory, Redis) checks it and never calls it.
COMMON = frozenset(
    {"fanout", "window", "celebrity_threshold", "clock", "durable", "kernel", "key_retention", "progress"}
)


def check(backend: str, options: dict[str, Any], accepted: Collection[str]) -> None:
    """Refuse options ``backend`` does not know, naming them and the valid ones.

    >>> check("memory", {"fanuot": "write"}, COMMON)
    Traceback (most recent call last):
    ...
    twittercore.errors.ConfigurationError: open(): unknown option 'fanuot' for the memory store (valid options: celebrity_threshold, clock, durable, fanout, kernel, key_retention, progress, window)
    """
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigurationError(
            f"open(): unknown option{plural} {names} for the {backend} store "
            f"(valid options: {', '.join(sorted(accepted))})"
        )


def fanout(value: Any) -> str | None:
    if value is None:
        return None
    if value not in FANOUTS:
        raise ConfigurationError(f"fanout: expected one of {FANOUTS}, got {value!r}")
    return str(value)


def bounded_int(name: str, value: Any, low: int, high: int, *, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{name}: expected an int in [{low}, {high}], got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name}: expected True or False, got {value!r}")
    return value


def clock(value: Any) -> Callable[[], float]:
    if not callable(value):
        raise ConfigurationError(f"clock: expected a callable returning seconds (like time.time), got {value!r}")
    return value  # type: ignore[no-any-return]


def progress(value: Any) -> Callable[[int, int], None] | None:
    """None, or a callable ``progress(done, total)`` (rebuild progress; see :data:`COMMON`)."""
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"progress: expected None or a callable progress(done, total), got {type(value).__name__} {value!r}"
        )
    checked: Callable[[int, int], None] | None = value  # callable() cannot check the signature
    return checked


def seconds(name: str, value: Any) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigurationError(f"{name}: expected a number of seconds > 0, got {value!r}")
    return float(value)


def strategy(options: dict[str, Any]) -> tuple[str | None, int | None, int | None]:
    """The checked ``(fanout, window, celebrity_threshold)`` of ``options``.

    Also checks ``progress``, the callback of the rebuild a strategy change
    makes, so every backend refuses the same bad value.
    """
    progress(options.get("progress"))
    return (
        fanout(options.get("fanout")),
        bounded_int("window", options.get("window"), 1, 100_000),
        bounded_int("celebrity_threshold", options.get("celebrity_threshold"), 1, 1 << 62),
    )
