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
from typing import Any

from ..._kernel import Merge
from ..._types import Event
from .chunks import Chunks
from .env import check_strategy
from .keys import BE, MAX, U64, be
from .read import Reader
from .tables import Codec, Table, Tables, Txn, dups

#: ``progress(done, total)``: told how far a window rebuild is (``open(progress=...)``).
Progress = Callable[[int, int], None]

_CONFIG = struct.Struct("=QQ")
_CELEB = struct.Struct("=QQ")  # is_celebrity, position of the last change
_CONFIG_KEY = b"fanout"
_CELEBS_VERSION = b"celebs_version"
_EMPTY = struct.pack("=QQ", 0, 0)
#: Sinks rebuilt between two progress reports.
_PROGRESS_EVERY = 256


class Config:
    """The store-wide fan-out settings, as recorded in ``meta``."""

    __slots__ = ("mode", "window", "threshold")

    def __init__(self, mode: str, window: int, threshold: int) -> None:
        self.mode, self.window, self.threshold = mode, window, threshold

    def encode(self) -> bytes:
        return _CONFIG.pack(self.window, self.threshold) + self.mode.encode()

    @classmethod
    def decode(cls, value: Any, where: str = "store") -> Config:
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
    """Window maintenance and window reads for one LMDB store.

    It is given what it uses: the store's tables, its logs and reader, the
    codec and merge kernel; it opens and owns the three fan-out tables.
    """

    def __init__(
        self,
        env: Any,
        txn: Txn,
        tables: Tables,
        logs: Chunks,
        reader: Reader,
        codec: Codec,
        merge: Merge,
        path: str,
    ) -> None:
        self._tables = tables
        self._logs = logs
        self._reader = reader
        self._codec = codec
        self._merge = merge
        self._path = path
        self.windows: Table = env.open_db(b"windows", txn=txn)
        self.wfloors: Table = env.open_db(b"wfloors", txn=txn)
        self.celebs: Table = env.open_db(b"celebs", txn=txn)
        self._windows = Chunks(self.windows, codec)
        self._celeb_cache: tuple[Any, dict[int, tuple[int, int]]] = (None, {})
        self._config_seen: tuple[bytes, Config] = (b"", READ)
        #: ids pushed into windows by this process (for benchmarks)
        self.delivered = 0

    # --------------------------------------------------------------- config

    def config(self, txn: Txn) -> Config:
        value = txn.get(_CONFIG_KEY, db=self._tables.meta)
        if value is None:
            return READ
        # Every read asks; the record changes only with a strategy switch.
        raw, config = self._config_seen
        if value != raw:
            config = Config.decode(value, self._path)
            self._config_seen = (bytes(value), config)
        return config

    def configure(self, txn: Txn, wanted: Config, progress: Progress | None = None) -> bool:
        """Switch the store to ``wanted``, rebuilding windows and celebrities; True if it changed.

        ``progress(done, total)`` hears of the rebuild every few hundred sinks
        and once at the end (``done == total``); after a map-full retry the
        rebuild, and so the reports, start again from 0.
        """
        if self.config(txn) == wanted:
            return False
        tables = self._tables
        txn.drop(self.windows, delete=False)
        txn.drop(self.wfloors, delete=False)
        txn.drop(self.celebs, delete=False)
        txn.put(_CONFIG_KEY, wanted.encode(), db=tables.meta)
        self._bump(txn)
        if wanted.mode == "read":
            return True
        seq = tables.seq(txn)
        if wanted.mode == "hybrid":
            cursor = txn.cursor(tables.followers)
            for key in cursor.iternext_nodup(keys=True, values=False):
                if cursor.set_key(key) and cursor.count() > wanted.threshold:
                    txn.put(key, _CELEB.pack(1, seq), db=self.celebs)
        sinks = [bytes(k) for k in txn.cursor(tables.following).iternext_nodup(keys=True, values=False)]
        celebs = self._celebs(txn, write=True)
        for n, sink_key in enumerate(sinks):
            if progress is not None and n % _PROGRESS_EVERY == 0:
                progress(n, len(sinks))
            self._rebuild_window(txn, sink_key, wanted, celebs)
        if progress is not None:
            progress(len(sinks), len(sinks))
        return True

    def _rebuild_window(self, txn: Txn, sink_key: bytes, config: Config, celebs: dict[int, tuple[int, int]]) -> None:
        sources = self._codec.values_of(dups(txn, self._tables.following, sink_key))
        pushed = [be(s) for s in sources if not celebs.get(s, (0, 0))[0]]
        logs, head_tag = self._tables.logs, self._codec.HEAD
        heads = [txn.get(p + head_tag, db=logs) for p in pushed]
        need = config.window + 1
        newest_floored = self._merge.newest_floored
        ids, incomplete = newest_floored(heads, need)
        while incomplete:
            for i in incomplete:
                heads[i] = self._logs.extend(txn, pushed[i], heads[i], MAX, need)
            ids, incomplete = newest_floored(heads, need)
        floor = ids[-1] if len(ids) == need else 0
        ids = ids[: config.window]
        ids.reverse()
        self._store(txn, sink_key, floor, ids)

    # --------------------------------------------------------------- windows

    def _load(self, txn: Txn, sink_key: bytes) -> tuple[int, list[int]]:
        """A sink's window as ``(floor, ids ascending)``."""
        return self._floor(txn, sink_key), list(array("Q", self._windows.ids_after(txn, sink_key, 0, MAX)))

    def _floor(self, txn: Txn, sink_key: bytes) -> int:
        value = txn.get(sink_key, db=self.wfloors)
        if value is None:
            return 0
        floor: int = BE.unpack(value)[0]
        return floor

    def _store(self, txn: Txn, sink_key: bytes, floor: int, ids: list[int]) -> None:
        """Replace a sink's window (used by the rare whole-window changes)."""
        self._windows.replace(txn, sink_key, ids, floor)
        txn.put(sink_key, be(floor), db=self.wfloors)

    def _trim(self, txn: Txn, sink_key: bytes, head: bytes, size: int) -> bytes:
        """Drop the oldest sealed chunks while the rest still hold ``size`` ids; returns the head."""
        words = array("Q", head)
        count = words[1]
        cursor = txn.cursor(self.windows)
        head_tag = self._codec.HEAD
        floor = None
        while cursor.set_range(sink_key) and cursor.key()[:8] == sink_key and cursor.key()[8:] != head_tag:
            n = len(cursor.value()) // 8
            if count - n < size:
                break
            floor = BE.unpack_from(cursor.key(), 8)[0]
            count -= n
            cursor.delete()
        if floor is not None:
            words[1] = count
            txn.put(sink_key, be(floor), db=self.wfloors)
        return words.tobytes()

    # ------------------------------------------------------------ celebrities

    def _bump(self, txn: Txn) -> None:
        meta = self._tables.meta
        value = txn.get(_CELEBS_VERSION, db=meta)
        version = 0 if value is None else BE.unpack(value)[0]
        txn.put(_CELEBS_VERSION, be(version + 1), db=meta)

    def _celebs(self, txn: Txn, write: bool = False) -> dict[int, tuple[int, int]]:
        """Source -> (is_celebrity, position of the change), cached per version.

        A transaction that changed the table (and bumped the version) must pass
        ``write=True``: its state may never commit, and its version number could
        then be reused by another change, so it uses the cache but never fills it.
        """
        value = txn.get(_CELEBS_VERSION, db=self._tables.meta)
        version = None if value is None else bytes(value)
        cached_version, cached = self._celeb_cache
        if version == cached_version and version is not None:
            return cached
        table = {BE.unpack(k)[0]: _CELEB.unpack(v) for k, v in txn.cursor(self.celebs)}
        if not write:
            self._celeb_cache = (version, table)
        return table

    def _update_celebs(self, txn: Txn, source_keys: set[bytes], config: Config, seq: int) -> None:
        """Promote or demote the sources whose follower count crossed the threshold."""
        cursor = txn.cursor(self._tables.followers)
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

    def on_publish(self, txn: Txn, groups: dict[int, list[int]]) -> None:
        config = self.config(txn)
        if config.mode == "read":
            return
        # A publish never changes the celebrity table, so what this transaction
        # reads is committed state and may fill the cache.
        celebs = self._celebs(txn) if config.mode == "hybrid" else {}
        values_of, followers = self._codec.values_of, self._tables.followers
        pending: dict[int, list[int]] = {}
        delivered = 0
        for source, ids in groups.items():
            if celebs and celebs.get(source, (0, 0))[0]:
                continue
            sinks = values_of(dups(txn, followers, be(source)))
            delivered += len(sinks) * len(ids)
            for sink in sinks:
                if sink in pending:
                    pending[sink].extend(ids)
                else:
                    pending[sink] = list(ids)
        windows, limit = self.windows, config.window + self._codec.SEAL
        append, head_tag = self._codec.append_head, self._codec.HEAD
        get, put = txn.get, txn.put
        # Chunks.append inlined: this loop runs once per follower of every
        # publishing source (10,000 times for one post of a 10,000-follower
        # source), where a call per sink would add ~5% to the delivery; the
        # trim also has to see the head before it is written.
        for sink, ids in pending.items():
            if len(ids) > 1:
                ids.sort()
            prefix = be(sink)
            head, sealed = append(get(prefix + head_tag, db=windows), ids)
            for tag, chunk in sealed:
                put(prefix + be(tag), chunk, db=windows)
            if U64.unpack_from(head, 8)[0] > limit:
                head = self._trim(txn, prefix, head, config.window)
            put(prefix + head_tag, head, db=windows)
        self.delivered += delivered

    def on_follow(self, txn: Txn, rows: list[tuple[bytes, bytes, bytes]]) -> None:
        config = self.config(txn)
        if config.mode == "read":
            return
        celebs: dict[int, tuple[int, int]] = {}
        if config.mode == "hybrid":
            self._update_celebs(txn, {source for _, source, _ in rows}, config, BE.unpack(rows[-1][2])[0])
            celebs = self._celebs(txn, write=True)
        for sink_key, source_key, _ in rows:
            if not celebs.get(BE.unpack(source_key)[0], (0, 0))[0]:
                self._backfill(txn, sink_key, source_key, config.window)

    def on_unfollow(self, txn: Txn, rows: list[tuple[bytes, bytes, bytes]]) -> None:
        config = self.config(txn)
        if config.mode == "read":
            return
        if config.mode == "hybrid":
            self._update_celebs(txn, {source for _, source, _ in rows}, config, BE.unpack(rows[-1][2])[0])
        for sink_key, source_key, _ in rows:
            floor, ids = self._load(txn, sink_key)
            if not ids:
                continue
            theirs = set(array("Q", self._logs.ids_after(txn, source_key, floor, MAX)))
            self._store(txn, sink_key, floor, [i for i in ids if i not in theirs])

    def on_delete(self, txn: Txn, event: Event) -> None:
        if self.config(txn).mode == "read":
            return
        unlog = self._windows.unlog
        for sink in self._codec.values_of(dups(txn, self._tables.followers, be(event.source))):
            unlog(txn, be(sink), event.id)

    def _backfill(self, txn: Txn, sink_key: bytes, source_key: bytes, size: int) -> None:
        """Merge the newly followed source's newest ids into the sink's window."""
        head = txn.get(source_key + self._codec.HEAD, db=self._tables.logs)
        if head is None or U64.unpack_from(head, 8)[0] == 0:
            return  # nothing to add (bulk loads of a graph before any post stay cheap)
        floor, ids = self._load(txn, sink_key)
        run = array("Q", bytes(head))
        while len(run) - 2 < size + 1 and run[0] > floor:
            longer = array("Q", self._logs.extend(txn, source_key, run.tobytes(), MAX, size + 1))
            if longer == run:
                break
            run = longer
        # The source's ids at or below its run's floor were not loaded: the
        # window can only promise completeness above both floors.
        floor = max(floor, run[0])
        merged = sorted(set(ids).union(run[2:]))
        merged = merged[bisect_right(merged, floor) :]
        if len(merged) > size:
            floor = merged[len(merged) - size - 1]
            merged = merged[len(merged) - size :]
        self._store(txn, sink_key, floor, merged)

    # ----------------------------------------------------------------- reads

    def home(self, txn: Txn, sink: int, limit: int, lo: int, hi: int) -> list[Event] | None:
        """A home page from the window (and pulled celebrities), or None: use the full merge."""
        config = self.config(txn)
        if config.mode == "read":
            return None
        sink_key = be(sink)
        head_tag = self._codec.HEAD
        window = txn.get(sink_key + head_tag, db=self.windows)
        heads = [_EMPTY if window is None else window]
        prefixes: list[bytes] = [sink_key]
        if config.mode == "hybrid":
            prefixes += self._pulled(txn, sink_key, self._floor(txn, sink_key))
            logs = self._tables.logs
            heads += self._reader.get_many(txn, logs, [p + head_tag for p in prefixes[1:]])
        merge = self._merge.newest_floored
        ids, incomplete = merge(heads, limit, lo, hi)
        bottom = None
        while incomplete:
            if incomplete[0] == 0:
                if bottom is None:
                    bottom = self._floor(txn, sink_key)
                elif U64.unpack_from(heads[0])[0] <= bottom:
                    return None  # the page reaches below the window: full merge
                heads[0] = self._windows.extend(txn, sink_key, heads[0], hi, limit, bottom)
                incomplete = incomplete[1:]
            for i in incomplete:
                heads[i] = self._logs.extend(txn, prefixes[i], heads[i], hi, limit)
            ids, incomplete = merge(heads, limit, lo, hi)
        return self._reader.fetch(txn, ids)

    def _pulled(self, txn: Txn, sink_key: bytes, floor: int) -> list[bytes]:
        """Prefixes of the sink's sources whose events windows may lack."""
        wanted = [s for s, (celeb, seq) in self._celebs(txn).items() if celeb or seq > floor]
        if not wanted:
            return []
        following = txn.cursor(self._tables.following)
        return [be(s) for s in sorted(wanted) if following.set_key_dup(sink_key, be(s))]

    # ---------------------------------------------------------------- check

    def check(self, txn: Txn) -> None:
        """Assert that windows hold exactly the pushed home ids above their floors (write mode)."""
        config = self.config(txn)
        if config.mode == "read":
            return
        sinks = {bytes(k[:8]) for k in txn.cursor(self.windows).iternext(keys=True, values=False)}
        for sink_key in sinks:
            floor, ids = self._load(txn, sink_key)
            assert ids == sorted(set(ids)), sink_key
            assert all(i > floor for i in ids), sink_key
            assert len(ids) <= config.window + 2 * self._codec.SEAL, sink_key
            home = {e.id for e in self._reader.page(txn, self._sources(txn, sink_key), 10_000, floor, MAX, False)}
            assert set(ids) <= home, (sink_key, sorted(set(ids) - home))
            if config.mode == "write":
                assert set(ids) == home, (sink_key, sorted(home - set(ids)))

    def _sources(self, txn: Txn, sink_key: bytes) -> list[bytes]:
        return [be(s) for s in self._codec.values_of(dups(txn, self._tables.following, sink_key))]


def celebrity_threshold_default(threshold: int | None, current: Config) -> int:
    """The threshold to use: the option, else the store's, else 10,000 (write mode: never)."""
    if threshold is not None:
        return threshold
    if current.mode == "hybrid":
        return current.threshold
    return 10_000
