"""The workload generator: deterministic, Twitter-shaped, streamable and replayable."""

from __future__ import annotations

import collections
import hashlib
import subprocess
import sys
import time

import pytest

import twittercore
from twittercore.checking.workload import Delete, Follow, Home, Publish, Timeline, Unfollow, Workload, replay
from twittercore.errors import InvalidArgumentError


def small(**overrides) -> Workload:
    options = dict(users=300, posts=2000, reads=1500, mean_followees=20, seed=7)
    options.update(overrides)
    return Workload(**options)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    small().write_jsonl(tmp_path / "a.jsonl")
    small().write_jsonl(tmp_path / "b.jsonl")
    small(seed=8).write_jsonl(tmp_path / "c.jsonl")
    assert digest(tmp_path / "a.jsonl") == digest(tmp_path / "b.jsonl")
    assert digest(tmp_path / "a.jsonl") != digest(tmp_path / "c.jsonl")


def test_jsonl_round_trip(tmp_path):
    w = small()
    w.write_jsonl(tmp_path / "w.jsonl")
    back = Workload.read_jsonl(tmp_path / "w.jsonl")
    assert back.params == w.params
    assert list(back.graph()) == list(w.graph())
    assert list(back.posts()) == list(w.posts())
    assert list(back.operations()) == list(w.operations())
    back.write_jsonl(tmp_path / "again.jsonl")  # a read workload writes the same bytes
    assert digest(tmp_path / "again.jsonl") == digest(tmp_path / "w.jsonl")


def test_graph_shape():
    w = Workload(users=3000, mean_followees=60, max_followees=400, posts=0, reads=0, seed=2)
    pairs = list(w.graph())
    assert len(set(pairs)) == len(pairs), "no duplicate follows"
    assert all(1 <= a <= 3000 and 1 <= b <= 3000 and a != b for a, b in pairs)
    out = collections.Counter(a for a, _ in pairs)
    into = collections.Counter(b for _, b in pairs)
    assert 0.8 * 60 <= len(pairs) / 3000 <= 1.2 * 60  # log-normal with the asked mean
    assert max(out.values()) <= 400
    median_out = sorted(out.values())[1500]
    assert median_out < 60, "log-normal: the median is below the mean"
    top = into.most_common(1)[0][1]
    assert top >= 0.05 * 3000, "a celebrity is followed by several percent of all users"
    assert sorted(into.values())[1500] * 10 < top, "in-degree is heavy-tailed"


def test_followees_rebuild_one_sink_alone():
    w = small()
    pairs = list(w.graph())
    assert w.followees(42) == [s for k, s in pairs if k == 42]


def test_posts_zipf_authors_and_payloads():
    w = small(posts=5000, payload_bytes=140)
    posts = list(w.posts())
    assert len(posts) == 5000
    assert {len(p) for _, p in posts} == {140}
    assert len({p for _, p in posts}) == 5000, "every payload is distinct (it starts with its serial)"
    authors = collections.Counter(s for s, _ in posts)
    assert authors.most_common(1)[0][1] > 10 * 5000 / 300, "authorship is skewed, not uniform"


def test_operations_mix_and_replayable_references():
    w = small(reads=6000)
    following = collections.defaultdict(set)
    for sink, source in w.graph():
        following[sink].add(source)
    publishes, deleted = w.posts_count, set()
    kinds = collections.Counter()
    for op in w.operations():
        kinds[type(op).__name__] += 1
        if isinstance(op, Publish):
            publishes += 1
        elif isinstance(op, Delete):
            assert 0 <= op.publish < publishes and op.publish not in deleted
            deleted.add(op.publish)
        elif isinstance(op, Follow):
            assert op.source not in following[op.sink] and op.source != op.sink
            following[op.sink].add(op.source)
        elif isinstance(op, Unfollow):
            assert op.source in following[op.sink]
            following[op.sink].discard(op.source)
        else:
            assert isinstance(op, (Home, Timeline))
    assert kinds["Home"] + kinds["Timeline"] == 6000
    assert 15 <= (kinds["Home"] + kinds["Timeline"]) / kinds["Publish"] <= 60, "tens of reads per post"
    assert kinds["Follow"] and kinds["Unfollow"] and kinds["Delete"]


def test_replay_against_the_reference_store(tmp_path):
    w = small(reads=500)
    w.write_jsonl(tmp_path / "w.jsonl")
    with twittercore.open(":memory:") as store:
        result = replay(tmp_path / "w.jsonl", store, batch=1000)  # from the file, not the object
        assert result.follows == sum(1 for _ in w.graph())
        assert result.posts == 2000
        assert len(result.ids) == 2000 + result.counts.get("publish", 0)
        assert len(result.home_ns) >= result.counts["home"]
        deletes = [op.publish for op in w.operations() if isinstance(op, Delete)]
        for n in deletes:
            with pytest.raises(twittercore.NotFoundError):
                store.event(result.ids[n])


def test_graph_is_fast_enough():
    started = time.perf_counter()
    count = sum(1 for _ in Workload(users=2000, mean_followees=100, posts=0, reads=0).graph())
    assert count > 150_000
    assert time.perf_counter() - started < 3.0  # ~0.25 s here; 1M follows take about 1.2 s


def test_bad_parameters_say_what_to_fix():
    with pytest.raises(InvalidArgumentError, match="users"):
        Workload(users=1)
    with pytest.raises(InvalidArgumentError, match="payload_bytes"):
        Workload(payload_bytes=4)


def test_read_jsonl_rejects_other_files(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(InvalidArgumentError, match="not a twittercore workload"):
        Workload.read_jsonl(path)


def test_cli_writes_a_workload(tmp_path):
    out = tmp_path / "cli.jsonl"
    done = subprocess.run([sys.executable, "-m", "twittercore", "workload", str(out), "--users", "50",
                           "--posts", "100", "--reads", "50", "--follows", "5"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Workload.read_jsonl(out).params["users"] == 50
