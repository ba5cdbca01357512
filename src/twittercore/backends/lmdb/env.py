"""Opening the LMDB environment safely, and keeping it safe: the store's guard rails.

Everything the engine trusts and the caller cannot see is checked here, so a
damaged, foreign or misused store fails with a :class:`twittercore.Error`
instead of a signal, a hang or a silent empty store:

* **Format.**  A store records ``twittercore-lmdb/<version>`` in ``meta`` at
  creation, and a marker file beside the data says a store lived here.  An
  empty, missing, foreign or other-version data file is refused, never
  initialised over.
* **No SIGBUS.**  LMDB maps the data file and trusts it: a page that the file
  no longer backs kills the process on first touch.  Before LMDB sees the
  file, its meta pages are read with ``pread`` and the file must hold every
  page the committed tree may use.  With ``writemap`` the map is written
  through, and a page the filesystem cannot allocate (disk full) is a SIGBUS
  on write, so the map's whole span is reserved with ``posix_fallocate``
  before the map covers it: a full disk then fails the resize, an error.
  LMDB also truncates a writemap file to the map size each time it maps
  it, so a process adopting an older, smaller size would cut off pages
  another process is writing (SIGBUS there): every writemap map (re)size
  happens under one ``flock`` on the store's directory and never maps less
  than the file already holds.
* **Fork.**  LMDB forbids using an environment after ``fork()``.  In the
  child every inherited handle is marked closed (``ForkedError`` on use), its
  environment is never closed or freed there (closing would clear the
  parent's reader slots), and the per-process registry starts empty so the
  child can open the store itself.
* **Stale readers.**  Reader slots of dead processes are cleared at open and
  when the table is full, then the read is retried once.
* **Errors.**  Every engine exception, and every decoding failure of a
  damaged record, becomes a ``twittercore.Error`` with a ``what: reason
  (hint)`` message.

One module on purpose (longer than most): everything that stands between
LMDB's trust in its files and the caller is in one place to review; the rest
of the backend reaches it through a few calls (``open_env``, ``Handle.failed``,
``Handle.set_mapsize``, ``backup``, ``check_strategy``).  See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import threading
import weakref
from typing import Any, NamedTuple

import lmdb

from ... import _options
from ...errors import (
    ConfigurationError,
    DamagedStoreError,
    DiskFullError,
    Error,
    ForkedError,
    FormatError,
    InvalidArgumentError,
    ReadersFullError,
    StoreError,
)

__all__ = ["FORMAT", "MARKER_FILE", "OPTIONS", "Handle", "backup", "check_strategy", "open_env"]

FORMAT_NAME = b"twittercore-lmdb"
FORMAT_VERSION = 1
FORMAT = FORMAT_NAME + b"/%d" % FORMAT_VERSION
#: The ``meta`` key holding :data:`FORMAT`.
FORMAT_KEY = b"format"
#: Beside data.mdb: says a store was created here, so a vanished or emptied
#: data file is refused instead of silently re-created empty.
MARKER_FILE = "twittercore.format"
DATA_FILE, LOCK_FILE = "data.mdb", "lock.mdb"

#: Initial map of a writemap store: the map is reserved on disk, so it starts
#: small and grows (see :func:`grown`; on MDB_MAP_FULL, or ahead of a bulk write).
WRITEMAP_INITIAL = 1 << 20
READMAP_INITIAL = 1 << 34  # a read-only map costs address space only
MIN_MAP, MAX_MAP = 1 << 20, 1 << 46
#: Under writemap the whole map is reserved on disk, so past this size it
#: grows by a quarter instead of doubling (a 15 GiB store reserves 19 GiB, not 30).
GROW_SLOWER_FROM = 1 << 30


def grown(size: int) -> int:
    """The map size after ``size`` bytes: twice as much below 1 GiB, a quarter more above.

    >>> grown(1 << 20) >> 20, grown(1 << 30) >> 20, grown(16 << 30) >> 30
    (2, 1280, 20)
    """
    return 2 * size if size < GROW_SLOWER_FROM else size + size // 4


MAX_READERS = 1 << 16
#: The options ``open()`` accepts for an LMDB store.
OPTIONS = _options.COMMON | {"map_size", "max_readers", "writemap", "event_cache", "group_commit"}

# ---------------------------------------------------------------- LMDB file layout
# LMDB 0.9 on a 64-bit host (the only layout py-lmdb builds): every page starts
# with a 16-byte header; pages 0 and 1 hold the two meta records, the newer
# (higher txnid) being the committed one.
_MAGIC, _DATA_VERSION = 0xBEEFC0DE, 1
_PAGE_HEADER = struct.Struct("=QHHHH")  # pgno, pad, flags, lower, upper
_META = struct.Struct("=IIQQ")  # magic, version, address, mapsize
_DB = struct.Struct("=IHHQQQQQ")  # pad(psize in FREE_DBI), flags, depth, branch, leaf, overflow, entries, root
_TAIL = struct.Struct("=QQ")  # last_pg, txnid
_META_SIZE = 16 + _META.size + 2 * _DB.size + _TAIL.size
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_LEAF2 = 0x01, 0x02, 0x04, 0x20
_F_BIGDATA = 0x01
_NODE = struct.Struct("=HHHH")  # lo, hi, flags, ksize
_P_INVALID = (1 << 64) - 1

# ------------------------------------------------------------ per-process state
# Paths open in this process: LMDB must not be opened twice in one process
# (closing the second handle drops the first one's POSIX locks).
_open_paths: set[str] = set()
_open_lock = threading.Lock()
_handles: weakref.WeakSet[Handle] = weakref.WeakSet()
#: Environments inherited across fork: kept referenced for the life of the
#: child, so no destructor ever runs mdb_env_close on the parent's slots.
_inherited: list[Any] = []
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _open_lock, _pid
    parent, _pid = _pid, os.getpid()
    _open_lock = threading.Lock()  # may have been held by a parent thread
    _open_paths.clear()
    for handle in list(_handles):
        handle._inherit(parent)
    _tag_lmdb_registry()


def _tag_lmdb_registry() -> None:
    """Let the child open environments its parent had open.

    py-lmdb 3 refuses to open files it believes already open in this process
    (keyed by device and inode), and that belief survives fork although the
    inherited environments are dead in the child (and must never be closed
    there).  Keys made in a child carry its pid, so they never meet the
    parent's; two opens within one process still collide.  The rule it
    guards (POSIX locks shared by two handles) does not span processes: fcntl
    locks are not inherited.
    """
    envid: Any = getattr(lmdb, "_envid", None)
    keys = getattr(envid, "env_keys", None)
    if keys is None or getattr(keys, "_twittercore", False):
        return

    def env_keys(path: Any, subdir: Any) -> tuple[Any, ...]:
        pid = os.getpid()
        return tuple(key + (pid,) for key in keys(path, subdir))

    env_keys._twittercore = True  # type: ignore[attr-defined]
    envid.env_keys = env_keys


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _ForkedEnv:
    """Stands in for an inherited environment in a forked child: every use is a ForkedError."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def close(self) -> None:
        pass  # the parent's environment is the parent's to close

    def __getattr__(self, name: str) -> Any:
        raise self._handle.forked_error()


