"""The history format: what a run did and what its readers saw, as JSON Lines.

A history lists acknowledged publishes, follows, unfollows and deletes, and
observations (the ids a sink saw, in order: a page read or a batch of tail
deliveries).  :mod:`twittercore.checking.verify` checks G1-G4, deletes and
real time on it.  Ids and node ids are opaque (ints or strings), so a history
recorded from any implementation, for example an HTTP server with string ids,
can be checked black-box.  The format is specified in
``docs/history-format.md``; a malformed record raises :class:`HistoryError`.

Write with :class:`HistoryWriter`, read with :func:`records` (raw dicts) or
:func:`load` (the indexed :class:`History` the verifier uses).

>>> import io
>>> buffer = io.StringIO()
>>> with HistoryWriter(buffer, clock=None) as h:
...     h.follow(1, 2)
...     h.publish(2, 10)
...     h.observe(1, [10], kind="page", limit=20)
>>> print(buffer.getvalue().splitlines()[2])
{"op":"publish","source":2,"id":10}
>>> history = load([io.StringIO(buffer.getvalue())])
>>> history.ordered, len(history.observations)
(True, 1)
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Union

from ..errors import InvalidArgumentError

__all__ = ["HistoryWriter", "History", "HistoryError", "Observation", "records", "load", "follow_state", "FORMAT"]

FORMAT = "twittercore-history"
VERSION = 1
_INF = float("inf")
_dumps = json.JSONEncoder(separators=(",", ":")).encode
#: Where a history is read from or written to: a path, or an open text stream.
Source = Union[str, "os.PathLike[str]", IO[str]]


class HistoryWriter:
    """Append history records to one JSON Lines file; safe to share between threads.

    Each record gets ``t`` (when the call returned) and ``t0`` (when it began,
    if given) from ``clock``, a clock shared by every process whose files will
    be merged; the default ``time.monotonic_ns`` is system-wide on Linux.
    With ``clock=None`` no times are written and line order is the order of
    events (right for one sequential client).
    """

    def __init__(self, target: Source, *, clock: Callable[[], int] | None = time.monotonic_ns) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._file: IO[str] = open(target, "w", encoding="utf-8", buffering=1 << 20)
            self._owned = True
        else:
            self._file, self._owned = target, False
        self._clock = clock
        self._lock = threading.Lock()
        self._write({"format": FORMAT, "version": VERSION})

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Push buffered lines to the file (a reader in another process sees them)."""
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it.  Idempotent."""
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            if self._owned:
                self._file.close()

    def now(self) -> int | None:
        """The writer's clock, to pass as ``t0`` when a call begins."""
        return None if self._clock is None else self._clock()

    def _write(self, record: dict[str, Any], t0: int | None = None) -> None:
        if self._clock is not None and "format" not in record:
            record["t"] = t = self._clock()
            record["t0"] = t if t0 is None else t0
        line = _dumps(record) + "\n"
        with self._lock:
            self._file.write(line)

    # ------------------------------------------------------------ mutations

    def publish(self, source: Any, id: Any, *, t0: int | None = None) -> None:
        """``source``'s publish was acknowledged with event id ``id``."""
        self._write({"op": "publish", "source": source, "id": id}, t0)

    def publish_many(self, items: Iterable[tuple[Any, Any]], *, t0: int | None = None) -> None:
        """Several acknowledged ``(source, id)`` publishes, in acknowledgement order."""
        self._write({"op": "publish", "items": [list(item) for item in items]}, t0)

    def follow(self, sink: Any, source: Any, *, t0: int | None = None) -> None:
        """``sink`` follows ``source`` from now on (recorded when the call returned)."""
        self._write({"op": "follow", "sink": sink, "source": source}, t0)

    def follow_many(self, pairs: Iterable[tuple[Any, Any]], *, t0: int | None = None) -> None:
        self._write({"op": "follow", "pairs": [list(pair) for pair in pairs]}, t0)

    def unfollow(self, sink: Any, source: Any, *, t0: int | None = None) -> None:
        self._write({"op": "unfollow", "sink": sink, "source": source}, t0)

    def unfollow_many(self, pairs: Iterable[tuple[Any, Any]], *, t0: int | None = None) -> None:
        self._write({"op": "unfollow", "pairs": [list(pair) for pair in pairs]}, t0)

    def delete(self, id: Any, *, t0: int | None = None) -> None:
        """Event ``id`` was deleted."""
        self._write({"op": "delete", "id": id}, t0)

    def fault(self, action: str, target: str, phase: str, *, t0: int | None = None, **detail: Any) -> None:
        """A fault the lab injected (``phase`` "start" or "end"); context for readers, ignored by the verifier."""
        self._write({"op": "fault", "action": action, "target": target, "phase": phase, **detail}, t0)

    # ---------------------------------------------------------- observations

    def observe(
        self,
        sink: Any,
        ids: Iterable[Any],
        kind: str = "page",
        *,
        t0: int | None = None,
        limit: int | None = None,
        max_id: Any = None,
        before_id: Any = None,
        since_id: Any = None,
        min_id: Any = None,
        stream: Any = None,
        after: Any = None,
    ) -> None:
        """``sink`` observed ``ids`` in this order.

        ``kind="page"``: one home-timeline read, ids newest first as returned,
        with the ``limit`` and bounds it was asked with (``max_id`` inclusive,
        as in twittercore and Twitter; ``before_id`` exclusive, as Mastodon's
        ``max_id``; ``since_id`` and ``min_id`` exclusive).  ``kind="tail"``: a
        batch of live deliveries, oldest first; batches with the same
        ``(sink, stream)`` form one stream (``after``: where it started).
        ``kind="timeline"``: a read of ``sink``'s *own* timeline (a profile).
        """
        if kind not in ("page", "tail", "timeline"):
            raise InvalidArgumentError(f"observe: unknown kind {kind!r} (use 'page', 'tail' or 'timeline')")
        if max_id is not None and before_id is not None:
            raise InvalidArgumentError("observe: give max_id (inclusive) or before_id (exclusive), not both")
        record: dict[str, Any] = {"op": "observe", "kind": kind, "sink": sink, "ids": list(ids)}
        for name, value in (
            ("limit", limit), ("max_id", max_id), ("before_id", before_id), ("since_id", since_id),
            ("min_id", min_id), ("stream", stream), ("after", after),
        ):  # fmt: skip
            if value is not None:
                record[name] = value
        self._write(record, t0)


