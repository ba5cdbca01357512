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
    "ForkedError",
    "DamagedStoreError",
    "FormatError",
    "DiskFullError",
    "ReadersFullError",
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


class ForkedError(ClosedError):
    """A store handle was used in a process forked from the one that opened it.

    LMDB environments must not be used across ``fork()``; the child's copy of
    the handle is closed for it (without touching the parent's environment)
    and the child opens the store again.
    """


class DamagedStoreError(StoreError):
    """The store's files are damaged (truncated, emptied, corrupt pages); nothing was changed."""


class FormatError(StoreError):
    """The directory holds something other than a store of this format version; nothing was changed."""


class DiskFullError(StoreError, OSError):
    """The disk (or the process's file size limit) is full; the failed call changed nothing."""


class ReadersFullError(StoreError):
    """Every LMDB reader slot is taken by live readers (stale ones were cleared first)."""