class Handle:
    """One open LMDB environment of a store, with its checks (see the module doc).

    ``env`` is the ``lmdb.Environment`` (in a forked child, a stand-in that
    refuses every use).  The store keeps it as ``_env`` for the hot paths.
    """

    def __init__(self, path: str, real: str, writemap: bool) -> None:
        self.path, self.real, self.writemap = path, real, writemap
        self.env: Any = None
        self.owner = os.getpid()
        self.forked_from: int | None = None
        self._store: Any = None

    # ------------------------------------------------------------ fork

    def attach(self, store: Any) -> None:
        """Mark ``store`` closed in forked children (it holds ``env`` as ``_env``)."""
        self._store = weakref.ref(store)
        _handles.add(self)

    def _inherit(self, parent: int) -> None:
        if self.env is None or isinstance(self.env, _ForkedEnv):
            return
        _inherited.append(self.env)
        try:  # belt and braces for py-lmdb releases whose destructor is not fork-aware
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(self.env))
        except (AttributeError, OSError):  # pragma: no cover - no pythonapi (PyPy)
            pass
        self.forked_from = parent
        self.env = _ForkedEnv(self)
        store = self._store() if self._store is not None else None
        if store is not None:
            store._env = self.env
            store._closed = True  # closing, tail loops and waits stop without touching LMDB

    def forked_error(self) -> ForkedError:
        return ForkedError(
            f"{self.path}: this handle was opened in process {self.forked_from} and this is its forked "
            f"child {os.getpid()}; LMDB environments cannot cross fork() "
            "(open the store again in the child with twittercore.open(), or start workers with 'spawn')"
        )

    # ------------------------------------------------------------ life

    def close(self) -> None:
        """Close the environment (never one inherited across fork) and free the path."""
        try:
            if self.env is not None and not isinstance(self.env, _ForkedEnv):
                self.env.close()
        finally:
            _handles.discard(self)
            with _open_lock:
                _open_paths.discard(self.real)

    # ------------------------------------------------------------ map

    def set_mapsize(self, size: int) -> None:
        """Set the map size (0: adopt another process's growth); under writemap, reserve it first."""
        env = self.env
        if not self.writemap:
            try:
                env.set_mapsize(size)
            except lmdb.Error as exc:
                raise self.translate(exc, "resize") from exc
            return
        with self.resizing():
            info = env.info()
            used = (info["last_pgno"] + 1) * env.stat()["psize"]
            current = max(info["map_size"], self.file_size())
            # At least 1 MiB more each time, so a transaction that needs more
            # reaches a full disk (an error) in a bounded number of steps.
            least = max(current, used) + (1 << 20)
            target = self.reserve_between(least, max(size or current, grown(used), least), "the map grows")
            try:
                env.set_mapsize(target)
            except lmdb.Error as exc:
                raise self.translate(exc, "resize") from exc

    @contextlib.contextmanager
    def resizing(self) -> Any:
        """Hold the store-wide lock under which writemap maps are (re)sized (see the module doc)."""
        if not self.writemap:
            yield
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot lock the store to resize its map: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                # A filesystem without flock (some network mounts): go on unlocked,
                # which is safe while one process at a time grows the map.
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise StoreError(f"{self.path}: cannot lock the store to resize its map: {exc.strerror}") from None
            yield
        finally:
            os.close(fd)  # releases the flock

    def file_size(self) -> int:
        """The data file's present size (what another process's map may already cover)."""
        try:
            return os.path.getsize(os.path.join(self.path, DATA_FILE))
        except OSError:
            return 0

    def reserve_between(self, least: int, most: int, why: str) -> int:
        """Reserve ``most`` bytes, or on a nearly full disk as much above ``least`` as there is room for."""
        target = most
        while True:
            try:
                self.reserve(target, why)
                return target
            except DiskFullError:
                if target == least:
                    raise
                step = (target - least) // 2
                target = least if step < 1 << 20 else target - step

    def reserve(self, size: int, why: str) -> None:
        """Allocate the first ``size`` bytes of the data file on disk (writemap: no page is a hole)."""
        data = os.path.join(self.path, DATA_FILE)
        try:
            fd = os.open(data, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFullError(
                    f"{self.path}: {why}, but {size} bytes cannot be reserved for the map "
                    f"({exc.strerror}; {_free(self.path)}; free space and retry: nothing was written)"
                ) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise StoreError(f"{self.path}: reserving the map failed: {exc.strerror}") from None

    # ------------------------------------------------------------ errors

    def failed(self, what: str, retry: bool = False) -> bool:
        """Called in an ``except`` block: re-raise the exception as a ``twittercore.Error``.

        Returns False (the caller retries once) when the reader table was
        full and clearing dead processes' slots freed some.
        """
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, InvalidArgumentError):
            # Arguments were checked before the transaction: inside it, the
            # kernel refusing a record means the record is damaged.
            raise self.translate(exc, what) from exc
        if isinstance(exc, Error):
            raise exc
        if isinstance(exc, lmdb.ReadersFullError) and retry:
            try:
                cleared = self.env.reader_check()
            except lmdb.Error:
                cleared = 0
            if cleared:
                return False
        if isinstance(exc, (lmdb.Error, struct.error, ValueError, IndexError, UnicodeDecodeError, SystemError)):
            raise self.translate(exc, what) from exc
        raise  # a bug, not damage: let it show as it is

    def translate(self, exc: BaseException, what: str) -> Error:
        """The ``twittercore.Error`` for an engine or decoding exception during ``what``."""
        where = f"{self.path}: {what}"
        if isinstance(exc, lmdb.ReadersFullError):
            return ReadersFullError(
                f"{where}: all LMDB reader slots are taken by live readers "
                "(open the store with a larger max_readers, or use fewer threads/processes reading at once)"
            )
        if isinstance(
            exc,
            (
                lmdb.CorruptedError,
                lmdb.PageNotFoundError,
                lmdb.InvalidError,
                lmdb.BadValsizeError,
                lmdb.VersionMismatchError,
            ),
        ) or not isinstance(exc, lmdb.Error):
            return DamagedStoreError(
                f"{where}: the store is damaged ({type(exc).__name__}: {exc}) "
                "(restore it from a backup; twittercore.open() refuses a damaged file at open where it can tell)"
            )
        if isinstance(exc, lmdb.IncompatibleError):
            return FormatError(
                f"{where}: a table has other flags than a twittercore store's ({exc}) (this is not a twittercore store)"
            )
        if isinstance(exc, lmdb.PanicError):
            return StoreError(
                f"{where}: LMDB hit a fatal error and refuses further use ({exc}) (close the store and open it again)"
            )
        if isinstance(exc, lmdb.MapFullError):
            return DiskFullError(f"{where}: the map is full ({exc}) (open the store with a larger map_size)")
        text = str(exc)
        full = any(s in text for s in ("No space left", "Disk quota", "File too large"))
        if full or "Input/output error" in text:
            free = _free(self.path)
            if full or free.startswith("0 bytes") or _nearly_full(self.path):
                return DiskFullError(
                    f"{where}: the disk is full ({text}; {free}) (free space and retry: nothing was written)"
                )
        return StoreError(f"{where}: LMDB failed: {text} (check the disk and the directory's permissions)")