# ------------------------------------------------------------------ reading


class HistoryError(InvalidArgumentError):
    """A history file cannot be read: ``FILE:LINE: what is wrong (what was expected)``."""


_NODE = (int, str)  # node and event ids: JSON integers or strings (``type() in``: rejects bool and float)


def _fail(where: str, what: str, expected: str) -> HistoryError:
    return HistoryError(f"{where}: {what} ({expected})")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) or len(value) < 40 else json.dumps(value[:40]) + "..."
    return text if len(text) <= 60 else text[:60] + "..."


def _id(record: dict[str, Any], name: str, where: str, *, optional: bool = False) -> Any:
    value = record.get(name)
    if value is None:
        if optional:
            return None
        raise _fail(where, f'{record.get("op", "record")} without "{name}"', f'"{name}" is required here')
    if type(value) not in _NODE:
        raise _fail(where, f'"{name}" is {_show(value)}', "expected an integer or a string")
    return value


def _pairs(record: dict[str, Any], name: str, where: str) -> list[Any]:
    value = record[name]
    if type(value) is not list:
        raise _fail(where, f'"{name}" is {_show(value)}', "expected a list of [a, b] pairs")
    for pair in value:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in _NODE or type(pair[1]) not in _NODE:
            raise _fail(where, f'"{name}" holds {_show(pair)}', "expected [a, b], each an integer or a string")
    return value


