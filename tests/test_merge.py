"""The merge kernel: the compiled ``_merge`` and its twin ``_merge_py`` against a reference.

Every test takes the ``merge`` fixture, so it runs once per module: the twin
always, the compiled module when it is built (``test_kernel_switch`` fails if
it should be and is not).  The reference is ``sorted`` over a set: slow,
obviously right.
"""

from __future__ import annotations

import array
import doctest
import importlib
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twittercore import InvalidArgumentError

MAX_ID = 2**64 - 1
MODULES = {"python": "twittercore._merge_py", "cython": "twittercore._merge"}


@pytest.fixture(params=list(MODULES), scope="module")
def merge(request):
    try:
        return importlib.import_module(MODULES[request.param])
    except ImportError:
        pytest.skip("the compiled kernel is not built (TWITTERCORE_NO_EXTENSIONS build)")


# ---------------------------------------------------------------- references


def ref_newest(runs, limit, lo=0, hi=MAX_ID):
    return sorted({i for run in runs if run is not None for i in run if lo < i <= hi}, reverse=True)[:limit]


def ref_oldest(runs, limit, lo=0, hi=MAX_ID):
    return sorted({i for run in runs if run is not None for i in run if lo < i <= hi})[:limit]


def ref_floored(heads, limit, lo=0, hi=MAX_ID):
    """heads: (floor, ids) pairs or None; the twin's documented semantics, spelled out."""
    ids = ref_newest([None if h is None else h[1] for h in heads], limit, lo, hi)
    full = len(ids) == limit
    incomplete = [
        i for i, h in enumerate(heads) if h is not None and min(h[0], hi) > lo and (not full or min(h[0], hi) > ids[-1])
    ]
    return ids, incomplete


# ------------------------------------------------------------------- buffers

KINDS = ["bytes", "bytearray", "memoryview", "array", "unaligned", "view_of_view"]


def as_buffer(merge, ids, kind):
    """``ids`` packed as one of the buffer kinds a caller may hand in."""
    data = merge.pack(ids)
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "array":  # a buffer exporter the kernel has no fast path for
        return array.array("Q", ids)
    if kind == "unaligned":  # LMDB values are only 2-byte aligned
        return memoryview(b"\0" + data)[1:]
    if kind == "view_of_view":  # a 'Q' view, as struct-minded callers make
        return memoryview(bytearray(data)).cast("Q")
    raise AssertionError(kind)


small_ids = st.one_of(
    st.integers(0, 40),
    st.integers(MAX_ID - 8, MAX_ID),
    st.integers(0, MAX_ID),
)
# A run holds each id once (it is one stream's ids); ids repeat across runs.
run_strategy = st.lists(small_ids, max_size=12, unique=True).map(sorted)
runs_strategy = st.lists(st.one_of(st.none(), run_strategy), max_size=10)
bound = st.one_of(small_ids, st.just(0), st.just(MAX_ID))
limits = st.one_of(st.integers(1, 20), st.just(10**30))
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------- properties


@PROPS
@given(runs=runs_strategy, limit=limits, lo=bound, hi=bound, kind=st.sampled_from(KINDS))
def test_newest_matches_reference(merge, runs, limit, lo, hi, kind):
    buffers = [None if r is None else as_buffer(merge, r, kind) for r in runs]
    assert merge.newest(buffers, limit, lo, hi) == ref_newest(runs, limit, lo, hi)


@PROPS
@given(runs=runs_strategy, limit=limits, lo=bound, hi=bound, kind=st.sampled_from(KINDS))
def test_oldest_matches_reference(merge, runs, limit, lo, hi, kind):
    buffers = [None if r is None else as_buffer(merge, r, kind) for r in runs]
    assert merge.oldest(buffers, limit, lo, hi) == ref_oldest(runs, limit, lo, hi)


@PROPS
@given(
    heads=st.lists(st.one_of(st.none(), st.tuples(small_ids, run_strategy)), max_size=8),
    limit=limits,
    lo=bound,
    hi=bound,
    kind=st.sampled_from(KINDS),
)
def test_newest_floored_matches_reference(merge, heads, limit, lo, hi, kind):
    buffers = [None if h is None else as_buffer(merge, [h[0], len(h[1])] + h[1], kind) for h in heads]
    assert merge.newest_floored(buffers, limit, lo, hi) == ref_floored(heads, limit, lo, hi)


