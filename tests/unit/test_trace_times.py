"""trace: Kafka's whole-millisecond timestamps never put a hop before its query."""

from __future__ import annotations

import asyncio
import math

import pytest
from rich.console import Console

from alto_stream.ancestry import Ancestry
from alto_stream.cli import trace_cmd
from alto_stream.client import Client
from alto_stream.message import Envelope, MessageCodec
from alto_stream.ops.records import DecodedRecord, ReadWindow, read_records
from alto_stream.ops.trace import CLIENT, app_trace_topics, build_trace
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryOps, MemoryTransport
from alto_stream.transport import InRecord, OutRecord
from workers import textflow

pytestmark = pytest.mark.timeout(30)


def _as_kafka_stamps(item: DecodedRecord) -> DecodedRecord:
    """The record as Kafka would return it: its timestamp cut to whole milliseconds."""
    stamp = math.floor(item.record.timestamp * 1000) / 1000
    return DecodedRecord(item.record._replace(timestamp=stamp), item.envelope, item.error)


async def test_no_hop_shows_before_its_query() -> None:
    app = textflow.build("trace-ms")
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = await client.run([{"text": "One. Two three."}], timeout=10)
    topology = app.topology()
    window = ReadWindow(query_id=query_id)
    items = [
        _as_kafka_stamps(item)
        async for item in read_records(
            MemoryOps(transport), list(app_trace_topics(topology)), window
        )
    ]
    trace = build_trace(topology, query_id, items)
    client_hop = next(h for h in trace.hops if h.stage == CLIENT)
    # The query's record was written within a millisecond of its exact time: Kafka's
    # stamp of it is before query_time whenever query_time is not a whole millisecond.
    assert trace.start <= client_hop.time
    if client_hop.time < trace.query_time:
        assert trace.at(client_hop) == 0.0
    data = trace.to_dict()
    assert data["critical_path"][0]["at"] >= 0
    assert all(hop["at"] >= 0 for hop in data["critical_path"])
    assert trace.latency is not None and trace.latency >= 0
    console = Console(record=True, width=300)
    console.print(trace_cmd._tree(trace))
    console.print(trace_cmd._stage_table(trace))
    shown = console.export_text()
    assert "+-" not in shown
    assert "Kafka record timestamps (whole ms)" in shown


def test_query_time_inside_a_millisecond() -> None:
    # the case the issue saw: the query at .0003 s past a millisecond, Kafka's stamp at the ms
    topology = textflow.build("trace-ms2").topology()
    codec = MessageCodec()
    ancestry = Ancestry.root("q-ms", query_time=1_700_000_000.0003)
    value, headers = codec.encode(Envelope(ancestry, {"text": "x"}, "alto.Text", CLIENT))
    record = InRecord(topology.input_topic, 0, 0, None, value, headers, 1_700_000_000.0)
    trace = build_trace(topology, "q-ms", [DecodedRecord(record, codec.decode(value, headers))])
    assert trace.start == 1_700_000_000.0
    assert trace.to_dict()["tree"]["hops"][0]["at"] == 0.0
    console = Console(record=True, width=300)
    console.print(trace_cmd._tree(trace))
    assert "client +0.0ms" in console.export_text()


