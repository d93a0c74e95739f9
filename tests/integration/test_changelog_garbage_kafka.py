"""Garbage on an aggregate's changelog, on a real broker: dead letters, and the app runs on.

Found by a new user fuzzing every topic: 60 garbage records written to
``fz.joined.changelog``, then a kill -9 of the aggregate's worker: every worker
that took the partitions over died in its restore (``UnicodeDecodeError``), `up`
restarted them 12 times in 2 minutes, and no query finished any more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from alto_stream import App, Child
from alto_stream.message import MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]


def _app(name: str) -> App:
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def test_garbage_on_the_changelog_is_dead_lettered_and_queries_still_finish(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    app = _app(unique_name("clgarbage"))
    plan = app.topology().plan("joined")
    assert plan.changelog_topic is not None
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            await producer.send_and_wait(
                plan.changelog_topic, b"junk", key=b"\xc7\xff\x00", partition=partition
            )
            await producer.send_and_wait(
                plan.changelog_topic,
                b"\x00\x01",
                key=b"q|x|DATA",
                partition=partition,
                headers=[("alto.ancestry", b"\x01\x02")],
            )
    finally:
        await producer.stop()
    async with LocalRun(app, transport) as run, run.client() as client:
        finals = await client.run([{"text": "a b c"}, {"text": "d e"}], timeout=60)
    assert sorted(r.value["text"] for r in finals.values()) == ["a b c", "d e"]
    letters = await read_topic(transport, plan.dead_letter_topic, MessageCodec())
    sources = sorted(envelope.value["topic"] for _, envelope in letters)
    assert sources == [plan.changelog_topic] * 4
    errors = sorted(envelope.value["error"] for _, envelope in letters)
    assert sum("UnicodeDecodeError" in e for e in errors) == 2, errors  # the keys
