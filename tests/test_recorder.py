"""The recorder: what an embedded run does and sees becomes a history the verifier accepts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import twittercore
from twittercore.checking.history import HistoryWriter
from twittercore.checking.recorder import Recorder
from twittercore.checking.verify import verify
from twittercore.checking.workload import Workload, replay


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()][1:]  # without the header


def test_records_mutations_and_reads_and_passes_everything_else_through():
    buffer = io.StringIO()
    with twittercore.open(":memory:") as store:
        rec = Recorder(store, HistoryWriter(buffer))
        rec.follow(1, 2)
        events = rec.publish_many([(2, b"a"), (2, b"b")])
        one = rec.publish(2, b"c")
        rec.delete(events[0].id)
        assert [e.payload for e in rec.home(1, limit=10)] == [b"c", b"b"]
        rec.timeline(2, limit=1)
        rec.unfollow(1, 2)
        assert rec.sources(1) == [] and rec.last_id() == store.last_id()  # passed through
    ops = lines(buffer)
    assert [r["op"] for r in ops] == ["follow", "publish", "publish", "delete", "observe", "observe", "unfollow"]
    assert ops[1]["items"] == [[2, events[0].id], [2, events[1].id]] and ops[2]["id"] == one.id
    assert ops[4]["ids"] == [one.id, events[1].id] and ops[4]["limit"] == 10 and ops[4]["kind"] == "page"
    assert ops[5]["kind"] == "timeline" and ops[5]["ids"] == [one.id]
    assert all(r["t0"] <= r["t"] for r in ops)
    assert len(rec.home_ns) == 1 and len(rec.timeline_ns) == 1
    assert verify([io.StringIO(buffer.getvalue())]).ok


def test_changes_calls_that_resume_form_one_stream():
    buffer = io.StringIO()
    with twittercore.open(":memory:") as store:
        rec = Recorder(store, HistoryWriter(buffer))
        rec.follow(1, 2)
        rec.publish_many([(2, b"x")] * 5)
        items, cursor = rec.changes(1, 0, limit=2)
        items, cursor = rec.changes(1, cursor, limit=2)
        rec.changes(1, 0, limit=1)  # a new start: a new stream
    tails = [r for r in lines(buffer) if r["op"] == "observe"]
    assert tails[0]["stream"] == tails[1]["stream"] != tails[2]["stream"]
    assert tails[0]["after"] == 0 and "after" not in tails[1] and tails[2]["after"] == 0
    assert verify([io.StringIO(buffer.getvalue())]).ok


def test_tail_is_recorded_in_batches_while_another_thread_publishes():
    buffer = io.StringIO()
    with twittercore.open(":memory:") as store:
        rec = Recorder(store, HistoryWriter(buffer), tail_batch=7)
        rec.follow_many([(1, 2), (1, 3)])
        seen = []

        def publisher():
            for n in range(60):
                rec.publish(2 + n % 2, b"p")
                if n % 10 == 0:
                    time.sleep(0.002)

        thread = threading.Thread(target=publisher)
        tail = rec.tail(1, timeout=0.5)
        thread.start()
        for item in tail:
            seen.append(item.id)
        thread.join()
    batches = [r for r in lines(buffer) if r["op"] == "observe"]
    assert [id for b in batches for id in b["ids"]] == seen and len(seen) == 60
    assert max(len(b["ids"]) for b in batches) <= 7 and len({b["stream"] for b in batches}) == 1
    report = verify([io.StringIO(buffer.getvalue())])
    assert report.ok and report.stats["reads_checked"] == 1


def test_a_tail_that_lost_an_event_is_caught():
    buffer = io.StringIO()
    with twittercore.open(":memory:") as store:
        rec = Recorder(store, HistoryWriter(buffer))
        rec.follow(1, 2)
        rec.publish_many([(2, b"x")] * 5)
        items, _ = store.changes(1, 0)
        rec.history.observe(1, [e.id for e in items if e.id != items[2].id], "tail", stream="s", after=0)
    report = verify([io.StringIO(buffer.getvalue())])
    assert not report.holds["G3"] and "G3 (missing)" in report.violations["G3"][0]


def test_recorded_lmdb_replay_verifies(tmp_path):
    workload = Workload(users=80, posts=600, reads=300, mean_followees=8, seed=4)
    with twittercore.open(str(tmp_path / "store")) as store, Recorder(store, tmp_path / "h.jsonl") as rec:
        replay(workload, rec, batch=250)
    report = verify([tmp_path / "h.jsonl"])
    assert report.ok and report.holds["global"], report.format()
    assert report.stats["observations"] >= 300


CHILD = """
import sys, twittercore
from twittercore.checking.recorder import Recorder
path, out, me = sys.argv[1], sys.argv[2], int(sys.argv[3])
with twittercore.open(path) as store, Recorder(store, out) as rec:
    for n in range(40):
        rec.publish(me, b"p")
        rec.home(10 + me, limit=15)
"""


def test_processes_write_their_own_files_and_the_verifier_merges_them(tmp_path):
    store_dir = str(tmp_path / "store")
    with twittercore.open(store_dir) as store, Recorder(store, tmp_path / "graph.jsonl") as rec:
        rec.follow_many([(sink, source) for sink in (11, 12) for source in (1, 2)])
    children = [subprocess.Popen([sys.executable, "-c", CHILD, store_dir, str(tmp_path / f"p{me}.jsonl"), str(me)])
                for me in (1, 2)]  # fmt: skip
    assert all(child.wait(timeout=60) == 0 for child in children)
    files = [tmp_path / "graph.jsonl", tmp_path / "p1.jsonl", tmp_path / "p2.jsonl"]
    report = verify(files)
    assert report.ok and report.stats["events"] == 80, report.format()
    assert verify(files, ordered=False).ok  # opaque ids: the shared clock orders the files
