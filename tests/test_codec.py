"""The record codecs: the compiled module and its pure-Python twin give the same bytes."""

from __future__ import annotations

import importlib

import hypothesis.strategies as st
import pytest
from hypothesis import given

from tests.conftest import HAVE_COMPILED
from twittercore import MAX_PAYLOAD, Event

twin = importlib.import_module("twittercore._codec_py")
compiled = importlib.import_module("twittercore._codec") if HAVE_COMPILED else None
needs_compiled = pytest.mark.skipif(compiled is None, reason="compiled codec not built")

IDS = st.lists(st.integers(1, 2**63), unique=True, max_size=400).map(sorted)
ITEMS = st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=40)), max_size=30)


@needs_compiled
@given(old=IDS, new=st.lists(st.integers(1, 10**6), unique=True, max_size=300).map(sorted))
def test_append_head_matches(old, new):
    new = [x + (old[-1] if old else 0) for x in new]  # appended ids are newer
    base_twin = twin.append_head(None, old)[0] if old else None
    base_compiled = compiled.append_head(None, old)[0] if old else None
    assert base_twin == base_compiled
    assert twin.append_head(base_twin, new) == compiled.append_head(base_compiled, new)


@given(ids=IDS)
def test_heads_seal_full_chunks_and_keep_the_newest(ids):
    head, sealed = twin.append_head(None, ids)
    words = twin.array("Q", head)
    floor, count, kept = words[0], words[1], list(words[2:])
    assert count == len(ids)
    assert len(kept) < 2 * twin.SEAL and (len(kept) >= twin.SEAL or not sealed)
    chunks = [list(twin.array("Q", chunk)) for _, chunk in sealed]
    assert sum(chunks, []) + kept == ids
    assert all(tag == chunk[-1] for (tag, _), chunk in zip(sealed, chunks))
    assert floor == (chunks[-1][-1] if chunks else 0)


@needs_compiled
@given(items=ITEMS, first=st.integers(1, 2**40), time=st.floats(allow_nan=False))
def test_events_encode_and_decode_alike(items, first, time):
    records = twin.encode_events(first, items, time)
    assert records == compiled.encode_events(first, items, time)
    ids = list(range(first, first + len(items)))
    assert twin.be_keys(ids) == compiled.be_keys(ids) == [key for key, _ in records]
    values = [value for _, value in records]
    decoded = compiled.decode_values(ids, values)
    assert decoded == twin.decode_values(ids, values)
    assert all(type(e) is Event for e in decoded)
    assert [(e.source, e.payload, e.time) for e in decoded] == [(s, p, time) for s, p in items]
    assert twin.group_ids(first, items) == compiled.group_ids(first, items)


@needs_compiled
def test_decode_values_reports_a_missing_event():
    (record,) = twin.encode_events(1, [(1, b"x")], 0.0)
    for module in (twin, compiled):
        with pytest.raises(LookupError):
            module.decode_values([1, 2], [record[1], None])
        with pytest.raises(LookupError):
            module.decode_values([1, 2], [record[1]])


@needs_compiled
@pytest.mark.parametrize(
    "items, ok",
    [
        ([(1, b"x")], True),
        ([], True),
        ([(1, "x")], False),
        ([(True, b"x")], False),
        ([(-1, b"x")], False),
        ([(2**64, b"x")], False),
        ([(1, b"x" * (MAX_PAYLOAD + 1))], False),
        ([(1, b"x", 3)], False),
        ([[1, b"x"]], False),
    ],
)
def test_fast_item_check(items, ok):
    assert twin.check_items(items, MAX_PAYLOAD) is ok
    assert compiled.check_items(items, MAX_PAYLOAD) is ok


@needs_compiled
@given(pairs=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=50))
def test_record_views(pairs):
    records = b"".join(a.to_bytes(8, "big") + b.to_bytes(8, "big") for a, b in pairs)
    assert twin.head_keys(records) == compiled.head_keys(records)
    assert twin.values_of(records) == compiled.values_of(memoryview(records)) == [b for _, b in pairs]
