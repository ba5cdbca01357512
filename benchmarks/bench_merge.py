"""Microbenchmarks of the merge kernel: compiled vs twin vs ``heapq.merge``.

A home read merges k runs (one per followed source, ~200 ids each) into the
newest 50.  Run with::

    .venv/bin/python -m pytest benchmarks/bench_merge.py --benchmark-only \\
        --benchmark-group-by=param:k --benchmark-columns=median,iqr,rounds

and compare ratios within one run only (the machine is shared; see
PERF_FACTS.md).  Implementations:

``cython``            ``_merge.newest`` over ``bytes`` runs
``cython-memoryview`` the same over ``memoryview`` runs (py-lmdb ``buffers=True``),
                      read through the view's own ``Py_buffer``
``cython-exported``   the same over ``array('Q')`` runs: the generic path, one
                      ``PyObject_GetBuffer``/``PyBuffer_Release`` per run
``python``            the twin ``_merge_py.newest`` over ``bytes`` runs
``heapq``             what a user would write: ``islice(heapq.merge(...))`` over
                      lists of ints already in memory (no decoding, no dedupe)
"""

from __future__ import annotations

import heapq
import random
from array import array
from functools import cache
from itertools import islice

import pytest

from twittercore import _merge_py

try:
    from twittercore import _merge
except ImportError:  # a TWITTERCORE_NO_EXTENSIONS build
    _merge = None

LIMIT = 50
RUN_LENGTH = 200
KS = [10, 100, 1000, 5000]
IMPLS = ["cython", "cython-memoryview", "cython-exported", "python", "heapq"]


@cache
def lists(k: int) -> list[list[int]]:
    """k ascending runs of RUN_LENGTH/2..3*RUN_LENGTH/2 ids (seeded).

    Ids are drawn without replacement from one store-wide space, as each
    event belongs to one source, so every implementation gives the same answer.
    """
    rng = random.Random(k)
    lengths = [rng.randint(RUN_LENGTH // 2, 3 * RUN_LENGTH // 2) for _ in range(k)]
    ids = rng.sample(range(1, 10 * sum(lengths)), sum(lengths))
    runs, at = [], 0
    for n in lengths:
        runs.append(sorted(ids[at : at + n]))
        at += n
    return runs


@cache
def packed(k: int) -> list[bytes]:
    return [_merge_py.pack(run) for run in lists(k)]


def heapq_newest(runs: list[list[int]], limit: int) -> list[int]:
    return list(islice(heapq.merge(*(reversed(run) for run in runs), reverse=True), limit))


def workload(impl: str, k: int):
    """(function, args) for one implementation at fan-in k."""
    if impl.startswith("cython"):
        if _merge is None:
            pytest.skip("the compiled kernel is not built")
        runs = packed(k)
        if impl == "cython-memoryview":
            runs = [memoryview(run) for run in runs]
        elif impl == "cython-exported":
            runs = [array("Q", run) for run in lists(k)]
        return _merge.newest, (runs, LIMIT)
    if impl == "python":
        return _merge_py.newest, (packed(k), LIMIT)
    return heapq_newest, (lists(k), LIMIT)


@pytest.mark.benchmark(group="merge-newest", min_rounds=20, max_time=0.3, warmup=True)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("impl", IMPLS)
def test_newest(benchmark, impl, k):
    fn, args = workload(impl, k)
    expected = sorted({i for run in lists(k) for i in run}, reverse=True)[:LIMIT]
    result = benchmark(fn, *args)
    assert result == expected
