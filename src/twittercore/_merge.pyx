# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""k-way merge of sorted id runs, compiled.  Twin: :mod:`twittercore._merge_py`.

Layouts (see the twin's docstring): a *run* is a buffer of native uint64 ids,
ascending; a *head* is a run behind a two-word header ``[floor, count]``.

The inner loop touches no Python object: each run is reduced once to a
``(pointer, start, stop)`` triple (bytes through ``PyBytes_AS_STRING``, other
buffers through one ``PyObject_GetBuffer``), then a binary heap of C structs
picks the newest ids.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

MAX_ID = 0xFFFFFFFFFFFFFFFF
HEADER_WORDS = 2

cdef struct Run:
    const uint64_t* ids
    Py_ssize_t lo       # first index still in bounds
    Py_ssize_t pos      # next index to take (newest: walks down; oldest: walks up)
    Py_ssize_t index    # position of the run in the caller's sequence


cdef class _Runs:
    """Borrowed C views of a sequence of buffers; releases them on dealloc."""
    cdef Run* runs
    cdef Py_buffer* views
    cdef Py_ssize_t n
    cdef Py_ssize_t nviews
    cdef uint64_t* floors

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.nviews):
            PyBuffer_Release(&self.views[i])
        free(self.runs)
        free(self.views)
        free(self.floors)


