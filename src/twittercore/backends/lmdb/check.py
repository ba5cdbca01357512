"""Invariants of the LMDB layout, asserted by ``LMDBStore._check()`` (tests call it)."""

from __future__ import annotations

from array import array

from .keys import BE, BE2, U64
from .tables import Tables, Txn


def check_layout(tables: Tables, head_tag: bytes, txn: Txn) -> None:
    """Assert the LMDB layout's invariants in one snapshot (slow: it reads everything).

    Logs: chunks sorted and disjoint, tags bounding their ids, head floors and
    counts right, every event in exactly one chunk of its source; the graph's
    two directions agree.  (Fan-out windows are checked by ``Fanout.check``.)
    """
    seq = tables.seq(txn)
    logged: dict[int, int] = {}
    cursor = txn.cursor(tables.logs)
    previous_source, previous_tag, count = None, 0, 0
    for key, value in cursor:
        source, tag = BE2.unpack(key)
        words = array("Q", bytes(value))
        if source != previous_source:
            previous_source, previous_tag, count = source, 0, 0
        if bytes(key[8:]) == head_tag:
            floor, total, ids = words[0], words[1], words[2:]
            assert floor >= previous_tag or previous_tag == 0, (source, floor, previous_tag)
            count += len(ids)
            assert total == count, (source, total, count)
        else:
            ids = words
            assert len(ids) > 0, (source, tag)
            assert ids[-1] <= tag, (source, tag)
        assert list(ids) == sorted(set(ids)), source
        assert not ids or ids[0] > previous_tag, (source, tag)
        for id in ids:
            assert id not in logged, id
            logged[id] = source
        previous_tag = tag
        if bytes(key[8:]) != head_tag:
            count += len(ids)
    events = 0
    for key, value in txn.cursor(tables.events):
        id = BE.unpack(key)[0]
        assert 0 < id <= seq, id
        assert logged.get(id) == U64.unpack_from(value, 0)[0], id
        events += 1
    assert events == len(logged)
    following = {(BE.unpack(k)[0], BE.unpack(v)[0]) for k, v in txn.cursor(tables.following)}
    followers = {(BE.unpack(v)[0], BE.unpack(k)[0]) for k, v in txn.cursor(tables.followers)}
    assert following == followers
