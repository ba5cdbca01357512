"""The three PNGs (matplotlib, Agg backend: no display needed).

* ``home_vs_k.png``: home page-1 p50 against the number of followed sources k;
* ``throughput_vs_users.png``: ingest rate and home p50 against the user count;
* ``fanout_cost.png``: publish p50 against the source's follower count.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _finish(fig: Any, ax: Any, path: str, title: str) -> str:
    for a in ax if isinstance(ax, (list, tuple)) else [ax]:
        a.set_xscale("log")
        a.set_yscale("log")
        a.grid(True, which="both", alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _colours(names: list[str]) -> dict[str, Any]:
    """One colour per implementation, the same in every plot (registry order, then the rest)."""
    from .registry import ENTRIES

    order = [e.name for e in ENTRIES] + sorted(set(names) - {e.name for e in ENTRIES})
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(order)}


def write_all(
    out: str, results: dict[str, dict[str, Any]], sweep: dict[str, dict[str, dict[str, Any]]], subtitle: str
) -> list[str]:
    ok = {n: r for n, r in results.items() if r.get("status") == "ok"}
    colour = _colours(list(results) + [n for by in sweep.values() for n in by])
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in ok.items():
        points = sorted((int(k), s["p50_us"]) for k, s in r.get("home_vs_k", {}).items() if s.get("n"))
        if points:
            ax.plot(*zip(*points), marker="o", label=name, color=colour[name])
    ax.set_xlabel("followed sources k")
    ax.set_ylabel("home page 1 p50 (µs)")
    written.append(_finish(fig, ax, os.path.join(out, "home_vs_k.png"), f"Home latency vs k\n{subtitle}"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = sorted({n for by_name in sweep.values() for n, r in by_name.items() if r.get("status") == "ok"})
    for name in names:
        pts = sorted((int(u), by[name]) for u, by in sweep.items() if by.get(name, {}).get("status") == "ok")
        if pts:
            left.plot(
                [u for u, _ in pts],
                [r["ingest"]["events_per_s"] for _, r in pts],
                marker="o",
                label=name,
                color=colour[name],
            )
            right.plot(
                [u for u, _ in pts],
                [r["home_page1"]["p50_us"] for _, r in pts],
                marker="o",
                label=name,
                color=colour[name],
            )
    left.set_xlabel("users")
    left.set_ylabel("ingest (posts/s, one commit each)")
    right.set_xlabel("users")
    right.set_ylabel("home page 1 p50 (µs)")
    written.append(
        _finish(fig, [left, right], os.path.join(out, "throughput_vs_users.png"), f"Throughput vs users\n{subtitle}")
    )

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in ok.items():
        points = sorted((max(1, c["followers"]), c["p50_us"]) for c in r.get("fanout_cost", []) if c.get("n"))
        if points:
            ax.plot(*zip(*points), marker="o", label=name, color=colour[name])
    ax.set_xlabel("followers of the publishing source")
    ax.set_ylabel("publish p50 (µs)")
    written.append(_finish(fig, ax, os.path.join(out, "fanout_cost.png"), f"Fan-out cost vs followers\n{subtitle}"))
    return written
