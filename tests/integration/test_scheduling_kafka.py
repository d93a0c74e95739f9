"""Query-aware scheduling on a real broker: a slow stage of concurrency 1 with two queries'
fragments queued runs the older query's fragments first, whatever their offsets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.client import Client
from alto_stream.context import current_record
from alto_stream.message import Envelope
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

FRAGMENTS = 4


def _app(name: str, order: list[str]) -> App:
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": f"{q['text']}-{i}"} for i in range(FRAGMENTS)]

    @app.map(source=parts, schema="alto.Text", max_in_flight=1)
    async def slow(fragment: dict[str, Any]) -> dict[str, Any]:
        record = current_record()
        assert record is not None
        order.append(record.query_id)
        await asyncio.sleep(0.2)
        return fragment

    @app.aggregate(source=slow, closes=parts, schema="alto.Text")
    async def joined(children: list[Any]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def test_a_slow_stage_runs_the_older_querys_fragments_first(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    order: list[str] = []
    app = _app(unique_name("sched"), order)
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    now = time.time()
    old = Ancestry.root("old-query", query_time=now - 60)
    young = Ancestry.root("young-query", query_time=now - 30)
    plan = topology.plan("parts")
    codec = topology.codec()
    records = []
    # The young query's fragments come first in the slow stage's input (lower offsets).
    for root in (young, old):
        for i in range(FRAGMENTS):
            child = root.child("a1", i, count=FRAGMENTS if i == FRAGMENTS - 1 else None)
            value, headers = codec.encode(Envelope(child, {"text": f"{root.id}-{i}"}, "alto.Text"))
            records.append(OutRecord(plan.output_topic, value, headers, root.id.encode()))
    producer = transport.producer()
    await producer.start()
    try:
        await producer.send_many(records)
    finally:
        await producer.stop()
    workers = [Worker(app, stage, transport, WorkerOptions()) for stage in ("slow", "joined")]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        async with Client(app, transport) as client:
            ids = [old.id, young.id]
            finals = {
                r.query_id: r.latency
                async for r in client.follow(ids, timeout=120, since=now - 120, partials=False)
            }
        assert set(finals) == set(ids)
        # At most the first record started before the rest was fetched; after it, the old
        # query's fragments all go ahead of the young one's.
        rest = order[1:] if order[0] == young.id else order
        assert rest == [old.id] * FRAGMENTS + [young.id] * (len(rest) - FRAGMENTS)
        assert len(order) == 2 * FRAGMENTS
        queue = workers[0].stats.scheduler
        assert queue is not None and queue.started == 2 * FRAGMENTS
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
