"""Transactional outputs are not held back behind a younger query's record at a lower offset.

A transaction commits a partition's outputs only up to the lowest record not
done (whoever reads on from that offset runs the records above it again). Run
oldest query first across a partition, an old query's record fetched behind a
younger one's had its outputs held until that younger one was done: with a
backlog, until the end of it. That is what a take-over does to a transactional
app (docs/hosts.md: a re-run split writes old queries' fragments behind
younger ones) and why it finished almost no query while a host was away.

Here one partition holds a young query's record at offset 0 and 40 old
queries' records behind it, all there before the worker starts (one fetch).
The outputs must become visible in several transactions as the work goes on,
not in one at the end. A commit marker takes an offset of its own, so the
transactions are counted from the gaps between the outputs' offsets: no
timing is measured.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.testing import read_topic
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]

OLD = 40


def _app(name: str) -> App:
    app = App(name, input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text", max_in_flight=2)
    async def slow(value: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.1)  # 40 records, 2 at a time: 2 s at least, several rounds
        return value

    return app


async def test_outputs_of_old_queries_behind_a_young_one_commit_as_they_are_done(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    app = _app(unique_name("offset-order"))
    topology = app.topology()
    plan = topology.plan("slow")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    codec = MessageCodec()
    now = time.time()
    roots = [Ancestry.root("young", query_time=now)]
    roots += [Ancestry.root(f"old{i}", query_time=now - 100 + i) for i in range(OLD)]
    producer = transport.producer()
    await producer.start()
    try:
        records = []
        for root in roots:
            value, headers = codec.encode(Envelope(root, {"text": root.query_id}, "alto.Text"))
            records.append(OutRecord(topology.input_topic, value, headers, b"k"))
        await producer.send_many(records)  # offset 0: young; 1..40: old
    finally:
        await producer.stop()

    worker = Worker(app, "slow", transport, WorkerOptions(delivery="transactional"))
    run = asyncio.create_task(worker.run(timeout=180))
    try:
        outputs: list[tuple[int, str]] = []
        for _ in range(600):
            outputs = [
                (record.offset, env.ancestry.query_id)
                for record, env in await read_topic(transport, plan.output_topic)
            ]
            if len(outputs) >= len(roots) or run.done():
                break
            await asyncio.sleep(0.3)
    finally:
        worker.stop()
        await run
    assert sorted(q for _, q in outputs) == sorted(r.query_id for r in roots)
    offsets = sorted(offset for offset, _ in outputs)
    transactions = 1 + sum(b - a > 1 for a, b in itertools.pairwise(offsets))
    # Before: the old queries ran first and all waited for offset 0, the young query's,
    # which ran last: one transaction with every output, at the end.
    assert transactions >= 2, f"every output committed at once: offsets {offsets}"
