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
            out[key] = {"value": round(value, 2), "target": target,
                        "met": None if target is None else value >= target,
                        "means": f"home p50 of {slow} / home p50 of {fast}"}

    ratio("read_vs_redis", "redis-zsets", "lmdb-cython", 2.0)
    ratio("read_vs_sqlite", "sqlite", "lmdb-cython", 6.0)
    ratio("cython_vs_python_merge", "lmdb-python", "lmdb-cython", None)
    ratio("write_vs_redis", "redis-zsets", "lmdb-write", None)  # the same design, embedded
    return out


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
        + (f"; every number is the median of {meta['repeat']} interleaved rounds." if meta.get("repeat", 1) > 1 else "."),
        "",
        markdown_table(results),
        "",
    ]
    for key, r in meta["ratios"].items():
        target = "" if r["target"] is None else f" (target ≥ {r['target']}×: {'met' if r['met'] else 'NOT met'})"
        lines.append(f"- {key}: **{r['value']}×**{target}: {r['means']}")
    return "\n".join(lines) + "\n"


def write_json(path: str, meta: dict[str, Any], results: dict[str, dict[str, Any]],
               sweep: dict[str, dict[str, dict[str, Any]]]) -> None:
    slim = {n: {k: v for k, v in r.items() if k != "pages"} for n, r in results.items()}
    for n, r in results.items():
        if "pages" in r:
            slim[n]["pages_checked"] = len(r["pages"])
    slim_sweep = {users: {n: {k: v for k, v in r.items() if k != "pages"} for n, r in by_name.items()}
                  for users, by_name in sweep.items()}
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": slim, "sweep": slim_sweep}, f, indent=2, sort_keys=True)
        f.write("\n")
