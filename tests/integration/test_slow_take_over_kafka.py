"""A take-over that outlasts the group's session timeout keeps its partitions.

A new user's transactional app, restarted after a burst of 40,000 queries: the
aggregate's restore read a changelog of ~360,000 records (13-30 s) inside the
assignment callback, where aiokafka sends no heartbeats; the member was put out
of its group as the restore ended ("local member_id was not recognized"), its
partitions were assigned again, restored again: 34 restores in 3 minutes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import create_topics
from alto_stream.transport import Partition

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_a_member_whose_take_over_outlasts_its_session_keeps_its_partitions(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("slowtake"), unique_name("slowtake-g")
    await create_topics(kafka_bootstrap, [topic])
    transport = KafkaTransport(kafka_bootstrap)
    session = transport.timing.session_timeout
    assignments: list[set[Partition]] = []
    revocations: list[set[Partition]] = []

    async def assigned(partitions: set[Partition]) -> None:
        assignments.append(partitions)
        if len(assignments) == 1:
            await asyncio.sleep(2 * session)  # what a long restore does

    async def revoked(partitions: set[Partition]) -> None:
        if partitions:
            revocations.append(partitions)

    consumer = transport.consumer([topic], group, on_assigned=assigned, on_revoked=revoked)
    await consumer.start()
    try:
        deadline = time.monotonic() + 4 * session + 5
        while time.monotonic() < deadline:
            await consumer.fetch(0.2, 100)
    finally:
        await consumer.stop()
    # before: assigned again after the sleep (put out of the group), and again
    assert assignments == [{(topic, 0)}], assignments
    assert revocations == []
