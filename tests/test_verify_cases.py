"""The verifier on small hand-written histories: each rule of docs/history-format.md, and malformed files."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

import twittercore
from twittercore.checking.history import HistoryError, HistoryWriter
from twittercore.checking.recorder import Recorder
from twittercore.checking.verify import verify


def lines(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def check(*records: dict, **options):
    return verify([io.StringIO(lines(*records))], **options)


def failed(report) -> set[str]:
    return {g for g, ok in report.holds.items() if not ok and g != "global"}


def follow(sink, source, t=1, t0=0):
    return {"op": "follow", "sink": sink, "source": source, "t": t, "t0": t0}


def publish(source, id, t0, t):
    return {"op": "publish", "source": source, "id": id, "t0": t0, "t": t}


def page(sink, ids, t0, t, **fields):
    return {"op": "observe", "kind": "page", "sink": sink, "ids": ids, "t0": t0, "t": t, **fields}


def tail(sink, ids, t0, t, **fields):
    return {"op": "observe", "kind": "tail", "sink": sink, "ids": ids, "t0": t0, "t": t, "stream": "s", **fields}


# ------------------------------------------------------------------ G1 order


def test_order_chains_through_an_overlapping_publish():
    """x returned (10) before z began (12); y overlaps both: the page must still show x older than z."""
    report = check(
        follow("k", "a"),
        publish("a", "x", 2, 10), publish("a", "y", 5, 20), publish("a", "z", 12, 30),
        page("k", ["x", "y", "z"], 40, 41, limit=20),
    )  # fmt: skip
    assert failed(report) == {"G1"}, report.format()
    assert "'z' before event 'x'" in report.violations["G1"][0]
    # The same publishes seen in an order real time allows (y either side) pass.
    for ids in (["z", "y", "x"], ["z", "x", "y"], ["y", "z", "x"]):
        ok = check(follow("k", "a"), publish("a", "x", 2, 10), publish("a", "y", 5, 20), publish("a", "z", 12, 30),
                   page("k", ids, 40, 41, limit=20))  # fmt: skip
        assert ok.ok, (ids, ok.format())


def test_int_ids_must_follow_real_time():
    """The store gave the smaller id to the publish that began after the other returned."""
    report = check(follow(1, 2), publish(2, 7, 2, 10), publish(2, 5, 12, 30), page(1, [7, 5], 40, 41, limit=20))
    assert failed(report) == {"G1"} and "got the smaller id" in report.violations["G1"][0], report.format()


def test_order_across_sources_is_real_time_order_in_a_page():
    report = check(
        follow(1, "a"), follow(1, "b"),
        publish("a", "x", 2, 10), publish("b", "z", 12, 30),
        page(1, ["x", "z"], 40, 41, limit=20),  # newest first: z shown older than x
    )  # fmt: skip
    assert failed(report) == {"G2"} and report.violations["G2"][0].startswith("G2 (real-time order)")


# ------------------------------------------------------------------- tails


def test_late_insert_behind_a_tail_reader_is_g3():
    base = [follow(1, 2, t=1), follow(1, 3, t=1)] + [
        publish(2 + id % 3 % 2, id, 10 * id, 10 * id + 1) for id in (5, 7, 9)
    ]
    correct = check(*base, tail(1, [5], 100, 101, after=0), tail(1, [7, 9], 102, 103))
    assert correct.ok, correct.format()
    report = check(*base, tail(1, [5, 9], 100, 101, after=0), tail(1, [7], 102, 103))
    assert "G3" in failed(report) and report.violations["G3"][0].startswith("G3 (late insert)"), report.format()
    assert "event 7" in report.violations["G3"][0] and "event 9" in report.violations["G3"][0]


def test_a_loss_behind_a_late_insert_is_found_from_the_highest_delivery():
    base = [follow(1, 2, t=1)] + [publish(2, id, 10 * id, 10 * id + 1) for id in (5, 7, 8, 9)]
    report = check(*base, tail(1, [5, 9, 7], 200, 201, after=0))  # 8 never delivered, 9 is the highest
    assert any(m.startswith("G3 (missing)") and "event 8" in m for m in report.violations["G3"]), report.format()


def test_tails_with_opaque_ids_owe_what_lies_between_two_deliveries():
    base = [follow(1, 2, t=1)] + [publish(2, f"e{n}", 10 * n, 10 * n + 1) for n in range(1, 5)]
    assert check(*base, tail(1, ["e1", "e2", "e3", "e4"], 100, 101)).ok
    report = check(*base, tail(1, ["e1", "e2", "e4"], 100, 101))
    assert failed(report) == {"G3"} and "'e3'" in report.violations["G3"][0]
    assert check(*base, tail(1, ["e2", "e3"], 100, 101)).ok  # started late, stopped early: owes nothing more


# --------------------------------------------------------------- G4 paging


def test_since_id_and_min_id_together_take_the_larger_bound():
    buffer = io.StringIO()
    with twittercore.open(":memory:") as store:
        rec = Recorder(store, HistoryWriter(buffer))
        rec.follow(1, 2)
        ids = [rec.publish(2, b"x").id for _ in range(6)]
        page = rec.home(1, limit=20, since_id=ids[2], min_id=ids[0])  # as Mastodon: above since_id
        assert [e.id for e in page] == ids[:2:-1]
    report = verify([io.StringIO(buffer.getvalue())])
    assert report.ok, report.format()
    assert verify([io.StringIO(buffer.getvalue())], ordered=False).ok  # and with the ids taken as opaque
    text = buffer.getvalue().replace(f'"ids":[{ids[5]},{ids[4]},{ids[3]}]', f'"ids":[{ids[5]},{ids[3]}]')
    assert failed(verify([io.StringIO(text)])) == {"G3"}  # but what is above both bounds is owed


def test_ids_outside_a_pages_bounds_are_g4():
    base = [follow(1, 2)] + [publish(2, id, id, id) for id in range(10, 20)]
    assert check(*base, page(1, [16, 15, 14], 30, 31, limit=3, max_id=16)).ok
    for bad in (
        page(1, [17, 16, 15], 30, 31, limit=3, max_id=16),  # above max_id
        page(1, [16, 15, 14], 30, 31, limit=3, before_id=16),  # at Mastodon's exclusive max_id
        page(1, [19, 18, 17], 30, 31, limit=3, since_id=17),  # at since_id
        page(1, [12, 11, 10], 30, 31, limit=3, min_id=11, since_id=9),  # at min_id (both bounds apply)
        page(1, [19, 18, 17, 16], 30, 31, limit=3),  # longer than its limit
    ):
        report = check(*base, bad)
        assert failed(report) == {"G4"}, (bad, report.format())
        assert report.violations["G4"][0].startswith("G4 (bounds)")


def test_a_walk_that_repeats_the_previous_pages_oldest_is_g4():
    base = [follow(1, "b")] + [publish("b", f"s{n}", n, n) for n in range(10, 20)]
    walk = [page(1, ["s19", "s18", "s17"], 30, 31, limit=3), page(1, ["s16", "s15", "s14"], 32, 33, limit=3,
                                                                   before_id="s17")]  # fmt: skip
    assert check(*base, *walk).ok
    walk[1]["ids"] = ["s17", "s16", "s15"]
    report = check(*base, *walk)
    assert failed(report) == {"G4"} and any("G4 (repeat)" in m for m in report.violations["G4"]), report.format()


def test_a_walk_owes_what_neither_page_alone_owed():
    """e overlaps o1, so neither page certainly covers it; but it lies between o2 and n: the walk owes it."""
    base = [follow(1, "b", t=0),
            publish("b", "o2", 1, 2), publish("b", "e", 3, 10), publish("b", "o1", 4, 11), publish("b", "n", 12, 13)]  # fmt: skip
    first = page(1, ["n", "o1"], 20, 21, limit=2)
    good = [first, page(1, ["e", "o2"], 22, 23, limit=2, before_id="o1")]
    assert check(*base, *good).ok
    report = check(*base, first, page(1, ["o2"], 22, 23, limit=1, before_id="o1"))
    assert failed(report) == {"G4"} and report.violations["G4"][0].startswith("G4 (skip)"), report.format()
    assert "'e'" in report.violations["G4"][0]


# ------------------------------------------------------ deletes, real time


def test_shown_after_its_delete_returned():
    base = [follow(1, 2), publish(2, 10, 2, 3), publish(2, 11, 4, 5), {"op": "delete", "id": 10, "t0": 6, "t": 7}]
    assert check(*base, page(1, [11, 10], 6, 8, limit=20)).ok  # the read overlapped the delete
    report = check(*base, page(1, [11, 10], 8, 9, limit=20))
    assert failed(report) == {"deleted"} and "event 10" in report.violations["deleted"][0]
    assert check(*base, tail(1, [10, 11], 8, 9, after=0)).ok  # a stream may race a delete


def test_shown_by_a_read_that_returned_before_its_publish_began():
    base = [follow(1, 2), publish(2, 10, 2, 3), publish(2, 11, 9, 12)]
    assert check(*base, page(1, [11, 10], 5, 10, limit=20)).ok  # overlapping: it may have committed
    for read in (page(1, [11, 10], 5, 8, limit=20), tail(1, [10, 11], 5, 8, after=0)):
        report = check(*base, read)
        assert failed(report) == {"realtime"}, report.format()
        assert "event 11" in report.violations["realtime"][0]


# ------------------------------------------------------------ bad files


BAD = [
    ("[1, 2]", "a JSON list, not an object"),
    ('"publish"', "a JSON str, not an object"),
    ('{"op":"observe","kind":"page","sink":1,"ids":"10"}', '"ids" is "10"'),
    ('{"op":"observe","kind":"page","sink":1,"ids":5}', '"ids" is 5'),
    ('{"op":"observe","kind":"page","sink":1,"ids":[1.5]}', '"ids" holds 1.5'),
    ('{"op":"observe","kind":"page","sink":1,"ids":[true]}', '"ids" holds true'),
    ('{"op":"observe","kind":"page","sink":[1],"ids":[1]}', '"sink" is [1]'),
    ('{"op":"observe","kind":"page","sink":1,"ids":[1],"limit":"20"}', '"limit" is "20"'),
    ('{"op":"observe","kind":"page","ids":[1]}', 'observe without "sink"'),
    ('{"op":"observe","kind":"page","sink":1}', 'observe without "ids"'),
    ('{"op":"observe","kind":"peek","sink":1,"ids":[]}', 'unknown observation kind "peek"'),
    ('{"op":"observe","sink":1,"ids":[],"max_id":3,"before_id":4}', 'both "max_id" and "before_id"'),
    ('{"op":"publish","source":1}', 'publish without "id"'),
    ('{"op":"publish","items":[[1]]}', '"items" holds [1]'),
    ('{"op":"follow","sink":1}', 'follow without "source"'),
    ('{"op":"follow","pairs":{"1":2}}', '"pairs" is {"1": 2}'),
    ('{"op":"delete","id":null}', 'delete without "id"'),
    ('{"op":"publish","source":1,"id":2,"t":"now"}', '"t" is "now"'),
    ('{"op":"publish","source":1,"id":2,"t":3,"t0":5}', '"t0" 5 is after "t" 3'),
    ('{"op":"post","source":1,"id":2}', 'unknown op "post"'),
    ('{"source":1,"id":2}', 'a record without "op"'),
    ('{"format":"other"}', 'format "other"'),
    ("{nope", "not JSON"),
]


@pytest.mark.parametrize("line, what", BAD, ids=[what for _, what in BAD])
def test_every_malformed_line_is_a_history_error_with_its_line(line, what):
    text = '{"format":"twittercore-history","version":1}\n{"op":"follow","sink":1,"source":2}\n' + line + "\n"
    with pytest.raises(HistoryError) as raised:
        verify([io.StringIO(text)])
    message = str(raised.value)
    assert isinstance(raised.value, twittercore.Error)
    assert message.startswith("<stream>:3: ") and what in message, message
    assert message.endswith(")") and " (" in message, message  # what is wrong (what was expected)


def test_bounds_of_an_ordered_history_must_be_ints():
    with pytest.raises(HistoryError, match=r"<stream>:2: \"since_id\" is \"3\""):
        check({"op": "publish", "source": 1, "id": 2}, {"op": "observe", "sink": 1, "ids": [2], "since_id": "3"})


def test_cli_exits_2_with_file_and_line_never_a_traceback(tmp_path):
    for n, (line, what) in enumerate(BAD[:4]):
        path = tmp_path / f"bad{n}.jsonl"
        path.write_text('{"op":"follow","sink":1,"source":2}\n' + line + "\n")
        done = subprocess.run(
            [sys.executable, "-m", "twittercore", "verify", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 2 and not done.stdout, done
        assert f"bad{n}.jsonl:2: " in done.stderr and what in done.stderr and "Traceback" not in done.stderr


def test_opaque_pages_owe_what_follows_an_event_they_showed():
    """e overlaps the bound b, but follows o, which the page showed above b: the short page owes e."""
    base = [follow(1, "s", t=0), publish("s", "b", 1, 20), publish("s", "o", 2, 3), publish("s", "e", 4, 5)]
    assert check(*base, page(1, ["e", "o"], 30, 31, limit=3, min_id="b")).ok
    report = check(*base, page(1, ["o"], 30, 31, limit=3, min_id="b"))
    assert failed(report) == {"G3"} and "'e'" in report.violations["G3"][0], report.format()


def test_a_page_below_an_id_holds_nothing_another_page_showed_above_it():
    """n1 overlaps b, so only the first page says n1 is newer than b; the walk is joined to the second."""
    base = [follow(1, "s", t=0), publish("s", "b", 1, 4), publish("s", "n1", 2, 3)]
    first = [page(1, ["n1", "b"], 10, 11, limit=2), page(1, ["b"], 12, 13, limit=1, before_id="n1")]
    assert check(*base, *first, page(1, [], 14, 15, limit=2, before_id="b")).ok
    report = check(*base, *first, page(1, ["n1"], 14, 15, limit=2, before_id="b"))
    assert failed(report) == {"G4"} and "showed as newer" in report.violations["G4"][0], report.format()