cdef inline Py_ssize_t _upper(const uint64_t* ids, Py_ssize_t lo, Py_ssize_t hi, uint64_t key) nogil:
    """First index in [lo, hi) whose id is > key (ids ascending)."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ids[mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef _Runs _prepare(object runs, Py_ssize_t header, uint64_t lo, uint64_t hi, bint newest_first):
    """Reduce each buffer to the slice of ids in (lo, hi]; drop empty ones."""
    cdef list seq = runs if type(runs) is list else list(runs)
    cdef Py_ssize_t k = PyList_GET_SIZE(seq)
    cdef _Runs out = _Runs.__new__(_Runs)
    cdef Py_ssize_t i, count, start, stop
    cdef PyObject* item
    cdef const uint64_t* words
    cdef Py_buffer* view
    out.runs = <Run*> malloc((k + 1) * sizeof(Run))
    out.views = <Py_buffer*> malloc((k + 1) * sizeof(Py_buffer))
    out.floors = <uint64_t*> malloc((k + 1) * sizeof(uint64_t))
    if out.runs == NULL or out.views == NULL or out.floors == NULL:
        raise MemoryError()
    for i in range(k):
        item = PyList_GET_ITEM(seq, i)
        if <object> item is None:
            continue
        if type(<object> item) is bytes:
            words = <const uint64_t*> PyBytes_AS_STRING(<object> item)
            count = PyBytes_GET_SIZE(<object> item) >> 3
        else:
            view = &out.views[out.nviews]
            PyObject_GetBuffer(<object> item, view, PyBUF_SIMPLE)
            out.nviews += 1
            words = <const uint64_t*> view.buf
            count = view.len >> 3
        if count < header:
            raise ValueError(f"runs[{i}]: a head needs its {header}-word header")
        if header:
            out.floors[out.n] = words[0]
        words += header
        count -= header
        # Fast path: most reads have no max_id, so the newest id is in bounds.
        if count and words[count - 1] <= hi:
            stop = count
        else:
            stop = _upper(words, 0, count, hi)
        if stop and words[0] > lo:
            start = 0
        else:
            start = _upper(words, 0, stop, lo)
        out.runs[out.n].ids = words
        out.runs[out.n].lo = start
        out.runs[out.n].index = i
        if newest_first:
            out.runs[out.n].pos = stop - 1
            if stop <= start:
                out.runs[out.n].pos = -1
        else:
            out.runs[out.n].pos = start
            out.runs[out.n].lo = stop  # for ascending walks `lo` holds the end
        out.n += 1
    return out


# A binary heap of run indexes keyed by each run's current id.
cdef inline uint64_t _key(Run* runs, Py_ssize_t r) nogil:
    return runs[r].ids[runs[r].pos]


cdef void _sift_down(Run* runs, Py_ssize_t* heap, Py_ssize_t size, Py_ssize_t at, bint max_heap) nogil:
    cdef Py_ssize_t child, item = heap[at]
    cdef uint64_t key = _key(runs, item), ck
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size:
            if max_heap:
                if _key(runs, heap[child + 1]) > _key(runs, heap[child]):
                    child += 1
            elif _key(runs, heap[child + 1]) < _key(runs, heap[child]):
                child += 1
        ck = _key(runs, heap[child])
        if (max_heap and ck <= key) or (not max_heap and ck >= key):
            break
        heap[at] = heap[child]
        at = child
    heap[at] = item


cdef Py_ssize_t _merge(Run* runs, Py_ssize_t n, Py_ssize_t limit, uint64_t* out, bint newest_first) nogil:
    cdef Py_ssize_t* heap = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t size = 0, i, got = 0, r
    cdef uint64_t id
    if heap == NULL:
        return -1
    for i in range(n):
        if newest_first:
            if runs[i].pos >= runs[i].lo:
                heap[size] = i
                size += 1
        elif runs[i].pos < runs[i].lo:
            heap[size] = i
            size += 1
    i = size // 2 - 1
    while i >= 0:
        _sift_down(runs, heap, size, i, newest_first)
        i -= 1
    while size and got < limit:
        r = heap[0]
        id = _key(runs, r)
        if got == 0 or out[got - 1] != id:
            out[got] = id
            got += 1
        if newest_first:
            runs[r].pos -= 1
            if runs[r].pos < runs[r].lo:
                size -= 1
                heap[0] = heap[size]
        else:
            runs[r].pos += 1
            if runs[r].pos >= runs[r].lo:
                size -= 1
                heap[0] = heap[size]
        if size:
            _sift_down(runs, heap, size, 0, newest_first)
    free(heap)
    return got


cdef list _to_list(uint64_t* ids, Py_ssize_t n):
    cdef list out = [None] * n
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = ids[i]
    return out


cdef list _collect(_Runs prepared, Py_ssize_t limit, bint newest_first):
    if limit <= 0:
        raise ValueError("limit must be positive")
    cdef uint64_t* buf = <uint64_t*> malloc(limit * sizeof(uint64_t))
    cdef Py_ssize_t got
    if buf == NULL:
        raise MemoryError()
    with nogil:
        got = _merge(prepared.runs, prepared.n, limit, buf, newest_first)
    try:
        if got < 0:
            raise MemoryError()
        return _to_list(buf, got)
    finally:
        free(buf)


def newest(runs, Py_ssize_t limit, uint64_t lo=0, uint64_t hi=MAX_ID):
    """The ``limit`` largest distinct ids in ``(lo, hi]`` over all runs, descending.

    O(k + limit log k) for k runs.

    >>> newest([pack([1, 4, 9]), pack([2, 3, 10])], 3)
    [10, 9, 4]
    """
    return _collect(_prepare(runs, 0, lo, hi, True), limit, True)


def oldest(runs, Py_ssize_t limit, uint64_t lo=0, uint64_t hi=MAX_ID):
    """The ``limit`` smallest distinct ids in ``(lo, hi]`` over all runs, ascending.

    >>> oldest([pack([1, 4, 9]), pack([2, 3, 10])], 3, lo=1)
    [2, 3, 4]
    """
    return _collect(_prepare(runs, 0, lo, hi, False), limit, False)


def newest_floored(heads, Py_ssize_t limit, uint64_t lo=0, uint64_t hi=MAX_ID):
    """Merge heads like :func:`newest`; also return the indexes of heads too short to be sure.

    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 4)
    ([9, 6, 5], [1])
    """
    cdef _Runs prepared = _prepare(heads, HEADER_WORDS, lo, hi, True)
    cdef list ids = _collect(prepared, limit, True)
    cdef list incomplete = []
    cdef Py_ssize_t i, got = len(ids)
    cdef uint64_t floor, cutoff = lo
    cdef bint full = got == limit
    if full:
        cutoff = ids[got - 1]
    for i in range(prepared.n):
        floor = prepared.floors[i]
        if floor > hi:
            floor = hi
        if floor > lo and (not full or floor > cutoff):
            incomplete.append(prepared.runs[i].index)
    return ids, incomplete


def pack(ids):
    """Pack ints as native uint64 (the run layout)."""
    cdef Py_ssize_t n = len(ids), i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n * 8)
    cdef uint64_t* words = <uint64_t*> PyBytes_AS_STRING(out)
    for i in range(n):
        words[i] = ids[i]
    return out


def unpack(buffer):
    """Unpack a buffer of native uint64 into a list of ints."""
    cdef const unsigned char[:] view = memoryview(buffer).cast("B")
    cdef Py_ssize_t n = view.shape[0] >> 3
    cdef uint64_t* tmp = <uint64_t*> malloc((n + 1) * 8)
    if tmp == NULL:
        raise MemoryError()
    try:
        if n:
            memcpy(tmp, &view[0], n * 8)
        return _to_list(tmp, n)
    finally:
        free(tmp)
