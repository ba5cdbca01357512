# cython: language_level=3
"""Inline helpers the compiled modules share: big-endian keys and Event tuples.

Compiled into each module that cimports them (``_codec``, ``backends.lmdb._txn``),
so a page's events are built the same way wherever they are decoded.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t


cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        # Declared as returning `object`: Cython owns the new reference.
        object (*tp_alloc)(PyTypeObject*, Py_ssize_t)
    void PyTuple_SET_ITEM(object, Py_ssize_t, object)  # steals a reference
    void Py_INCREF(object)


cdef inline void put_be(char* out, uint64_t value) noexcept nogil:
    cdef int i
    for i in range(8):
        out[7 - i] = <char> (value & 0xFF)
        value >>= 8


cdef inline object new_event(PyTypeObject* kind, object id, uint64_t source, const char* payload, Py_ssize_t size,
                             double time):
    # An Event is a tuple subclass with no extra fields: allocate it as
    # tuple.__new__ would, without the temporary tuple.
    cdef object out = kind.tp_alloc(kind, 4)
    cdef object src = source, body = PyBytes_FromStringAndSize(payload, size), when = time
    Py_INCREF(id); Py_INCREF(src); Py_INCREF(body); Py_INCREF(when)
    PyTuple_SET_ITEM(out, 0, id)
    PyTuple_SET_ITEM(out, 1, src)
    PyTuple_SET_ITEM(out, 2, body)
    PyTuple_SET_ITEM(out, 3, when)
    return out
