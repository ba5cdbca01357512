"""Turns results into the three outputs: a rich table, ``results.json``, ``results.md``.

Every cell is shown relative to the best in its column (like msgspec's
benchmarks): ``160 µs (1.0×)`` is the fastest, ``532 µs (3.3×)`` is 3.3 times
slower.  For rates the ratio is still "times slower than the fastest".  The
last column is the machine's 1-minute load average when that implementation's
process started: the machine is shared, so read ratios next to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# (header, getter, lower is better?, formatter)
Column = tuple[str, Callable[[dict[str, Any]], float | None], bool, Callable[[float], str]]


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def getter(result: dict[str, Any]) -> float | None:
        value: Any = result
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value if isinstance(value, (int, float)) else None

    return getter


def _us(v: float) -> str:
    return f"{v:,.0f} µs" if v >= 10 else f"{v:.1f} µs"


def _rate(v: float) -> str:
    return f"{v / 1e6:.2f}M/s" if v >= 1e6 else f"{v / 1e3:,.1f}k/s" if v >= 1e3 else f"{v:.0f}/s"


def _mb(v: float) -> str:
    return f"{v / 2**20:,.1f} MiB"


COLUMNS: list[Column] = [
    ("home p50", _get("home_page1", "p50_us"), True, _us),
    ("home p99", _get("home_page1", "p99_us"), True, _us),
    ("page 2 p50", _get("home_page2", "p50_us"), True, _us),
    ("timeline p50", _get("timeline", "p50_us"), True, _us),
    ("ingest posts", _get("ingest", "events_per_s"), False, _rate),
    ("deliveries", _get("ingest", "deliveries_per_s"), False, _rate),
    ("churn ops", _get("churn", "ops_per_s"), False, _rate),
    ("disk", _get("footprint", "disk_bytes"), True, _mb),
    ("memory", _get("footprint", "memory_bytes"), True, _mb),
]


def cells(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (ok results ordered by home p50; others say why they have no numbers)."""
    ok = {n: r for n, r in results.items() if r.get("status") == "ok"}
    order = sorted(ok, key=lambda n: _get("home_page1", "p50_us")(ok[n]) or float("inf"))
    header = ["implementation"] + [c[0] for c in COLUMNS] + ["load"]
    rows = []
    for name in order:
        row = [name]
        for _title, get, lower, fmt in COLUMNS:
            values = [v for v in (get(r) for r in ok.values()) if v]
            value = get(ok[name])
            if value is None or not values:
                row.append("–")
                continue
            if value == 0:
                row.append("none")  # e.g. no disk for in-memory stores and the Redis server
                continue
            best = min(values) if lower else max(values)
            ratio = value / best if lower else best / value
            row.append(f"{fmt(value)} ({ratio:.1f}×)")
        load = ok[name].get("loadavg_start")
        row.append(f"{load[0]:.1f}" if load else "–")  # 1-min load average when this one started
        rows.append(row)
    return header, rows


