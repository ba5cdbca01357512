"""The LMDB store under misuse and damage: fork, dead readers, damaged or foreign files, full disks.

Anything that could kill a process with a signal runs in a child process, so
a regression shows up as a failed assertion on its exit status (SIGBUS is
-7), not as a dead test run.  Every refusal is asserted by exact class, and
the files are compared before and after to show that nothing changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twittercore
from tests.conftest import HAVE_COMPILED
from twittercore import (
    DamagedStoreError,
    DiskFullError,
    Error,
    FormatError,
    InvalidArgumentError,
    ReadersFullError,
)
from twittercore.backends.lmdb import env as lmdb_env

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def run(script: str, *args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter; a hang is a failure (timeout), a signal shows in returncode."""
    full_env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def digest(path: str) -> str:
    """A hash of the store's data file (the lock file is LMDB's scratch space)."""
    data = os.path.join(path, "data.mdb")
    if not os.path.exists(data):
        return "missing"
    with open(data, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_store(path: str, events: int = 3000, **options) -> list[int]:
    with twittercore.open(path, **options) as store:
        store.follow_many([(100, s) for s in range(10)])
        ids = [e.id for e in store.publish_many([(n % 10, b"event %d" % n + b"." * 200) for n in range(events)])]
    return ids


def assert_refused(path: str, error: type, match: str, **options) -> None:
    """``open`` raises exactly ``error``, twice (a refusal leaves nothing locked), changing nothing."""
    before = digest(path)
    for _ in range(2):
        with pytest.raises(Error) as caught:
            twittercore.open(path, **options)
        assert type(caught.value) is error, caught.value
        assert match in str(caught.value)
    assert digest(path) == before


def used_bytes(path: str) -> int:
    with open(os.path.join(path, "data.mdb"), "rb") as f:
        meta = lmdb_env._read_meta(f.fileno(), path)
    return (meta.last_pg + 1) * meta.psize


# --------------------------------------------------------------------- fork

_FORK = """
import os, sys, threading, twittercore
path, busy = sys.argv[1], sys.argv[2] == "busy"
store = twittercore.open(path)
store.follow(1, 2)
store.publish_many([(2, b"x%d" % i) for i in range(500)])
inside, release, seen = threading.Event(), threading.Event(), []

def reader():  # holds one snapshot across the fork and the child's writes
    def work(txn):
        seen.append([bytes(v) for _, v in txn.cursor(store._tables.events)])
        inside.set()
        release.wait(30)
        seen.append([bytes(v) for _, v in txn.cursor(store._tables.events)])
    store._read(work)

def locker():  # a parent thread inside a call: the store's write lock is held at fork time
    with store._write_lock:
        inside.set()
        release.wait(30)

threads = []
if busy:
    for target in (reader, locker):
        inside.clear()
        threads.append(threading.Thread(target=target))
        threads[-1].start()
        inside.wait(10)
readers = store._env.readers().count("\\n")
pid = os.fork()
if pid == 0:
    code = 0
    for call in (lambda: store.publish(2, b"child"), lambda: store.home(1), lambda: store.last_id()):
        try:
            call()
            code = 3
        except twittercore.ForkedError as exc:
            assert "fork" in str(exc) and str(os.getppid()) in str(exc), exc
    store.close()  # must not touch (or close) the parent's environment
    store.close()
    with twittercore.open(path, durable=False) as mine:  # the child opens its own handle
        for n in range(50):
            for event in mine.publish_many([(2, b"c" * 300) for _ in range(40)]):
                if event.id % 3 == 0:
                    mine.delete(event.id)
        mine._check()
    os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert store._env.readers().count("\\n") == readers, "the child cleared the parent's reader slots"
release.set()
for t in threads:
    t.join()
if busy:
    assert seen[0] == seen[1], "the parent's snapshot changed under it"
assert store.last_id() > 500 and store.timeline_count(2) > 500
store.publish(2, b"parent after")
store._check()
store.close()
print("ok")
"""


@pytest.mark.parametrize("mode", ["idle", "busy"])
def test_a_forked_child_gets_forked_error_and_can_open_its_own_store(lmdb_path, mode):
    result = run(_FORK, lmdb_path, mode, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------ stale readers

_HOLD_READER = """
import sys, time, twittercore
store = twittercore.open(sys.argv[1], max_readers=4)
def hold(txn):
    print("holding", flush=True)
    time.sleep(120)
store._read(hold)
"""


def _hold_readers(path: str, count: int) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = []
    for _ in range(count):  # one at a time: each open needs a free slot for a moment
        procs.append(
            subprocess.Popen([sys.executable, "-c", _HOLD_READER, path], stdout=subprocess.PIPE, text=True, env=env)
        )
        if procs[-1].stdout.readline().strip() != "holding":
            _stop(procs)
            raise AssertionError("a reader process did not start")
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()


def _nested_read(store) -> int:
    """A read inside a read: the second needs a reader slot of its own (as a second thread would)."""
    return store._read(lambda txn: store.last_id())


def test_slots_of_sigkilled_readers_are_cleared(lmdb_path):
    ids = make_store(lmdb_path, events=100, max_readers=4)
    store = twittercore.open(lmdb_path, max_readers=4)  # keeps one slot (py-lmdb's spare transaction)
    procs = _hold_readers(lmdb_path, 3)  # the table is full
    try:
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
        _stop(procs)
        # The open store meets a full table, clears the dead slots and retries.
        assert _nested_read(store) == ids[-1]
        assert [e.id for e in store.home(100, limit=5)] == ids[::-1][:5]
    finally:
        store.close()
        _stop(procs)
    procs = _hold_readers(lmdb_path, 3)
    try:
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
        _stop(procs)
        with twittercore.open(lmdb_path, max_readers=4) as fresh:  # a fresh open clears them at once
            assert _nested_read(fresh) == ids[-1]
    finally:
        _stop(procs)


def test_a_table_full_of_live_readers_is_a_readers_full_error(lmdb_path):
    ids = make_store(lmdb_path, events=100, max_readers=4)
    store = twittercore.open(lmdb_path, max_readers=4)
    procs = _hold_readers(lmdb_path, 3)
    try:
        before = digest(lmdb_path)
        with pytest.raises(Error) as caught:
            _nested_read(store)
        assert type(caught.value) is ReadersFullError
        assert "max_readers" in str(caught.value)
        assert digest(lmdb_path) == before
    finally:
        _stop(procs)
    assert _nested_read(store) == ids[-1]  # the holders are gone: their slots are free again
    store.close()


def test_open_retries_when_another_process_grows_the_map_meanwhile(lmdb_path, monkeypatch):
    """LMDB reads the map size, then py-lmdb's first transaction meets a bigger one (CI saw it): open again."""
    ids = make_store(lmdb_path, events=100)
    real, calls = lmdb.open, []

    def grown_meanwhile(*args, **kwargs):
        calls.append(kwargs["map_size"])
        if len(calls) < 3:
            raise lmdb.MapResizedError(
                "mdb_txn_begin: MDB_MAP_RESIZED: Database contents grew beyond environment mapsize"
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(lmdb_env.lmdb, "open", grown_meanwhile)
    with twittercore.open(lmdb_path) as store:
        assert store.last_id() == ids[-1]
    assert len(calls) == 3


def test_open_gives_up_with_a_store_error_if_the_map_never_settles(lmdb_path, monkeypatch):
    make_store(lmdb_path, events=10)

    def always(*args, **kwargs):
        raise lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED")

    monkeypatch.setattr(lmdb_env.lmdb, "open", always)
    with pytest.raises(Error) as caught:
        twittercore.open(lmdb_path)
    assert "MAP_RESIZED" in str(caught.value)
    monkeypatch.undo()
    with twittercore.open(lmdb_path) as store:  # nothing was left open or locked
        assert store.last_id() > 0


# --------------------------------------------------------- damaged files

_OPEN_AND_READ = """
import sys, twittercore
try:
    with twittercore.open(sys.argv[1], durable=sys.argv[2] == "1") as store:
        for sink in (100, 3):
            store.home(sink, limit=200)
        for source in range(10):
            store.timeline(source, limit=200, min_id=0)
        store.event(1)
        store._check()
    print("opened")
except twittercore.Error as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("durable", [True, False])
@pytest.mark.parametrize("keep", ["8KiB", "50%", "90%"])
def test_a_truncated_data_file_is_refused_before_it_is_mapped(lmdb_path, durable, keep):
    make_store(lmdb_path, durable=durable)
    used = used_bytes(lmdb_path)
    size = 8192 if keep == "8KiB" else int(used * int(keep[:-1]) / 100) // 4096 * 4096
    os.truncate(os.path.join(lmdb_path, "data.mdb"), size)
    before = digest(lmdb_path)
    result = run(_OPEN_AND_READ, lmdb_path, "1" if durable else "0")
    assert result.returncode == 0, (result.returncode, result.stderr)  # -7 would be SIGBUS
    assert result.stdout.startswith("DamagedStoreError"), result.stdout
    assert "shorter than its metadata says" in result.stdout
    assert digest(lmdb_path) == before  # a writemap open would have extended it: it was never opened


def test_a_healthy_file_that_ends_short_of_freed_pages_still_opens(tmp_path):
    # LMDB never writes pages allocated and freed in one transaction, so a
    # sound file can end before its last page number: those pages are free.
    import random

    path = str(tmp_path / "raw")
    env = lmdb.open(path, map_size=1 << 30, max_dbs=2)
    table = env.open_db(b"a")
    rnd, keys, short = random.Random(2), [], 0
    for _n in range(3000):
        with env.begin(write=True, db=table) as txn:
            for _ in range(rnd.randint(1, 60)):
                keys.append(b"%08d" % rnd.randrange(10**8))
                txn.put(keys[-1], b"v" * rnd.randint(10, 3000))
            for _ in range(rnd.randint(0, 80)):
                if keys:
                    txn.delete(keys.pop(rnd.randrange(len(keys))))
        info, psize = env.info(), env.stat()["psize"]
        if os.path.getsize(os.path.join(path, "data.mdb")) < (info["last_pgno"] + 1) * psize:
            short += 1
            assert lmdb_env._check_data_file(path, path) is not None
            if short == 3:
                break
    env.close()
    assert short, "the workload never left the file short; the test checks nothing"


@pytest.mark.parametrize("durable", [True, False])
def test_an_emptied_or_missing_data_file_is_refused_not_recreated(lmdb_path, durable):
    make_store(lmdb_path, durable=durable)
    data = os.path.join(lmdb_path, "data.mdb")
    os.truncate(data, 0)
    assert_refused(lmdb_path, DamagedStoreError, "is empty (0 bytes)", durable=durable)
    os.unlink(data)
    assert_refused(lmdb_path, DamagedStoreError, "is missing", durable=durable)
    assert not os.path.exists(data)


def test_a_zeroed_tree_page_is_a_damaged_store_error_not_a_crash(lmdb_path):
    make_store(lmdb_path)
    with open(os.path.join(lmdb_path, "data.mdb"), "r+b") as f:
        psize = lmdb_env._read_meta(f.fileno(), lmdb_path).psize
        # The main table's root (mm_dbs[MAIN_DBI].md_root) of the committed meta page.
        metas = [os.pread(f.fileno(), 200, page * psize) for page in (0, 1)]
        txnids = [struct.unpack_from("=Q", m, 16 + 24 + 96 + 8)[0] for m in metas]
        committed = metas[txnids[0] < txnids[1]]
        root = struct.unpack_from("=Q", committed, 16 + 24 + 48 + 40)[0]
        f.seek(root * psize)
        f.write(bytes(psize))
    result = run(_OPEN_AND_READ, lmdb_path, "1")
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.startswith("DamagedStoreError"), result.stdout


def test_zeroed_pages_anywhere_never_crash(lmdb_path):
    make_store(lmdb_path)
    pages = used_bytes(lmdb_path) // 4096
    for offset in sorted({2, 3, pages // 3, pages // 2, pages - 2}):
        copy = f"{lmdb_path}-{offset}"
        shutil.copytree(lmdb_path, copy)
        with open(os.path.join(copy, "data.mdb"), "r+b") as f:
            f.seek(offset * 4096)
            f.write(bytes(4096 * 2))
        result = run(_OPEN_AND_READ, copy, "1")
        assert result.returncode == 0, (offset, result.returncode, result.stderr)  # no signal
        assert result.stdout.startswith(("opened", "DamagedStoreError", "NotFoundError")), (offset, result.stdout)


# --------------------------------------------------- foreign or other formats


def test_another_programs_environment_with_the_same_tables_is_refused(lmdb_path):
    env = lmdb.open(lmdb_path, max_dbs=16)
    for name in (b"meta", b"events", b"logs", b"following", b"followers"):
        db = env.open_db(name)
        with env.begin(write=True, db=db) as txn:
            txn.put(b"seq", b"\x00" * 3)
    env.close()
    assert_refused(lmdb_path, FormatError, "no format marker")


def test_a_plain_lmdb_environment_is_refused(lmdb_path):
    env = lmdb.open(lmdb_path)
    with env.begin(write=True) as txn:
        txn.put(b"meta", b"not a table")
        txn.put(b"user:1", b"alice")
    env.close()
    assert_refused(lmdb_path, FormatError, "'meta' is not a table here")
    env = lmdb.open(lmdb_path)
    with env.begin(write=True) as txn:
        txn.delete(b"meta")
    env.close()
    assert_refused(lmdb_path, FormatError, "not a twittercore store (its tables are b'user:1')")


def test_a_file_that_is_not_lmdb_is_refused(lmdb_path):
    os.makedirs(lmdb_path)
    with open(os.path.join(lmdb_path, "data.mdb"), "wb") as f:
        f.write(b"SQLite format 3\x00" + bytes(8192))
    assert_refused(lmdb_path, FormatError, "not an LMDB environment")


def _set_meta(path: str, key: bytes, value: bytes) -> None:
    env = lmdb.open(path, max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(key, value, db=meta)
    env.close()


@pytest.mark.parametrize(
    "marker, error, match",
    [
        (b"twittercore-lmdb/2", FormatError, "upgrade twittercore"),
        (b"twittercore-lmdb/0", FormatError, "release that made it"),
        (b"someone-else/1", FormatError, "format marker is b'someone-else/1'"),
    ],
)
def test_other_format_versions_are_refused(lmdb_path, marker, error, match):
    ids = make_store(lmdb_path, events=10)
    _set_meta(lmdb_path, lmdb_env.FORMAT_KEY, marker)
    assert_refused(lmdb_path, error, match)
    _set_meta(lmdb_path, lmdb_env.FORMAT_KEY, lmdb_env.FORMAT)
    with twittercore.open(lmdb_path) as store:  # put back, it opens with everything in it
        assert store.last_id() == ids[-1]


def test_an_unknown_strategy_in_the_metadata_is_refused(lmdb_path):
    make_store(lmdb_path, events=10, fanout="write")
    _set_meta(lmdb_path, b"fanout", struct.pack("=QQ", 800, 0) + b"sideways")
    assert_refused(lmdb_path, FormatError, "b'sideways'")
    assert_refused(lmdb_path, FormatError, "b'sideways'", fanout="read")  # not rebuilt over either


def test_a_backup_opens_as_a_store(lmdb_path, tmp_path):
    ids = make_store(lmdb_path, events=50)
    with twittercore.open(lmdb_path) as store:
        store.backup(str(tmp_path / "copy"))
        for bad, error in [
            (5, InvalidArgumentError),
            ("a\0b", InvalidArgumentError),
            (str(tmp_path / "copy"), twittercore.ConfigurationError),
            (os.path.join(lmdb_path, "data.mdb"), InvalidArgumentError),
        ]:
            with pytest.raises(Error) as caught:
                store.backup(bad)
            assert type(caught.value) is error, (bad, caught.value)
    assert os.path.exists(tmp_path / "copy" / lmdb_env.MARKER_FILE)
    with twittercore.open(str(tmp_path / "copy")) as copy:
        assert copy.last_id() == ids[-1]


# ---------------------------------------------------------------- full disk

_FILL = """
import os, sys, twittercore
path, durable, other = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
store = twittercore.open(path, durable=durable, map_size=1 << 20)
store.follow(7, 1)
if other:  # another program takes the rest of the disk after the store opened
    with open(os.path.join(os.path.dirname(path), "filler"), "wb") as f:
        try:
            while True:
                f.write(b"\\0" * 65536)
                f.flush()
        except OSError:
            pass
acked = []
try:
    for n in range(100000):
        acked += [e.id for e in store.publish_many([(1, b"p" * 1000) for _ in range(20)])]
except twittercore.Error as exc:
    error = exc
last = store.last_id()
try:  # a full disk changes nothing: the store answers as before the failed call
    store.publish_many([(1, b"p" * 1000) for _ in range(200)])
except twittercore.DiskFullError:
    pass
assert store.last_id() == last
print(type(error).__name__, len(acked), last, flush=True)
store.close()
"""

_AFTER = """
import os, sys, twittercore
path, durable, count, last = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
with twittercore.open(path, durable=durable) as store:
    assert store.timeline_count(1) == count, (store.timeline_count(1), count)
    assert store.last_id() == last
    assert [e.id for e in store.home(7, limit=3)] == list(range(last, last - 3, -1))[:count]
    store.publish_many([(1, b"after") for _ in range(50)])  # space is back: writes work
    store._check()
print("ok")
"""


@pytest.fixture
def small_disk():
    """A 6 MiB tmpfs (root only), unmounted afterwards."""
    mount = tempfile.mkdtemp(prefix="twittercore-tmpfs-")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mount], capture_output=True, check=False)
    if made.returncode:
        os.rmdir(mount)
        pytest.skip("cannot mount a tmpfs here (needs root); test_file_size_limit covers the errors")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)
        os.rmdir(mount)


@pytest.mark.parametrize("other", [False, True], ids=["store-fills-disk", "other-program-fills-disk"])
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "writemap"])
def test_a_full_disk_is_a_disk_full_error_and_loses_nothing(small_disk, durable, other):
    path = os.path.join(small_disk, "store")
    flag = "1" if durable else "0"
    result = run(_FILL, path, flag, "1" if other else "0", timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr)  # -7: SIGBUS
    name, count, last = result.stdout.split()
    assert name == DiskFullError.__name__, result.stdout
    filler = os.path.join(small_disk, "filler")
    if os.path.exists(filler):
        os.unlink(filler)
    else:  # the store filled it: make room by other means
        with open(os.path.join(small_disk, "spare"), "wb"):
            pass
    result = run(_AFTER, path, flag, count, last)
    assert result.returncode == 0 and "ok" in result.stdout, (result.returncode, result.stderr)


_FSIZE = """
import resource, signal, sys, twittercore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
path, durable = sys.argv[1], sys.argv[2] == "1"
resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))
store = twittercore.open(path, durable=durable, map_size=1 << 20)
acked = 0
try:
    for n in range(100000):
        store.publish_many([(1, b"q" * 1000) for _ in range(20)])
        acked += 20
except twittercore.Error as exc:
    print(type(exc).__name__, acked, store.last_id(), flush=True)
"""


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "writemap"])
def test_file_size_limit_is_a_disk_full_error(lmdb_path, durable):
    result = run(_FSIZE, lmdb_path, "1" if durable else "0")
    assert result.returncode == 0, (result.returncode, result.stderr)
    name, acked, last = result.stdout.split()
    assert name == DiskFullError.__name__ and int(acked) > 0 and int(acked) == int(last), result.stdout
    with twittercore.open(lmdb_path, durable=durable) as store:
        assert store.timeline_count(1) == int(acked)


# ----------------------------------------------------- arguments and options


def test_bytes_are_not_pairs(lmdb_path):
    with twittercore.open(lmdb_path) as store:
        for bad in ([(1, 2), b"xy"], [(1, 2), "xy"], [(1, 2), bytearray(b"xy")], None, 5, b"xy"):
            for call in (store.follow_many, store.unfollow_many):
                with pytest.raises(InvalidArgumentError):
                    call(bad)
        with pytest.raises(InvalidArgumentError):
            store.publish_many(5)
        with pytest.raises(InvalidArgumentError):
            store.publish_many([(1, b"ok"), b"xy"])
        assert store.last_id() == 0 and store.sources(120) == []


@pytest.mark.parametrize(
    "options",
    [
        {"max_readers": -1},
        {"max_readers": 2**40},
        {"max_readers": "x"},
        {"map_size": 4096},
        {"map_size": 2**70},
        {"writemap": "yes"},
        {"clock": "x"},
    ],
)
def test_bad_lmdb_options_are_configuration_errors_and_leave_nothing(lmdb_path, options):
    with pytest.raises(twittercore.ConfigurationError):
        twittercore.open(lmdb_path, **options)
    assert not os.path.exists(lmdb_path)
    twittercore.open(lmdb_path).close()


def test_infinite_timeouts_wait_forever(lmdb_path):
    with twittercore.open(lmdb_path) as store:
        import threading

        threading.Timer(0.2, lambda: store.publish(1, b"wake")).start()
        started = time.monotonic()
        assert store.wait(0, timeout=float("inf")) is True
        assert time.monotonic() - started < 30
        store.follow(2, 1)
        threading.Timer(0.2, lambda: store.publish(1, b"next")).start()
        assert next(iter(store.tail(2, timeout=1e300))).payload == b"next"


@pytest.mark.parametrize("kernel", ["python"] + (["cython"] if HAVE_COMPILED else []))
def test_damaged_records_are_damaged_store_errors(lmdb_path, kernel):
    ids = make_store(lmdb_path, events=50)
    env = lmdb.open(lmdb_path, max_dbs=16)
    events, logs = env.open_db(b"events"), env.open_db(b"logs")
    with env.begin(write=True) as txn:
        txn.put(struct.pack(">Q", ids[-1]), b"short", db=events)  # an event record cut to 5 bytes
        head_key = struct.pack(">Q", 3) + b"\xff" * 8
        assert txn.get(head_key, db=logs) is not None
        txn.put(head_key, b"\x01" * 13, db=logs)  # source 3's head: not whole 8-byte ids
    env.close()
    with twittercore.open(lmdb_path, kernel=kernel) as store:
        for call in (
            lambda: store.event(ids[-1]),
            lambda: store.home(100),
            lambda: store.timeline(3),
            lambda: store.publish(3, b"onto a damaged head"),
        ):
            with pytest.raises(Error) as caught:
                call()
            assert type(caught.value) is DamagedStoreError, caught.value
        assert store.last_id() == ids[-1]  # the refused publish changed nothing
        assert store.event(ids[0]).payload.startswith(b"event 0")


# ------------------------------------------------------------- API fuzzing


def _released_view():
    view = memoryview(b"gone")
    view.release()
    return view


_ODD = st.sampled_from(
    [
        -1,
        2**64,
        2**70,
        1.5,
        float("nan"),
        float("inf"),
        -float("inf"),
        True,
        None,
        "7",
        "",
        b"",
        b"xy",
        bytearray(b"ab"),
        [1, 2],
        (1,),
        (1, 2, 3),
        {},
        object(),
        0,
        1,
        2,
        3,
        2**64 - 1,
    ]
)
_VALUE = st.one_of(st.integers(0, 4), _ODD)
_PAYLOAD = st.one_of(
    st.binary(max_size=8), _ODD, st.builds(_released_view), st.just(b"x" * (twittercore.MAX_PAYLOAD + 1))
)
_PAIRS = st.one_of(_ODD, st.lists(st.one_of(st.tuples(_VALUE, _VALUE), _ODD), max_size=4))
_ITEMS = st.one_of(_ODD, st.lists(st.one_of(st.tuples(_VALUE, _PAYLOAD), _ODD), max_size=4))
_SHORT = st.one_of(st.sampled_from([0, 0.001, -1, float("nan"), "1", b"", True, [1]]))


def _calls():
    node = _VALUE
    page = {"limit": st.one_of(st.integers(1, 30), _ODD), "max_id": _VALUE, "since_id": _VALUE, "min_id": _VALUE}
    return st.one_of(
        st.tuples(st.sampled_from(["follow", "unfollow", "is_following"]), st.tuples(node, node), st.just({})),
        st.tuples(st.sampled_from(["follow_many", "unfollow_many"]), st.tuples(_PAIRS), st.just({})),
        st.tuples(st.just("publish"), st.tuples(node, _PAYLOAD), st.just({})),
        st.tuples(st.just("publish_many"), st.tuples(_ITEMS), st.just({})),
        st.tuples(
            st.sampled_from(["event", "delete", "timeline_count", "source_count", "sink_count"]),
            st.tuples(node),
            st.just({}),
        ),
        st.tuples(
            st.sampled_from(["sources", "sinks"]),
            st.tuples(node),
            st.fixed_dictionaries({}, optional={"limit": _VALUE, "after": _VALUE}),
        ),
        st.tuples(st.sampled_from(["home", "timeline"]), st.tuples(node), st.fixed_dictionaries({}, optional=page)),
        st.tuples(st.just("changes"), st.tuples(node, node), st.fixed_dictionaries({}, optional={"limit": _VALUE})),
        st.tuples(st.just("wait"), st.tuples(node), st.fixed_dictionaries({"timeout": _SHORT})),
        st.tuples(
            st.just("tail"), st.tuples(node), st.fixed_dictionaries({"timeout": _SHORT}, optional={"after": _VALUE})
        ),
        st.tuples(
            st.just("backup"),
            st.tuples(st.sampled_from(["fresh", "nonempty", "file", "a\0b", "", 5, None, b"x"])),
            st.just({}),
        ),
    )


def _state(store) -> tuple:
    return (
        store.last_id(),
        [[e.id for e in store.home(s, limit=50)] for s in range(4)],
        [store.sources(s) for s in range(4)],
        [store.timeline_count(s) for s in range(4)],
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(_calls(), min_size=1, max_size=12))
def test_fuzzed_calls_raise_only_twittercore_errors_and_change_nothing_when_refused(tmp_path, calls):
    path = tempfile.mkdtemp(dir=tmp_path)
    with twittercore.open(os.path.join(path, "store"), durable=False) as store:
        store.follow_many([(s, t) for s in range(4) for t in range(4) if s != t])
        store.publish_many([(n % 4, b"seed %d" % n) for n in range(12)])
        for name, args, kwargs in calls:
            if name == "backup":  # paths inside this example's directory only
                where = {
                    "fresh": tempfile.mkdtemp(dir=path) + "/copy",
                    "nonempty": path,
                    "file": os.path.join(path, "store", "data.mdb"),
                }
                args = (where.get(args[0], args[0]),)
            before = _state(store)
            try:
                result = getattr(store, name)(*args, **kwargs)
                if name == "tail":
                    for _ in zip(range(3), result):
                        pass
            except Error:
                assert _state(store) == before, (name, args, kwargs)
            store._check()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    options=st.fixed_dictionaries(
        {},
        optional={
            name: _ODD
            for name in (
                "map_size",
                "max_readers",
                "writemap",
                "clock",
                "durable",
                "fanout",
                "window",
                "celebrity_threshold",
                "kernel",
                "event_cache",
                "bogus",
            )
        },
    )
)
def test_fuzzed_open_options_raise_only_twittercore_errors_and_leave_nothing(tmp_path, options):
    path = os.path.join(tempfile.mkdtemp(dir=tmp_path), "store")
    try:
        twittercore.open(path, **options).close()
    except Error:
        pass
    twittercore.open(path).close()  # never left locked or half-made


def test_a_file_where_a_store_should_be_is_a_store_error(tmp_path):
    target = tmp_path / "plain-file"
    target.write_bytes(b"not a directory")
    with pytest.raises(Error) as caught:
        twittercore.open(str(target))
    assert type(caught.value) is twittercore.StoreError and "not a directory" in str(caught.value)
    assert target.read_bytes() == b"not a directory"


def test_a_store_of_the_first_release_opens_and_is_marked(lmdb_path):
    """0.1.0 wrote no format marker; its stores must keep opening after an upgrade."""
    with twittercore.open(lmdb_path, durable=False) as store:
        store.follow(1, 2)
        event = store.publish(2, b"kept")
    env = lmdb.open(lmdb_path, max_dbs=16)
    with env.begin(write=True) as txn:
        for name in (b"keys", b"keytimes"):  # tables this release added
            txn.drop(env.open_db(name, txn=txn), delete=True)
        txn.delete(b"format", db=env.open_db(b"meta", txn=txn))
    env.close()
    for name in os.listdir(lmdb_path):
        if name not in ("data.mdb", "lock.mdb"):
            os.remove(os.path.join(lmdb_path, name))
    with twittercore.open(lmdb_path, durable=False) as store:
        assert store.home(1) == [event]
        store._check()
    assert any(name not in ("data.mdb", "lock.mdb") for name in os.listdir(lmdb_path))  # the marker file is back


def test_a_doorbell_used_after_its_close_does_nothing(tmp_path):
    """A store's watcher thread can outlive the close by one bounded sleep (the join has a timeout);
    its last calls then find the doorbell closed and must neither crash nor touch the unmapped page."""
    from twittercore.backends.lmdb.wakeup import open_doorbell

    bell = open_doorbell(str(tmp_path))
    if bell is None:
        pytest.skip("no futex doorbell on this platform")
    other = open_doorbell(str(tmp_path))  # another process's view of the same file
    assert other is not None
    try:
        bell.waiting(True)
        assert other._words[1] == 1  # one waiting process counted
        bell.close()
        assert other._words[1] == 0 and bell.value() == 0  # counted out by the close
        bell.waiting(False)  # the watcher's finally, after the close: no crash, no count
        bell.waiting(True)
        bell.sleep(0, 0.01)
        bell.close()  # twice is fine
        assert other._words[1] == 0
    finally:
        other.close()
