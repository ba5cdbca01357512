"""The load tool's event-stream parser (WHATWG rules, one test per rule) and the one percentile definition."""

from __future__ import annotations

import random

import pytest

from twittercore.errors import InvalidArgumentError
from twittercore.tools import loadtool, report
from twittercore.tools.loadtool_http import EventStreamParser, ServerSentEvent
from twittercore.tools.percentiles import percentile, rank, summary


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = EventStreamParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


# ------------------------------------------------------------------- SSE


def test_data_lines_are_joined_with_newlines():
    assert parse(b"data: one\ndata: two\ndata:\ndata: four\n\n") == [ServerSentEvent("message", "one\ntwo\n\nfour", "")]


def test_the_default_event_type_is_message_and_event_sets_it():
    events = parse(b"data: a\n\nevent: update\ndata: b\n\ndata: c\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "a"), ("update", "b"), ("message", "c")]


def test_comments_are_ignored_and_counted():
    parser = EventStreamParser()
    assert parser.feed(b":thump\n: keep-alive\ndata: x\n:inside\n\n") == [ServerSentEvent("message", "x", "")]
    assert parser.comments == 3


def test_id_persists_and_a_nul_id_is_ignored():
    events = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\0x\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in events] == ["7", "7", "7", ""]  # a bare "id" resets it to empty


def test_retry_takes_only_ascii_digits():
    parser = EventStreamParser()
    parser.feed(b"retry: 1500\n\n")
    assert parser.retry == 1500
    for bad in (b"retry: 1.5\n\n", b"retry: soon\n\n", b"retry: \xd9\xa3\n\n", b"retry:\n\n"):  # \u0663: not ASCII
        parser.feed(bad)
        assert parser.retry == 1500


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n"], ids=["CRLF", "CR", "LF"])
def test_every_line_ending(ending):
    text = ending.join([b"event: update", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert parse(text) == [ServerSentEvent("update", "a\nb", ""), ServerSentEvent("message", "c", "")]


def test_mixed_line_endings_and_a_crlf_split_across_chunks():
    assert parse(b"data: a\r", b"\ndata: b\r", b"\r", b"\n") == [ServerSentEvent("message", "a\nb", "")]
    # byte by byte, with a multi-byte character cut in two
    stream = "data: caf\u00e9\r\nevent: x\rdata: \u2603\n\r\n".encode()
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == [ServerSentEvent("x", "caf\u00e9\n\u2603", "")]


def test_a_blank_line_dispatches_only_when_there_is_data():
    assert parse(b"\n\nevent: update\n\n\ndata: x\n\n") == [ServerSentEvent("message", "x", "")]  # the type reset


def test_field_syntax_one_space_stripped_no_colon_unknown_fields():
    events = parse(b"data:  two spaces\ndata\ndata:no space\nfoo: bar\n\n")
    assert events == [ServerSentEvent("message", " two spaces\n\nno space", "")]


def test_a_leading_bom_is_dropped_and_an_unfinished_event_is_not_dispatched():
    parser = EventStreamParser()
    assert parser.feed(b"\xef\xbb\xbfdata: a\n\ndata: half") == [ServerSentEvent("message", "a", "")]
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []  # only the first BOM: the next is a field name


# ----------------------------------------------------------- percentiles


def test_nearest_rank_definition():
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (0, 1, 50, 99, 99.5, 100)] == [1, 1, 50, 99, 100, 100]
    assert percentile([], 99) == 0.0 and percentile([7.0], 99.9) == 7.0
    thousand = list(range(1, 1001))
    assert percentile(thousand, 99.9) == 999  # ceil(99.9 * 1000 / 100) in exact arithmetic
    assert rank(99.9, 1000) == 998
    assert summary(thousand, (50, 99.9)) == {"p50": 500, "p99.9": 999}
    for bad in (-1, 100.5, "99", True):
        with pytest.raises(InvalidArgumentError):
            percentile(values, bad)


def test_the_definition_against_its_wording():
    """At least p% of the samples are <= the percentile, and it is the smallest sample with that property."""
    rng = random.Random(5)
    for _ in range(300):
        values = [rng.randrange(50) for _ in range(rng.randrange(1, 60))]
        p = rng.choice([0.1, 1, 25, 50, 90, 99, 99.9, 100, rng.uniform(0, 100)])
        x = percentile(values, p)
        at_most = sum(v <= x for v in values)
        assert at_most * 100 >= p * len(values) - 1e-9
        smaller = [v for v in values if v < x]
        assert not smaller or sum(v <= max(smaller) for v in values) * 100 < p * len(values) + 1e-9


def test_every_report_uses_the_same_definition():
    rng = random.Random(1)
    samples = [rng.random() for _ in range(1000)]
    assert report.percentile is percentile and loadtool.percentile is percentile
    summary_us = report.latency_summary([int(s * 1e9) for s in samples])
    assert summary_us["p99_us"] == round(percentile([int(s * 1e9) for s in samples], 99) / 1000, 1)
    assert loadtool._summary(samples)["p999_ms"] == percentile(samples, 99.9) * 1e3
