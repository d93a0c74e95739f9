"""A batch that waited through a broker outage is not failed while its partition has no leader.

A new user stopped the broker for 60 s and for 300 s with workers running: once
it was back, before its partitions' leaders were elected, aiokafka's accumulator
failed every batch older than ``request_timeout_ms`` (40 s) with
``LeaderNotAvailableError``, although its sender retries an idempotent producer's
batches for ever; each worker holding one stopped (and, under ``up``, its restart
ran records again: finals twice).
"""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch
from aiokafka.structs import TopicPartition

from alto_stream.runtime.kafka.producer import KafkaProducer
from alto_stream.runtime.kafka.transport import KafkaTransport

pytestmark = pytest.mark.timeout(30)


async def test_an_old_batch_waits_for_its_partitions_leader() -> None:
    producer = KafkaProducer(KafkaTransport("127.0.0.1:1"), None)  # never started
    aio = producer._producer
    accumulator = aio._message_accumulator
    builder = aio.create_batch()
    builder.append(timestamp=None, key=None, value=b"x", headers=[])
    tp = TopicPartition("app.words", 0)
    acked = await accumulator.add_batch(builder, tp, 1.0)
    accumulator._batches[tp][0]._ctime = time.monotonic() - 3600  # waited an hour
    aio._txn_manager.set_pid_and_epoch(1, 0)
    accumulator._cluster.leader_for_partition = lambda _: -1  # back, no leader elected yet

    accumulator.drain_by_nodes(ignore_nodes=[])
    await asyncio.sleep(0)

    assert not acked.done()  # failed before: LeaderNotAvailableError
    assert tp in accumulator._batches  # still queued for its leader


def test_the_accumulator_keeps_the_ttl_it_gives_each_batch() -> None:
    # What KafkaProducer sets: the batches' time to live, read by MessageBatch.expired.
    assert "self._batch_ttl = batch_ttl" in inspect.getsource(MessageAccumulator.__init__)
    assert "self._batch_ttl" in inspect.getsource(MessageAccumulator._append_batch)
    assert "self._ttl" in inspect.getsource(MessageBatch.expired)


async def test_a_restore_asks_again_for_offsets_while_a_partition_has_no_leader() -> None:
    # The aggregate's restore (KafkaTransport.read_partition) failed its take-over on it.
    from aiokafka.errors import (
        KafkaTimeoutError,
        LeaderNotAvailableError,
        TopicAuthorizationFailedError,
    )

    from alto_stream.runtime.kafka.transport import _bounds

    tp = TopicPartition("app.joined.changelog", 0)

    class Consumer:
        def __init__(self, failures: list[Exception]) -> None:
            self.failures = failures

        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            if self.failures:
                raise self.failures.pop(0)
            return {tp: 9}

        async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            return {tp: 2}

    leaderless = Consumer([LeaderNotAvailableError(), KafkaTimeoutError()])
    assert await _bounds(leaderless, tp) == (2, 9)  # type: ignore[arg-type]
    with pytest.raises(TopicAuthorizationFailedError):  # not retriable: at once
        await _bounds(Consumer([TopicAuthorizationFailedError()]), tp)  # type: ignore[arg-type]