def not_run(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per implementation without numbers: skipped (and why), or failed."""
    lines = []
    for name, r in results.items():
        if r.get("status") != "ok":
            reason = (r.get("reason") or "").strip().splitlines()
            lines.append(f"{name}: {r.get('status')}: {reason[-1] if reason else ''}")
    return lines


def print_table(results: dict[str, dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    header, rows = cells(results)
    table = Table(title=title, title_justify="left")
    for n, h in enumerate(header):
        table.add_column(h, justify="left" if n == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(170, Console().width))
    console.print(table)
    for line in not_run(results):
        console.print(f"  {line}", highlight=False)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    header, rows = cells(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    skipped = not_run(results)
    if skipped:
        lines += [""] + [f"- {line}" for line in skipped]
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, measured as ratios inside this one run."""
    p50 = {n: _get("home_page1", "p50_us")(r) for n, r in results.items() if r.get("status") == "ok"}
    out: dict[str, Any] = {}

    def ratio(key: str, slow: str, fast: str, target: float | None) -> None:
        if p50.get(slow) and p50.get(fast):
            value = p50[slow] / p50[fast]
            out[key] = {
                "value": round(value, 2),
                "target": target,
                "met": None if target is None else value >= target,
                "means": f"home p50 of {slow} / home p50 of {fast}",
            }

    ratio("read_vs_redis", "redis-zsets", "lmdb-cython", 2.0)
    ratio("read_vs_sqlite", "sqlite", "lmdb-cython", 6.0)
    ratio("cython_vs_python_merge", "lmdb-python", "lmdb-cython", None)
    ratio("write_vs_redis", "redis-zsets", "lmdb-write", None)  # the same design, embedded
    return out


#: The issue's targets for the Redis backend against the Mastodon-style baseline:
#: (key, getter, which rows it applies to, target, "le" (ratio <= target) or "ge").
_PRICE: list[tuple[str, Callable[[dict[str, Any]], float | None], tuple[str, ...], float | None, str]] = [
    ("home p50", _get("home_page1", "p50_us"), ("redis-write",), 1.5, "le"),
    ("home p99", _get("home_page1", "p99_us"), (), None, "le"),
    ("home k=100 p50", _get("home_vs_k", "100", "p50_us"), ("redis-read",), 3.0, "le"),
    ("page 2 p50", _get("home_page2", "p50_us"), (), None, "le"),
    ("publish p50", _get("ingest", "publish", "p50_us"), (), None, "le"),
    ("posts/s", _get("ingest", "events_per_s"), (), None, "ge"),
    ("deliveries/s", _get("ingest", "deliveries_per_s"), ("redis-write",), 1.0, "ge"),
]
BASELINE = "redis-zsets"


def price_of_order(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each twittercore Redis row against ``redis-zsets`` of the same run: value / baseline's value.

    For latencies above 1 is slower; for rates below 1 is slower.  Deliveries
    are only compared for rows that deliver into homes (the served fan-out).
    """
    base = results.get(BASELINE, {})
    if base.get("status") != "ok":
        return []
    rows = []
    for name, r in results.items():
        if not name.startswith("redis-") or name == BASELINE or r.get("status") != "ok":
            continue
        extra = r.get("extra", {})
        row: dict[str, Any] = {
            "name": name,
            "requested_fanout": extra.get("requested_fanout"),
            "served_fanout": extra.get("served_fanout", r.get("fanout")),
            "cells": {},
        }
        for key, get, applies, target, sense in _PRICE:
            mine, theirs = get(r), get(base)
            cell: dict[str, Any] = {
                "value": mine,
                "baseline": theirs,
                "ratio": round(mine / theirs, 2) if mine and theirs else None,
            }
            if name in applies:
                cell["target"] = f"{'≤' if sense == 'le' else '≥'} {target}"
                cell["met"] = (
                    None
                    if cell["ratio"] is None
                    else (cell["ratio"] <= target if sense == "le" else cell["ratio"] >= target)
                )  # type: ignore[operator]
            row["cells"][key] = cell
        rows.append(row)
    return rows


def _price_cell(cell: dict[str, Any]) -> str:
    if cell["ratio"] is None:
        return "–"
    text = f"{cell['ratio']:.2f}×"
    if "target" in cell:
        text += f" (target {cell['target']}: {'met' if cell['met'] else 'NOT met'})"
    return text


def price_of_order_markdown(rows: list[dict[str, Any]]) -> str:
    keys = [k for k, *_ in _PRICE]
    lines = ["| row / redis-zsets | fan-out served | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for row in rows:
        served = row["served_fanout"]
        if row["requested_fanout"] and row["requested_fanout"] != served:
            served += f" ({row['requested_fanout']} requested)"
        lines.append(f"| {row['name']} | {served} | " + " | ".join(_price_cell(row["cells"][k]) for k in keys) + " |")
    return "\n".join(lines)


def print_price_of_order(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = [k for k, *_ in _PRICE]
    table = Table(
        title="price of order: twittercore Redis / redis-zsets, same run (latency: >1 slower; rates: <1 slower)",
        title_justify="left",
    )
    for n, h in enumerate(["row", "fan-out served", *keys]):
        table.add_column(h, justify="left" if n < 2 else "right", overflow="fold")
    for row in rows:
        served = row["served_fanout"] + (
            "" if row["requested_fanout"] in (None, row["served_fanout"]) else f" ({row['requested_fanout']} asked)"
        )
        table.add_row(row["name"], served, *(_price_cell(row["cells"][k]) for k in keys))
    Console(width=max(170, Console().width)).print(table)


def markdown(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    spec = meta["workload"]
    lines = [
        f"Measured with `{meta['command']}` on {meta['date']} "
        f"({meta['cpus']} CPUs, load average {meta['loadavg_start'][0]:.2f} at start, "
        f"{meta['loadavg_end'][0]:.2f} at end; Python {meta['python']}).",
        "",
        f"Workload: {spec['users']:,} users, {meta['graph_edges']:,} follows (mean followees "
        f"{spec['mean_followees']}), {spec['posts']:,} posts of {spec['payload_bytes']} B "
        f"(the newest {meta['timed_posts']:,} published one commit each, timed); "
        f"a read is the newest 50 of a home timeline with payloads. Generator: `{meta['generator']}`.",
        "Ratios are against the best in each column, inside this one run (× = times slower)"
        + (
            f"; every number is the median of {meta['repeat']} interleaved rounds."
            if meta.get("repeat", 1) > 1
            else "."
        ),
        "",
        markdown_table(results),
        "",
    ]
    for key, r in meta["ratios"].items():
        target = "" if r["target"] is None else f" (target ≥ {r['target']}×: {'met' if r['met'] else 'NOT met'})"
        lines.append(f"- {key}: **{r['value']}×**{target}: {r['means']}")
    if meta.get("price_of_order"):
        lines += [
            "",
            "Price of order: each twittercore Redis row divided by `redis-zsets` of this run "
            "(latencies: above 1 is slower; rates: below 1 is slower).",
            "",
            price_of_order_markdown(meta["price_of_order"]),
        ]
    return "\n".join(lines) + "\n"


def write_json(
    path: str, meta: dict[str, Any], results: dict[str, dict[str, Any]], sweep: dict[str, dict[str, dict[str, Any]]]
) -> None:
    slim = {n: {k: v for k, v in r.items() if k != "pages"} for n, r in results.items()}
    for n, r in results.items():
        if "pages" in r:
            slim[n]["pages_checked"] = len(r["pages"])
    slim_sweep = {
        users: {n: {k: v for k, v in r.items() if k != "pages"} for n, r in by_name.items()}
        for users, by_name in sweep.items()
    }
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": slim, "sweep": slim_sweep}, f, indent=2, sort_keys=True)
        f.write("\n")