@PROPS
@given(
    streams=st.lists(st.lists(st.integers(1, 60), max_size=15, unique=True).map(sorted), max_size=6),
    cuts=st.lists(st.integers(0, 15), min_size=6, max_size=6),
    limit=st.integers(1, 12),
    lo=st.integers(0, 61),
    hi=st.integers(0, 61),
)
def test_newest_floored_incomplete_is_exactly_what_matters(merge, streams, cuts, limit, lo, hi):
    """Heads are the newest parts of real streams; ``incomplete`` must be sound and tight.

    Sound: loading the rest of every head *not* reported changes nothing.
    Tight: for every head reported, some id it may hold unloaded (any id
    ``<= floor``) would change the answer.
    """
    heads = []
    for stream, cut in zip(streams, cuts):
        cut = min(cut, len(stream))
        loaded, unloaded = stream[cut:], stream[:cut]
        heads.append((unloaded[-1] if unloaded else 0, loaded))
    buffers = [merge.pack([floor, len(ids)] + ids) for floor, ids in heads]
    ids, incomplete = merge.newest_floored(buffers, limit, lo, hi)
    assert ids == ref_newest([h[1] for h in heads], limit, lo, hi)
    # sound
    fuller = [stream if i not in incomplete else heads[i][1] for i, stream in enumerate(streams)]
    assert ref_newest(fuller, limit, lo, hi) == ids
    if not incomplete:
        assert ids == ref_newest(streams, limit, lo, hi)
    # tight: the adversarial unloaded id is the largest one allowed
    for i in incomplete:
        x = min(heads[i][0], hi)
        if x in ids:
            continue  # a duplicate changes nothing, but ids just below it might
        assert ref_newest([h[1] for h in heads] + [[x]], limit, lo, hi) != ids


# ---------------------------------------------------------------- edge cases


def test_empty_and_none(merge):
    assert merge.newest([], 5) == []
    assert merge.oldest([], 5) == []
    assert merge.newest([None, b"", None], 5) == []
    assert merge.newest_floored([], 5) == ([], [])
    assert merge.newest_floored([None, merge.pack([0, 0])], 5) == ([], [])


def test_duplicates_across_runs(merge):
    runs = [merge.pack([1, 2, 3, 5]), merge.pack([2, 3, 4]), merge.pack([3, 5])]
    assert merge.newest(runs, 10) == [5, 4, 3, 2, 1]
    assert merge.oldest(runs, 3) == [1, 2, 3]


@pytest.mark.parametrize("k", [1, 63, 64, 65, 300])
def test_many_identical_runs(merge, k):
    """Every run ties: the threshold admits few runs and the rest must join later."""
    run = merge.pack(list(range(1, 101)))
    runs = [run] * k
    assert merge.newest(runs, 50) == list(range(100, 50, -1))
    assert merge.oldest(runs, 70) == list(range(1, 71))
    assert merge.newest(runs, 10**6) == list(range(100, 0, -1))


@pytest.mark.parametrize("k,limit", [(10, 5), (200, 50), (200, 100), (1000, 50)])
def test_many_runs_interleaved(merge, k, limit):
    """Past the stack buffers: run r holds r, r+k, r+2k, ..."""
    runs = [merge.pack(list(range(r, 20 * k, k))) for r in range(1, k + 1)]
    everything = [run for r in range(1, k + 1) for run in [list(range(r, 20 * k, k))]]
    assert merge.newest(runs, limit) == ref_newest(everything, limit)
    assert merge.oldest(runs, limit) == ref_oldest(everything, limit)
    assert merge.newest(runs, limit, lo=k, hi=3 * k) == ref_newest(everything, limit, k, 3 * k)
    assert merge.oldest(runs, limit, lo=k, hi=3 * k) == ref_oldest(everything, limit, k, 3 * k)


def test_one_run_dominates(merge):
    """A prolific source holds the whole answer; the others are older."""
    runs = [merge.pack(list(range(1000, 1100)))] + [merge.pack([i]) for i in range(1, 200)]
    assert merge.newest(runs, 50) == list(range(1099, 1049, -1))


