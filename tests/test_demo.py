"""``twittercore demo``: builds, replays, records, verifies and reports, at a small size."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from twittercore.cli import main
from twittercore.errors import ConfigurationError


def test_demo_small_run_writes_a_verified_report(tmp_path):
    out = tmp_path / "report"
    data = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "twittercore", "demo", "--users", "300", "--posts", "2000", "--reads", "800",
         "--follows", "20", "--seed", "3", "--data", str(data), "--tails", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ G1" in done.stdout and "home read p50 / p99" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verification"]["ok"] and summary["verification"]["holds"]["global"]
    assert summary["workload"]["users"] == 300 and summary["workload"]["seed"] == 3
    assert summary["ingest"]["posts"] == 2000 and summary["ingest"]["events_per_s"] > 0
    assert summary["home_read"]["count"] >= 600 and summary["home_read"]["p99_us"] >= summary["home_read"]["p50_us"]
    assert summary["tails"]["sinks"] == 5
    assert summary["live_tails"]["sinks"] == 2 and (out / "live-tails.jsonl").exists()  # another process
    assert (out / "degrees.png").stat().st_size > 1000 and (out / "latency.png").stat().st_size > 1000
    assert (data / "data.mdb").exists() or any(data.iterdir()), "--data keeps the store"
    # The recorded history can be re-checked on its own.
    again = subprocess.run([sys.executable, "-m", "twittercore", "verify", str(out / "history.jsonl")],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0, again.stdout


def test_demo_in_memory_without_plots(tmp_path, capsys):
    code = main(["demo", "--memory", "--users", "100", "--posts", "500", "--reads", "200", "--follows", "10",
                 "--tails", "3", "--no-plots", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    output = capsys.readouterr().out
    assert "MemoryStore" in output and "(threads)" in output
    assert not (tmp_path / "latency.png").exists() and (tmp_path / "summary.json").exists()


def test_demo_refuses_a_used_data_directory(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something").write_text("x")
    with pytest.raises(ConfigurationError, match="not empty"):
        main(["demo", "--data", str(tmp_path / "used"), "--users", "10", "--out", str(tmp_path / "r")])


def test_a_failing_live_tail_is_reported_not_hidden(tmp_path, capsys, monkeypatch):
    from twittercore.checking.recorder import Recorder

    def broken(self, sink, after=None, timeout=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(Recorder, "tail", broken)
    code = main(["demo", "--memory", "--users", "60", "--posts", "200", "--reads", "50", "--follows", "5",
                 "--tails", "2", "--live", "1", "--no-plots", "--out", str(tmp_path)])  # fmt: skip
    assert code == 1
    assert "live tail failed" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["live_tails"]["errors"]
