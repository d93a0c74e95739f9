"""A worker's consumer says when its broker went away and when it came back.

The test starts its own broker (in a temp dir, on a free port): it stops and
restarts it. About 45 s, two broker starts of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest

from alto_stream import broker
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import create_topics, unique_name
from alto_stream.transport import Partition

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def test_a_consumer_says_when_kafka_went_away_and_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found in a soak: across a 30 s broker outage no alto-stream line said so; a worker's
    # last word was "ERROR ... Heartbeat session expired - marking coordinator dead",
    # though it had recovered by itself.
    cluster = broker.start(port=0, data_dir=tmp_path)
    topic, group = unique_name("reach"), unique_name("reach-group")

    async def said(start: str, within: float) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for record in caplog.records:
                if record.getMessage().startswith(start):
                    return record.getMessage()
            await asyncio.sleep(0.2)
        raise AssertionError(f"no line {start!r} in {[r.getMessage() for r in caplog.records]}")

    async def run() -> tuple[str, str]:
        await create_topics(cluster.bootstrap, [topic])

        async def nothing(_: set[Partition]) -> None:
            pass

        consumer = KafkaTransport(cluster.bootstrap).consumer(
            [topic], group, on_assigned=nothing, on_revoked=nothing
        )
        await consumer.start()

        async def fetch() -> None:
            while True:
                with contextlib.suppress(Exception):
                    await consumer.fetch(0.2, 100)
                await asyncio.sleep(0.05)

        fetching = asyncio.create_task(fetch())
        try:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.stop, tmp_path)
            lost = await said("Kafka unreachable since", 30)
            await asyncio.to_thread(broker.start, data_dir=tmp_path)
            back = await said("Kafka reachable again after", 60)
        finally:
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            await consumer.stop()
        return lost, back

    try:
        with caplog.at_level(logging.INFO, logger="alto_stream"):
            lost, back = asyncio.run(run())
    finally:
        broker.stop(tmp_path)
    assert f"group {group} has no connection to any broker" in lost
    assert f"(group {group}, unreachable since " in back
