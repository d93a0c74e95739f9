"""Reassembly on a real broker: fragments keyed by ancestor, two consumers in one group.

A producer writes the fragments of many nested trees, shuffled and some twice,
to a 4-partition topic, keyed by the id of the ancestor being reassembled. Two
consumers in one group each run a :class:`Tracker` over what they receive. Every
ancestor must fire exactly once across both, with the sequential result.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alto_stream.aggregate import Completed, Outcome, Tracker
from alto_stream.ancestry import Kind
from alto_stream.message import Envelope, MessageCodec
from alto_stream.testing import create_topics

# The tree generator and the sequential reference live with the property tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_aggregate_properties import (
    Record,
    ancestors_at,
    assert_children,
    emit,
    first_arrivals,
    make_forest,
    reference,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

TREES = 200
PARTITIONS = 4
SCHEMA = "alto.Text"


@dataclass
class Reassembler:
    """One consumer of the group and the tracker it feeds."""

    consumer: AIOKafkaConsumer
    tracker: Tracker
    codec: MessageCodec
    polled: asyncio.Event  # shared by the consumers, set after each poll
    received: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    fired: list[Completed] = field(default_factory=list)
    done_up_to: dict[int, int] = field(default_factory=dict)  # partition -> next offset

    async def run(self) -> None:
        """Consume until cancelled."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in batches.items():
                for rec in records:
                    env = self.codec.decode(
                        rec.value, rec.headers, topic=tp.topic, partition=tp.partition,
                        offset=rec.offset,
                    )  # fmt: skip
                    text = env.value["text"] if env.value is not None else None
                    result = self.tracker.add(env.ancestry, text)
                    self.received += 1
                    self.outcomes[result.outcome] += 1
                    if result.completed is not None:
                        self.fired.append(result.completed)
                    self.done_up_to[tp.partition] = rec.offset + 1
            self.polled.set()


@dataclass(frozen=True)
class Topic:
    """The test's input topic, in the shape ``create_topics`` takes."""

    name: str
    partitions: int = PARTITIONS
    replication: int = 1


def _arrivals(records: list[Record], rng: random.Random) -> list[Record]:
    """The records shuffled, about one in ten sent twice (a redelivery) later on."""
    order = list(records)
    rng.shuffle(order)
    for record in rng.sample(records, len(records) // 10):
        at = rng.randrange(order.index(record) + 1, len(order) + 1)
        order.insert(at, record)
    return order


async def _produce(bootstrap: str, topic: str, order: list[Record], depth: int) -> dict[int, int]:
    """Send ``order`` keyed by the depth-``depth`` ancestor; return the end offset per partition."""
    codec = MessageCodec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for ancestry, text in order:
            value = {"text": text} if text is not None else None
            payload, headers = codec.encode(Envelope(ancestry, value, SCHEMA if value else None))
            key = ancestry.routing_key(depth)
            futures.append(await producer.send(topic, payload, key=key, headers=headers))
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ends: dict[int, int] = {}
    for meta in metadata:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    return ends


def _expected_outcomes(
    order: list[Record], depth: int, fire_at: dict[str, float]
) -> Counter[Outcome]:
    """What a single tracker reading ``order`` in sequence would answer to each record."""
    first = first_arrivals(order)
    counts: Counter[Outcome] = Counter()
    for position, (ancestry, _) in enumerate(order):
        if ancestry.depth < depth or (ancestry.depth == depth and ancestry.kind is Kind.END):
            counts[Outcome.FORWARD] += 1
        elif ancestry.depth == depth and ancestry.kind.is_marker:
            # The ancestor's own marker ends it: passed on once, its copies are stale.
            counts[Outcome.FORWARD if first[ancestry] == position else Outcome.STALE] += 1
        elif fire_at.get(ancestry.ancestor_id(depth), math.inf) < position:
            counts[Outcome.STALE] += 1
        else:
            counts[Outcome.ACCEPTED if first[ancestry] == position else Outcome.DUPLICATE] += 1
    return counts


@pytest.mark.parametrize(("depth", "leaf_depth"), [(0, 2), (1, 3)])
async def test_two_consumers_in_one_group_reassemble_every_tree_once(
    kafka_bootstrap: str, unique_name: Callable[[str], str], depth: int, leaf_depth: int
) -> None:
    rng = random.Random(f"reassembly-{depth}-{leaf_depth}")
    forest = make_forest(
        lambda lo, hi: rng.randint(lo, hi), TREES, leaf_depth, max_fanout=4, max_nodes=TREES * 40
    )
    order = _arrivals([record for root in forest for record in emit(root)], rng)
    first = first_arrivals(order)
    expected: dict[str, tuple[float, list[Record]]] = {}
    waiting = set()
    for node in ancestors_at(forest, depth):
        when, leaves = reference(node, first)
        if when < math.inf:
            expected[node.ancestry.id] = (when, leaves)
        elif any(a in first for a, _ in emit(node)):
            waiting.add(node.ancestry.id)

    topic, group = unique_name("reassembly"), unique_name("reassemblers")
    await create_topics(kafka_bootstrap, [Topic(topic)])
    codec, polled = MessageCodec(), asyncio.Event()
    workers = [
        Reassembler(
            AIOKafkaConsumer(
                topic,
                bootstrap_servers=kafka_bootstrap,
                group_id=group,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            ),
            Tracker(depth, leaf_depth),
            codec,
            polled,
        )
        for _ in range(2)
    ]
    for worker in workers:
        await worker.consumer.start()
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        await asyncio.wait_for(_until(lambda: _split_evenly(workers), polled), 60)
        assigned = [set(w.consumer.assignment()) for w in workers]
        ends = await _produce(kafka_bootstrap, topic, order, depth)
        await asyncio.wait_for(_until(lambda: _consumed(workers, ends), polled), 90)
        assert [set(w.consumer.assignment()) for w in workers] == assigned, "a rebalance happened"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await worker.consumer.stop()

    assert all(w.received > 0 for w in workers), [w.received for w in workers]
    assert sum(w.received for w in workers) == len(order)
    fired = [completed for w in workers for completed in w.fired]
    fired_ids = [completed.ancestor.id for completed in fired]
    assert len(fired_ids) == len(set(fired_ids)), "an ancestor fired twice"
    assert set(fired_ids) == set(expected)
    assert len(expected) >= TREES
    for completed in fired:
        _, leaves = expected[completed.ancestor.id]
        assert_children(completed, leaves, depth)
        assert all(isinstance(c.value, str) for c in completed.children if c.ok)
    assert {aid for w in workers for aid in w.tracker.pending()} == waiting
    fire_at = {aid: when for aid, (when, _) in expected.items()}
    outcomes = sum((w.outcomes for w in workers), Counter[Outcome]())
    assert outcomes == _expected_outcomes(order, depth, fire_at)
    assert outcomes[Outcome.DUPLICATE] + outcomes[Outcome.STALE] > 0


async def _until(condition: Callable[[], bool], polled: asyncio.Event) -> None:
    """Wait until ``condition`` holds, checking it after each poll of either consumer."""
    while not condition():
        polled.clear()
        await polled.wait()


def _split_evenly(workers: list[Reassembler]) -> bool:
    assignments = [w.consumer.assignment() for w in workers]
    every = set().union(*assignments)
    return all(assignments) and len(every) == PARTITIONS == sum(len(a) for a in assignments)


def _consumed(workers: list[Reassembler], ends: dict[int, int]) -> bool:
    done: dict[int, int] = {}
    for worker in workers:
        done.update(worker.done_up_to)
    return all(done.get(p, 0) >= end for p, end in ends.items())
