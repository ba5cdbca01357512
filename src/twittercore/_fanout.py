"""Fan-out on write and hybrid, inside the LMDB store's transactions.

``write``: each publish also lands in a materialised *window* of every sink
following the source (the newest ``window`` ids of its home), so a home read
is one lookup instead of one per followed source.  ``hybrid``: sources with
more than ``celebrity_threshold`` sinks are not pushed; reads merge the window
with those sources' logs, as Twitter does for celebrities.

A window is laid out like a log head, ``[floor, 0, ids...]``: it holds every
pushed home id newer than ``floor``.  A page that reaches below the floor is
reported incomplete by the merge kernel and the read falls back to the full
merge, so answers never depend on the strategy (G5).

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

from ._types import Event

if TYPE_CHECKING:
    from .lmdb_store import LMDBStore

_BE = struct.Struct(">Q")
_CONFIG = struct.Struct("=QQ")
_CELEB = struct.Struct("=QQ")  # is_celebrity, position of the last change
be = _BE.pack
MODES = ("read", "write", "hybrid")
_CONFIG_KEY = b"fanout"
_CELEBS_VERSION = b"celebs_version"
_EMPTY = struct.pack("=QQ", 0, 0)
_MAX = (1 << 64) - 1


class Config:
    """The store-wide fan-out settings, as recorded in ``meta``."""

    __slots__ = ("mode", "window", "threshold")

    def __init__(self, mode: str, window: int, threshold: int) -> None:
        self.mode, self.window, self.threshold = mode, window, threshold

    def encode(self) -> bytes:
        return _CONFIG.pack(self.window, self.threshold) + self.mode.encode()

    @classmethod
    def decode(cls, value: Any) -> "Config":
        window, threshold = _CONFIG.unpack_from(value)
        return cls(bytes(value[16:]).decode(), window, threshold)

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
        self.celebs = env.open_db(b"celebs", txn=txn)
        self._celeb_cache: tuple[Any, dict[int, tuple[int, int]]] = (None, {})
        #: ids pushed into windows by this process (for benchmarks)
        self.delivered = 0

    # --------------------------------------------------------------- config

    def config(self, txn: Any) -> Config:
        value = txn.get(_CONFIG_KEY, db=self.store._meta)
        return READ if value is None else Config.decode(value)

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
        sources = store._codec.sources_of(
            txn.cursor(store._following).getmulti([sink_key], dupdata=True, dupfixed_bytes=8, keyfixed=True)
        )
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
        txn.put(sink_key, array("Q", [floor, 0, *ids]).tobytes(), db=self.windows)

    # ------------------------------------------------------------ celebrities

    def _bump(self, txn: Any) -> None:
        meta = self.store._meta
        value = txn.get(_CELEBS_VERSION, db=meta)
        version = 0 if value is None else _BE.unpack(value)[0]
        txn.put(_CELEBS_VERSION, be(version + 1), db=meta)

    def _celebs(self, txn: Any, write: bool = False) -> dict[int, tuple[int, int]]:
        """Source -> (is_celebrity, position of the change), cached per version.

        A write transaction may hold uncommitted changes (with a new version),
        so it uses the cache when the version matches but never fills it.
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
        celebs = self._celebs(txn, write=True) if config.mode == "hybrid" else {}
        followers = txn.cursor(store._followers)
        values_of = store._codec.values_of
        pending: dict[int, list[int]] = {}
        delivered = 0
        for source, ids in groups.items():
            if celebs and celebs.get(source, (0, 0))[0]:
                continue
            records = followers.getmulti([be(source)], dupdata=True, dupfixed_bytes=8, keyfixed=True)
            sinks = values_of(records)
            delivered += len(sinks) * len(ids)
            for sink in sinks:
                if sink in pending:
                    pending[sink].extend(ids)
                else:
                    pending[sink] = list(ids)
        windows, size, append = self.windows, config.window, store._codec.window_append
        get, put = txn.get, txn.put
        for sink, ids in pending.items():
            if len(ids) > 1:
                ids.sort()
            key = be(sink)
            put(key, append(get(key, db=windows), ids, size), db=windows)
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
            window = txn.get(sink_key, db=self.windows)
            if window is None:
                continue
            words = array("Q", bytes(window))
            theirs = set(array("Q", self.store._ids_after(txn, source_key, words[0], _MAX)))
            kept = [i for i in words[2:] if i not in theirs]
            txn.put(sink_key, array("Q", [words[0], 0, *kept]).tobytes(), db=self.windows)

    def on_delete(self, txn: Any, event: Event) -> None:
        if self.config(txn).mode == "read":
            return
        records = txn.cursor(self.store._followers).getmulti(
            [be(event.source)], dupdata=True, dupfixed_bytes=8, keyfixed=True
        )
        for sink in self.store._codec.values_of(records):
            key = be(sink)
            window = txn.get(key, db=self.windows)
            if window is None:
                continue
            words = array("Q", bytes(window))
            at = bisect_right(words, event.id, 2) - 1
            if at >= 2 and words[at] == event.id:
                del words[at]
                txn.put(key, words.tobytes(), db=self.windows)

    def _backfill(self, txn: Any, sink_key: bytes, source_key: bytes, size: int) -> None:
        """Merge the newly followed source's newest ids into the sink's window."""
        store = self.store
        head = txn.get(source_key + store._codec.HEAD, db=store._logs)
        window = txn.get(sink_key, db=self.windows)
        words = array("Q", bytes(window) if window is not None else _EMPTY)
        floor, ids = words[0], list(words[2:])
        if head is not None:
            run = head
            mine = array("Q", bytes(run))
            while len(mine) - 2 < size + 1 and mine[0] > floor:
                run = store._extend(txn, source_key, run, _MAX, size + 1)
                if bytes(run) == bytes(mine):
                    break
                mine = array("Q", bytes(run))
            # Source ids at or below its own floor were not loaded: the window
            # can only promise completeness above both floors.
            floor = max(floor, mine[0])
            ids = sorted(set(ids).union(mine[2:]))
            ids = ids[bisect_right(ids, floor):]
            if len(ids) > size:
                floor = ids[len(ids) - size - 1]
                ids = ids[len(ids) - size:]
        txn.put(sink_key, array("Q", [floor, 0, *ids]).tobytes(), db=self.windows)

    # ----------------------------------------------------------------- reads

    def home(self, txn: Any, sink: int, limit: int, lo: int, hi: int) -> list[Event] | None:
        """A home page from the window (and pulled celebrities), or None: use the full merge."""
        config = self.config(txn)
        if config.mode == "read":
            return None
        store = self.store
        sink_key = be(sink)
        window = txn.get(sink_key, db=self.windows)
        heads = [_EMPTY if window is None else window]
        prefixes: list[bytes] = [b""]
        if config.mode == "hybrid":
            floor = struct.unpack_from("=Q", heads[0])[0]
            prefixes += self._pulled(txn, sink_key, floor)
            head_tag = store._codec.HEAD
            heads += [txn.get(p + head_tag, db=store._logs) for p in prefixes[1:]]
        merge = store._merge.newest_floored
        ids, incomplete = merge(heads, limit, lo, hi)
        while incomplete:
            if incomplete[0] == 0:
                return None  # the page reaches below the window
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
        for key, value in txn.cursor(self.windows):
            words = array("Q", bytes(value))
            floor, ids = words[0], list(words[2:])
            assert ids == sorted(set(ids)) and len(ids) <= config.window, bytes(key)
            assert all(i > floor for i in ids), bytes(key)
            sink = _BE.unpack(key)[0]
            home = {e.id for e in store._read_page(txn, self._sources(txn, key), 10_000, floor, _MAX, False)}
            assert set(ids) <= home, (sink, sorted(set(ids) - home))
            if config.mode == "write":
                assert set(ids) == home, (sink, sorted(home - set(ids)))

    def _sources(self, txn: Any, sink_key: bytes) -> list[bytes]:
        records = txn.cursor(self.store._following).getmulti([sink_key], dupdata=True, dupfixed_bytes=8, keyfixed=True)
        return [be(s) for s in self.store._codec.sources_of(records)]



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
