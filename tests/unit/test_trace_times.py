"""trace: Kafka's whole-millisecond timestamps never put a hop before its query."""

from __future__ import annotations

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
from alto_stream.transport import InRecord
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
