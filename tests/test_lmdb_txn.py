"""The compiled multi-get (``backends/lmdb/_txn.pyx``) answers as py-lmdb's own ``get`` does."""

from __future__ import annotations

import hypothesis.strategies as st
import lmdb
import pytest
from hypothesis import given, settings

from tests.conftest import HAVE_COMPILED
from twittercore.backends.lmdb.read import get_many_py

pytestmark = pytest.mark.skipif(not HAVE_COMPILED, reason="compiled modules not built")

KEYS = st.binary(min_size=1, max_size=12)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = lmdb.open(str(tmp_path_factory.mktemp("txn")), max_dbs=8, map_size=1 << 26)
    yield env
    env.close()


def test_this_py_lmdb_takes_the_compiled_path():
    from twittercore.backends.lmdb import _txn

    # A py-lmdb whose objects changed layout silently falls back to txn.get:
    # this says when that happens (update the declarations in _txn.pyx).
    assert _txn.LAYOUT_OK == lmdb.__version__.startswith("3.")


@settings(max_examples=60, deadline=None)
@given(stored=st.dictionaries(KEYS, st.binary(max_size=2000), max_size=40), asked=st.lists(KEYS, max_size=40))
def test_get_many_equals_get_in_read_and_write_transactions(env, stored, asked):
    from twittercore.backends.lmdb import _txn

    db = env.open_db(b"t")
    with env.begin(write=True) as txn:
        txn.drop(db, delete=False)
        for key, value in stored.items():
            txn.put(key, value, db=db)
        keys = asked + list(stored)[:5] + sorted(stored)  # the cursor also walks sorted keys
        assert _txn.get_many(txn, db, keys) == get_many_py(txn, db, keys)  # uncommitted writes seen
    with env.begin(buffers=True) as txn:
        got = _txn.get_many(txn, db, keys)
        assert got == [None if v is None else bytes(v) for v in get_many_py(txn, db, keys)]
        assert all(v is None or type(v) is bytes for v in got)  # copies: valid after the txn


def test_get_many_of_a_dupsort_table_answers_each_keys_first_value(env):
    from twittercore.backends.lmdb import _txn

    db = env.open_db(b"d", dupsort=True)
    with env.begin(write=True) as txn:
        for key in (b"a", b"c"):
            for value in (b"3", b"1", b"2"):
                txn.put(key, key + value, db=db)
        keys = [b"c", b"b", b"a", b"c"]
        assert _txn.get_many(txn, db, keys) == get_many_py(txn, db, keys) == [b"c1", None, b"a1", b"c1"]


def test_get_many_raises_what_get_raises(env):
    from twittercore.backends.lmdb import _txn

    db = env.open_db(b"t")
    with env.begin() as txn:
        with pytest.raises(lmdb.BadValsizeError):
            txn.get(b"", db=db)
        with pytest.raises(lmdb.BadValsizeError):
            _txn.get_many(txn, db, [b"ok", b""])
        with pytest.raises(TypeError, match=r"keys\[1\]"):
            _txn.get_many(txn, db, [b"ok", "text"])
    txn = env.begin()
    txn.abort()
    with pytest.raises(lmdb.Error):
        _txn.get_many(txn, db, [b"a"])


def test_get_many_falls_back_for_other_transaction_objects():
    from twittercore.backends.lmdb import _txn

    class Fake:
        def get(self, key, db=None):
            return key * 2 if db == "d" else None

    assert _txn.get_many(Fake(), "d", [b"a", b"b"]) == [b"aa", b"bb"]


EVENTS = st.dictionaries(
    st.integers(0, 2**64 - 1), st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=300)), max_size=30
)


@settings(max_examples=60, deadline=None)
@given(stored=EVENTS, extra=st.lists(st.integers(0, 2**64 - 1), max_size=5))
def test_get_events_equals_decoding_get_many(env, stored, extra):
    from twittercore import _codec_py
    from twittercore.backends.lmdb import _txn

    db = env.open_db(b"e")
    with env.begin(write=True) as txn:
        txn.drop(db, delete=False)
        for id, (source, payload) in stored.items():
            ((_, value),) = _codec_py.encode_events(0, [(source, payload)], 1.5)
            txn.put(_codec_py.be_keys([id])[0], value, db=db)
        ids = list(stored)
        want = [(id, *stored[id], 1.5) for id in ids]
        assert _txn.get_events(txn, db, ids) == want  # uncommitted writes seen
        assert _codec_py.decode_values(ids, get_many_py(txn, db, _codec_py.be_keys(ids))) == want
    missing = [id for id in extra if id not in stored]
    with env.begin(buffers=True) as txn:
        got = _txn.get_events(txn, db, ids)
        assert got == want and all(type(event).__name__ == "Event" for event in got)
        if missing:
            with pytest.raises(LookupError):
                _txn.get_events(txn, db, ids + missing[:1])


