"""Chooses the merge kernel: the compiled :mod:`._merge` or its pure-Python twin.

``TWITTERCORE_NO_EXTENSIONS=1`` (the same switch the build reads) selects the
twin.  Without it the compiled module must import: a silent fallback would
hide a broken build behind a 30x slowdown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from . import _merge_py
from .errors import ConfigurationError

__all__ = ["Merge", "NO_EXTENSIONS", "merge", "select", "is_python"]


class Merge(Protocol):
    """What the stores call of a kernel (:mod:`._merge` or :mod:`._merge_py`; see ``_merge.pyi``)."""

    def newest(self, runs: Sequence[Any], limit: int, lo: int = 0, hi: int = ...) -> list[int]: ...
    def oldest(self, runs: Sequence[Any], limit: int, lo: int = 0, hi: int = ...) -> list[int]: ...
    def newest_floored(
        self, heads: Sequence[Any], limit: int, lo: int = 0, hi: int = ...
    ) -> tuple[list[int], list[int]]: ...


NO_EXTENSIONS = os.environ.get("TWITTERCORE_NO_EXTENSIONS", "") not in ("", "0")

if NO_EXTENSIONS:
    merge: Merge = _merge_py
else:
    try:
        from . import _merge

        merge = _merge
    except ImportError as exc:  # pragma: no cover - exercised by a broken build only
        raise ImportError(
            "twittercore._merge: the compiled merge kernel did not import "
            f"({exc}); rebuild with `make build`, or set TWITTERCORE_NO_EXTENSIONS=1 "
            "to use the pure-Python twin"
        ) from exc


def is_python(kernel: Merge) -> bool:
    """Is ``kernel`` the pure-Python twin?  (Its stores use the pure-Python codec too.)"""
    return kernel is _merge_py


def select(kernel: str | None) -> Merge:
    """The kernel module for the ``kernel=`` option of :func:`twittercore.open`."""
    if kernel in (None, "auto"):
        return merge
    if kernel == "python":
        return _merge_py
    if kernel == "cython":
        try:
            from . import _merge
        except ImportError:
            raise ConfigurationError(
                "kernel='cython': the compiled module is not built "
                "(run `make build`, or unset TWITTERCORE_NO_EXTENSIONS when installing)"
            ) from None
        return _merge
    raise ConfigurationError(f"kernel: expected 'auto', 'cython' or 'python', got {kernel!r}")
