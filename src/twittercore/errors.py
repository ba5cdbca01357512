"""The exceptions twittercore raises: one base class, one subclass per kind of mistake.

Every message follows the py-lmdb convention ``what: reason (hint)`` so that a
log line alone tells the caller what to fix.  Each subclass also derives from
the closest builtin (``ValueError``, ``LookupError``, ...) so code written
against the builtins keeps working.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "InvalidArgumentError",
    "PayloadTooLargeError",
    "NotFoundError",
    "ClosedError",
    "StoreError",
    "ConfigurationError",
]


class Error(Exception):
    """Base class of every error twittercore raises on purpose."""


class InvalidArgumentError(Error, ValueError):
    """An argument has the wrong type or is out of range; nothing was changed."""


class PayloadTooLargeError(InvalidArgumentError):
    """A payload is larger than :data:`twittercore.MAX_PAYLOAD`; nothing was changed."""


class NotFoundError(Error, LookupError):
    """An event id does not exist (never published, or deleted)."""


class ClosedError(Error, RuntimeError):
    """The store was used after :meth:`Store.close`."""


class ConfigurationError(InvalidArgumentError):
    """``open()`` was given options that do not fit the target or the existing store; nothing was opened."""


class StoreError(Error, RuntimeError):
    """The storage engine failed (disk full, corrupt file, permissions, ...)."""
