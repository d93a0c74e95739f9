"""The producer's per-partition batching (Outbox) on a real broker: order, no loss, transactions."""

from __future__ import annotations

import asyncio
import gc
import zlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from alto_stream.errors import FencedError
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import create_topics
from alto_stream.topics import TopicSpec
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

PARTITIONS = 3


def _records(topic: str, count: int, size: int) -> list[OutRecord]:
    """``count`` records over 40 keys, each value ``<seq>:`` padded to ``size`` bytes."""
    out = []
    for seq in range(count):
        value = f"{seq}:".encode().ljust(size, b".")
        out.append(OutRecord(topic, value, [("seq", str(seq).encode())], f"k{seq % 40}".encode()))
    return out


async def _read(transport: KafkaTransport, topic: str) -> dict[int, list[tuple[bytes, int]]]:
    """Per partition: (key, sequence number) of every committed record, in offset order."""
    found: dict[int, list[tuple[bytes, int]]] = defaultdict(list)
    for partition in range(PARTITIONS):
        for record in await transport.read_partition(topic, partition):
            assert record.value is not None and record.key is not None
            found[partition].append((record.key, int(record.value.split(b":")[0])))
    return found


def _check(found: dict[int, list[tuple[bytes, int]]], count: int) -> None:
    seqs = sorted(seq for records in found.values() for _, seq in records)
    assert seqs == list(range(count)), "lost or duplicated records"
    for partition, records in found.items():
        # The key chooses the partition (CRC-32, like every alto-stream producer)...
        assert all(zlib.crc32(key) % PARTITIONS == partition for key, _ in records)
        # ...and a partition keeps the order the records were handed over in.
        in_order = [seq for _, seq in records]
        assert in_order == sorted(in_order), f"partition {partition} out of order"


async def test_enqueued_records_arrive_once_in_order_across_full_batches(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("outbox")
    await create_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS, 1)])
    transport = KafkaTransport(kafka_bootstrap)
    producer = transport.producer()
    await producer.start()
    # 3,000 records of 2 KiB: about 2 MiB per partition, so 256 KiB batches fill
    # up and queue behind each other; handed over in chunks, as a worker does.
    records = _records(topic, 3000, 2048)
    futures = []
    try:
        for first in range(0, len(records), 7):
            futures += await producer.enqueue(records[first : first + 7])
    finally:
        await producer.stop()  # flushes: every batch acknowledged
    assert len(futures) == len(records)
    assert all(f.done() and f.exception() is None for f in futures)
    assert len({id(f) for f in futures}) < len(futures) // 10  # one future per batch
    _check(await _read(transport, topic), len(records))


async def test_a_transaction_commits_every_record_once(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("outbox-tx")
    await create_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS, 1)])
    transport = KafkaTransport(kafka_bootstrap)
    producer = transport.producer(transactional_id=unique_name("outbox-tx"))
    await producer.start()
    records = _records(topic, 1500, 512)
    try:
        await producer.commit_transaction(records[:700], {}, unique_name("group"))
        await producer.commit_transaction(records[700:], {}, unique_name("group"))
    finally:
        await producer.stop()
    _check(await _read(transport, topic), len(records))


async def test_enqueue_now_takes_records_once_the_partitions_are_known(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("outbox-now")
    await create_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS, 1)])
    transport = KafkaTransport(kafka_bootstrap)
    producer = transport.producer()
    await producer.start()
    records = _records(topic, 400, 64)
    try:
        # A new topic: its partitions must be read first, so nothing is taken.
        assert producer.enqueue_now(records[:100]) is None
        futures = await producer.enqueue(records[:100])  # reads them
        for first in range(100, len(records), 50):
            taken = producer.enqueue_now(records[first : first + 50])
            assert taken is not None, "partitions known: taken without waiting"
            futures += taken
    finally:
        await producer.stop()
    assert len(futures) == len(records)
    assert all(f.done() and f.exception() is None for f in futures)
    _check(await _read(transport, topic), len(records))


async def _fence(transport: KafkaTransport, topic: str, transactional_id: str) -> None:
    """Commit with one producer, start a second of its transactional id, commit again."""
    first = transport.producer(transactional_id=transactional_id)
    await first.start()
    records = _records(topic, 60, 64)
    try:
        await first.commit_transaction(records, {}, "unused")
        second = transport.producer(transactional_id=transactional_id)
        await second.start()  # fences the first
        await second.stop()
        with pytest.raises(FencedError):
            # Its batches wait for their partitions to join the transaction: refused.
            await first.commit_transaction(records, {}, "unused")
    finally:
        await first.stop()


async def test_a_fenced_transaction_leaves_no_error_unread(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: fenced workers logged "Future exception was never retrieved
    # ... ProducerFenced" at their stop, one per partition of the refused transaction.
    topic = unique_name("outbox-fenced")
    await create_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS, 1)])
    unread: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unread.append(context))
    # In a task of its own: its frames (and the producers they hold) go with it.
    await asyncio.create_task(_fence(KafkaTransport(kafka_bootstrap), topic, unique_name("tx")))
    gc.collect()
    await asyncio.sleep(0)
    assert [context["message"] for context in unread] == []
