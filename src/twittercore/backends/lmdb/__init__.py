"""The embedded LMDB store, the default backend: see :mod:`.store`.

Modules: ``store`` (the backend: life, transactions, graph and events),
``read`` (pages from chunked streams), ``live`` (tail and wait), ``fanout``
(fan-out on write and hybrid), ``check`` (the layout's invariants).
"""

from .store import LMDBStore

__all__ = ["LMDBStore"]
