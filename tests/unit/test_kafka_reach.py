"""A worker says when it loses its Kafka cluster and when it has it back (one line each)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from alto_stream.runtime.kafka.reach import Reach, watch


def test_one_line_when_kafka_is_lost_and_one_when_it_is_back() -> None:
    # Found in a soak: across a 30 s broker outage no alto-stream line said so; a worker's
    # last word was "ERROR ... Heartbeat session expired - marking coordinator dead",
    # though it had recovered by itself.
    reach = Reach("textflow.shout", grace=3.0)
    looks = [(True, 100.0)] + [(False, 101.0 + i) for i in range(30)] + [(True, 131.0)]
    lines = [line for connected, at in looks if (line := reach.observe(connected, at))]
    assert lines == [
        "Kafka unreachable since 00:01:41Z (group textflow.shout has no connection to any "
        "broker; aiokafka reconnects by itself, and the records wait)",
        "Kafka reachable again after 30 s (group textflow.shout, unreachable since 00:01:41Z)",
    ]


def test_a_connection_closed_and_reopened_at_once_says_nothing() -> None:
    reach = Reach("g", grace=3.0)
    looks = [(True, 0.0), (False, 1.0), (False, 2.0), (True, 3.0), (False, 10.0), (True, 11.0)]
    assert [reach.observe(connected, at) for connected, at in looks] == [None] * 6


@pytest.mark.timeout(10)
def test_the_watch_logs_the_lines(caplog: pytest.LogCaptureFixture) -> None:
    looks = iter([True, False, False, False, True])

    async def run() -> None:
        task = asyncio.create_task(watch(lambda: next(looks, True), Reach("g", grace=0.0), 0.01))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="alto_stream.runtime.kafka.reach"):
        asyncio.run(run())
    said = [r.getMessage().split(" (")[0] for r in caplog.records]
    assert said[0].startswith("Kafka unreachable since ")
    assert said[1] == "Kafka reachable again after 0 s"
    assert len(said) == 2
