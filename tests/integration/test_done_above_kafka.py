"""On Kafka: records done above a partition's committed offset go in the commit's metadata.

One partition; the first query's record waits (a long generation), the five after
it are done at once. In the transactional mode their outputs must be readable
(read_committed) while the first still runs, and in both modes a new owner of
the partition must run the first record again and not the five.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.offsets import DoneAbove
from alto_stream.runtime.worker import DeliveryMode, Worker, WorkerOptions
from alto_stream.testing import read_topic
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

QUERIES = 6


async def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("delivery", ["transactional", "at-least-once"])
async def test_a_new_owner_runs_only_the_records_not_done(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: DeliveryMode
) -> None:
    release = asyncio.Event()
    runs: list[str] = []
    app = App(unique_name("done-above"), input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text", max_in_flight=8)
    async def slow(value: dict[str, Any]) -> dict[str, Any]:
        runs.append(value["text"])
        if value["text"] == "t0":
            await release.wait()
        return value

    topology = app.topology()
    plan = topology.plan("slow")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    codec = MessageCodec()
    producer = transport.producer()
    await producer.start()
    try:
        records = []
        for i in range(QUERIES):
            envelope = Envelope(Ancestry.root(f"q{i}"), {"text": f"t{i}"}, "alto.Text")
            value, headers = codec.encode(envelope)
            records.append(OutRecord(topology.input_topic, value, headers, b"k"))
        await producer.send_many(records)  # t0 at offset 0
    finally:
        await producer.stop()

    async def outputs() -> list[str]:
        found = await read_topic(transport, plan.output_topic)
        return sorted(envelope.value["text"] for _, envelope in found)

    options = WorkerOptions(delivery=delivery, shutdown_timeout=0.5, commit_interval=0.2)
    first = Worker(app, "slow", transport, options)
    run = asyncio.create_task(first.run(timeout=120))
    try:
        # t1..t5 are out (committed, in the transactional mode) while t0 still runs.
        await _until(lambda: _equal(outputs(), [f"t{i}" for i in range(1, QUERIES)]), "t1..t5 out")
    finally:
        first.stop()  # t0 is cut short after shutdown_timeout: never done
        await run
    assert runs.count("t0") == 1
    committed = await _committed(kafka_bootstrap, plan.group, topology.input_topic)
    assert committed[0] == 0
    assert DoneAbove.decode(0, committed[1]) == DoneAbove(end=QUERIES, pending=frozenset({0}))

    release.set()
    second = Worker(app, "slow", transport, options)
    run = asyncio.create_task(second.run(timeout=120))
    try:
        await _until(lambda: _equal(outputs(), [f"t{i}" for i in range(QUERIES)]), "t0 out")
    finally:
        second.stop()
        await run
    # t0 ran twice (cut short, then again); t1..t5 once each, and once on the topic.
    assert sorted(runs) == ["t0", "t0"] + [f"t{i}" for i in range(1, QUERIES)]
    assert await outputs() == [f"t{i}" for i in range(QUERIES)]


async def _equal(found: Any, expected: list[str]) -> bool:
    return bool(await found == expected)


async def _committed(bootstrap: str, group: str, topic: str) -> tuple[int, str]:
    """The group's committed offset of ``topic``'s partition 0 and its metadata (admin API)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    found = offsets[TopicPartition(topic, 0)]
    return found.offset, found.metadata
