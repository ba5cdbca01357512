# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""k-way merge of sorted id runs, compiled.  Twin: :mod:`twittercore._merge_py`.

Layouts (see the twin's docstring): a *run* is a buffer of native uint64 ids,
strictly ascending; a *head* is a run behind a two-word header
``[floor, count]``.  Same functions, same answers and same errors
(:class:`~twittercore.errors.InvalidArgumentError`) as the twin.

How a call goes (``newest``; ``oldest`` is the mirror image, on keys ``~id``):

1. One pass over the runs reduces each to ``(pointer, position)`` of its
   newest id in bounds (no bisection unless that id is above ``hi``; ``lo``
   is never bisected, the merge just stops there) and keeps the ``limit``
   runs with the largest such ids in a small min-heap ``sel``.  In the usual
   random order the threshold (its root) soon stops moving and a run costs a
   compare: O(k + limit log(k/limit) log limit).
2. Only the runs in ``sel`` enter the merge: any other run starts at or below
   the threshold, and ``limit`` runs start at or above it.  Duplicates across
   runs could still leave the answer short: when the merge falls below the
   threshold, the other runs join the heap then, so the answer is exact.
3. A max-heap of ``(key, run)`` entries, the key held inline so a comparison
   never follows a pointer, pops the answer; a last run drains directly.

No Python object is touched per id, and per run only the object's header and
one id are read.  ``bytes``, ``bytearray`` and ``memoryview`` runs are read in
place (a memoryview through the ``Py_buffer`` it already holds, which saves a
``PyObject_GetBuffer``/``PyBuffer_Release`` pair per run, ~40 ns); any other
buffer is exported with ``PyObject_GetBuffer``.  The GIL is held throughout:
a call lasts microseconds, and holding it is what keeps borrowed pointers
valid (no Python code runs between the scan and the end of the merge).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove

from operator import index as _index

from .errors import InvalidArgumentError

MAX_ID = 0xFFFFFFFFFFFFFFFF
HEADER_WORDS = 2

cdef extern from *:
    """
    #include <string.h>
    /* LMDB hands out values at 2-byte alignment: load through memcpy, which
       compiles to one plain load on the targets we build for. */
    static inline uint64_t tc_load(const char *p, Py_ssize_t i) {
        uint64_t v;
        memcpy(&v, p + 8 * i, 8);
        return v;
    }

    /* Borrow the bytes of a run without PyObject_GetBuffer: 1 and (*p, *len)
       for bytes, and (unless `pinned_only`) for bytearray and C-contiguous
       live memoryviews; 0 when the caller must take a buffer export. */
    static inline int tc_borrow(PyObject *o, int pinned_only, const char **p, Py_ssize_t *len) {
        PyTypeObject *t = Py_TYPE(o);
        if (t == &PyBytes_Type) {
            *p = PyBytes_AS_STRING(o);
            *len = PyBytes_GET_SIZE(o);
            return 1;
        }
        if (pinned_only) return 0;
    #if defined(_Py_MEMORYVIEW_RELEASED) && defined(_Py_MEMORYVIEW_C) && !defined(Py_LIMITED_API)
        if (t == &PyMemoryView_Type) {
            PyMemoryViewObject *mv = (PyMemoryViewObject *)o;
            if ((mv->flags & _Py_MEMORYVIEW_RELEASED) || !(mv->flags & _Py_MEMORYVIEW_C)
                    || mv->view.buf == NULL)
                return 0;
            *p = (const char *)mv->view.buf;
            *len = mv->view.len;
            return 1;
        }
    #endif
        if (t == &PyByteArray_Type) {
            *p = PyByteArray_AS_STRING(o);
            *len = PyByteArray_GET_SIZE(o);
            return 1;
        }
        return 0;
    }
    """
    uint64_t tc_load(const char* p, Py_ssize_t i) nogil
    int tc_borrow(PyObject* o, int pinned_only, const char** p, Py_ssize_t* len)

# Per-call arrays live on the C stack up to this many runs (or ids); only
# bigger calls pay for malloc.
cdef enum:
    STACK = 64


cdef struct Src:
    const char* ids
    Py_ssize_t pos      # index of the run's current id
    Py_ssize_t end      # walking up: the run's length (walking down the end is -1)


cdef struct Entry:
    uint64_t key        # the current id (``~id`` when walking up), inline
    Py_ssize_t src


cdef struct Floor:
    uint64_t floor
    Py_ssize_t index


cdef struct Scan:
    # Filled by _scan, owned by the caller (which frees the arrays).
    Src* src
    Entry* sel            # the best ``limit`` runs: a min-heap while scanning
    Entry* big            # the heap of every run, should _merge need it
    Floor* floors
    Py_buffer* views
    Py_ssize_t n          # runs with ids in bounds
    Py_ssize_t nsel
    bint selected         # runs were left out of ``sel``
    Py_ssize_t nfloors
    Py_ssize_t nviews


cdef inline Py_ssize_t _upper(const char* ids, Py_ssize_t n, uint64_t key) noexcept nogil:
    """First index in ``[0, n)`` whose id is ``> key`` (ids ascending). O(log n)."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if tc_load(ids, mid) <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void _sift_down(Entry* heap, Py_ssize_t size, Py_ssize_t at) noexcept nogil:
    """Max-heap sift-down of ``heap[at]``; the larger child is chosen without a branch."""
    cdef Entry item = heap[at]
    cdef Py_ssize_t child
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size:
            child += heap[child + 1].key > heap[child].key
        if heap[child].key <= item.key:
            break
        heap[at] = heap[child]
        at = child
    heap[at] = item


cdef inline void _replace_top(Entry* heap, Py_ssize_t size, Entry e) noexcept nogil:
    """Put ``e`` at the root of the max-heap and restore order. O(log size).

    In a merge the popped run's next id is usually older than every other
    run's current one, so the hole walks down to a leaf along the larger
    children without a data-dependent branch and ``e`` sifts up from there
    (Floyd's bottom-up heap).
    """
    cdef Py_ssize_t at = 0, child = 1, parent
    while child + 1 < size:
        child += heap[child + 1].key > heap[child].key
        heap[at] = heap[child]
        at = child
        child = 2 * at + 1
    if child < size:
        heap[at] = heap[child]
        at = child
    while at:
        parent = (at - 1) >> 1
        if heap[parent].key >= e.key:
            break
        heap[at] = heap[parent]
        at = parent
    heap[at] = e


cdef inline void _heapify(Entry* heap, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i = size // 2 - 1
    while i >= 0:
        _sift_down(heap, size, i)
        i -= 1


cdef inline void _sel_push(Entry* sel, Py_ssize_t* size, Entry e) noexcept nogil:
    """Push onto the min-heap ``sel``. O(log size)."""
    cdef Py_ssize_t at = size[0], parent
    size[0] += 1
    while at:
        parent = (at - 1) >> 1
        if sel[parent].key <= e.key:
            break
        sel[at] = sel[parent]
        at = parent
    sel[at] = e


cdef inline void _sel_replace(Entry* sel, Py_ssize_t size, Entry e) noexcept nogil:
    """Replace the root of the min-heap ``sel`` with ``e`` (a bigger key). O(log size)."""
    cdef Py_ssize_t at = 0, child
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size:
            child += sel[child + 1].key < sel[child].key
        if sel[child].key >= e.key:
            break
        sel[at] = sel[child]
        at = child
    sel[at] = e


cdef Py_ssize_t _limit(object limit) except -1:
    cdef Py_ssize_t value
    if type(limit) is not int:
        try:
            limit = _index(limit)
        except TypeError:
            raise InvalidArgumentError(
                f"limit: expected an int, got {type(limit).__name__}") from None
    try:
        value = limit
    except OverflowError:
        if limit < 0:
            raise InvalidArgumentError(f"limit: must be positive, got {limit}") from None
        return 0x7FFFFFFFFFFFFFFF  # more than any run can hold: no limit
    if value <= 0:
        raise InvalidArgumentError(f"limit: must be positive, got {limit}")
    return value


cdef uint64_t _bound(object value, object name) except? 0xFFFFFFFFFFFFFFFF:
    """``value`` as a uint64 id; ``name`` says what it was in the error."""
    if type(value) is not int:
        try:
            value = _index(value)
        except TypeError:
            raise InvalidArgumentError(
                f"{name}: expected an int, got {type(value).__name__}") from None
    try:
        return value
    except OverflowError:
        raise InvalidArgumentError(f"{name}: must be in [0, 2**64-1], got {value}") from None


cdef class _Item:
    """Names ``ids[i]`` in an error message without formatting it up front."""
    cdef Py_ssize_t i

    def __str__(self):
        return f"ids[{self.i}]"


cdef void _release(Scan* s):
    cdef Py_ssize_t i
    for i in range(s.nviews):
        PyBuffer_Release(&s.views[i])
    s.nviews = 0


cdef int _export(Scan* s, PyObject* item, Py_ssize_t i, bint pinned_only,
                 const char** p, Py_ssize_t* nbytes) except -1:
    """Take a buffer export of a run ``tc_borrow`` could not read in place.

    Returns 1, taking nothing, unless ``pinned_only``: an export may run
    foreign code, which must not be able to free or move a buffer already
    borrowed, so the caller first pins every item and scans again.
    """
    cdef Py_buffer* view
    if not pinned_only:
        return 1
    view = &s.views[s.nviews]
    try:
        PyObject_GetBuffer(<object> item, view, PyBUF_SIMPLE)
    except (TypeError, ValueError, BufferError) as exc:
        raise InvalidArgumentError(
            f"runs[{i}]: expected a buffer of packed uint64 ids, got "
            f"{type(<object> item).__name__} ({exc})") from None
    s.nviews += 1
    p[0] = <const char*> view.buf
    nbytes[0] = view.len
    return 0


cdef int _bad_length(Py_ssize_t i, Py_ssize_t nbytes) except -1:
    raise InvalidArgumentError(
        f"runs[{i}]: {nbytes} bytes is not a whole number of 8-byte ids "
        "(pack runs with pack())")


cdef int _scan(Scan* s, PyObject** items, Py_ssize_t k, Py_ssize_t header, bint pinned_only,
               Py_ssize_t limit, uint64_t lo, uint64_t hi, bint desc) except -1:
    """One pass over the runs: their bounds, and the best ``limit`` of them in ``s.sel``.

    Returns 1 when the caller must pin the items and scan again (see
    :func:`_export`).  O(k log limit) worst case; O(k + limit log limit log k)
    when the runs come in random order, as the threshold rarely moves.
    """
    cdef Py_ssize_t i, count, pos, m = limit if limit < k else k
    cdef const char* p
    cdef Py_ssize_t nbytes
    cdef uint64_t first, floor
    cdef PyObject* item
    # Locals, not s.*: stores through the arrays would otherwise force
    # every counter back to memory on each run.
    cdef Src* src = s.src
    cdef Entry* sel = s.sel
    cdef Entry e
    cdef Py_ssize_t n = 0, nsel = 0, nfloors = 0
    s.n = s.nsel = s.nfloors = 0
    if desc and not header and lo < hi:
        # The hot loop (every home read), kept free of the other cases.
        for i in range(k):
            item = items[i]
            if item == <PyObject*> None:
                continue
            if not tc_borrow(item, pinned_only, &p, &nbytes):
                if _export(s, item, i, pinned_only, &p, &nbytes):
                    return 1
            if nbytes & 7:
                _bad_length(i, nbytes)
            count = nbytes >> 3
            if count == 0:
                continue
            pos = count - 1
            first = tc_load(p, pos)
            if first > hi:  # rare: only reads with max_id bisect
                pos = _upper(p, count, hi) - 1
                if pos < 0:
                    continue
                first = tc_load(p, pos)
            if first <= lo:
                continue
            src[n].ids = p
            src[n].pos = pos
            e.key = first
            e.src = n
            n += 1
            if nsel < m:
                _sel_push(sel, &nsel, e)
            elif first > sel[0].key:
                _sel_replace(sel, m, e)
    else:
        for i in range(k):
            item = items[i]
            if item == <PyObject*> None:
                continue
            if not tc_borrow(item, pinned_only, &p, &nbytes):
                if _export(s, item, i, pinned_only, &p, &nbytes):
                    return 1
            if nbytes & 7:
                _bad_length(i, nbytes)
            count = nbytes >> 3
            if header:
                if count < header:
                    raise InvalidArgumentError(
                        f"runs[{i}]: a head needs its {header}-word header [floor, count], "
                        f"got {count} words")
                floor = tc_load(p, 0)
                p += 8 * header
                count -= header
                if floor > hi:
                    floor = hi
                if floor > lo:
                    s.floors[nfloors].floor = floor
                    s.floors[nfloors].index = i
                    nfloors += 1
            if count == 0 or lo >= hi:
                continue
            if desc:
                pos = count - 1
                first = tc_load(p, pos)
                if first > hi:
                    pos = _upper(p, count, hi) - 1
                    if pos < 0:
                        continue
                    first = tc_load(p, pos)
                if first <= lo:
                    continue
            else:
                pos = 0
                first = tc_load(p, 0)
                if first <= lo:
                    pos = _upper(p, count, lo)
                    if pos == count:
                        continue
                    first = tc_load(p, pos)
                if first > hi:
                    continue
                src[n].end = count
                first = ~first  # keys are "bigger is better" both ways
            src[n].ids = p
            src[n].pos = pos
            e.key = first
            e.src = n
            n += 1
            if nsel < m:
                _sel_push(sel, &nsel, e)
            elif first > sel[0].key:
                _sel_replace(sel, m, e)
    s.n = n
    s.nsel = nsel
    s.nfloors = nfloors
    s.selected = nsel < n
    return 0


cdef Py_ssize_t _total(Scan* s, bint desc) noexcept nogil:
    """How many ids the runs hold in bounds, at most (``lo`` is not bisected). O(n)."""
    cdef Py_ssize_t i, total = 0
    for i in range(s.n):
        total += s.src[i].pos + 1 if desc else s.src[i].end - s.src[i].pos
    return total


cdef Py_ssize_t _merge(Scan* s, Py_ssize_t limit, uint64_t* out, bint desc,
                       uint64_t lo, uint64_t hi) noexcept nogil:
    """Pop up to ``limit`` distinct ids, best first, into ``out``; returns how many.

    ``s.sel`` becomes the max-heap.  O(limit log limit) unless duplicates
    across runs pull the other runs in (then O(n + limit log n)).
    """
    cdef Entry* heap = s.sel
    cdef Src* src
    cdef Py_ssize_t size = s.nsel, got = 0, i
    cdef Py_ssize_t step = -1 if desc else 1
    cdef uint64_t flip = 0 if desc else 0xFFFFFFFFFFFFFFFF
    cdef uint64_t key, id
    # Every run left out of the heap starts at or below the threshold.
    cdef bint pending = s.selected
    cdef uint64_t threshold = heap[0].key if pending else 0
    # keys of ids in bounds are >= kmin: id > lo walking down, id <= hi walking up
    cdef uint64_t kmin = lo + 1 if desc else ~hi
    if size == 0:
        return 0
    _heapify(heap, size)
    while got < limit:
        if pending and (size == 0 or heap[0].key < threshold):
            # Duplicates across runs left the answer short above the
            # threshold: from here on every run can matter.
            heap = s.big = <Entry*> malloc(s.n * sizeof(Entry))
            if heap == NULL:
                return -1
            size = _reload(s, heap, desc, kmin)
            pending = False
            continue
        if size == 0:
            break
        if size == 1 and not pending:
            # One run left (or k == 1): copy it out.
            src = &s.src[heap[0].src]
            key = heap[0].key
            while True:
                id = key ^ flip
                if got == 0 or out[got - 1] != id:
                    out[got] = id
                    got += 1
                    if got == limit:
                        break
                src.pos += step
                if (src.pos < 0) if desc else (src.pos == src.end):
                    break
                key = tc_load(src.ids, src.pos) ^ flip
                if key < kmin:
                    break
            break
        key = heap[0].key
        id = key ^ flip
        if got == 0 or out[got - 1] != id:
            out[got] = id
            got += 1
        src = &s.src[heap[0].src]
        src.pos += step
        if not ((src.pos < 0) if desc else (src.pos == src.end)):
            key = tc_load(src.ids, src.pos) ^ flip
            if key >= kmin:
                heap[0].key = key
                _replace_top(heap, size, heap[0])
                continue
        size -= 1
        _replace_top(heap, size, heap[size])
    return got


cdef Py_ssize_t _reload(Scan* s, Entry* heap, bint desc, uint64_t kmin) noexcept nogil:
    """Rebuild the heap from every run's current position; returns its size. O(n)."""
    cdef Py_ssize_t i, size = 0
    cdef uint64_t flip = 0 if desc else 0xFFFFFFFFFFFFFFFF, key
    cdef Src* src
    for i in range(s.n):
        src = &s.src[i]
        if (src.pos < 0) if desc else (src.pos == src.end):
            continue
        key = tc_load(src.ids, src.pos) ^ flip
        if key < kmin:
            continue
        heap[size].key = key
        heap[size].src = i
        size += 1
    _heapify(heap, size)
    return size


cdef list _to_list(const uint64_t* ids, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef object value
    for i in range(n):
        value = PyLong_FromUnsignedLongLong(ids[i])
        Py_INCREF(value)  # PyList_SET_ITEM steals a reference
        PyList_SET_ITEM(out, i, value)
    return out


cdef object _run(object runs, object limit_, object lo_, object hi_, Py_ssize_t header,
                 bint desc, list incomplete):
    """The shared body of newest / oldest / newest_floored."""
    cdef Py_ssize_t limit = _limit(limit_)
    cdef uint64_t lo = _bound(lo_, "lo"), hi = _bound(hi_, "hi")
    cdef object seq
    try:
        seq = PySequence_Fast(runs, "")
    except TypeError:
        raise InvalidArgumentError(
            f"runs: expected a sequence of buffers, got {type(runs).__name__}") from None
    cdef Py_ssize_t k = PySequence_Fast_GET_SIZE(seq), m = limit if limit < k else k
    cdef Py_ssize_t got = 0, cap, i
    cdef Scan s
    cdef Src stack_src[STACK]
    cdef Entry stack_sel[STACK]
    cdef uint64_t stack_out[STACK]
    cdef Floor stack_floors[STACK]
    cdef uint64_t* out = stack_out
    cdef uint64_t cutoff
    cdef bint full
    s.src = stack_src
    s.sel = stack_sel
    s.floors = stack_floors
    s.views = NULL
    s.big = NULL
    s.nviews = 0
    try:
        if k > STACK:
            s.src = <Src*> malloc(k * sizeof(Src))
            if header:
                s.floors = <Floor*> malloc(k * sizeof(Floor))
            if s.src == NULL or s.floors == NULL:
                raise MemoryError()
        if m > STACK:
            s.sel = <Entry*> malloc(m * sizeof(Entry))
            if s.sel == NULL:
                raise MemoryError()
        if _scan(&s, PySequence_Fast_ITEMS(seq), k, header, False, limit, lo, hi, desc):
            # Pin every item (a tuple of our own) and export every buffer
            # that is not immutable bytes.
            seq = tuple(seq)
            s.views = <Py_buffer*> malloc(k * sizeof(Py_buffer))
            if s.views == NULL:
                raise MemoryError()
            _scan(&s, PySequence_Fast_ITEMS(seq), k, header, True, limit, lo, hi, desc)
        cap = limit
        if cap > STACK:
            cap = _total(&s, desc)
            if cap > limit:
                cap = limit
        if cap > STACK:
            out = <uint64_t*> malloc(cap * sizeof(uint64_t))
            if out == NULL:
                raise MemoryError()
        got = _merge(&s, limit, out, desc, lo, hi)
        if got < 0:
            raise MemoryError()
        ids = _to_list(out, got)
        if header:
            full = got == limit
            cutoff = out[got - 1] if full else 0
            for i in range(s.nfloors):
                if not full or s.floors[i].floor > cutoff:
                    incomplete.append(s.floors[i].index)
        return ids
    finally:
        _release(&s)
        free(s.views)
        free(s.big)
        if out != stack_out:
            free(out)
        if s.src != stack_src:
            free(s.src)
        if s.sel != stack_sel:
            free(s.sel)
        if s.floors != stack_floors:
            free(s.floors)


def newest(runs, limit, lo=0, hi=MAX_ID):
    """The ``limit`` largest distinct ids in ``(lo, hi]`` over all runs, descending.

    O(k + limit log limit) for k runs, typically; ``None`` runs are skipped.

    >>> newest([pack([1, 4, 9]), pack([2, 3, 10])], 3)
    [10, 9, 4]
    >>> newest([pack([1, 4, 9]), None, pack([2, 3, 10])], 10, lo=2, hi=9)
    [9, 4, 3]
    """
    return _run(runs, limit, lo, hi, 0, True, None)


def oldest(runs, limit, lo=0, hi=MAX_ID):
    """The ``limit`` smallest distinct ids in ``(lo, hi]`` over all runs, ascending.

    O(k + limit log limit) for k runs, typically.

    >>> oldest([pack([1, 4, 9]), pack([2, 3, 10])], 3, lo=1)
    [2, 3, 4]
    """
    return _run(runs, limit, lo, hi, 0, False, None)


def newest_floored(heads, limit, lo=0, hi=MAX_ID):
    """Merge heads like :func:`newest`; also return the indexes of heads too short to be sure.

    Returns ``(ids, incomplete)``, exactly as the twin
    :func:`twittercore._merge_py.newest_floored` defines them.

    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 2)
    ([9, 6], [])
    >>> newest_floored([pack([0, 2, 5, 6]), pack([4, 1, 9])], 4)
    ([9, 6, 5], [1])
    """
    cdef list incomplete = []
    ids = _run(heads, limit, lo, hi, HEADER_WORDS, True, incomplete)
    return ids, incomplete


def pack(ids):
    """Pack ints in ``[0, 2**64-1]`` as native uint64 (the run layout). O(n).

    >>> unpack(pack([1, 2, 2**64 - 1]))
    [1, 2, 18446744073709551615]
    """
    cdef object seq
    try:
        seq = PySequence_Fast(ids, "")
    except TypeError:
        raise InvalidArgumentError(
            f"ids: expected a sequence of ints, got {type(ids).__name__}") from None
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i
    cdef PyObject** items = PySequence_Fast_ITEMS(seq)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n * 8)
    cdef char* words = PyBytes_AS_STRING(out)
    cdef uint64_t value
    cdef _Item name = _Item.__new__(_Item)
    for i in range(n):
        name.i = i
        value = _bound(<object> items[i], name)
        memcpy(words + 8 * i, &value, 8)
    return out


def unpack(buffer):
    """Unpack a buffer of native uint64 into a list of ints. O(n).

    >>> unpack(bytearray(pack([7, 8])))
    [7, 8]
    """
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    except (TypeError, ValueError, BufferError) as exc:
        raise InvalidArgumentError(
            f"buffer: expected a buffer of packed uint64 ids, got {type(buffer).__name__} ({exc})"
        ) from None
    cdef Py_ssize_t n, i
    cdef list out
    cdef object value
    try:
        if view.len & 7:
            raise InvalidArgumentError(
                f"buffer: {view.len} bytes is not a whole number of 8-byte ids")
        n = view.len >> 3
        out = PyList_New(n)
        for i in range(n):
            value = PyLong_FromUnsignedLongLong(tc_load(<const char*> view.buf, i))
            Py_INCREF(value)
            PyList_SET_ITEM(out, i, value)
        return out
    finally:
        PyBuffer_Release(&view)
