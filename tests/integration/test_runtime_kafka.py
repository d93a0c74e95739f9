"""The runtime on a real Kafka broker: replicas, both delivery modes, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.client import Client
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import DeliveryMode, WorkerOptions
from alto_stream.transport import OutRecord
from workers import textflow

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

DOCS = [
    *textflow.SAMPLES,
    *(f"Doc {i} says hi. It has {i} words maybe.\n\nSecond part {i}." for i in range(15)),
]


@pytest.mark.parametrize(
    ("delivery", "plain"),
    [("at-least-once", False), ("transactional", False), ("at-least-once", True)],
    ids=["at-least-once", "transactional", "plain-functions"],
)
async def test_textflow_on_kafka_with_replicas_matches_reference(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: DeliveryMode, plain: bool
) -> None:
    # plain: every stage a plain ``def``, run inline by its workers (no task per record).
    app = textflow.build(unique_name("tf"), plain=plain)
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=3))
    options = WorkerOptions(delivery=delivery, commit_interval=0.05)
    async with (
        LocalRun(app, transport, replicas=2, options=options),
        Client(app, transport) as client,
    ):
        finals = await client.run([{"text": d} for d in DOCS], timeout=120)
    assert len(finals) == len(DOCS)
    got = sorted(r.value["text"] for r in finals.values() if r.value is not None)
    assert got == sorted(textflow.reference(d) for d in DOCS)


async def test_bad_records_go_to_dead_letters_and_worker_keeps_serving(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    app = textflow.build(unique_name("tf"))
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    codec = MessageCodec()
    good_value, good_headers = codec.encode(
        Envelope(Ancestry.root(), {"text": "x"}, "alto.Text", "test")
    )
    assert good_value is not None
    query = Envelope(Ancestry.root("q-wrong-schema"), {"text": "x"}, "alto.Text", "test")
    _, wrong_headers = codec.encode(query)
    bad = [
        OutRecord(topology.input_topic, b"\xff\x00garbage", good_headers, b"corrupt"),
        OutRecord(topology.input_topic, good_value, [], b"no-ancestry"),
        OutRecord(
            topology.input_topic,
            good_value,
            [(k, v if k != "alto.ancestry" else b"\x00\x01broken") for k, v in good_headers],
            b"garbled-ancestry",
        ),
        OutRecord(
            topology.input_topic,
            good_value,
            [(k, v if k != "alto.schema" else b"alto.Nope") for k, v in wrong_headers],
            b"wrong-schema",
        ),
    ]
    producer = transport.producer()
    await producer.start()
    try:
        await producer.send_many(bad)
    finally:
        await producer.stop()
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run([{"text": "Still fine. Yes."}], timeout=60)
        (result,) = finals.values()
        assert result.value == {"text": "STILL FINE. YES."}
        reader = transport.reader([topology.plan("paragraphs").dead_letter_topic])
        await reader.start()
        letters = []
        for _ in range(50):
            letters += await reader.fetch(0.2, 100)
            if len(letters) >= len(bad):
                break
        await reader.stop()
    decoded = [codec.decode(r.value, r.headers).value for r in letters]
    assert sorted(d["key"] for d in decoded if d) == sorted(r.key for r in bad)
    assert all(d and d["stage"] == "paragraphs" and d["error"] for d in decoded)
    assert all(d and d["value"] is not None for d in decoded)
    await asyncio.sleep(0)


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_a_lone_query_in_a_batch_stage_does_not_wait_out_the_batch_wait(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: DeliveryMode
) -> None:
    # A batch stage that may wait 60 s for more records: with nothing else fetched, the
    # worker sends the batch at once (before, every lone query took the whole wait).
    app = App(unique_name("lone"), input_schema="alto.Text")

    @app.batch(source=app.input, schema="alto.Text", size=32, wait=60.0)
    async def shout(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"text": v["text"].upper()} for v in values]

    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    options = WorkerOptions(delivery=delivery, commit_interval=0.05)
    async with LocalRun(app, transport, options=options), Client(app, transport) as client:
        for text in ("one", "two"):  # one after the other: each alone in the worker
            finals = await client.run([{"text": text}], timeout=30)
            assert [r.value for r in finals.values()] == [{"text": text.upper()}]
