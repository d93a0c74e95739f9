"""A group at rest lags by nothing, in both delivery modes, transaction markers included.

A topic written in transactions holds a commit marker after each transaction's
records in a partition (one per producer that wrote to it). Groups committed
one past their last record, so every stage behind a transactional one showed a
lag of those markers for ever (a new user saw `shout ... lag 9` in `up`'s table
after every final): monitoring that alerts on lag would never be quiet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from alto_stream.ancestry import Ancestry
from alto_stream.client import Client
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import OutRecord
from workers import textflow

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_every_group_is_at_rest_with_no_lag(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: str
) -> None:
    app = textflow.build(unique_name(f"rest-{delivery[:2]}"))
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=3))
    options = WorkerOptions(delivery=delivery, commit_interval=0.05)  # type: ignore[arg-type]
    docs = [f"One two. Three {i}.\n\nFour five six." for i in range(6)]
    ops = KafkaOps(transport)
    inputs = {plan.group: [plan.input_topic] for plan in topology.stages.values()}
    async with LocalRun(app, transport, options=options), Client(app, transport) as client:
        finals = await client.run([{"text": d} for d in docs], timeout=120)
        assert sorted(r.value["text"] for r in finals.values() if r.value) == sorted(
            textflow.reference(d) for d in docs
        )
        lags: dict[str, dict[tuple[str, int], int]] = {}
        for _ in range(60):  # the last commits follow the finals within a round or two
            await asyncio.sleep(0.25)
            lags = await ops.group_lags(inputs)
            if all(sum(lag.values()) == 0 for lag in lags.values()):
                break
    assert {group: sum(lag.values()) for group, lag in lags.items()} == dict.fromkeys(inputs, 0)


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_a_partition_taken_over_with_nothing_to_do_commits_past_its_marker(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: str
) -> None:
    # Found by a new user (LLM workers added, then SIGTERMed and SIGKILLed): the last
    # owner of a partition committed one past its last record and went; its next
    # owner had no record to handle there and committed nothing, so the marker after
    # that record showed as lag 1 for ever (and after a graceful stop).
    app = textflow.build(unique_name(f"rest-to-{delivery[:2]}"))
    topology = app.topology()
    plan = topology.plan("paragraphs")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    codec = MessageCodec()
    records = []
    for text in ("One.", "Two."):
        ancestry = Ancestry.root(unique_name("q"))
        value, headers = codec.encode(Envelope(ancestry, {"text": text}, "alto.Text"))
        records.append(OutRecord(plan.input_topic, value, headers, ancestry.id.encode()))
    writer = transport.producer(transactional_id=unique_name("writer"))
    await writer.start()
    try:
        await writer.commit_transaction(records, {}, unique_name("unused"))  # then its marker
    finally:
        await writer.stop()
    tp = TopicPartition(plan.input_topic, 0)
    consumer = AIOKafkaConsumer(
        **transport.client_options(), group_id=plan.group, enable_auto_commit=False
    )
    await consumer.start()
    consumer.assign([tp])
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        assert end == 3, "two records and their transaction's marker"
        await consumer.commit({tp: 2})  # a previous owner handled both records, then went
    finally:
        await consumer.stop()
    ops = KafkaOps(transport)
    worker = Worker(app, "paragraphs", transport, WorkerOptions(delivery=delivery))  # type: ignore[arg-type]
    run = asyncio.create_task(worker.run(timeout=60))
    try:
        lag: dict[tuple[str, int], int] = {}
        for _ in range(80):
            await asyncio.sleep(0.25)
            lag = (await ops.group_lags({plan.group: [plan.input_topic]}))[plan.group]
            if lag == {(plan.input_topic, 0): 0}:
                break
        assert lag == {(plan.input_topic, 0): 0}
    finally:
        worker.stop()
        await run
    assert worker.stats.consumed == 0
