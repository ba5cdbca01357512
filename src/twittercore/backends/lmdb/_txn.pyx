# cython: language_level=3
"""Many LMDB lookups in one Python call, through py-lmdb's own LMDB.

A home read looks up one head per followed source; through py-lmdb each
``txn.get`` costs about 0.6 us of argument parsing and object bookkeeping,
far more than LMDB's B-tree descent, and a home read makes a hundred of them.
:func:`get_many` makes the same lookups in one call: it takes the ``MDB_txn``
and ``MDB_dbi`` out of py-lmdb's ``Transaction`` and ``_Database`` objects and
positions one cursor on each key (``mdb_cursor_get``) through the table of LMDB entry points that py-lmdb 3
keeps for each environment (``MdbApi``, ``lmdb/mdb_api.h``), so the process
still has one LMDB and one handle per environment.

That reaches into py-lmdb's object layout, so it is used only where the
layout is the one declared below: py-lmdb 3, and object sizes that match
(:data:`LAYOUT_OK`, checked at import).  Anywhere else :func:`get_many`
falls back to calling ``txn.get`` per key, the same answers at py-lmdb's
speed.  Values come back as ``bytes`` copies (a head is at most 1.5 KiB),
valid after the transaction ends.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from twittercore._records cimport PyTypeObject, new_event, put_be

import errno

import lmdb

from twittercore import _codec
from twittercore._types import Event

cdef extern from *:
    """
    #include <stddef.h>
    typedef unsigned int tc_dbi;
    typedef struct { size_t mv_size; void *mv_data; } tc_val;
    /* py-lmdb 3's MdbApi (lmdb/mdb_api.h): the entry points before `get`, in order. */
    typedef struct {
        int major, minor, patch;
        unsigned int data_version;
        void *env_fns[20];   /* env_create .. reader_list */
        void *txn_fns[6];    /* txn_begin .. txn_id */
        void *dbi_fns[4];    /* dbi_open .. drop */
        int (*get)(void *txn, tc_dbi dbi, tc_val *key, tc_val *data);
        void *put_del_stat[3];
        int (*cursor_open)(void *txn, tc_dbi dbi, void **cursor);
        void (*cursor_close)(void *cursor);
        int (*cursor_get)(void *cursor, tc_val *key, tc_val *data, int op);
        void *cursor_put_del[2];
        int (*cursor_count)(void *cursor, size_t *count);
        char *(*strerror_fn)(int err);
    } tc_MdbApi;
    /* py-lmdb 3's TransObject and DbObject (lmdb/cpython.c, built without memsink). */
    typedef struct {
        PyObject_HEAD
        void *siblings[2]; void *children[2]; int valid;
        PyObject *weaklist; void *env; void *parent; const tc_MdbApi *libv;
        void *txn; int flags; void *db; int mutations;
    } tc_TransObject;
    typedef struct {
        PyObject_HEAD
        void *siblings[2]; void *children[2]; int valid;
        void *env; tc_dbi dbi; unsigned int flags;
    } tc_DbObject;
    #define TC_MDB_NOTFOUND (-30798)
    /* MDB_cursor_op values: the same in LMDB 0.9 and 1.0. */
    #define TC_MDB_GET_MULTIPLE 5
    #define TC_MDB_NEXT_MULTIPLE 10
    #define TC_MDB_SET 15
    """
    ctypedef unsigned int tc_dbi
    ctypedef struct tc_val:
        size_t mv_size
        void* mv_data
    ctypedef struct tc_MdbApi:
        int major
        int minor
        unsigned int data_version
        int (*get)(void* txn, tc_dbi dbi, tc_val* key, tc_val* data)
        int (*cursor_open)(void* txn, tc_dbi dbi, void** cursor)
        void (*cursor_close)(void* cursor)
        int (*cursor_get)(void* cursor, tc_val* key, tc_val* data, int op)
        int (*cursor_count)(void* cursor, size_t* count)
        char* (*strerror_fn)(int err)
    ctypedef struct tc_TransObject:
        int valid
        const tc_MdbApi* libv
        void* txn
    ctypedef struct tc_DbObject:
        int valid
        tc_dbi dbi
    int TC_MDB_NOTFOUND
    int TC_MDB_SET
    int TC_MDB_GET_MULTIPLE
    int TC_MDB_NEXT_MULTIPLE


def _layout_ok():
    try:
        major = int(lmdb.__version__.split(".")[0])
    except (AttributeError, ValueError):
        return False
    return (
        major == 3
        and getattr(lmdb, "Transaction").__basicsize__ == sizeof(tc_TransObject)
        and getattr(lmdb, "_Database").__basicsize__ == sizeof(tc_DbObject)
    )


#: Whether this py-lmdb's objects have the layout declared here (else :func:`get_many` falls back).
LAYOUT_OK = _layout_ok()
cdef object _Transaction = lmdb.Transaction
cdef object _Database = getattr(lmdb, "_Database")
cdef PyTypeObject* _EVENT_TYPE = <PyTypeObject*> Event


cdef bint _direct(txn, db):
    """Whether ``txn`` and ``db`` are live py-lmdb objects of the declared layout."""
    cdef tc_TransObject* t
    if not LAYOUT_OK or type(txn) is not _Transaction or type(db) is not _Database:
        return False
    t = <tc_TransObject*> <PyObject*> txn
    return t.valid and t.txn != NULL and t.libv != NULL and (<tc_DbObject*> <PyObject*> db).valid


cdef void* _cursor(tc_TransObject* t, tc_DbObject* d) except NULL:
    # One cursor for all the keys of a call: LMDB then skips the descent from
    # the root when a key lies on the leaf page the previous one was found on
    # (a sink's head keys come sorted; the newest events cluster), and
    # mdb_get's per-call cursor set-up is paid once.
    cdef void* cursor = NULL
    cdef int rc = t.libv.cursor_open(t.txn, d.dbi, &cursor)
    if rc != 0:
        raise _error(rc, t.libv.strerror_fn(rc).decode("utf-8", "replace"), "mdb_cursor_open")
    return cursor


cdef object _find(tc_TransObject* t, void* cursor, tc_val* k):
    """The value at key ``k`` (a bytes copy), or None."""
    cdef tc_val v
    cdef int rc = t.libv.cursor_get(cursor, k, &v, TC_MDB_SET)
    if rc == 0:
        return PyBytes_FromStringAndSize(<char*> v.mv_data, v.mv_size)
    if rc == TC_MDB_NOTFOUND:
        return None
    raise _error(rc, t.libv.strerror_fn(rc).decode("utf-8", "replace"), "mdb_cursor_get")


def get_many(txn, db, list keys):
    """The value of each of ``keys`` (``bytes``) in table ``db`` of ``txn``, or None where absent.

    Runtime complexity: at most one B-tree descent per key, in one Python call.

    Raises the ``lmdb.Error`` that ``txn.get`` would (a closed transaction, a bad key).
    """
    cdef Py_ssize_t i, n = len(keys)
    cdef tc_TransObject* t
    cdef tc_DbObject* d
    cdef tc_val k
    cdef void* cursor = NULL
    cdef object key
    cdef list out
    if not _direct(txn, db):
        get = txn.get
        return [get(key, db=db) for key in keys]  # where the objects are dead, py-lmdb raises its own error
    t = <tc_TransObject*> <PyObject*> txn
    d = <tc_DbObject*> <PyObject*> db
    cursor = _cursor(t, d)
    try:
        out = [None] * n
        for i in range(n):
            key = keys[i]
            if type(key) is not bytes:
                raise TypeError(f"keys[{i}]: expected bytes, got {type(key).__name__}")
            k.mv_size = PyBytes_GET_SIZE(key)
            k.mv_data = PyBytes_AS_STRING(key)
            out[i] = _find(t, cursor, &k)
    finally:
        t.libv.cursor_close(cursor)
    return out


def get_heads(txn, following, logs, bytes sink_key, bytes tag):
    """The heads of a sink's sources: ``(sources, heads)``.

    ``sources`` packs the 8-byte keys of ``sink_key``'s values in the dupfixed
    table ``following`` (sorted); ``heads[i]`` is the value of
    ``sources[8 * i : 8 * i + 8] + tag`` in ``logs``, or None.  The same answer
    as ``dups`` + ``head_keys`` + :func:`get_many`, without a key object per source.

    Runtime complexity: O(k) in one Python call (k head lookups, the sources
    read a page at a time).
    """
    cdef tc_TransObject* t
    cdef tc_DbObject* f
    cdef tc_DbObject* l
    cdef tc_val k, v
    cdef int rc
    cdef void* cursor = NULL
    cdef size_t count = 0, have = 0, width = PyBytes_GET_SIZE(tag)
    cdef Py_ssize_t i, n
    cdef bytes sources
    cdef char* packed
    cdef char key[64]
    cdef list heads
    if width > 56 or PyBytes_GET_SIZE(sink_key) != 8 or not (_direct(txn, following) and _direct(txn, logs)):
        from twittercore.backends.lmdb.read import get_heads_py  # the pure twin: py-lmdb's own calls

        return get_heads_py(txn, following, logs, sink_key, tag)
    t = <tc_TransObject*> <PyObject*> txn
    f = <tc_DbObject*> <PyObject*> following
    l = <tc_DbObject*> <PyObject*> logs
    cursor = _cursor(t, f)
    try:
        k.mv_size = 8
        k.mv_data = PyBytes_AS_STRING(sink_key)
        rc = t.libv.cursor_get(cursor, &k, &v, TC_MDB_SET)
        if rc == TC_MDB_NOTFOUND:
            return b"", []
        if rc == 0:
            rc = t.libv.cursor_count(cursor, &count)
        if rc != 0:
            raise _error(rc, t.libv.strerror_fn(rc).decode("utf-8", "replace"), "mdb_cursor_get")
        sources = PyBytes_FromStringAndSize(NULL, count * 8)
        packed = PyBytes_AS_STRING(sources)
        # A key with one value has no duplicate page: MDB_GET_MULTIPLE would
        # answer with the value MDB_SET left in v; say so instead of relying on it.
        rc = TC_MDB_NOTFOUND if count == 1 else t.libv.cursor_get(cursor, &k, &v, TC_MDB_GET_MULTIPLE)
        if count == 1:
            if v.mv_size != 8:
                raise ValueError(f"{sink_key.hex()}: the sink's sources are not 8-byte records (damaged store)")
            memcpy(packed, v.mv_data, 8)
            have = 8
        while rc == 0:
            if v.mv_size % 8 or have + v.mv_size > count * 8:
                raise ValueError(f"{sink_key.hex()}: the sink's sources are not 8-byte records (damaged store)")
            memcpy(packed + have, v.mv_data, v.mv_size)
            have += v.mv_size
            rc = t.libv.cursor_get(cursor, &k, &v, TC_MDB_NEXT_MULTIPLE)
        if rc != TC_MDB_NOTFOUND:
            raise _error(rc, t.libv.strerror_fn(rc).decode("utf-8", "replace"), "mdb_cursor_get")
        if have != count * 8:
            raise ValueError(f"{sink_key.hex()}: the sink's sources are not 8-byte records (damaged store)")
    finally:
        t.libv.cursor_close(cursor)
    n = <Py_ssize_t> count
    heads = [None] * n
    memcpy(key + 8, PyBytes_AS_STRING(tag), width)
    k.mv_size = 8 + width
    k.mv_data = key
    cursor = _cursor(t, l)
    try:
        for i in range(n):
            memcpy(key, packed + 8 * i, 8)
            heads[i] = _find(t, cursor, &k)
    finally:
        t.libv.cursor_close(cursor)
    return sources, heads


def get_events(txn, db, list ids):
    """The events ``ids`` from the ``events`` table ``db``, in order, decoded as the codec does.

    The same answer as ``_codec.decode_values(ids, get_many(txn, db, _codec.be_keys(ids)))``
    without the keys and the values' intermediate copies: each value becomes
    its :class:`~twittercore.Event` straight from LMDB's page.

    Runtime complexity: at most one B-tree descent per id, in one Python call.

    Raises LookupError where an id has no event, ValueError for a record
    shorter than its header (damaged), and what ``txn.get`` would raise.
    """
    cdef Py_ssize_t i, n = len(ids)
    cdef tc_TransObject* t
    cdef tc_DbObject* d
    cdef tc_val k, v
    cdef int rc
    cdef void* cursor = NULL
    cdef char key[8]
    cdef uint64_t source
    cdef double time
    cdef object id
    cdef list out
    if not _direct(txn, db):
        return _codec.decode_values(ids, get_many(txn, db, _codec.be_keys(ids)))
    t = <tc_TransObject*> <PyObject*> txn
    d = <tc_DbObject*> <PyObject*> db
    k.mv_size = 8
    k.mv_data = key
    cursor = _cursor(t, d)
    try:
        out = [None] * n
        for i in range(n):
            id = ids[i]
            put_be(key, <uint64_t> id)  # an id outside 0 .. 2**64-1 raises OverflowError
            rc = t.libv.cursor_get(cursor, &k, &v, TC_MDB_SET)
            if rc == TC_MDB_NOTFOUND:
                raise LookupError("an event named by a log is missing")
            if rc != 0:
                raise _error(rc, t.libv.strerror_fn(rc).decode("utf-8", "replace"), "mdb_cursor_get")
            if v.mv_size < 16:  # a damaged record: never read past its end
                raise ValueError(f"event {id}: the record is {v.mv_size} bytes, shorter than its 16-byte header")
            memcpy(&source, v.mv_data, 8)
            memcpy(&time, (<char*> v.mv_data) + 8, 8)
            out[i] = new_event(_EVENT_TYPE, id, source, (<char*> v.mv_data) + 16, v.mv_size - 16, time)
    finally:
        t.libv.cursor_close(cursor)
    return out


#: LMDB's codes as py-lmdb names their exceptions (its ``error_map``, lmdb/cpython.c).
_CODES = {
    -30799: "KeyExistsError", -30797: "PageNotFoundError", -30796: "CorruptedError", -30795: "PanicError",
    -30794: "VersionMismatchError", -30793: "InvalidError", -30792: "MapFullError", -30791: "DbsFullError",
    -30790: "ReadersFullError", -30789: "TlsFullError", -30788: "TxnFullError", -30787: "CursorFullError",
    -30786: "PageFullError", -30785: "MapResizedError", -30784: "IncompatibleError", -30783: "BadRslotError",
    -30782: "BadTxnError", -30781: "BadValsizeError", -30780: "BadDbiError",
    errno.EACCES: "ReadonlyError", errno.EINVAL: "InvalidParameterError", errno.EAGAIN: "LockError",
    errno.ENOMEM: "MemoryError", errno.ENOSPC: "DiskError",
}


def _error(int rc, str reason, str what):
    """The exception py-lmdb raises for ``rc`` from LMDB's ``what``."""
    klass = getattr(lmdb, _CODES.get(rc, "Error"), lmdb.Error)
    exc = klass(f"{what}: {reason}")
    exc.what, exc.code, exc.reason = what, rc, reason
    return exc
