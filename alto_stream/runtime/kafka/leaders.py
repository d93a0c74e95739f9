"""Waiting until fresh topics are served: every partition's leader answers for it.

A broker publishes a new topic's metadata (its leaders) before its replica
manager has made those partitions local, so a client that saw a leader in the
metadata and produced at once was told ``NotLeaderForPartition`` (and retried)
by that very leader; a consumer's first offset look-up failed the same way.
Metadata alone cannot tell the two moments apart: asking each leader for its
partitions' end offsets (a ``ListOffsets`` request, answered by the replica
manager like a produce) can.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.offset import OffsetRequest

from alto_stream.errors import TransportError

__all__ = ["wait_until_served"]

_LATEST = -1
"""ListOffsets' timestamp for "the end offset"."""
_READ_UNCOMMITTED = 0


async def wait_until_served(
    client_options: Mapping[str, Any], expected: Mapping[str, int], timeout: float
) -> None:
    """Wait until the leader of every partition of each ``{topic: partitions}`` serves it.

    Gives up with ``TransportError`` after ``timeout`` seconds, naming the
    partitions still waiting and why.
    """
    client = AIOKafkaClient(**client_options)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await client.bootstrap()
        await client.set_topics(list(expected))
        while True:
            waiting = await _not_served(client, expected)
            if not waiting:
                return
            if loop.time() > deadline:
                shown = ", ".join(f"{t}[{p}]: {why}" for (t, p), why in sorted(waiting.items()))
                raise TransportError(
                    f"{len(waiting)} partition(s) not served by a leader after {timeout} s "
                    f"({shown[:500]}); expected leaders within seconds of creation; fix: "
                    "check the broker logs (alto-stream broker status)"
                )
            await asyncio.sleep(0.1)
            await client.force_metadata_update()
    except KafkaError as exc:
        raise TransportError(f"Kafka failed to look up topic leaders: {exc!r}") from exc
    finally:
        await client.close()


async def _not_served(client: AIOKafkaClient, expected: Mapping[str, int]) -> dict[Any, str]:
    """``{(topic, partition): why}`` for each partition whose leader does not serve it yet."""
    waiting: dict[Any, str] = {}
    by_leader: dict[int, dict[str, list[tuple[int, int]]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for topic, count in expected.items():
        for partition in range(count):
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            if leader is None or leader < 0:
                waiting[topic, partition] = "no leader in the metadata"
            else:
                by_leader[leader][topic].append((partition, _LATEST))
    for leader, topics in by_leader.items():
        request = OffsetRequest(-1, _READ_UNCOMMITTED, list(topics.items()))
        try:
            response = await client.send(leader, request)
        except KafkaError as exc:
            for topic, partitions in topics.items():
                waiting.update({(topic, p): f"leader {leader}: {exc!r}" for p, _ in partitions})
            continue
        for topic, answers in response.topics:
            for partition, code, *_ in answers:
                if code:
                    waiting[topic, partition] = f"leader {leader}: {for_code(code).__name__}"
    return waiting