@pytest.mark.parametrize("query_time", [float("nan"), float("inf")])
async def test_a_query_time_that_is_no_time_traces_from_its_first_record(
    query_time: float,
) -> None:
    # Before: a query written by hand with a NaN or infinite query_time ran, and
    # `alto-stream trace` died in a traceback converting the time to an int.
    app = textflow.build("trace-nan")
    transport = MemoryTransport(1)
    codec = MessageCodec()
    topology = app.topology()
    ancestry = Ancestry("q-nan", query_time)
    value, headers = codec.encode(Envelope(ancestry, {"text": "x. y."}, "alto.Text", CLIENT))
    transport.append(OutRecord(topology.input_topic, value, headers, b"q-nan"))
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = [r async for r in client.follow(["q-nan"], timeout=10, since=0) if r.final]
    assert [r.envelope.kind.name for r in finals] == ["ERROR"]
    items = [
        item
        async for item in read_records(
            MemoryOps(transport), list(app_trace_topics(topology)), ReadWindow(query_id="q-nan")
        )
    ]
    trace = build_trace(topology, "q-nan", items)
    assert math.isfinite(trace.start) and trace.latency is not None
    console = Console(record=True, width=300)
    console.print(trace_cmd._tree(trace))
    assert "ERROR" in console.export_text()
    trace.query_time = query_time  # as a trace of records written before the check reads
    assert math.isfinite(trace.start) and math.isfinite(trace.latency or 0.0)


def test_a_split_run_twice_shows_its_attempts() -> None:
    # Found by a new user killing the LLM stage mid-answer: the trace listed [0] three
    # times and the END twice, with nothing to tell the runs apart.
    topology = textflow.build("trace-attempts").topology()
    codec = MessageCodec()
    root = Ancestry.root("q-twice", query_time=1_700_000_000.0)
    records = [(root, CLIENT, topology.input_topic)]
    records += [(root.child("first", 0), "sentences", "x.sentences")]
    records += [(root.child("again", i), "sentences", "x.sentences") for i in range(2)]
    records += [(root.end_marker("again", 2), "sentences", "x.sentences")]
    records += [(root.child("other", 0, count=1), "paragraphs", "x.paragraphs")]  # ran once
    items = []
    for offset, (ancestry, stage, topic) in enumerate(records):
        value = None if ancestry.kind.is_marker else {"text": "x"}
        data, headers = codec.encode(
            Envelope(ancestry, value, "alto.Text" if value else None, stage)
        )
        stamp = 1_700_000_000.0 + offset / 10
        record = InRecord(topic, 0, offset, None, data, headers, stamp)
        items.append(DecodedRecord(record, codec.decode(data, headers)))
    trace = build_trace(topology, "q-twice", items)
    assert [c.attempt for c in trace.root.children] == [
        "first", "again", "again", "again", "other"
    ]  # fmt: skip
    assert trace.to_dict()["tree"]["children"][0]["attempt"] == "first"
    console = Console(record=True, width=300)
    console.print(trace_cmd._tree(trace))
    shown = console.export_text()
    assert shown.count("attempt first") == 1 and shown.count("attempt again") == 3
    # Another split of the same parent, run once (rag's retrieve, then generate): unnamed.
    assert "attempt other" not in shown