def records(sources: Iterable[Source]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` for every record of every file, ``where`` = ``"file:line"``.

    Raises :class:`HistoryError` on a line that is not a JSON object, or a header of another format.
    """
    for source in sources:
        handle: IO[str]
        if isinstance(source, (str, os.PathLike)):
            name, handle = os.fspath(source), open(source, encoding="utf-8")
        else:
            name, handle = getattr(source, "name", "<stream>"), source
        number = 0
        try:
            with handle if handle is not source else _nullcontext(handle) as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        raise _fail(f"{name}:{number}", f"not JSON: {exc}", "is this a history file?") from None
                    if type(record) is not dict:
                        raise _fail(f"{name}:{number}", f"a JSON {type(record).__name__}, not an object",
                                    'expected one object per line, e.g. {"op": "publish", ...}')  # fmt: skip
                    if "format" in record:
                        if record["format"] != FORMAT:
                            raise _fail(f"{name}:{number}", f"format {_show(record['format'])}", f"expected {FORMAT!r}")
                        continue
                    yield f"{name}:{number}", record
        except UnicodeDecodeError as exc:
            raise _fail(f"{name}:{number + 1}", f"not UTF-8 text: {exc.reason}", "is this a history file?") from None


class _nullcontext:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: object) -> None:
        pass


class Observation:
    """One read as the verifier sees it: interned event numbers, oldest first.

    Bounds keep the history's own ids (``max_id`` with ``max_exclusive`` when
    it was given as ``before_id``).
    """

    __slots__ = ("kind", "sink", "events", "t0", "t", "limit", "max_id", "max_exclusive", "since_id", "min_id",
                 "stream", "after", "where")  # fmt: skip

    def __init__(self, kind: str, sink: int, events: list[int], t0: Any, t: Any, where: str) -> None:
        self.kind, self.sink, self.events, self.t0, self.t, self.where = kind, sink, events, t0, t, where
        self.limit: int | None = None
        # Ids as recorded: ints when the history's ids are ordered, else opaque
        # names (the verifier maps them to events); None when not given.
        self.max_id: Any = None
        self.since_id: Any = None
        self.min_id: Any = None
        self.stream: Any = None  # a name, an integer or a string
        self.after: Any = None
        self.max_exclusive = False  # the upper bound was given as before_id


class History:
    """A loaded history, indexed for checking.

    Events and nodes are interned to small ints: ``ids[e]`` is event ``e``'s
    original id, ``source[e]`` its source (-1 if no publish was acknowledged),
    ``ack0[e]``/``ack[e]`` the times its publish began and returned (-1: none),
    ``rank[e]`` its place in the reference order, ``batch[e]`` the publish
    record that acknowledged it and ``item[e]`` its place in that record
    (items of one record commit in list order).  ``follows[sink][source]``
    lists ``(t0, t, following)`` changes in time order; ``deleted[e]`` is the
    earliest time a delete of ``e`` began, ``deleted_done[e]`` the earliest
    time one returned.  Timeline observations have the source as their
    ``sink`` and ``kind == "timeline"``.
    """

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.ids: list[Any] = []
        self.source: list[int] = []
        self.ack0: list[Any] = []
        self.ack: list[Any] = []
        self.rank: list[Any] = []
        self.batch: list[int] = []  # the publish record that acknowledged the event (-1: none)
        self.item: list[int] = []  # the event's place in that record
        self.nodes: list[Any] = []
        self.node_index: dict[Any, int] = {}
        self.follows: dict[int, dict[int, list[tuple[Any, Any, bool]]]] = {}
        self.deleted: dict[int, Any] = {}
        self.deleted_done: dict[int, Any] = {}
        self.observations: list[Observation] = []
        self.ordered = True  # every event id is an int: the id order is the reference order
        self.timed = False  # records carry a shared clock ("t"); otherwise line order is time
        self.problems: list[str] = []  # inconsistencies of the history itself

    def event(self, id: Any) -> int:
        e = self.index.get(id)
        if e is None:
            e = self.index[id] = len(self.ids)
            self.ids.append(id)
            self.source.append(-1)
            self.ack0.append(-1)
            self.ack.append(-1)
            self.batch.append(-1)
            self.item.append(-1)
            if type(id) is not int:
                self.ordered = False
        return e

    def node(self, name: Any) -> int:
        n = self.node_index.get(name)
        if n is None:
            n = self.node_index[name] = len(self.nodes)
            self.nodes.append(name)
        return n

    def describe(self, e: int) -> str:
        """``event 12 (source 4)`` in the history's own names."""
        source = self.source[e]
        return f"event {self.ids[e]!r}" + ("" if source < 0 else f" (source {self.nodes[source]!r})")


_OPS = "publish, follow, unfollow, delete, observe or fault"


def _times(record: dict[str, Any], where: str) -> tuple[Any, Any]:
    t = record["t"]
    t0 = record.get("t0", t)
    for name, value in (("t", t), ("t0", t0)):
        if type(value) not in (int, float):
            raise _fail(where, f'"{name}" is {_show(value)}', "expected a number from the run's shared clock")
    if t0 > t:
        raise _fail(where, f'"t0" {t0} is after "t" {t}', "a call begins (t0) before it returns (t)")
    return t0, t


def load(sources: Iterable[Source], *, ordered: bool | None = None) -> History:
    """Read and merge history files into one :class:`History`.

    Times: if every record has ``t`` the files share that clock; if none has,
    line order is time (files taken in the order given).  ``ordered`` forces
    (True) or refuses (False) using int ids as the reference order; by default
    ids that are all ints are taken to be ordered, as twittercore's are.
    Raises :class:`HistoryError` (``FILE:LINE: what (expected)``) on the first
    malformed record.  Runtime complexity: O(R + P log P) for R records and P
    publishes.
    """
    h = History()
    timed = untimed = 0
    seq = 0
    publishes: list[tuple[Any, int, int, int]] = []  # (t, seq, n, event) for the acknowledgement order
    for where, record in records(sources):
        seq += 1
        if "t" in record:
            timed += 1
            t0, t = _times(record, where)
        else:
            untimed += 1
            if "t0" in record:
                raise _fail(where, 'a "t0" without "t"', 'record "t" (when the call returned) as well')
            t = t0 = seq
        if timed and untimed:
            raise _fail(where, 'some records have a time "t" and some do not',
                        "merge only files recorded with one shared clock, or all without times")  # fmt: skip
        op = record.get("op")
        if op == "observe":
            _load_observation(h, record, where, t0, t)
        elif op == "publish":
            if "items" in record:
                items = _pairs(record, "items", where)
            else:
                items = [(_id(record, "source", where), _id(record, "id", where))]
            for n, (source, id) in enumerate(items):
                e = h.event(id)
                s = h.node(source)
                if h.source[e] >= 0:
                    if h.source[e] != s:
                        h.problems.append(f"{where}: {h.describe(e)} acknowledged again for source {source!r}")
                    continue
                h.source[e], h.ack0[e], h.ack[e], h.batch[e], h.item[e] = s, t0, t, seq, n
                publishes.append((t, seq, n, e))
        elif op in ("follow", "unfollow"):
            change = (t0, t, op == "follow")  # one tuple shared by a batch: 1M follows stay small
            if "pairs" in record:
                pairs = _pairs(record, "pairs", where)
            else:
                pairs = [(_id(record, "sink", where), _id(record, "source", where))]
            known, node, follows = h.node_index, h.node, h.follows
            for sink, source in pairs:  # the hot loop of big histories: lookups inlined
                found = known.get(sink)
                k = node(sink) if found is None else found
                found = known.get(source)
                s = node(source) if found is None else found
                per_sink = follows.get(k)
                if per_sink is None:
                    per_sink = follows[k] = {}
                changes = per_sink.get(s)
                if changes is None:
                    per_sink[s] = [change]
                else:
                    changes.append(change)
        elif op == "delete":
            e = h.event(_id(record, "id", where))
            h.deleted[e] = min(t0, h.deleted.get(e, t0))
            h.deleted_done[e] = min(t, h.deleted_done.get(e, t))
        elif op == "fault":
            pass  # what the lab did to the system, not what the system did: nothing to check
        elif op is None:
            raise _fail(where, 'a record without "op"', f"expected one of {_OPS}, or the format header")
        else:
            raise _fail(where, f"unknown op {_show(op)}", f"expected {_OPS}")
    h.timed = bool(timed)
    if ordered is None:
        ordered = h.ordered
    elif ordered and not h.ordered:
        raise HistoryError("history: ordered ids requested but some ids are not ints (drop --ordered)")
    h.ordered = ordered
    if ordered:  # bounds are compared as numbers then: each must be an int
        for obs in h.observations:
            for name in ("max_id", "since_id", "min_id", "after"):
                value = getattr(obs, name)
                if value is not None and type(value) is not int:
                    raise _fail(obs.where, f'"{name}" is {_show(value)} but every event id is an int',
                                "give bounds as ids, or verify with --opaque")  # fmt: skip
    if h.timed:  # records of several threads may be written out of clock order
        for per_sink in h.follows.values():
            for changes in per_sink.values():
                if len(changes) > 1:
                    changes.sort(key=lambda c: c[1])
    if ordered:
        h.rank = list(h.ids)
    else:
        h.rank = [-1] * len(h.ids)
        publishes.sort()
        for position, (_, _, _, e) in enumerate(publishes):
            h.rank[e] = position
        # Observed events nobody acknowledged go after every acknowledged one.
        rank = len(publishes)
        for e, r in enumerate(h.rank):
            if r < 0:
                h.rank[e] = rank
                rank += 1
    return h


_KINDS = ("page", "tail", "timeline")
_BOUNDS = ("max_id", "before_id", "since_id", "min_id", "after")


def _load_observation(h: History, record: dict[str, Any], where: str, t0: Any, t: Any) -> None:
    kind = record.get("kind", "page")
    if kind not in _KINDS:
        raise _fail(where, f"unknown observation kind {_show(kind)}", "expected page, tail or timeline")
    ids = record.get("ids")
    if type(ids) is not list:
        raise _fail(where, f'"ids" is {_show(ids)}' if "ids" in record else 'observe without "ids"',
                    "expected a list of event ids, integers or strings")  # fmt: skip
    if not set(map(type, ids)) <= {int, str}:  # C speed; rejects floats and bools that would hash like ints
        bad = next(x for x in ids if type(x) not in _NODE)
        raise _fail(where, f'"ids" holds {_show(bad)}', "expected event ids, integers or strings")
    sink = record.get("sink")
    if type(sink) not in _NODE:
        _id(record, "sink", where)  # raises, saying what is wrong
    limit = record.get("limit")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise _fail(where, f'"limit" is {_show(limit)}', "expected the page size asked for, an integer >= 0")
    for name in _BOUNDS:
        value = record.get(name)
        if value is not None and type(value) not in _NODE:
            _id(record, name, where)
    stream = record.get("stream")
    if stream is not None and type(stream) not in _NODE:
        raise _fail(where, f'"stream" is {_show(stream)}', "expected a name, an integer or a string")
    if record.get("max_id") is not None and record.get("before_id") is not None:
        raise _fail(where, 'both "max_id" and "before_id"', "give the inclusive or the exclusive upper bound, not both")
    try:
        events = list(map(h.index.__getitem__, ids))  # C speed for ids seen before (nearly all)
    except KeyError:
        event = h.event
        events = [event(id) for id in ids]
    if kind != "tail":
        events.reverse()  # pages come newest first; the verifier reads oldest first
    obs = Observation(kind, h.node(sink), events, t0, t, where)
    obs.limit = limit
    obs.stream = stream
    for name in ("max_id", "since_id", "min_id", "after"):
        if record.get(name) is not None:
            setattr(obs, name, record[name])
    if record.get("before_id") is not None:
        obs.max_id, obs.max_exclusive = record["before_id"], True
    h.observations.append(obs)


def follow_state(changes: list[tuple[int, int, bool]] | None, a: int, b: int) -> bool | None:
    """Did the sink follow throughout the interval ``[a, b]``?  None when unsure.

    ``changes`` are ``(t0, t, following)`` sorted by ``t``.  A change that
    returned before ``a`` took effect before it; overlapping changes with
    different outcomes, or a change overlapping the interval, leave it unsure.

    >>> follow_state([(1, 2, True)], 5, 9), follow_state([(1, 2, True), (6, 7, False)], 5, 9)
    (True, None)
    >>> follow_state(None, 5, 9), follow_state([(1, 2, True), (3, 4, False)], 5, 9)
    (False, False)
    """
    state, unsure, horizon = False, False, -_INF
    for t0, t, following in changes or ():
        if t < a:
            if t0 > horizon:
                state, unsure = following, False
            else:  # overlaps an earlier change: which one landed last is unknown
                unsure = unsure or following != state
                state = following
            horizon = max(horizon, t)
        elif t0 <= b and (unsure or following != state):
            return None
    return None if unsure else state