def test_get_events_reports_a_damaged_record_and_a_bad_id(env):
    from twittercore.backends.lmdb import _txn

    db = env.open_db(b"e2")
    with env.begin(write=True) as txn:
        txn.put((7).to_bytes(8, "big"), b"short", db=db)
        with pytest.raises(ValueError, match="event 7: the record is 5 bytes"):
            _txn.get_events(txn, db, [7])
        with pytest.raises(OverflowError):
            _txn.get_events(txn, db, [-1])


def _heads_tables(env):
    """Empty ``following`` (dupfixed) and ``logs`` tables for the get_heads tests."""
    f = env.open_db(b"f", dupsort=True, dupfixed=True)
    logs = env.open_db(b"l")
    with env.begin(write=True) as txn:
        txn.drop(f, delete=False)
        txn.drop(logs, delete=False)
    return f, logs


@settings(max_examples=40, deadline=None)
@given(
    following=st.dictionaries(st.integers(0, 40), st.sets(st.integers(0, 2**64 - 1), max_size=1200), max_size=4),
    heads=st.dictionaries(st.integers(0, 2**64 - 1), st.binary(max_size=100), max_size=50),
    sink=st.integers(0, 45),
)
def test_get_heads_equals_its_twin(env, following, heads, sink):
    from twittercore.backends.lmdb import _txn
    from twittercore.backends.lmdb.read import get_heads_py

    # Up to 1,200 sources a sink: past one page of dupfixed values, so the
    # compiled walk crosses pages (MDB_NEXT_MULTIPLE) and a sub-database.
    f, logs = _heads_tables(env)
    tag = b"\xff" * 8
    with env.begin(write=True) as txn:
        for s, sources in following.items():
            for source in sources:
                txn.put(s.to_bytes(8, "big"), source.to_bytes(8, "big"), db=f, dupdata=True)
        some = sorted(following.get(sink, ()))[:20]
        for source, head in list(heads.items()) + [(x, b"h%d" % x) for x in some]:
            txn.put(source.to_bytes(8, "big") + tag, head, db=logs)
        key = sink.to_bytes(8, "big")
        want = get_heads_py(txn, f, logs, key, tag)
        assert _txn.get_heads(txn, f, logs, key, tag) == want
        expected = sorted(following.get(sink, ()))
        assert want[0] == b"".join(x.to_bytes(8, "big") for x in expected)
    with env.begin(buffers=True) as txn:
        sources, got = _txn.get_heads(txn, f, logs, key, tag)
        assert (sources, got) == (want[0], [None if h is None else bytes(h) for h in want[1]])


def test_get_heads_reads_a_sink_of_many_pages_of_sources(env):
    from twittercore.backends.lmdb import _txn
    from twittercore.backends.lmdb.read import get_heads_py

    f, logs = _heads_tables(env)
    tag = b"\xff" * 8
    with env.begin(write=True) as txn:
        sources = [n * 7919 for n in range(5_000)]  # ~10 pages of 8-byte values
        for source in sources:
            txn.put((3).to_bytes(8, "big"), source.to_bytes(8, "big"), db=f, dupdata=True)
            if source % 3 == 0:
                txn.put(source.to_bytes(8, "big") + tag, b"%d" % source, db=logs)
        packed, heads = _txn.get_heads(txn, f, logs, (3).to_bytes(8, "big"), tag)
        assert (packed, heads) == get_heads_py(txn, f, logs, (3).to_bytes(8, "big"), tag)
        assert packed == b"".join(s.to_bytes(8, "big") for s in sources)
        assert heads == [b"%d" % s if s % 3 == 0 else None for s in sources]
        assert _txn.get_heads(txn, f, logs, (4).to_bytes(8, "big"), tag) == (b"", [])
        txn.put((5).to_bytes(8, "big"), (3).to_bytes(8, "big"), db=f, dupdata=True)  # one source: no dup page
        assert _txn.get_heads(txn, f, logs, (5).to_bytes(8, "big"), tag) == ((3).to_bytes(8, "big"), [None])
        txn.put((3).to_bytes(8, "big") + tag, b"h", db=logs)
        assert _txn.get_heads(txn, f, logs, (5).to_bytes(8, "big"), tag) == ((3).to_bytes(8, "big"), [b"h"])
