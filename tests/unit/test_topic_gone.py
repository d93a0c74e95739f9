"""A worker whose input topic is deleted under it stops with an error, instead of idling for ever.

The Kafka test (tests/integration/test_topics_delete_kafka.py) deletes a running
worker's topics; these check the two looks without a broker: a topic only not
assigned to this member (more workers than partitions) is no reason to stop.
"""

from __future__ import annotations

import asyncio

import pytest

from alto_stream.errors import ConfigError
from alto_stream.runtime.kafka import consumer as consumer_module
from alto_stream.runtime.kafka.consumer import KafkaConsumer
from alto_stream.transport import Partition


class _Cluster:
    """What ``AIOKafkaConsumer.topics()`` answers, look after look."""

    def __init__(self, *answers: set[str]) -> None:
        self.answers = list(answers)
        self.looks = 0

    async def topics(self) -> set[str]:
        self.looks += 1
        return self.answers[min(self.looks, len(self.answers)) - 1]


def _consumer(cluster: _Cluster) -> tuple[KafkaConsumer, list[set[Partition]]]:
    seen: list[set[Partition]] = []

    async def on_assigned(assigned: set[Partition]) -> None:
        seen.append(assigned)

    member = KafkaConsumer.__new__(KafkaConsumer)  # the parts _assigned and fetch use
    member._topics = ["app.words"]
    member._group = "app.shout"
    member._on_assigned = on_assigned
    member._twin = None
    member._gone = None
    member._gone_check = None
    member._consumer = cluster  # type: ignore[assignment]
    return member, seen


async def _settle(member: KafkaConsumer) -> None:
    check = member._gone_check
    if check is not None:
        await asyncio.wait_for(check, 5)


async def test_a_deleted_topic_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "_GONE_RECHECK", 0.01)
    member, seen = _consumer(_Cluster({"other"}))
    await member._assigned(set())
    await _settle(member)
    assert seen == [set()]  # the worker's own callback ran first
    with pytest.raises(ConfigError, match=r"topic app\.words, which group 'app\.shout' reads"):
        await member.fetch(0.1, 10)


async def test_a_topic_only_not_assigned_here_is_no_reason_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "_GONE_RECHECK", 0.01)
    cluster = _Cluster({"app.words"})
    member, _ = _consumer(cluster)
    await member._assigned(set())
    await _settle(member)
    assert member._gone is None and cluster.looks == 1


async def test_a_topic_late_to_reach_a_node_is_not_taken_for_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "_GONE_RECHECK", 0.01)
    cluster = _Cluster(set(), {"app.words"})  # missing at the first look only
    member, _ = _consumer(cluster)
    await member._assigned(set())
    await _settle(member)
    assert member._gone is None and cluster.looks == 2


async def test_an_assigned_topic_is_not_looked_for() -> None:
    cluster = _Cluster(set())
    member, _ = _consumer(cluster)
    await member._assigned({("app.words", 0)})
    assert member._gone_check is None and cluster.looks == 0