async def test_a_failed_records_letter_and_marker_count_its_time_once() -> None:
    # Found by a new user: a record that failed after 30.8 s showed "words 2 records
    # 61512ms": its dead letter and its error marker each counted the 30.8 s.
    from alto_stream import App

    app = App("trace-failed", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def slow(query: dict[str, str]) -> dict[str, str]:
        await asyncio.sleep(0.3)
        raise ValueError("no")

    transport = MemoryTransport(1)
    topology = app.topology()
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = await client.run([{"text": "x"}], timeout=10)
    items = [
        item
        async for item in read_records(
            MemoryOps(transport), list(app_trace_topics(topology)), ReadWindow(query_id=query_id)
        )
    ]
    trace = build_trace(topology, query_id, items)
    (timing,) = [t for t in trace.stages() if t.stage == "slow"]
    assert timing.records == 2  # the dead letter and the ERROR marker
    assert 0.3 <= timing.total < 0.5 and timing.total == timing.longest


async def test_hops_written_in_one_millisecond_are_ordered_upstream_first() -> None:
    # Found by a new user: an END marker of a downstream stage showed before the
    # upstream one's when Kafka stamped both in the same millisecond.
    app = textflow.build("trace-tie")
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = await client.run([{"text": "One. Two three."}], timeout=10)
    topology = app.topology()
    window = ReadWindow(query_id=query_id)
    items = [
        DecodedRecord(item.record._replace(timestamp=1_700_000_000.0), item.envelope)
        async for item in read_records(
            MemoryOps(transport), list(app_trace_topics(topology)), window
        )
    ]
    trace = build_trace(topology, query_id, list(reversed(items)))
    stages = [CLIENT, "paragraphs", "sentences", "words", "shout"]
    stages += ["sentence_text", "paragraph_text", "document"]
    seen = [stages.index(h.stage) for h in trace.hops]
    assert seen == sorted(seen), [h.stage for h in trace.hops]


def test_a_stage_s_time_is_its_wall_clock_span_not_a_sum_of_parallel_records() -> None:
    # Found by a new user: a 3.4 s query showed 17,934,065.9 ms for one stage, the
    # "total" column summing the durations of children that ran at the same time.
    from alto_stream import App, Child

    app = App("trace-span", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, str]) -> list[dict[str, str]]:
        return [q] * 5

    @app.map(source=parts, schema="alto.Text", max_in_flight=5)
    async def slow(q: dict[str, str]) -> dict[str, str]:
        return q

    @app.aggregate(source=slow, closes=parts, schema="alto.Text")
    def join(children: list[Child]) -> dict[str, str]:
        return {"text": "joined"}

    topology = app.topology()
    codec = MessageCodec()
    root = Ancestry.root("q-span", query_time=1_700_000_000.0)
    records = [(root, CLIENT, 0.0)]
    records += [(root.child("a", i, 5), "parts", 0.1) for i in range(5)]
    records += [(root.child("a", i, 5), "slow", 1.1) for i in range(5)]  # side by side, 1 s
    records += [(root, "join", 1.2)]
    items = []
    for offset, (ancestry, stage, at) in enumerate(records):
        topic = topology.input_topic if stage == CLIENT else topology.plan(stage).output_topic
        data, headers = codec.encode(Envelope(ancestry, {"text": "x"}, "alto.Text", stage))
        record = InRecord(topic, 0, offset, None, data, headers, 1_700_000_000.0 + at)
        items.append(DecodedRecord(record, codec.decode(data, headers)))
    trace = build_trace(topology, "q-span", items)
    slow_timing = next(t for t in trace.stages() if t.stage == "slow")
    assert slow_timing.total == pytest.approx(5.0)  # the sum, kept in --json
    assert slow_timing.span == pytest.approx(1.0) and slow_timing.longest == pytest.approx(1.0)
    assert trace.to_dict()["stages"][2]["span"] == pytest.approx(1.0)
    console = Console(record=True, width=300)
    console.print(trace_cmd._stage_table(trace))
    shown = console.export_text()
    assert "span" in shown and "5000.0ms" not in shown
    assert "from its first input to its last record" in " ".join(shown.split())


def test_two_finals_of_one_query_are_said() -> None:
    # Found by a new user: after a stage was removed under running queries, a query had
    # two finals with different values, and trace showed one as if it were the only one.
    topology = textflow.build("trace-finals").topology()
    codec = MessageCodec()
    root = Ancestry.root("q-finals", query_time=1_700_000_000.0)
    out = topology.stages["document"].output_topic
    items = []
    for offset, (topic, value) in enumerate(
        [(topology.input_topic, "a b"), (out, "A B!"), (out, "A B")]
    ):
        data, headers = codec.encode(Envelope(root, {"text": value}, "alto.Text", "document"))
        record = InRecord(topic, 0, offset, None, data, headers, 1_700_000_000.0 + offset)
        items.append(DecodedRecord(record, codec.decode(data, headers)))
    trace = build_trace(topology, "q-finals", items)
    assert (len(trace.finals), trace.final_values) == (2, 2)
    assert trace.to_dict()["finals"] == 2 and trace.to_dict()["final_values"] == 2
    console = Console(record=True, width=300)
    console.print(trace_cmd._tree(trace))
    assert "2 finals, with different values (the first is shown)" in console.export_text()
