"""The testing helpers on a real broker: fresh topics are served at once.

A broker publishes a new topic's leaders in its metadata before that leader
serves the partitions, so ``create_topics`` (and ``KafkaTransport.ensure_topics``,
the workers' ``up`` path) returned while the first produce still met
``NotLeaderForPartition`` (aiokafka retried it with a warning) and a
consumer's first offset look-up failed with it (an ERROR line).
"""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaProducer

from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import create_topics, unique_name
from alto_stream.topics import TopicSpec

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

_PARTITIONS = 8
_ROUNDS = 3


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name
        self.partitions = _PARTITIONS
        self.replication = 1


async def _produce_everywhere(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(_PARTITIONS):
            await producer.send_and_wait(topic, b"v", partition=partition)
    finally:
        await producer.stop()


def _not_leader(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "NotLeaderForPartition" in r.getMessage()]


async def test_create_topics_returns_once_every_leader_serves(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiokafka")
    for _ in range(_ROUNDS):  # the race was lost most times, not every time
        topic = unique_name("served")
        await create_topics(kafka_bootstrap, [_Topic(topic)])
        await _produce_everywhere(kafka_bootstrap, topic)
    assert _not_leader(caplog) == []


async def test_ensure_topics_returns_once_every_leader_serves(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiokafka")
    transport = KafkaTransport(kafka_bootstrap)
    for _ in range(_ROUNDS):
        topic = unique_name("served")
        spec = TopicSpec(name=topic, partitions=_PARTITIONS, replication=1)
        assert await transport.ensure_topics([spec]) == [topic]
        await _produce_everywhere(kafka_bootstrap, topic)
    assert _not_leader(caplog) == []
