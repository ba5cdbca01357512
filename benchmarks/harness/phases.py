"""What a child does with one target, phase by phase, and how it times it.

Order: load the graph, load posts (the older ones in batches, untimed; the
newest ``timed_posts`` one per commit, timed = *ingest*), capture the
cross-check pages (and compare them with the reference before any read is
timed), then *home* page 1 and page 2, *user timeline*, *home vs k* on the
probe sinks, *footprint*, *churn* (follow then unfollow, so the graph ends as
it began) and *fan-out cost* (one publish per source of a chosen follower count).

Every call is timed alone with ``perf_counter_ns``; progress bars update
outside the timed interval.  Before the timed phases the workload and the
loaded target are moved out of the cyclic GC's reach (``gc.freeze``) so that a
collection of the harness's own million tuples does not land in some
implementation's p99.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from twittercore.tools.percentiles import percentile  # the one definition: nearest rank

from .target import Target
from .workload_file import Fixture

PAGE = 50  # a read is the newest 50 of a home timeline, with payloads
_BULK = 50_000  # posts per bulk_posts call while loading untimed
_perf = time.perf_counter_ns


class CrossCheckError(Exception):
    """The target's pages differ from the reference's."""


def stats(samples_ns: list[int]) -> dict[str, float]:
    """p50/p99/mean in microseconds."""
    if not samples_ns:
        return {"n": 0}
    s = sorted(samples_ns)
    n = len(s)
    return {
        "n": n,
        "p50_us": percentile(s, 50, presorted=True) / 1e3,
        "p99_us": percentile(s, 99, presorted=True) / 1e3,
        "mean_us": sum(s) / n / 1e3,
    }


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class Progress:
    """A rich progress bar on stderr when asked for, a no-op otherwise."""

    def __init__(self, enabled: bool, name: str) -> None:
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                f"  {name:<12} {{task.description:<14}}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()

    def loop(self, description: str, items: list[Any], step: int = 256) -> Iterable[Any]:
        if self._bar is None:
            yield from items
            return
        task = self._bar.add_task(description, total=len(items))
        for n, item in enumerate(items, 1):
            yield item
            if n % step == 0 or n == len(items):
                self._bar.update(task, completed=n)
        self._bar.remove_task(task)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def capture_pages(target: Target, fx: Fixture) -> dict[str, list[list[Any]]]:
    """Page 1 and page 2 (via ``max_id``) of every check sink, and one timeline page per
    check source, as ``[post index, source, payload digest]`` rows."""
    pages: dict[str, list[list[Any]]] = {}

    def record(key: str, page: Any) -> list[tuple[int, int, bytes]]:
        rows = target.rows(page)
        pages[key] = [[target.post_index(id), source, _digest(payload)] for id, source, payload in rows]
        return rows

    for sink in fx.check_sinks:
        first = record(f"home {sink} page 1", target.home(sink, PAGE))
        if first:
            record(f"home {sink} page 2", target.home(sink, PAGE, max_id=first[-1][0] - 1))
    for source in sorted(set(fx.timeline_sources))[:20]:
        record(f"timeline {source}", target.timeline(source, PAGE))
    return pages


def compare_pages(reference: dict[str, Any], pages: dict[str, Any], name: str, ref_name: str) -> None:
    """Raise :class:`CrossCheckError` naming the first differing page and row."""
    for key in sorted(set(reference) | set(pages)):
        want, got = reference.get(key), pages.get(key)
        if want == got:
            continue
        if want is None or got is None:
            raise CrossCheckError(f"{name}: {key!r} present in only one of {name}, {ref_name}")
        for row, (a, b) in enumerate(zip(want, got)):
            if a != b:
                raise CrossCheckError(
                    f"{name} disagrees with {ref_name} on {key!r}, row {row}: "
                    f"[post index, source, payload digest] {b} != {a}"
                )
        raise CrossCheckError(f"{name} disagrees with {ref_name} on {key!r}: {len(got)} rows, want {len(want)}")


def _time_each(call: Callable[[Any], Any], args: Iterable[Any]) -> list[int]:
    out = []
    for arg in args:
        t0 = _perf()
        call(arg)
        out.append(_perf() - t0)
    return out


def run(
    target: Target,
    fx: Fixture,
    *,
    reference: dict[str, Any] | None,
    ref_name: str,
    name: str,
    progress: Progress,
    sweep: bool,
) -> dict[str, Any]:
    """All phases (``sweep``: only ingest and home page 1) -> the result dict."""
    result: dict[str, Any] = {"fanout": target.fanout}
    rss0 = rss_bytes()

    # ---- ingest: graph, older posts in batches (untimed), newest posts one by one (timed)
    t0 = time.perf_counter()
    for chunk in progress.loop("load graph", list(fx.graph_chunks()), step=1):
        target.load_graph(chunk)
    graph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batches = range(0, fx.bulk_posts, _BULK)
    for start in progress.loop("load posts", list(batches), step=1):
        target.bulk_posts(fx.posts(start, min(start + _BULK, fx.bulk_posts)))
    bulk_s = time.perf_counter() - t0
    timed = fx.posts(fx.bulk_posts, fx.post_count)
    lat = []
    started = _perf()
    for source, payload in progress.loop("ingest", timed):
        t0 = _perf()
        target.publish(source, payload)
        lat.append(_perf() - t0)
    elapsed = (_perf() - started) / 1e9
    settle = _perf()
    target.after_ingest()
    fan_out_s = elapsed
    if getattr(target, "fanout_async", False):
        # Its publishes returned before their fan-out was done: deliveries/s counts the rest of it too.
        fan_out_s += (_perf() - settle) / 1e9
    deliveries = sum(target.delivered_to(fx.followers.get(source, 0)) for source, _ in timed)
    result["ingest"] = {
        "graph_edges": fx.edges,
        "graph_load_s": graph_s,
        "bulk_posts": fx.bulk_posts,
        "bulk_load_s": bulk_s,
        "timed_posts": len(timed),
        "events_per_s": len(timed) / elapsed if elapsed else 0.0,
        "deliveries_per_s": (deliveries / fan_out_s if fan_out_s and target.fanout != "read" else None),
        "publish": stats(lat),
    }

    # ---- cross-check before anything is timed
    pages = capture_pages(target, fx)
    if reference is not None:
        compare_pages(reference, pages, name, ref_name)
    result["pages"] = pages

    gc.collect()
    gc.freeze()

    # ---- home page 1 and page 2
    for sink in fx.warm_sinks:
        target.home(sink, PAGE)
    page1_ns, last_ids = [], {}
    for sink in progress.loop("home page 1", fx.read_sinks):
        t0 = _perf()
        page = target.home(sink, PAGE)
        page1_ns.append(_perf() - t0)
        if page and sink not in last_ids:
            last_ids[sink] = page[-1][0]
    result["home_page1"] = stats(page1_ns)
    if sweep:
        result["extra"] = target.extra_results()
        return result
    page2 = [(sink, last_ids[sink] - 1) for sink in fx.read_sinks if sink in last_ids]
    result["home_page2"] = stats(
        _time_each(lambda a: target.home(a[0], PAGE, max_id=a[1]), progress.loop("home page 2", page2))
    )

    # ---- user timeline
    result["timeline"] = stats(
        _time_each(lambda s: target.timeline(s, PAGE), progress.loop("timeline", fx.timeline_sources))
    )

    # ---- home latency vs followed sources k
    result["home_vs_k"] = {
        str(k): stats(_time_each(lambda s: target.home(s, PAGE), progress.loop(f"home k={k}", [sink] * fx.probe_reads)))
        for k, sink in fx.probes.items()
    }

    # ---- footprint of the loaded workload
    result["footprint"] = {
        "disk_bytes": target.disk_bytes(),
        "memory_bytes": max(0, rss_bytes() - rss0) + target.memory_elsewhere(),
        "server_memory_bytes": target.memory_elsewhere(),
    }

    # ---- follow/unfollow churn (each pair followed, then unfollowed: the graph ends as it began)
    follow_ns, unfollow_ns = [], []
    for sink, source in progress.loop("churn", fx.churn_pairs):
        t0 = _perf()
        target.follow(sink, source)
        t1 = _perf()
        target.unfollow(sink, source)
        follow_ns.append(t1 - t0)
        unfollow_ns.append(_perf() - t1)
    total = (sum(follow_ns) + sum(unfollow_ns)) / 1e9
    result["churn"] = {
        "ops_per_s": 2 * len(follow_ns) / total if total else 0.0,
        "follow": stats(follow_ns),
        "unfollow": stats(unfollow_ns),
    }

    # ---- fan-out cost: publish latency vs the source's follower count
    payload = b"f" * fx.spec["payload_bytes"]
    result["fanout_cost"] = [
        {"followers": count, **stats(_time_each(lambda s: target.publish(s, payload), [source] * fx.fanout_reps))}
        for source, count in fx.fanout_sources
    ]
    result["extra"] = target.extra_results()
    return result
