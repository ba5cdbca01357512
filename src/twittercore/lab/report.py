"""What a lab run measured: a timeline, the figures per fault, a Markdown page, a PNG, a comparison.

Inputs are the load tool's per-request samples ``(intended send time,
latency, answered correctly, kind)`` on the run's clock, the fault records,
and the history file (for staleness: how long after a publish was
acknowledged its followers' streams delivered it).

Definitions (also in ``docs/lab.md``):

- *availability* in a window: the share of the requests due in it that were
  answered correctly (a 2xx within the load tool's timeout);
- *recovered* at time T after a fault's end: every request due in
  [T, T + 1 s] was answered correctly and their p99 is at most
  ``recover_p99_ms``; ``recovery_s`` is T minus the fault's end and
  ``outage_s`` T minus its start; none (not recovered) if no such window
  ends before the next fault starts or the load ends;
- *staleness*: delivery time on a user stream minus the publish's
  acknowledgement, over the posts acknowledged in the window.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..checking.history import records
from ..tools.loadtool import percentile

__all__ = ["comparison", "fault_figures", "history_facts", "lag_summary", "markdown", "plot", "timeline", "write"]

RECOVERY_WINDOW_S = 1.0


def _p(values: list[float], q: float) -> float:
    return float(percentile(sorted(values), q))


def timeline(
    samples: list[tuple[float, float, bool, str]], t_start: float, duration: float, bucket: float
) -> list[dict[str, Any]]:
    """Per bucket: requests due, their errors and p50/p99 in ms; answers completed per second in it.

    Latency and errors are by due time (what a request met when it was sent);
    throughput is by completion time, so a stall shows as a dip, then a burst.
    """
    n = max(1, math.ceil(duration / bucket))
    rows: list[list[tuple[float, bool]]] = [[] for _ in range(n)]
    answered = [0] * n
    for intended, latency, ok, _ in samples:
        k = int((intended - t_start) / bucket)
        if 0 <= k < n:
            rows[k].append((latency, ok))
        done = int((intended + latency - t_start) / bucket)
        if ok and 0 <= done < n:
            answered[done] += 1
    out = []
    for k, row in enumerate(rows):
        lat = [x for x, _ in row]
        errors = sum(1 for _, ok in row if not ok)
        out.append(
            {
                "t": round(k * bucket, 3),
                "requests": len(row),
                "answered_per_s": answered[k] / bucket,
                "errors": errors,
                "error_rate": errors / len(row) if row else 0.0,
                "p50_ms": _p(lat, 50) * 1e3,
                "p99_ms": _p(lat, 99) * 1e3,
            }
        )
    return out


def history_facts(path: Path) -> dict[str, Any]:
    """Acknowledged and deleted ids, and each stream delivery's lag behind the publish's acknowledgement."""
    acked: dict[Any, int] = {}
    deleted: set[Any] = set()
    deliveries: list[tuple[int, Any]] = []  # (t delivered, id)
    for _, r in records([str(path)]):
        op = r.get("op")
        if op == "publish":
            for _, id in r["items"] if "items" in r else [(r["source"], r["id"])]:
                acked.setdefault(id, r.get("t", 0))
        elif op == "delete":
            deleted.add(r["id"])
        elif op == "observe" and r.get("kind") == "tail":
            deliveries.extend((r.get("t", 0), id) for id in r["ids"])
    lags = [(acked[id], max(0, t - acked[id]) / 1e6) for t, id in deliveries if id in acked]  # (ack ns, lag ms)
    lags.sort()
    return {"acked": acked, "deleted": deleted, "lags": lags}


def lag_summary(lags: list[tuple[int, float]], lo_ns: float = -math.inf, hi_ns: float = math.inf) -> dict[str, Any]:
    start = bisect_left(lags, (lo_ns, -math.inf)) if lo_ns > -math.inf else 0
    values = [lag for t, lag in lags[start:] if t <= hi_ns]
    return {
        "deliveries": len(values),
        "p50_ms": _p(values, 50),
        "p99_ms": _p(values, 99),
        "max_ms": max(values, default=0.0),
    }


def _window(samples: list[tuple[float, float, bool, str]], lo: float, hi: float) -> dict[str, Any]:
    inside = [(lat, ok) for t, lat, ok, _ in samples if lo <= t < hi]
    good = sum(1 for _, ok in inside if ok)
    lat = [x for x, _ in inside]
    return {
        "requests": len(inside),
        "errors": len(inside) - good,
        "error_rate": (len(inside) - good) / len(inside) if inside else 0.0,
        "availability": good / len(inside) if inside else 1.0,
        "p99_ms": _p(lat, 99) * 1e3,
        "max_ms": max(lat, default=0.0) * 1e3,
    }


def fault_figures(
    samples: list[tuple[float, float, bool, str]],
    faults: list[dict[str, Any]],
    t_start: float,
    t_end: float,
    recover_p99_ms: float,
    lags: list[tuple[int, float]],
    clock_offset: float,
) -> list[dict[str, Any]]:
    """Per fault: the figures during it, when the service was back, staleness; times relative to the load's start."""
    ordered = sorted(samples)
    times = [s[0] for s in ordered]
    out = []
    for f in faults:
        if f.get("skipped"):
            out.append({"label": f["label"], "action": f["action"], "target": f["target"], "skipped": f["skipped"]})
            continue
        start, end = f["start"], f["end"] if f["end"] is not None else t_end
        hi = max(end, start + 0.25)  # a kill is instantaneous: its window is at least the next quarter second
        recovered = None
        # Recovery must show before the next fault starts: after that, it would be that fault's.
        limit = min([t_end] + [g["start"] for g in faults if not g.get("skipped") and g["start"] > start])
        k = bisect_left(times, end)
        while k < len(ordered) and ordered[k][0] + RECOVERY_WINDOW_S <= limit:
            T = ordered[k][0]
            j = bisect_left(times, T + RECOVERY_WINDOW_S, lo=k)
            window = ordered[k:j]
            if all(ok for _, _, ok, _ in window) and _p([x for _, x, _, _ in window], 99) * 1e3 <= recover_p99_ms:
                recovered = T
                break
            # the first bad request in the window: no T before it can start a clean window
            bad = next((i for i in range(k, j) if not ordered[i][2] or ordered[i][1] * 1e3 > recover_p99_ms), k)
            k = max(k + 1, bad + 1)
        out.append(
            {
                **{key: f[key] for key in ("label", "action", "target", "processes", "pids", "error")},
                "start_s": round(start - t_start, 3),
                "end_s": round(end - t_start, 3),
                "during": _window(ordered, start, hi),
                "staleness": lag_summary(lags, (start + clock_offset) * 1e9, (hi + clock_offset) * 1e9),
                "recovered_at_s": None if recovered is None else round(recovered - t_start, 3),
                "recovery_s": None if recovered is None else round(max(0.0, recovered - end), 3),
                "outage_s": None if recovered is None else round(max(0.0, recovered - start), 3),
            }
        )
    return out


