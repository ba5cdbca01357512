"""The storage backends behind :func:`twittercore.open`, side by side.

Each backend is a subclass of :class:`twittercore.Store` that implements its
abstract ``_``-prefixed protocol (see :mod:`twittercore.store`); the public
methods, argument checks and the ``tail`` loop are shared.  A backend is
imported only when a target asks for it, so an embedded user never imports
Redis code and vice versa.

``memory``      the pure-Python reference store, the executable specification
``lmdb``        the embedded store (the default), one LMDB environment
``redis``       the scale-out store on Redis or Redis Cluster (``redis://``, ``redis+cluster://``)
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigurationError, InvalidArgumentError

__all__ = ["open_target"]

#: URL schemes a backend will serve; any other ``scheme://`` target is refused
#: rather than taken for a directory name.
_REDIS_SCHEMES = ("redis", "rediss", "redis+cluster")


def open_target(target: Any, options: dict[str, Any]) -> Any:
    """Pick the backend for ``target`` and open it (see :func:`twittercore.open`)."""
    if isinstance(target, str) and target == ":memory:":
        from .memory import MemoryStore

        return MemoryStore(**options)
    if isinstance(target, str) and "://" in target:
        scheme = target.split("://", 1)[0].lower()
        if scheme in _REDIS_SCHEMES:
            if scheme == "rediss":
                raise ConfigurationError(
                    f"open({target!r}): TLS (rediss://) is not supported yet (use redis:// on a trusted network)"
                )
            try:
                from .redis import RedisStore
            except ImportError as exc:
                raise ConfigurationError(
                    f"open({target!r}): the Redis backend needs redis-py ({exc}; pip install 'twittercore[redis]')"
                ) from None
            return RedisStore(target, **options)
        raise ConfigurationError(
            f"open({target!r}): no backend serves the scheme {scheme!r} "
            "(expected ':memory:', a directory path, or a redis:// URL)"
        )
    if not isinstance(target, (str, os.PathLike)):  # (True is neither)
        raise InvalidArgumentError(
            f"open: expected a directory path, ':memory:' or 'redis://...', got {type(target).__name__}"
        )
    path = os.fspath(target)
    if not isinstance(path, str):
        raise InvalidArgumentError(f"open: expected a str path, got {type(path).__name__} (decode it first)")
    if not path or "\0" in path:
        raise InvalidArgumentError(f"open({path!r}): expected a directory path (empty or NUL in the path)")
    from .. import _options
    from .lmdb import LMDBStore
    from .lmdb.env import OPTIONS

    _options.check("LMDB", options, OPTIONS)
    return LMDBStore(path, **options)