def test_bounds(merge):
    runs = [merge.pack([1, 4, 9]), merge.pack([2, 3, 10])]
    assert merge.newest(runs, 10, lo=5, hi=5) == []
    assert merge.newest(runs, 10, lo=9, hi=3) == []
    assert merge.oldest(runs, 10, lo=9, hi=3) == []
    assert merge.newest(runs, 10, lo=3, hi=9) == [9, 4]
    assert merge.oldest(runs, 10, lo=3, hi=9) == [4, 9]
    assert merge.newest(runs, 10, lo=0, hi=0) == []
    assert merge.newest(runs, 10, lo=MAX_ID, hi=MAX_ID) == []


def test_extreme_ids(merge):
    top = [MAX_ID - 2, MAX_ID - 1, MAX_ID]
    runs = [merge.pack([0, 1] + top), merge.pack([MAX_ID])]
    assert merge.newest(runs, 2) == [MAX_ID, MAX_ID - 1]
    assert merge.newest(runs, 9, hi=MAX_ID - 1) == [MAX_ID - 1, MAX_ID - 2, 1]
    assert merge.oldest(runs, 9, lo=MAX_ID - 1) == [MAX_ID]
    assert merge.oldest(runs, 2) == [1, MAX_ID - 2]  # 0 is never in (lo, hi]
    assert merge.unpack(merge.pack(top)) == top
    assert merge.newest_floored([merge.pack([MAX_ID, 0])], 3, hi=MAX_ID - 1) == ([], [0])


def test_limit_larger_than_total(merge):
    runs = [merge.pack([1, 2]), merge.pack([3])]
    assert merge.newest(runs, 1000) == [3, 2, 1]
    assert merge.newest(runs, 2**70) == [3, 2, 1]
    assert merge.oldest(runs, 2**70) == [1, 2, 3]


def test_any_iterable_of_runs(merge):
    runs = (merge.pack([i]) for i in range(5))
    assert merge.newest(runs, 3) == [4, 3, 2]
    assert merge.oldest(tuple(merge.pack([i]) for i in range(5)), 2) == [1, 2]  # 0 is never > lo


def test_floored_semantics(merge):
    p = merge.pack
    # head 0 loaded everything (floor 0); head 1 stops at 5: ids <= 5 unloaded
    heads = [p([0, 3, 1, 2, 3]), p([5, 2, 6, 8])]
    assert merge.newest_floored(heads, 2) == ([8, 6], [])  # full, 6 > 5: done
    assert merge.newest_floored(heads, 3) == ([8, 6, 3], [1])  # 4 or 5 could come next
    assert merge.newest_floored(heads, 2, hi=7) == ([6, 3], [1])
    assert merge.newest_floored(heads, 5, lo=5) == ([8, 6], [])  # unloaded ids are <= lo
    assert merge.newest_floored([None] + heads, 3) == ([8, 6, 3], [2])  # indexes count None
    assert merge.newest_floored([p([9, 0])], 1) == ([], [0])  # nothing loaded, more to load


def test_inputs_are_not_modified(merge):
    data = bytearray(merge.pack([1, 2, 3]))
    merge.newest([data], 2)
    merge.oldest([memoryview(data)], 2)
    assert merge.unpack(data) == [1, 2, 3]


# -------------------------------------------------------------------- errors

BAD_RUNS = [
    pytest.param([b"\0" * 7], id="length-not-multiple-of-8"),
    pytest.param([b"", b"\0" * 12], id="second-run-bad-length"),
    pytest.param([[1, 2, 3]], id="list-of-ints"),
    pytest.param(["abc"], id="str"),
    pytest.param([5], id="int"),
    pytest.param(5, id="not-iterable"),
    pytest.param(None, id="runs-none"),
    pytest.param(b"\0" * 8, id="bare-bytes"),
    pytest.param([memoryview(bytes(32))[::2]], id="non-contiguous-view"),
]


@pytest.mark.parametrize("runs", BAD_RUNS)
@pytest.mark.parametrize("fn", ["newest", "oldest", "newest_floored"])
def test_bad_runs(merge, fn, runs):
    with pytest.raises(InvalidArgumentError):
        getattr(merge, fn)(runs, 5)
    with pytest.raises(InvalidArgumentError):  # checked even when no id is in bounds
        getattr(merge, fn)(runs, 5, lo=3, hi=3)


def test_released_memoryview(merge):
    view = memoryview(merge.pack([1, 2]))
    view.release()
    for fn in (merge.newest, merge.oldest, merge.newest_floored):
        with pytest.raises(InvalidArgumentError):
            fn([merge.pack([3]), view], 5)
    with pytest.raises(InvalidArgumentError):
        merge.unpack(view)


