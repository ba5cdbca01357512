"""``twittercore load``: open-loop HTTP load, history recording and verification, on loopback.

Runs are tiny (a few hundred requests over a couple of seconds) against the
example server in a thread of this process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("uvicorn")
from twittercore import cli  # noqa: E402
from twittercore.checking.verify import verify  # noqa: E402
from twittercore.server.testing import free_port, running_server  # noqa: E402
from twittercore.tools.loadtool import percentile  # noqa: E402

ADMIN = "load-admin"
SMALL = ["--admin-token", ADMIN, "--users", "12", "--followees", "4", "--posts", "30",
         "--connections", "8", "--streams", "2", "--timeout", "5"]  # fmt: skip


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) == 0.0
    assert percentile([7.0], 99.9) == 7.0


def test_load_records_and_verifies(tmp_path, capsys):
    out = tmp_path / "report"
    with running_server(str(tmp_path / "store"), str(tmp_path / "state.sqlite3"), admin_token=ADMIN) as url:
        code = cli.main(["load", url, *SMALL, "--rate", "120", "--duration", "2", "--ordered-ids", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "report.json").read_text())
    assert report["verify"]["ok"] and report["verify"]["counts"]["G3"] == 0
    step = report["steps"][0]
    assert step["requests"] == 240 and step["errors"] == 0
    assert {"home", "publish"} <= set(step["by_kind"])
    assert 0 < step["p50_ms"] <= step["p99_ms"] <= step["p999_ms"]
    # One worker (this process) answered every request of the step, as its header says.
    ((worker, rate),) = step["by_worker"].items()
    assert worker == f"{url.split('//')[1]}/{os.getpid()}" and step["worker_spread"] == 1.0
    # HTTP requests: an op that reads a second page makes two.
    assert step["completed"] - 1 <= rate * step["duration_s"] <= 2 * step["completed"]
    assert report["streamed_events"] > 0  # posts reached the user streams
    history = (out / "history.jsonl").read_text().splitlines()
    kinds = {json.loads(line).get("kind") for line in history[1:]}
    assert {"page", "timeline", "tail"} <= kinds
    assert (out / "latency.png").stat().st_size > 1000
    assert "G3 no loss" in printed


def test_ramp_finds_a_failure_point_with_opaque_ids(tmp_path, capsys):
    out = tmp_path / "ramp"
    # A p99 limit no server can meet makes the second step fail: the ramp
    # logic, the half-rate step and the verdicts run in a couple of seconds.
    with running_server(admin_token=ADMIN) as url:
        code = cli.main(
            [
                "load",
                url,
                *SMALL,
                "--mix",
                "home",
                "--rate",
                "60",
                "--duration",
                "1",
                "--ramp",
                "--ramp-factor",
                "2",
                "--max-steps",
                "2",
                "--p99-limit",
                "0.001",
                "--cooldown",
                "0",
                "--out",
                str(out),
            ]
        )
    assert code == 0, capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["failure_point"] == 60 and report["max_sustainable_rate"] is None
    assert report["half_of_failure_point"]["rate"] == 30
    assert report["verify"]["ok"] and report["verify"]["stats"]["ordered"] is False


def test_second_pages_are_recorded_with_opaque_ids(tmp_path, capsys):
    """Mastodon's exclusive max_id is recorded as before_id: the verifier joins the pages (G4)."""
    out = tmp_path / "opaque"
    with running_server(admin_token=ADMIN) as url:
        code = cli.main(["load", url, *SMALL, "--rate", "150", "--duration", "2", "--no-plot", "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()[1:]]
    second = [r for r in records if r.get("kind") == "page" and "before_id" in r]
    assert second and all(isinstance(r["before_id"], str) and "limit" in r and "t0" in r for r in second)
    report = verify([out / "history.jsonl"], ordered=False)
    assert report.ok and report.stats["walk_steps"] > 0, report.format()


@pytest.mark.parametrize("ids", ["ordered", "opaque"])
def test_verifier_catches_a_server_that_loses_posts(ids, tmp_path, monkeypatch, capsys):
    from twittercore.backends.memory import MemoryStore

    real_home = MemoryStore._home

    def lossy_home(self, sink, limit, lo, hi, oldest):
        # Drop every status whose id is a multiple of 5: a lost write, as a reader sees it.
        return [e for e in real_home(self, sink, limit, lo, hi, oldest) if e.id % 5]

    monkeypatch.setattr(MemoryStore, "_home", lossy_home)
    out = tmp_path / "lossy"
    with running_server(admin_token=ADMIN) as url:
        flags = ["--ordered-ids"] if ids == "ordered" else []
        code = cli.main(["load", url, *SMALL, "--rate", "80", "--duration", "1", *flags, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1, printed
    report = json.loads((out / "report.json").read_text())
    assert report["verify"]["counts"]["G3"] > 0
    assert "G3 (" in printed or "✗ G3" in printed


def test_unreachable_server_is_a_clear_error(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    code = cli.main(["load", url, "--admin-token", ADMIN, "--users", "2", "--out", str(tmp_path)])
    assert code == 2
    assert "is the server running?" in capsys.readouterr().err


def test_existing_accounts_from_a_tokens_file(tmp_path, capsys):
    """Against a server where accounts already exist (no admin token): --tokens."""
    import httpx

    with running_server(admin_token=ADMIN) as url:
        tokens = [
            httpx.post(f"{url}/api/v1/accounts", data={"username": f"user{n}"},
                       headers={"Authorization": f"Bearer {ADMIN}"}).json()["access_token"]
            for n in range(4)
        ]  # fmt: skip
        (tmp_path / "tokens.txt").write_text("# one a line\n" + "\n".join(tokens) + "\n")
        code = cli.main(
            [
                "load",
                url,
                "--tokens",
                str(tmp_path / "tokens.txt"),
                "--followees",
                "2",
                "--posts",
                "8",
                "--rate",
                "50",
                "--duration",
                "1",
                "--connections",
                "4",
                "--streams",
                "1",
                "--out",
                str(tmp_path / "out"),
                "--no-plot",
            ]
        )
    assert code == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verify"]["ok"] and report["steps"][0]["errors"] == 0