# ----------------------------------------------------------------- output


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def markdown(result: dict[str, Any]) -> str:
    """One run as a Markdown page: the summary, the faults, the verdict."""
    lines = [f"# {result['scenario']} on {result['deployment']}", ""]
    if result["status"] != "ok":
        lines += [f"**{result['status']}**: {result.get('reason', '')}", ""]
        if "load" not in result:
            return "\n".join(lines)
    load, post = result["load"], result["posts"]
    lines += [
        "| rate (req/s) | duration | requests | errors | p50 | p99 | p99.9 | acked posts | lost | deleted but visible | verifier |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {load['rate']:.0f} | {load['duration_s']:.1f} s | {load['requests']} | {100 * load['error_rate']:.2f}% | "
        f"{load['p50_ms']:.1f} ms | {load['p99_ms']:.1f} ms | {load['p999_ms']:.1f} ms | {post['acknowledged']} | "
        f"{post['lost']} | {post['resurrected']} | {_verdict(result['verify'])} |",
        "",
    ]
    if result.get("ramp"):
        r = result["ramp"]
        lines += [
            f"Ramp: maximum sustainable rate {_fmt(r['max_sustainable_rate'], '/s', 0)}, failure point "
            f"{_fmt(r['failure_point'], '/s', 0) if r['failure_point'] else 'above ' + _fmt(r['steps'][-1]['rate'], '/s', 0)} (p99 > {r['p99_limit']:g} ms or errors > {100 * r['error_limit']:g}%); "
            f"faults run at {load['rate']:.0f}/s.",
            "",
        ]
    if result["faults"]:
        lines += [
            "| fault | at | lasted | requests | availability | errors | p99 during | staleness p99 | recovery | outage |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in result["faults"]:
            if f.get("skipped"):
                lines.append(f"| {f['label']} | skipped: {f['skipped']} |" + " |" * 8)
                continue
            d = f["during"]
            lines.append(
                f"| {f['label']}{' (ERROR: ' + f['error'] + ')' if f['error'] else ''} | {f['start_s']:.2f} s | "
                f"{f['end_s'] - f['start_s']:.2f} s | {d['requests']} | {100 * d['availability']:.1f}% | {d['errors']} | "
                f"{d['p99_ms']:.0f} ms | {f['staleness']['p99_ms']:.0f} ms | {_fmt(f['recovery_s'], ' s', 2)} | {_fmt(f['outage_s'], ' s', 2)} |"
            )
        lines.append("")
    v = result["verify"]
    lines.append(
        "Verifier: "
        + ", ".join(f"{g} {'holds' if n == 0 else f'{n} violation(s)'}" for g, n in v["violations"].items())
    )
    if v.get("tolerated"):
        lines.append(f"- tolerated by this deployment's design ({v['tolerates_reason']}): {', '.join(v['tolerated'])}")
    for g, examples in v.get("examples", {}).items():
        lines.append(f"- first {g} counterexample: {examples[0]}")
    if post["lost_examples"]:
        lines.append(f"- acknowledged but not visible after recovery: {', '.join(map(str, post['lost_examples']))}")
    s = result["staleness"]
    lines += [
        "",
        f"Staleness (stream delivery behind acknowledgement, whole run): p50 {s['p50_ms']:.0f} ms, "
        f"p99 {s['p99_ms']:.0f} ms, max {s['max_ms']:.0f} ms over {s['deliveries']} deliveries.",
        "",
        "![timeline](timeline.png)",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency, answered requests and errors over time, faults shaded, recoveries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["timeline"]
    t = [r["t"] for r in rows]
    fig, (lat, thr, err) = plt.subplots(3, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1.2, 1]})
    # an empty bucket has no latency: a gap in the line, not a fall to zero
    for key, label, color in (("p99_ms", "p99", "tab:red"), ("p50_ms", "p50", "tab:blue")):
        lat.plot(
            t,
            [max(r[key], 0.1) if r["requests"] else math.nan for r in rows],
            label=label,
            color=color,
            drawstyle="steps-post",
        )
    lat.axhline(
        result["recover_p99_ms"], color="grey", linestyle=":", linewidth=1, label=f"{result['recover_p99_ms']:g} ms"
    )
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms, open loop)")
    thr.plot(t, [r["answered_per_s"] for r in rows], color="tab:green", drawstyle="steps-post", label="answered")
    thr.axhline(result["load"]["rate"], color="grey", linestyle=":", linewidth=1, label="offered")
    thr.set_ylabel("answered/s")
    thr.set_ylim(0, 1.15 * max([result["load"]["rate"]] + [r["answered_per_s"] for r in rows]))
    err.bar(
        t, [100 * r["error_rate"] for r in rows], width=result["bucket_s"], align="edge", color="tab:red", alpha=0.6
    )
    err.set_ylim(0, max([1.0] + [120 * r["error_rate"] for r in rows]))
    err.set_ylabel("errors (%)")
    err.set_xlabel("seconds since the load started")
    for n, f in enumerate(f for f in result["faults"] if not f.get("skipped")):
        color = f"C{n % 10}"
        for ax in (lat, thr, err):
            ax.axvspan(f["start_s"], max(f["end_s"], f["start_s"] + 0.05), color=color, alpha=0.15)
            if f["recovered_at_s"] is not None:
                ax.axvline(f["recovered_at_s"], color=color, linestyle="--", linewidth=0.8)
        lat.annotate(
            f["label"],
            (f["start_s"], 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            xytext=(2, -10 - 10 * (n % 3)),
            textcoords="offset points",
            color=color,
        )
    lat.legend(fontsize=8, loc="upper right")
    thr.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{result['scenario']} on {result['deployment']} (shaded: faults; dashed: recovered)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def comparison(results: Iterable[dict[str, Any]]) -> str:
    """One Markdown page across deployments: a row per deployment, then a row per (deployment, fault)."""
    results = list(results)
    # Ratios within one run are what compares across deployments on a shared machine.
    first = next(
        (r["ramp"]["max_sustainable_rate"] for r in results if (r.get("ramp") or {}).get("max_sustainable_rate")), None
    )
    lines = [
        "| deployment | status | rate | errors | p99 | max sustainable | vs first | failure point | acked | lost | verifier |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "load" not in r:
            lines.append(f"| {r['deployment']} | {r['status']}: {r.get('reason', '')} |" + " — |" * 9)
            continue
        load, ramp = r["load"], r.get("ramp") or {}
        lines.append(
            f"| {r['deployment']} | {r['status']} | {load['rate']:.0f}/s | {100 * load['error_rate']:.2f}% | {load['p99_ms']:.1f} ms | "
            f"{_fmt(ramp.get('max_sustainable_rate'), '/s', 0)} | "
            f"{_fmt(ramp['max_sustainable_rate'] / first if first and ramp.get('max_sustainable_rate') else None, '×', 2)} | "
            f"{_fmt(ramp.get('failure_point'), '/s', 0)} | "
            f"{r['posts']['acknowledged']} | {r['posts']['lost']} | "
            f"{_verdict(r['verify'])} |"
        )
    faulted = [r for r in results if r.get("faults")]
    if faulted:
        lines += [
            "",
            "| deployment | fault | availability | p99 during | staleness p99 | recovery | outage |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in faulted:
            for f in r["faults"]:
                if f.get("skipped"):
                    continue
                lines.append(
                    f"| {r['deployment']} | {f['label']} at {f['start_s']:.1f} s{' (ERROR)' if f['error'] else ''} | "
                    f"{100 * f['during']['availability']:.1f}% | {f['during']['p99_ms']:.0f} ms | {f['staleness']['p99_ms']:.0f} ms | "
                    f"{_fmt(f['recovery_s'], ' s', 2)} | {_fmt(f['outage_s'], ' s', 2)} |"
                )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], directory: Path) -> None:
    """report.json, report.md and timeline.png of one run."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(result, indent=2, default=str))
    (directory / "report.md").write_text(markdown(result))
    if result.get("timeline"):
        plot(result, directory / "timeline.png")


def _verdict(v: dict[str, Any]) -> str:
    """ok, or the violated checks with counts; those the deployment tolerates by design marked so."""
    if v["ok"]:
        return "ok"
    tolerated = v.get("tolerated", {})
    return ", ".join(f"{g}: {n}" + (" (tolerated)" if g in tolerated else "") for g, n in v["violations"].items() if n)
