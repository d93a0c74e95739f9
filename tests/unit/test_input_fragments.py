"""A fragment written onto an app's input topic: a dead letter, and its query ends in an error.

Found by a new user writing records by hand: a DATA record with a one- or
three-frame path on ``textflow.input`` ran through the first split and failed
stages later (no final: textflow has no time-out), and an END marker with a
frame there made a *successful* final for a query that never had a value.
"""

from __future__ import annotations

from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.client import Client
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(60)


def _app() -> App:
    app = App("fragments-in", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def test_fragments_on_the_input_topic_end_their_queries_with_an_error() -> None:
    app = _app()
    topology = app.topology()
    transport = MemoryTransport(2)
    codec = MessageCodec()
    one = Ancestry.root("one-frame").child("a1", 0, 1)
    three = Ancestry.root("three-frames").child("a1", 0).child("a2", 1).child("a3", 2, 3)
    end = Ancestry.root("an-end").end_marker("a1", 0)
    records = [
        Envelope(one, {"text": "x"}, "alto.Text"),
        Envelope(three, {"text": "y"}, "alto.Text"),
        Envelope(end, None, None),
    ]
    for envelope in records:
        value, headers = codec.encode(envelope)
        transport.append(OutRecord(topology.input_topic, value, headers, b"k"))
    ids = ["one-frame", "three-frames", "an-end"]
    async with LocalRun(app, transport), Client(app, transport) as client:
        ok = await client.push({"text": "still runs"})
        finals = {
            r.query_id: r
            async for r in client.follow([*ids, ok], timeout=10, since=0, partials=False)
        }
    assert finals[ok].value == {"text": "still runs"}
    for query_id in ids:
        final = finals[query_id]
        assert final.envelope.kind is Kind.ERROR, (query_id, final)
        assert "on the app's input topic" in str(final.reason)
    letters = transport.records(topology.plan("words").dead_letter_topic)
    assert len(letters) == 3
    assert transport.records(topology.plan("join").dead_letter_topic) == []