@pytest.mark.parametrize("head", [b"", b"\0" * 8], ids=["no-header", "half-header"])
def test_head_shorter_than_header(merge, head):
    with pytest.raises(InvalidArgumentError, match="header"):
        merge.newest_floored([merge.pack([0, 0]), head], 5)
    # a plain run of that length is fine
    assert merge.newest([head], 5) == []


@pytest.mark.parametrize("limit", [0, -1, 1.5, "3", None, -(2**70)])
def test_bad_limit(merge, limit):
    for fn in (merge.newest, merge.oldest, merge.newest_floored):
        with pytest.raises(InvalidArgumentError, match="limit"):
            fn([merge.pack([1])], limit)


@pytest.mark.parametrize("value", [-1, 2**64, 1.0, "1", None])
def test_bad_bounds(merge, value):
    for fn in (merge.newest, merge.oldest, merge.newest_floored):
        with pytest.raises(InvalidArgumentError, match="lo"):
            fn([merge.pack([1])], 5, lo=value)
        with pytest.raises(InvalidArgumentError, match="hi"):
            fn([merge.pack([1])], 5, hi=value)


def test_index_like_arguments(merge):
    """Anything with __index__ (numpy scalars, bool) is an int, as in the twin."""

    class Ix:
        def __init__(self, v):
            self.v = v

        def __index__(self):
            return self.v

    runs = [merge.pack([1, 5, 9])]
    assert merge.newest(runs, Ix(2), Ix(1), Ix(8)) == [5]
    assert merge.newest(runs, True) == [9]


@pytest.mark.parametrize("ids", [[-1], [2**64], [1.5], ["1"], 5, None])
def test_pack_rejects(merge, ids):
    with pytest.raises(InvalidArgumentError):
        merge.pack(ids)


@pytest.mark.parametrize("buffer", [b"\0" * 9, 5, "abcdefgh", None, [1]])
def test_unpack_rejects(merge, buffer):
    with pytest.raises(InvalidArgumentError):
        merge.unpack(buffer)


def test_errors_are_value_errors(merge):
    """InvalidArgumentError derives from ValueError, so older callers still catch it."""
    with pytest.raises(ValueError):
        merge.newest([], 0)


# ------------------------------------------------------------------ the rest


def test_pack_unpack_round_trip(merge):
    ids = [0, 1, 2**32, MAX_ID]
    assert merge.unpack(merge.pack(ids)) == ids
    assert merge.pack(ids) == array.array("Q", ids).tobytes()
    assert merge.pack(iter(ids)) == merge.pack(ids)
    assert merge.unpack(b"") == []
    assert merge.unpack(memoryview(b"\0" + merge.pack(ids))[1:]) == ids


def test_constants(merge):
    assert merge.MAX_ID == MAX_ID
    assert merge.HEADER_WORDS == 2


def test_doctests(merge):
    result = doctest.testmod(merge, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_same_public_surface():
    twin = importlib.import_module(MODULES["python"])
    try:
        compiled = importlib.import_module(MODULES["cython"])
    except ImportError:
        pytest.skip("the compiled kernel is not built")
    names = ["newest", "oldest", "newest_floored", "pack", "unpack", "MAX_ID", "HEADER_WORDS"]
    for name in names:
        assert hasattr(twin, name) and hasattr(compiled, name), name
    assert sys.modules[MODULES["cython"]] is compiled


@pytest.mark.parametrize("seed", range(4))
def test_random_overlapping_runs(merge, seed):
    """Larger, seeded inputs (past the stack buffers, with ties) against the reference."""
    import random

    rng = random.Random(seed)
    k = rng.choice([70, 200, 500])
    runs = [sorted(rng.sample(range(1, 3000), rng.randint(0, 40))) for _ in range(k)]
    buffers = [as_buffer(merge, r, rng.choice(KINDS)) if rng.random() > 0.05 else None for r in runs]
    runs = [None if b is None else r for r, b in zip(runs, buffers)]
    for _ in range(10):
        limit = rng.choice([1, 7, 50, 64, 65, 200, 5000])
        lo, hi = sorted(rng.sample(range(3100), 2))
        assert merge.newest(buffers, limit, lo, hi) == ref_newest(runs, limit, lo, hi)
        assert merge.oldest(buffers, limit, lo, hi) == ref_oldest(runs, limit, lo, hi)
        assert merge.newest(buffers, limit) == ref_newest(runs, limit)
