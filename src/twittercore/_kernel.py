"""Chooses the merge kernel: the compiled :mod:`._merge` or its pure-Python twin.

``TWITTERCORE_NO_EXTENSIONS=1`` (the same switch the build reads) selects the
twin.  Without it the compiled module must import: a silent fallback would
hide a broken build behind a 30x slowdown.
"""

from __future__ import annotations

import os
from types import ModuleType

from . import _merge_py
from .errors import ConfigurationError

NO_EXTENSIONS = os.environ.get("TWITTERCORE_NO_EXTENSIONS", "") not in ("", "0")

if NO_EXTENSIONS:
    merge: ModuleType = _merge_py
else:
    try:
        from . import _merge as merge  # type: ignore[no-redef]
    except ImportError as exc:  # pragma: no cover - exercised by a broken build only
        raise ImportError(
            "twittercore._merge: the compiled merge kernel did not import "
            f"({exc}); rebuild with `make build`, or set TWITTERCORE_NO_EXTENSIONS=1 "
            "to use the pure-Python twin"
        ) from exc


def select(kernel: str | None) -> ModuleType:
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
