"""A copied END marker with another count does not turn its real query into an ERROR.

Found by a new user fuzzing an app's inner topics: a real query's END marker,
copied with count + 3, reached its aggregate after the real one; the copy was
refused ("conflicting split sizes"), but its ERROR marker, about the split it
ends, ended the query with an ERROR while its real children were still coming.
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
    app = App("count-conflict", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    return app


async def test_the_first_count_stands_and_the_contradicting_end_is_only_a_dead_letter() -> None:
    app = _app()
    topology = app.topology()
    transport = MemoryTransport(1)
    codec = MessageCodec()
    root = Ancestry.root("real")
    records = [  # in this order on the aggregate's input: the real end, its copy, the children
        Envelope(root.end_marker("a1", 2), None, None, "words"),
        Envelope(root.end_marker("a1", 5), None, None, "words"),
        Envelope(root.child("a1", 0), {"text": "x"}, "alto.Text", "words"),
        Envelope(root.child("a1", 1), {"text": "y"}, "alto.Text", "words"),
    ]
    join_input = topology.plan("join").input_topic
    for envelope in records:
        value, headers = codec.encode(envelope)
        transport.append(OutRecord(join_input, value, headers, b"real"))
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = [r async for r in client.follow(["real"], timeout=10, since=0, partials=False)]
    assert [(f.envelope.kind, f.value) for f in finals] == [(Kind.DATA, {"text": "x y"})]
    (letter,) = transport.records(topology.plan("join").dead_letter_topic)
    assert b"conflicting split sizes" in (letter.value or b"")