def _free(path: str) -> str:
    try:
        st = os.statvfs(path)
    except OSError:
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize} bytes free"


def _nearly_full(path: str) -> bool:
    """A short write (EIO from LMDB) on a disk with less than 1 MiB left is a full disk."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


# ---------------------------------------------------------------- options


def _check_options(map_size: Any, max_readers: Any, writemap: Any) -> None:
    _options.bounded_int("map_size", map_size, MIN_MAP, MAX_MAP)
    _options.bounded_int("max_readers", max_readers, 1, MAX_READERS, optional=False)
    if writemap is not None:
        _options.flag("writemap", writemap)


# ---------------------------------------------------------------- the data file


class _Meta(NamedTuple):
    """The fields of an LMDB meta record the checks need."""

    psize: int
    last_pg: int
    txnid: int
    mapsize: int
    free_root: int


def _read_meta(fd: int, where: str) -> _Meta:
    """The committed meta record of an LMDB data file, read with pread (never through a map)."""
    first = os.pread(fd, _META_SIZE, 0)
    if len(first) < _META_SIZE:
        raise DamagedStoreError(
            f"{where}: the data file is {len(first)} bytes, too short to be an LMDB file (restore it from a backup)"
        )
    magic, version = struct.unpack_from("=II", first, 16)
    if magic != _MAGIC:
        raise FormatError(
            f"{where}: the data file is not an LMDB environment (magic {magic:#x}) (is this the right directory?)"
        )
    if version != _DATA_VERSION:
        raise FormatError(
            f"{where}: the data file is LMDB format {version}, this LMDB reads {_DATA_VERSION} (use the LMDB version that made it)"
        )
    psize = _DB.unpack_from(first, 16 + _META.size)[0]
    if psize < 512 or psize & (psize - 1) or psize > 1 << 16:
        raise DamagedStoreError(
            f"{where}: the data file's page size {psize} is invalid (the header is damaged; restore from a backup)"
        )
    metas = []
    for page in (0, 1):
        raw = os.pread(fd, _META_SIZE, page * psize)
        if len(raw) < _META_SIZE:
            raise DamagedStoreError(
                f"{where}: the data file is shorter than its two meta pages (restore it from a backup)"
            )
        if struct.unpack_from("=I", raw, 16)[0] != _MAGIC:
            raise DamagedStoreError(f"{where}: meta page {page} is damaged (restore it from a backup)")
        last_pg, txnid = _TAIL.unpack_from(raw, 16 + _META.size + 2 * _DB.size)
        free_root = _DB.unpack_from(raw, 16 + _META.size)[7]
        metas.append(_Meta(psize, last_pg, txnid, _META.unpack_from(raw, 16)[3], free_root))
    return metas[metas[0].txnid < metas[1].txnid]


def _missing_pages_are_free(fd: int, meta: _Meta, have: int, where: str) -> bool:
    """True when every page in ``[have, last_pg]`` is on the freelist (so no read will touch it).

    A healthy file can end a few pages short of ``last_pg``: LMDB never
    writes pages a transaction allocated and freed again.  Those pages are on
    the freelist, which is walked here with pread.  Runtime complexity: the
    freelist's size (only when the file is short).
    """
    missing = set(range(have, meta.last_pg + 1))
    psize = meta.psize
    size = os.fstat(fd).st_size

    def page(pgno: int, count: int = 1) -> bytes:
        if pgno >= have or (pgno + count) * psize > size:
            raise _Short
        return os.pread(fd, count * psize, pgno * psize)

    def walk(pgno: int, depth: int) -> None:
        if depth > 64:
            raise _Short
        raw = page(pgno)
        _, _, flags, lower, _ = _PAGE_HEADER.unpack_from(raw)
        for i in range((lower - _PAGE_HEADER.size) // 2):
            offset = struct.unpack_from("=H", raw, _PAGE_HEADER.size + 2 * i)[0]
            lo, hi, nflags, ksize = _NODE.unpack_from(raw, offset)
            if flags & _P_BRANCH:
                walk(lo | hi << 16 | nflags << 32, depth + 1)
                continue
            if not flags & _P_LEAF:
                raise _Short
            start = offset + _NODE.size + ksize
            dsize = lo | hi << 16
            if nflags & _F_BIGDATA:
                over = struct.unpack_from("=Q", raw, start)[0]
                head = page(over)
                count = struct.unpack_from("=I", head, 12)[0]
                data = page(over, count)[_PAGE_HEADER.size : _PAGE_HEADER.size + dsize]
            else:
                data = raw[start : start + dsize]
            ids = struct.unpack_from(f"={len(data) // 8}Q", data)
            missing.difference_update(ids[1 : ids[0] + 1] if ids else ())

    try:
        if meta.free_root != _P_INVALID:
            walk(meta.free_root, 0)
    except (_Short, struct.error, IndexError):
        return False
    return not missing


class _Short(Exception):
    pass


def _check_data_file(path: str, where: str) -> _Meta | None:
    """Refuse a data file LMDB would map unsafely or mistake for a new store; None if there is none.

    Retried when a writer in another process commits meanwhile (the meta's
    txnid moves), since the freelist read must be of one commit.
    """
    data = os.path.join(path, DATA_FILE)
    marked = os.path.exists(os.path.join(path, MARKER_FILE))
    try:
        fd = os.open(data, os.O_RDONLY)
    except FileNotFoundError:
        if marked:
            raise DamagedStoreError(
                f"{where}: the data file {DATA_FILE} is missing, but a twittercore store was created here "
                f"(restore it from a backup; remove {MARKER_FILE} only to start an empty store on purpose)"
            ) from None
        return None
    except OSError as exc:
        raise StoreError(f"{where}: cannot read {DATA_FILE}: {exc.strerror} (check its permissions)") from None
    try:
        for _ in range(8):
            size = os.fstat(fd).st_size
            if size == 0:
                hint = (
                    "restore it from a backup"
                    if marked
                    else "if a creation was interrupted, delete the directory and open again"
                )
                raise DamagedStoreError(f"{where}: the data file {DATA_FILE} is empty (0 bytes) ({hint})")
            try:
                meta = _read_meta(fd, where)
            except FormatError:
                if marked:
                    raise DamagedStoreError(
                        f"{where}: the data file's header is not LMDB's, but a twittercore store was created here "
                        "(the file is damaged or was replaced; restore it from a backup)"
                    ) from None
                raise
            need = (meta.last_pg + 1) * meta.psize
            if size >= need:
                return meta
            have = size // meta.psize
            if _missing_pages_are_free(fd, meta, have, where):
                return meta
            if _read_meta(fd, where).txnid == meta.txnid:
                raise DamagedStoreError(
                    f"{where}: damaged: the data file is shorter than its metadata says "
                    f"({size} of {need} bytes; pages {have}..{meta.last_pg} are missing and not all of them are free) "
                    "(restore it from a backup; opening it would crash the process)"
                )
        raise StoreError(f"{where}: the data file kept changing while it was checked (retry the open)")
    finally:
        os.close(fd)


def _prepare_lock_file(path: str, max_readers: int) -> None:
    """Make every byte of lock.mdb allocated on disk before LMDB maps it.

    LMDB maps the lock file writable under every setting; on a full disk a
    write to a hole in it (a reader slot) is a SIGBUS.  A new lock file is
    written out at the size LMDB would give it (its header, 128 bytes, and
    64 per reader) and linked into place, so a concurrent opener finds
    either none or this complete one.  This runs before ``lmdb.open``
    because afterwards any close of another descriptor of the file would
    drop the POSIX locks LMDB holds on it.
    """
    lock = os.path.join(path, LOCK_FILE)
    temp = f"{lock}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, bytes(128 + 64 * max_readers))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, lock)
            except FileExistsError:
                pass
            return
        try:
            size = os.fstat(fd).st_size
            if size:
                os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(
                f"{path}: cannot allocate {LOCK_FILE}: {exc.strerror} ({_free(path)}; free space and retry)"
            ) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise StoreError(
                f"{path}: cannot prepare {LOCK_FILE}: {exc.strerror} (check the directory's permissions)"
            ) from None
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass


def _write_marker(path: str) -> None:
    """Write the marker file atomically (temp file, fsync, rename, fsync of the directory)."""
    target = os.path.join(path, MARKER_FILE)
    temp = f"{target}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, FORMAT + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, target)
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


#: The tables twittercore 0.1.0 created (it wrote no format marker), and
#: those it created on demand.
_RELEASE_0_1 = {b"meta", b"events", b"logs", b"following", b"followers", b"edgelog", b"edgehist", b"deletions"}
_RELEASE_0_1_OPTIONAL = {b"windows", b"wfloors", b"celebs"}


def _is_release_0_1(env: Any, names: list[bytes]) -> bool:
    """A store of the first release: exactly its tables, its dupsort graph tables and its 8-byte sequence.

    Another program's environment that merely shares some table names fails
    one of these (the first release's stores open as version 1 unchanged).
    """
    if not _RELEASE_0_1 <= set(names) <= _RELEASE_0_1 | _RELEASE_0_1_OPTIONAL:
        return False
    with env.begin() as txn:
        try:
            for name in (b"following", b"followers"):
                if not env.open_db(name, txn=txn, create=False, dupsort=True, dupfixed=True).flags(txn)["dupsort"]:
                    return False
            seq = txn.get(b"seq", db=env.open_db(b"meta", txn=txn, create=False))
        except lmdb.Error:
            return False
    return seq is None or len(seq) == 8


def _check_format(handle: Handle) -> None:
    """Refuse anything but a twittercore store of this format; initialise a new environment."""
    env, where = handle.env, handle.path
    with env.begin() as txn:
        names = [bytes(key) for key in txn.cursor().iternext(values=False)]
    marked = os.path.exists(os.path.join(where, MARKER_FILE))
    if not names:
        if marked:
            raise DamagedStoreError(
                f"{where}: the data file holds no tables, but a twittercore store was created here "
                "(the data was lost; restore it from a backup)"
            )
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn)
            txn.put(FORMAT_KEY, FORMAT, db=meta)
        _write_marker(where)
        return
    shown = ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
    if b"meta" not in names:
        raise FormatError(
            f"{where}: not a twittercore store (its tables are {shown}) (open a directory twittercore created, or an empty one)"
        )
    with env.begin() as txn:
        try:
            meta = env.open_db(b"meta", txn=txn, create=False)
        except lmdb.IncompatibleError:
            raise FormatError(
                f"{where}: not a twittercore store ('meta' is not a table here) (open a directory twittercore created)"
            ) from None
        found = txn.get(FORMAT_KEY, db=meta)
    if found is None and _is_release_0_1(env, names):
        with env.begin(write=True) as txn:  # 0.1.0 wrote this layout without a marker: adopt it
            txn.put(FORMAT_KEY, FORMAT, db=env.open_db(b"meta", txn=txn))
        found = FORMAT
    if found is None:
        raise FormatError(
            f"{where}: not a twittercore store of this format: no format marker (tables {shown}) "
            "(another program's environment; open a directory twittercore created, or an empty one)"
        )
    name, _, version = bytes(found).partition(b"/")
    if name != FORMAT_NAME or not version.isdigit():
        raise FormatError(
            f"{where}: not a twittercore store: its format marker is {bytes(found)[:60]!r} (open a directory twittercore created)"
        )
    if int(version) != FORMAT_VERSION:
        newer = int(version) > FORMAT_VERSION
        raise FormatError(
            f"{where}: the store has format version {int(version)}, this twittercore reads version {FORMAT_VERSION} "
            + (
                "(upgrade twittercore to open it)"
                if newer
                else "(open it with the twittercore release that made it and export its history)"
            )
        )
    if not marked:
        try:  # a backup or a store created by a crashed open: the marker belongs beside it
            _write_marker(where)
        except OSError:
            pass


def open_env(path: str, *, durable: bool, writemap: bool, map_size: int | None, max_readers: int) -> Handle:
    """Open (or create) the environment at ``path`` after every check; nothing is left behind on refusal.

    Runtime complexity: O(1) reads of the file's header; when the file ends
    short of its last page, a walk of the freelist.
    """
    _check_options(map_size, max_readers, writemap)
    real = os.path.realpath(path)
    with _open_lock:
        if real in _open_paths:
            raise ConfigurationError(
                f"open({path!r}): this store is already open in this process "
                "(LMDB forbids two handles in one process; share the Store between threads)"
            )
        _open_paths.add(real)
    handle = Handle(path, real, writemap)
    try:
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(
                f"open({path!r}): the path is not a directory (a store is a directory; pick another path)"
            ) from None
        except OSError as exc:
            raise StoreError(f"open({path!r}): {exc.strerror or exc} (check the path and its permissions)") from None
        meta = _check_data_file(path, path)
        used = 0 if meta is None else (meta.last_pg + 1) * meta.psize
        # Under the resize lock: the file's size cannot grow between reading it and mapping it.
        with handle.resizing():
            if writemap:
                # Never less than the file: a store another process created since
                # the check above may already be mapped larger there.
                size = max(map_size or WRITEMAP_INITIAL, handle.file_size())
                if meta is not None:
                    # The file's present size was reserved when the map last grew (or
                    # is LMDB's sparse file): keep it; grow only if it is nearly full.
                    have = handle.file_size()
                    size = max(size, have, used)
                    most = size if size >= grown(used) or map_size else grown(used)
                    size = handle.reserve_between(max(used, min(size, have)), most, "opening the store")
            else:
                size = map_size or READMAP_INITIAL
            _prepare_lock_file(path, max_readers)
            for attempt in range(RESIZE_RETRIES):
                try:
                    handle.env = lmdb.open(
                        path,
                        map_size=size,
                        max_dbs=16,
                        max_readers=max_readers,
                        sync=durable,
                        metasync=durable,
                        readahead=False,
                        writemap=writemap,
                        lock=True,
                    )
                    break
                except lmdb.MapResizedError as exc:
                    # Another process grew the map between LMDB reading the size and
                    # py-lmdb's first transaction: opening again reads the new size.
                    if attempt == RESIZE_RETRIES - 1:
                        raise handle.translate(exc, f"open({path!r})") from None
                except lmdb.Error as exc:
                    raise handle.translate(exc, f"open({path!r})") from None
                except OSError as exc:
                    raise _os_failure(exc, f"open({path!r})", path, "check the path and its permissions") from None
            if writemap and meta is None:
                handle.reserve(handle.env.info()["map_size"], "creating the store")
        for attempt in range(RESIZE_RETRIES):
            try:
                handle.env.reader_check()
                _check_format(handle)
                break
            except lmdb.MapResizedError as exc:
                if attempt == RESIZE_RETRIES - 1:
                    raise handle.translate(exc, f"open({path!r})") from None
                handle.set_mapsize(0)  # adopt the size another process grew the map to
            except lmdb.Error as exc:
                raise handle.translate(exc, f"open({path!r})") from None
            except OSError as exc:  # writing the marker file
                what = f"open({path!r}): cannot write {MARKER_FILE}"
                raise _os_failure(exc, what, path, "check the directory's permissions") from None
    except BaseException:
        handle.close()
        raise
    return handle


def _os_failure(exc: OSError, what: str, path: str, hint: str) -> Error:
    """A full disk is a ``DiskFullError`` (free space and retry); any other OS failure a ``StoreError``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DiskFullError(f"{what}: {exc.strerror} ({_free(path)}; free space and retry)")
    return StoreError(f"{what}: {exc.strerror or exc} ({hint})")


RESIZE_RETRIES = 20  # each retry follows another process's growth: a handful is already rare


def check_strategy(value: Any, where: str) -> tuple[int, int, str]:
    """Decode the recorded fan-out settings ``(window, threshold, mode)``; refuse what this version does not know."""
    if value is None or len(value) < 16:
        raise DamagedStoreError(
            f"{where}: the recorded fan-out settings are damaged ({len(value or b'')} bytes) (restore from a backup)"
        )
    window, threshold = struct.unpack_from("=QQ", value)
    raw = bytes(value[16:])
    mode = raw.decode("ascii", "replace")
    if mode not in _options.FANOUTS:
        raise FormatError(
            f"{where}: the store records fan-out strategy {raw[:40]!r}, which this twittercore does not know "
            f"(known: {', '.join(_options.FANOUTS)}; open it with the release that wrote it)"
        )
    return window, threshold, mode


def backup(handle: Handle, path: Any, compact: bool) -> None:
    """``Store.backup``: check the target, copy one snapshot, mark the copy as a store."""
    if not isinstance(path, (str, os.PathLike)):  # (True is neither)
        raise InvalidArgumentError(f"backup: expected a directory path, got {type(path).__name__}")
    _options.flag("compact", compact)
    target = os.fspath(path)
    if not isinstance(target, str) or not target or "\0" in target:
        raise InvalidArgumentError(f"backup({target!r}): expected a str directory path without NUL bytes")
    where = f"backup({target!r})"
    try:
        os.makedirs(target, exist_ok=True)
        if os.listdir(target):
            raise ConfigurationError(f"{where}: the directory is not empty (pick a new one)")
    except OSError as exc:
        raise InvalidArgumentError(f"{where}: {exc.strerror or exc} (pass a new or empty directory)") from None
    try:
        handle.env.copy(target, compact=compact)
        _write_marker(target)
    except lmdb.Error as exc:
        raise handle.translate(exc, where) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(
                f"{where}: the disk is full ({_free(target)}) (free space; the copy is incomplete, delete it)"
            ) from None
        raise StoreError(f"{where}: {exc.strerror or exc}") from None
