# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Record codecs of the LMDB layout, compiled.  Twin: :mod:`twittercore._codec_py`
(the layouts are documented there).  Same functions, same answers."""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

from ._records cimport PyTypeObject, new_event, put_be as _put_be
from ._types import Event

HEAD = b"\xff" * 8
SEAL = 96
cdef Py_ssize_t _SEAL = 96

cdef object _new_tuple = tuple.__new__


cdef inline uint64_t _get_be(const unsigned char* data) noexcept nogil:
    cdef uint64_t value = 0
    cdef int i
    for i in range(8):
        value = (value << 8) | data[i]
    return value


cdef inline bytes _be(uint64_t value):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8)
    _put_be(PyBytes_AS_STRING(out), value)
    return out


def head_keys(records):
    """Head keys for the sources in 16-byte ``(sink_be, source_be)`` records."""
    cdef Py_buffer view
    cdef Py_ssize_t i, n
    cdef bytes key
    cdef char* out
    cdef list keys = []
    PyObject_GetBuffer(records, &view, PyBUF_SIMPLE)
    try:
        n = view.len // 16
        for i in range(n):
            key = PyBytes_FromStringAndSize(NULL, 16)
            out = PyBytes_AS_STRING(key)
            memcpy(out, (<char*> view.buf) + i * 16 + 8, 8)
            memset(out + 8, 0xFF, 8)
            keys.append(key)
    finally:
        PyBuffer_Release(&view)
    return keys


def values_of(records):
    """Node ids from the value half of 16-byte ``(key_be, value_be)`` records
    (a sink's sources, or a source's sinks)."""
    cdef Py_buffer view
    cdef Py_ssize_t i
    cdef list out = []
    PyObject_GetBuffer(records, &view, PyBUF_SIMPLE)
    try:
        for i in range(view.len // 16):
            out.append(_get_be((<const unsigned char*> view.buf) + i * 16 + 8))
    finally:
        PyBuffer_Release(&view)
    return out


def encode_events(uint64_t first_id, list items, double time):
    """``(key, value)`` records of the ``events`` table for a batch with consecutive ids."""
    cdef Py_ssize_t n, count = PyList_GET_SIZE(items), size
    cdef list out = [None] * count
    cdef object item, payload
    cdef bytes key, value
    cdef char* buf
    cdef uint64_t source
    for n in range(count):
        item = <object> PyList_GET_ITEM(items, n)
        source = <object> PyTuple_GET_ITEM(item, 0)
        payload = <object> PyTuple_GET_ITEM(item, 1)
        size = PyBytes_GET_SIZE(payload)
        key = PyBytes_FromStringAndSize(NULL, 8)
        _put_be(PyBytes_AS_STRING(key), first_id + n)
        value = PyBytes_FromStringAndSize(NULL, 16 + size)
        buf = PyBytes_AS_STRING(value)
        memcpy(buf, &source, 8)
        memcpy(buf + 8, &time, 8)
        memcpy(buf + 16, PyBytes_AS_STRING(payload), size)
        out[n] = (key, value)
    return out


def group_ids(uint64_t first_id, list items):
    """Source -> its ids in this batch (ascending), ids consecutive from ``first_id``."""
    cdef dict groups = {}
    cdef Py_ssize_t n
    cdef object source
    cdef PyObject* found
    for n in range(PyList_GET_SIZE(items)):
        source = <object> PyTuple_GET_ITEM(<object> PyList_GET_ITEM(items, n), 0)
        found = PyDict_GetItem(groups, source)
        if found == NULL:
            PyDict_SetItem(groups, source, [first_id + n])
        else:
            PyList_Append(<object> found, first_id + n)
    return groups


def append_head(head, list ids):
    """Append ascending ``ids`` to a head; seal full chunks.

    Returns the new head and the sealed chunks as ``(tag, packed_ids)``.
    """
    cdef Py_buffer view
    cdef uint64_t floor = 0, count = 0
    cdef Py_ssize_t old_n = 0, add = PyList_GET_SIZE(ids), total, i, start
    cdef const uint64_t* old = NULL
    cdef list sealed = []
    cdef bytes out, chunk
    cdef uint64_t* words
    cdef bint have_view = False
    if head is not None:
        PyObject_GetBuffer(head, &view, PyBUF_SIMPLE)
        have_view = True
    try:
        if have_view:
            if view.len < 16 or view.len & 7:  # a damaged head: never copy a negative length
                raise ValueError(f"head: {view.len} bytes is not a [floor, count, ids...] run of 8-byte words")
            old = <const uint64_t*> view.buf
            floor = old[0]
            count = old[1]
            old_n = view.len // 8 - 2
            old += 2
        total = old_n + add
        # Build the full run, then cut sealed chunks off its front.
        out = PyBytes_FromStringAndSize(NULL, (total + 2) * 8)
        words = (<uint64_t*> PyBytes_AS_STRING(out)) + 2
        if old_n:
            memcpy(words, old, old_n * 8)
        for i in range(add):
            words[old_n + i] = <object> PyList_GET_ITEM(ids, i)
    finally:
        if have_view:
            PyBuffer_Release(&view)
    count += add
    start = 0
    while total - start >= 2 * _SEAL:
        chunk = PyBytes_FromStringAndSize(<char*> (words + start), _SEAL * 8)
        floor = words[start + _SEAL - 1]
        sealed.append((floor, chunk))
        start += _SEAL
    if start:
        out = PyBytes_FromStringAndSize(<char*> (words + start - 2), (total - start + 2) * 8)
        words = (<uint64_t*> PyBytes_AS_STRING(out)) + 2
    (words - 2)[0] = floor
    (words - 1)[0] = count
    return out, sealed


def decode_event(uint64_t id, value):
    cdef Py_buffer view
    cdef uint64_t source
    cdef double time
    cdef bytes payload
    PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
    try:
        if view.len < 16:  # a damaged record: never read past its end
            raise ValueError(f"event {id}: the record is {view.len} bytes, shorter than its 16-byte header")
        memcpy(&source, view.buf, 8)
        memcpy(&time, (<char*> view.buf) + 8, 8)
        payload = PyBytes_FromStringAndSize((<char*> view.buf) + 16, view.len - 16)
    finally:
        PyBuffer_Release(&view)
    return _new_tuple(Event, (id, source, payload, time))



def check_items(list items, Py_ssize_t max_payload):
    """True when every item is an exact ``(int, bytes)`` tuple within limits.

    The fast path of ``publish_many``'s validation; on False the caller runs
    the Python checks, which convert what they can and word the error.
    """
    cdef Py_ssize_t n
    cdef object item, source, payload
    for n in range(PyList_GET_SIZE(items)):
        item = <object> PyList_GET_ITEM(items, n)
        if type(item) is not tuple or len(<tuple> item) != 2:
            return False
        source = <object> PyTuple_GET_ITEM(item, 0)
        payload = <object> PyTuple_GET_ITEM(item, 1)
        if type(source) is not int or type(payload) is not bytes:
            return False
        if PyBytes_GET_SIZE(payload) > max_payload or source < 0 or source > 0xFFFFFFFFFFFFFFFF:
            return False
    return True


cdef PyTypeObject* _EVENT_TYPE = <PyTypeObject*> Event


def be_keys(list ids):
    """Big-endian 8-byte keys for a list of ids (the ``events`` table's keys)."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(ids)
    cdef list out = [None] * n
    for i in range(n):
        out[i] = _be(<object> PyList_GET_ITEM(ids, i))
    return out


def decode_values(list ids, list values):
    """Events from the values of ``ids``' keys (``get_many``'s answer), in that order.

    Raises LookupError where a value is None (a log names a missing event).
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(ids)
    cdef list out = [None] * n
    cdef object value
    cdef const char* data
    cdef uint64_t source
    cdef double time
    if PyList_GET_SIZE(values) != n:
        raise LookupError("an event named by a log is missing")
    for i in range(n):
        value = <object> PyList_GET_ITEM(values, i)
        if type(value) is not bytes or PyBytes_GET_SIZE(value) < 16:
            if value is None:
                raise LookupError("an event named by a log is missing")
            out[i] = decode_event(<object> PyList_GET_ITEM(ids, i), value)  # or raises ValueError
            continue
        data = PyBytes_AS_STRING(value)
        memcpy(&source, data, 8)
        memcpy(&time, data + 8, 8)
        out[i] = new_event(
            _EVENT_TYPE, <object> PyList_GET_ITEM(ids, i), source, data + 16, PyBytes_GET_SIZE(value) - 16, time
        )
    return out
