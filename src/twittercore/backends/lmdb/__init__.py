"""The embedded LMDB store, the default backend: see :mod:`.store`.

Modules: ``store`` (the backend: life, transactions, graph and events),
``tables`` (the named tables, the codec), ``keys`` (key encodings, idempotency
keys), ``chunks`` (chunked streams), ``read`` (pages and events), ``live``
(tail and wait), ``fanout`` (fan-out on write and hybrid), ``check`` (the
layout's invariants).  The store holds one object of each and gives each what
it uses in its constructor.
"""

from .store import LMDBStore

__all__ = ["LMDBStore"]
