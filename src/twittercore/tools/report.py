"""Tables, plots and JSON summaries shared by the demo and the benchmark tools.

Statistics are plain Python (percentiles: nearest rank, defined once in
:mod:`twittercore.tools.percentiles`); rich and matplotlib (the ``tools`` extra) are
imported only by the functions that draw, with a clear error when missing.

>>> latency_summary([1000, 2000, 3000, 4000, 100_000])
{'count': 5, 'p50_us': 3.0, 'p90_us': 100.0, 'p99_us': 100.0, 'max_us': 100.0, 'mean_us': 22.0}
>>> percentile([5, 1, 3], 50)
3
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import ConfigurationError
from .percentiles import percentile  # the one definition (nearest rank); re-exported here

__all__ = [
    "percentile",
    "latency_summary",
    "degree_counts",
    "table",
    "plot_degrees",
    "plot_latencies",
    "write_json",
    "RebuildBar",
]


def latency_summary(nanoseconds: Sequence[int]) -> dict[str, Any]:
    """Count, p50/p90/p99/max/mean in microseconds of latencies given in nanoseconds (nearest-rank percentiles)."""
    ordered = sorted(nanoseconds)
    if not ordered:
        return {"count": 0}

    def at(p: float) -> float:
        value: float = percentile(ordered, p, presorted=True)
        return round(value / 1000, 1)

    return {
        "count": len(ordered),
        "p50_us": at(50),
        "p90_us": at(90),
        "p99_us": at(99),
        "max_us": round(ordered[-1] / 1000, 1),
        "mean_us": round(sum(ordered) / len(ordered) / 1000, 1),
    }


def degree_counts(degrees: Iterable[int]) -> dict[str, Any]:
    """Mean, median, max and top-1% share of a degree sequence (followers or followees)."""
    ordered = sorted(degrees, reverse=True)
    if not ordered:
        return {"nodes": 0}
    total = sum(ordered)
    top = ordered[: max(1, len(ordered) // 100)]
    return {
        "nodes": len(ordered),
        "edges": total,
        "mean": round(total / len(ordered), 1),
        "median": ordered[len(ordered) // 2],
        "max": ordered[0],
        "top1pct_share": round(sum(top) / total, 3) if total else 0,
    }


def table(title: str, rows: Iterable[tuple[Any, ...]], columns: Sequence[str] = ("", "")) -> Any:
    """A rich Table of ``rows`` (first column left-aligned, the others right-aligned)."""
    try:
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich ships with the tools extra
        raise ConfigurationError("table: rich is not installed (pip install 'twittercore[tools]')") from None
    out = Table(title=title, title_justify="left")
    for n, name in enumerate(columns):
        out.add_column(name, justify="left" if n == 0 else "right", no_wrap=True)
    for row in rows:
        out.add_row(*(f"{cell:,}" if isinstance(cell, int) else str(cell) for cell in row))
    return out


class RebuildBar:
    """A rich progress bar for ``open(..., progress=bar)``: drawn for rebuilds of many sinks.

    The storage layer only reports ``(done, total)``; drawing is the caller's.
    Small rebuilds (under ``least`` sinks) finish before a bar would help.
    Use as a context manager so the bar is removed when the open returns.
    """

    def __init__(self, description: str, least: int = 5000) -> None:
        self.description, self.least = description, least
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < self.least:
            return
        if self._bar is None:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done)

    def __enter__(self) -> RebuildBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        raise ConfigurationError("plots: matplotlib is not installed (pip install 'twittercore[tools]')") from None
    return plt


def plot_degrees(path: str | os.PathLike[str], followers: Sequence[int], followees: Sequence[int]) -> None:
    """Two panels: followers by rank (log-log, the power law shows as a line) and followees histogram."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    ranked = sorted((d for d in followers if d > 0), reverse=True)
    left.loglog(range(1, len(ranked) + 1), ranked, marker=".", linestyle="none", markersize=2)
    left.set(title="Followers by rank", xlabel="rank", ylabel="followers")
    positive = [d for d in followees if d > 0]
    if positive:
        bins = [10 ** (k / 10) for k in range(int(10 * math.log10(max(positive))) + 2)]
        right.hist(positive, bins=bins)
    right.set_xscale("log")
    right.set(title="Followees per user (log-normal)", xlabel="followees", ylabel="users")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latencies(path: str | os.PathLike[str], nanoseconds: Sequence[int], title: str = "Home read latency") -> None:
    """Histogram of latencies in microseconds (log x axis), p50 and p99 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    micros = [max(n / 1000, 0.1) for n in nanoseconds]
    if micros:
        low, high = math.log10(min(micros)), math.log10(max(micros)) + 1e-9
        bins = [10 ** (low + (high - low) * k / 60) for k in range(61)]
        ax.hist(micros, bins=bins)
        for p, style in ((50, "--"), (99, ":")):
            value = percentile(micros, p)
            ax.axvline(value, color="black", linestyle=style, label=f"p{p} {value:,.0f} µs")
        ax.legend()
    ax.set_xscale("log")
    ax.set(title=title, xlabel="µs per read", ylabel="reads")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON (keys in the given order)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
