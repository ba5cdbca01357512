"""Fan-out on write and hybrid, inside the LMDB store's transactions.

``write``: each publish also lands in a materialised *window* of every sink
following the source (the newest ``window`` ids of its home), so a home read
is one lookup instead of one per followed source.  ``hybrid``: sources with
more than ``celebrity_threshold`` sinks are not pushed; reads merge the window
with those sources' logs, as Twitter does for celebrities.

A window is chunked exactly like a source's log (a small head chunk that
appends cheaply, older sealed chunks), so one delivery rewrites at most
1.5 KiB.  Trimming drops the oldest sealed chunks once the window holds more
than ``window`` ids, and records the newest dropped id as the window's floor
(table ``wfloors``): the window holds every pushed home id above it.  A page
that reaches below the floor is reported incomplete by the merge kernel and
the read falls back to the full merge, so answers never depend on the
strategy (G5).

Celebrity status changes without a rebuild.  A promoted source simply stops
being pushed (its older ids stay in windows; the merge removes duplicates).
A demoted source is pushed again, but windows miss what it published while it
was a celebrity: the ``celebs`` table keeps the position of the demotion and
reads keep pulling that source's log until the sink's window floor passes it.

The strategy, window size and threshold live in the ``meta`` table, so every
process writing to the store maintains the same structures; ``open(...,
fanout=...)`` with other settings rebuilds the windows once.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._types import Event
from .env import check_strategy

if TYPE_CHECKING:
    from .store import LMDBStore

_BE = struct.Struct(">Q")
_CONFIG = struct.Struct("=QQ")
_CELEB = struct.Struct("=QQ")  # is_celebrity, position of the last change
be = _BE.pack
MODES = ("read", "write", "hybrid")
_CONFIG_KEY = b"fanout"
_CELEBS_VERSION = b"celebs_version"
_EMPTY = struct.pack("=QQ", 0, 0)
_COUNT = struct.Struct("=Q")
_MAX = (1 << 64) - 1


class Config:
    """The store-wide fan-out settings, as recorded in ``meta``."""

    __slots__ = ("mode", "window", "threshold")

    def __init__(self, mode: str, window: int, threshold: int) -> None:
        self.mode, self.window, self.threshold = mode, window, threshold

    def encode(self) -> bytes:
        return _CONFIG.pack(self.window, self.threshold) + self.mode.encode()

    @classmethod
    def decode(cls, value: Any, where: str = "store") -> "Config":
        window, threshold, mode = check_strategy(value, where)  # an unknown mode is refused, not read as "read"
        return cls(mode, window, threshold)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and (self.mode, self.window, self.threshold) == (
            other.mode,
            other.window,
            other.threshold,
        )


READ = Config("read", 0, 0)


class Fanout:
    """Window maintenance and window reads for one :class:`LMDBStore`."""

    def __init__(self, store: "LMDBStore", txn: Any) -> None:
        self.store = store
        env = store._env
        self.windows = env.open_db(b"windows", txn=txn)
        self.wfloors = env.open_db(b"wfloors", txn=txn)
        self.celebs = env.open_db(b"celebs", txn=txn)
        self._celeb_cache: tuple[Any, dict[int, tuple[int, int]]] = (None, {})
        #: ids pushed into windows by this process (for benchmarks)
        self.delivered = 0

    # --------------------------------------------------------------- config

    def config(self, txn: Any) -> Config:
        value = txn.get(_CONFIG_KEY, db=self.store._meta)
        return READ if value is None else Config.decode(value, self.store.path)

    def configure(
        self,
        txn: Any,
        wanted: Config,
        progress: Callable[[int, int], None] | None = None,
    ) -> bool:
        """Switch the store to ``wanted``, rebuilding windows and celebrities; True if it changed."""
        if self.config(txn) == wanted:
            return False
        txn.drop(self.windows, delete=False)
        txn.drop(self.wfloors, delete=False)
        txn.drop(self.celebs, delete=False)
        txn.put(_CONFIG_KEY, wanted.encode(), db=self.store._meta)
        self._bump(txn)
        if wanted.mode == "read":
            return True
        seq = self.store._seq(txn)
        if wanted.mode == "hybrid":
            cursor = txn.cursor(self.store._followers)
            for key in cursor.iternext_nodup(keys=True, values=False):
                if cursor.set_key(key) and cursor.count() > wanted.threshold:
                    txn.put(key, _CELEB.pack(1, seq), db=self.celebs)
        sinks = [bytes(k) for k in txn.cursor(self.store._following).iternext_nodup(keys=True, values=False)]
        celebs = self._celebs(txn, write=True)
        for n, sink_key in enumerate(sinks):
            self._rebuild_window(txn, sink_key, wanted, celebs)
            if progress is not None and n % 256 == 0:
                progress(n, len(sinks))
        if progress is not None:
            progress(len(sinks), len(sinks))
        return True

    def _rebuild_window(self, txn: Any, sink_key: bytes, config: Config, celebs: dict) -> None:
        store = self.store
        sources = store._codec.values_of(store._dups(txn, store._following, sink_key))
        pushed = [be(s) for s in sources if not celebs.get(s, (0, 0))[0]]
        heads = [txn.get(p + store._codec.HEAD, db=store._logs) for p in pushed]
        need = config.window + 1
        ids, incomplete = store._merge.newest_floored(heads, need)
        while incomplete:
            for i in incomplete:
                heads[i] = store._extend(txn, pushed[i], heads[i], _MAX, need)
            ids, incomplete = store._merge.newest_floored(heads, need)
        floor = ids[-1] if len(ids) == need else 0
        ids = ids[: config.window]
        ids.reverse()
        self._store(txn, sink_key, floor, ids)

    # --------------------------------------------------------------- windows

    def _load(self, txn: Any, sink_key: bytes) -> tuple[int, list[int]]:
        """A sink's window as ``(floor, ids ascending)``."""
        cursor = txn.cursor(self.windows)
        head_tag = self.store._codec.HEAD
        ids: list[int] = []
        positioned = cursor.set_range(sink_key)
        while positioned and cursor.key()[:8] == sink_key:
            words = array("Q", bytes(cursor.value()))
            if cursor.key()[8:] == head_tag:
                ids.extend(words[2:])
                break
            ids.extend(words)
            positioned = cursor.next()
        return self._floor(txn, sink_key), ids

    def _floor(self, txn: Any, sink_key: bytes) -> int:
        value = txn.get(sink_key, db=self.wfloors)
        return 0 if value is None else _BE.unpack(value)[0]

    def _store(self, txn: Any, sink_key: bytes, floor: int, ids: list[int]) -> None:
        """Replace a sink's window (used by the rare whole-window changes)."""
        cursor = txn.cursor(self.windows)
        if cursor.set_range(sink_key):
            while cursor.key()[:8] == sink_key:
                if not cursor.delete():
                    break
        codec = self.store._codec
        head, sealed = codec.append_head(None, ids)
        for tag, chunk in sealed:
            txn.put(sink_key + be(tag), chunk, db=self.windows)
        words = array("Q", head)
        words[0] = max(words[0], floor)
        txn.put(sink_key + codec.HEAD, words.tobytes(), db=self.windows)
        txn.put(sink_key, be(floor), db=self.wfloors)

    def _trim(self, txn: Any, sink_key: bytes, head: bytes, size: int) -> bytes:
        """Drop the oldest sealed chunks while the rest still hold ``size`` ids; returns the head."""
        words = array("Q", head)
        count = words[1]
        cursor = txn.cursor(self.windows)
        head_tag = self.store._codec.HEAD
        floor = None
        while cursor.set_range(sink_key) and cursor.key()[:8] == sink_key and cursor.key()[8:] != head_tag:
            n = len(cursor.value()) // 8
            if count - n < size:
                break
            floor = _BE.unpack_from(cursor.key(), 8)[0]
            count -= n
            cursor.delete()
        if floor is not None:
            words[1] = count
            txn.put(sink_key, be(floor), db=self.wfloors)
        return words.tobytes()

    # ------------------------------------------------------------ celebrities

    def _bump(self, txn: Any) -> None:
        meta = self.store._meta
        value = txn.get(_CELEBS_VERSION, db=meta)
        version = 0 if value is None else _BE.unpack(value)[0]
        txn.put(_CELEBS_VERSION, be(version + 1), db=meta)

    def _celebs(self, txn: Any, write: bool = False) -> dict[int, tuple[int, int]]:
        """Source -> (is_celebrity, position of the change), cached per version.

        A transaction that changed the table (and bumped the version) must pass
        ``write=True``: its state may never commit, and its version number could
        then be reused by another change, so it uses the cache but never fills it.
        """
        version = txn.get(_CELEBS_VERSION, db=self.store._meta)
        version = None if version is None else bytes(version)
        cached_version, cached = self._celeb_cache
        if version == cached_version and version is not None:
            return cached
        table = {_BE.unpack(k)[0]: _CELEB.unpack(v) for k, v in txn.cursor(self.celebs)}
        if not write:
            self._celeb_cache = (version, table)
        return table

    def _update_celebs(self, txn: Any, source_keys: set[bytes], config: Config, seq: int) -> None:
        """Promote or demote the sources whose follower count crossed the threshold."""
        cursor = txn.cursor(self.store._followers)
        changed = False
        for key in source_keys:
            count = cursor.count() if cursor.set_key(key) else 0
            now = count > config.threshold
            value = txn.get(key, db=self.celebs)
            was = bool(value is not None and _CELEB.unpack(value)[0])
            if now != was:
                txn.put(key, _CELEB.pack(int(now), seq), db=self.celebs)
                changed = True
        if changed:
            self._bump(txn)

    # ------------------------------------------------------------ write hooks

    def on_publish(self, txn: Any, groups: dict[int, list[int]]) -> None:
        config = self.config(txn)
        if config.mode == "read":
            return
        store = self.store
        # A publish never changes the celebrity table, so what this transaction
        # reads is committed state and may fill the cache.
        celebs = self._celebs(txn) if config.mode == "hybrid" else {}
        values_of = store._codec.values_of
        pending: dict[int, list[int]] = {}
        delivered = 0
        for source, ids in groups.items():
            if celebs and celebs.get(source, (0, 0))[0]:
                continue
            sinks = values_of(store._dups(txn, store._followers, be(source)))
            delivered += len(sinks) * len(ids)
            for sink in sinks:
                if sink in pending:
                    pending[sink].extend(ids)
                else:
                    pending[sink] = list(ids)
        windows, limit = self.windows, config.window + store._codec.SEAL
        append, head_tag = store._codec.append_head, store._codec.HEAD
        get, put = txn.get, txn.put
        for sink, ids in pending.items():
            if len(ids) > 1:
                ids.sort()
            prefix = be(sink)
            head, sealed = append(get(prefix + head_tag, db=windows), ids)
            for tag, chunk in sealed:
                put(prefix + be(tag), chunk, db=windows)
            if _COUNT.unpack_from(head, 8)[0] > limit:
                head = self._trim(txn, prefix, head, config.window)
            put(prefix + head_tag, head, db=windows)
        self.delivered += delivered

    def on_follow(self, txn: Any, rows: list[tuple[bytes, bytes, bytes]]) -> None:
        config = self.config(txn)
        if config.mode == "read":
            return
        celebs: dict = {}
        if config.mode == "hybrid":
            self._update_celebs(txn, {source for _, source, _ in rows}, config, _BE.unpack(rows[-1][2])[0])
            celebs = self._celebs(txn, write=True)
        for sink_key, source_key, _ in rows:
            if not celebs.get(_BE.unpack(source_key)[0], (0, 0))[0]:
                self._backfill(txn, sink_key, source_key, config.window)

    def on_unfollow(self, txn: Any, rows: list[tuple[bytes, bytes, bytes]]) -> None:
        config = self.config(txn)
        if config.mode == "read":
            return
        if config.mode == "hybrid":
            self._update_celebs(txn, {source for _, source, _ in rows}, config, _BE.unpack(rows[-1][2])[0])
        for sink_key, source_key, _ in rows:
            floor, ids = self._load(txn, sink_key)
            if not ids:
                continue
            theirs = set(array("Q", self.store._ids_after(txn, source_key, floor, _MAX)))
            self._store(txn, sink_key, floor, [i for i in ids if i not in theirs])

    def on_delete(self, txn: Any, event: Event) -> None:
        if self.config(txn).mode == "read":
            return
        store = self.store
        for sink in store._codec.values_of(store._dups(txn, store._followers, be(event.source))):
            store._unlog(txn, be(sink), event.id, self.windows)

    def _backfill(self, txn: Any, sink_key: bytes, source_key: bytes, size: int) -> None:
        """Merge the newly followed source's newest ids into the sink's window."""
        store = self.store
        head = txn.get(source_key + store._codec.HEAD, db=store._logs)
        if head is None or _COUNT.unpack_from(head, 8)[0] == 0:
            return  # nothing to add (bulk loads of a graph before any post stay cheap)
        floor, ids = self._load(txn, sink_key)
        run = array("Q", bytes(head))
        while len(run) - 2 < size + 1 and run[0] > floor:
            longer = array("Q", store._extend(txn, source_key, run.tobytes(), _MAX, size + 1))
            if longer == run:
                break
            run = longer
        # The source's ids at or below its run's floor were not loaded: the
        # window can only promise completeness above both floors.
        floor = max(floor, run[0])
        merged = sorted(set(ids).union(run[2:]))
        merged = merged[bisect_right(merged, floor):]
        if len(merged) > size:
            floor = merged[len(merged) - size - 1]
            merged = merged[len(merged) - size:]
        self._store(txn, sink_key, floor, merged)

    # ----------------------------------------------------------------- reads

    def home(self, txn: Any, sink: int, limit: int, lo: int, hi: int) -> list[Event] | None:
        """A home page from the window (and pulled celebrities), or None: use the full merge."""
        config = self.config(txn)
        if config.mode == "read":
            return None
        store = self.store
        sink_key = be(sink)
        window = txn.get(sink_key + store._codec.HEAD, db=self.windows)
        heads = [_EMPTY if window is None else window]
        prefixes: list[bytes] = [sink_key]
        if config.mode == "hybrid":
            prefixes += self._pulled(txn, sink_key, self._floor(txn, sink_key))
            head_tag = store._codec.HEAD
            heads += [txn.get(p + head_tag, db=store._logs) for p in prefixes[1:]]
        merge = store._merge.newest_floored
        ids, incomplete = merge(heads, limit, lo, hi)
        bottom = None
        while incomplete:
            if incomplete[0] == 0:
                if bottom is None:
                    bottom = self._floor(txn, sink_key)
                elif _COUNT.unpack_from(heads[0])[0] <= bottom:
                    return None  # the page reaches below the window: full merge
                heads[0] = store._extend(txn, sink_key, heads[0], hi, limit, self.windows, bottom)
                incomplete = incomplete[1:]
            for i in incomplete:
                heads[i] = store._extend(txn, prefixes[i], heads[i], hi, limit)
            ids, incomplete = merge(heads, limit, lo, hi)
        return store._fetch(txn, ids)

    def _pulled(self, txn: Any, sink_key: bytes, floor: int) -> list[bytes]:
        """Prefixes of the sink's sources whose events windows may lack."""
        wanted = [s for s, (celeb, seq) in self._celebs(txn).items() if celeb or seq > floor]
        if not wanted:
            return []
        following = txn.cursor(self.store._following)
        return [be(s) for s in sorted(wanted) if following.set_key_dup(sink_key, be(s))]

    # ---------------------------------------------------------------- check

    def check(self, txn: Any) -> None:
        """Assert that windows hold exactly the pushed home ids above their floors (write mode)."""
        config = self.config(txn)
        if config.mode == "read":
            return
        store = self.store
        sinks = {bytes(k[:8]) for k in txn.cursor(self.windows).iternext(keys=True, values=False)}
        for sink_key in sinks:
            floor, ids = self._load(txn, sink_key)
            assert ids == sorted(set(ids)), sink_key
            assert all(i > floor for i in ids), sink_key
            assert len(ids) <= config.window + 2 * store._codec.SEAL, sink_key
            home = {e.id for e in store._read_page(txn, self._sources(txn, sink_key), 10_000, floor, _MAX, False)}
            assert set(ids) <= home, (sink_key, sorted(set(ids) - home))
            if config.mode == "write":
                assert set(ids) == home, (sink_key, sorted(home - set(ids)))

    def _sources(self, txn: Any, sink_key: bytes) -> list[bytes]:
        store = self.store
        return [be(s) for s in store._codec.values_of(store._dups(txn, store._following, sink_key))]



def celebrity_threshold_default(threshold: int | None, current: Config) -> int:
    """The threshold to use: the option, else the store's, else 10,000 (write mode: never)."""
    if threshold is not None:
        return threshold
    if current.mode == "hybrid":
        return current.threshold
    return 10_000


class rebuild_progress:
    """A rich progress bar for window rebuilds of more than a few thousand sinks."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        if total < 5000:
            return
        if self._bar is None:
            try:
                from rich.progress import Progress
            except ImportError:  # rich is an optional extra
                return
            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
