"""The outbox reads every error aiokafka hands it, so asyncio never logs one as unread."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator

from alto_stream.runtime.kafka.outbox import Outbox
from alto_stream.transport import OutRecord


class _Producer:
    """Enough of AIOKafkaProducer for the outbox: batches, and a future per send."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[Any]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(future)
        return future


async def test_a_batch_failed_before_its_send_ends_still_reads_the_sends_error() -> None:
    # Found by a new user fencing a transactional worker: 6-13 "Future exception was
    # never retrieved ... ProducerFenced" tracebacks per stop. The batch had failed
    # already; the outbox returned before reading aiokafka's future's exception.
    unread: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unread.append(context))
    producer = _Producer()
    outbox = Outbox(producer, lambda key, numbers, available: 0)  # type: ignore[arg-type]
    (ack,) = await outbox.add([OutRecord("t", b"v", (), b"k", partition=0)])
    await asyncio.sleep(0)  # the sender hands the batch over
    (sent,) = producer.sent
    ack.set_exception(ProducerFenced())  # the transaction failed the batch first
    ack.exception()
    sent.set_exception(ProducerFenced())  # then aiokafka's send ends with the same
    await asyncio.sleep(0)
    del sent, ack
    producer.sent.clear()
    gc.collect()
    await asyncio.sleep(0)
    assert unread == []


class _QueueingProducer(_Producer):
    """aiokafka's own accumulator behind ``send_batch``, with no sender draining it."""

    def __init__(self) -> None:
        super().__init__()
        self._message_accumulator = MessageAccumulator(None, 16384, 0, 30)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        tp = TopicPartition(topic, partition)
        return await self._message_accumulator.add_batch(builder, tp, 30)


async def _fenced_with_batches_queued() -> None:
    producer = _QueueingProducer()
    outbox = Outbox(producer, lambda key, numbers, available: 0)  # type: ignore[arg-type]
    await outbox.add([OutRecord("t", b"v", (), b"k", partition=p) for p in range(3)])
    queued = producer._message_accumulator._batches
    for _ in range(100):
        if len(queued) == 3:
            break
        await asyncio.sleep(0)
    assert len(queued) == 3  # one batch per partition, handed over, not sent
    producer._message_accumulator.fail_all(ProducerFenced())  # the sender task ends fenced
    with pytest.raises(ProducerFenced):
        await outbox.flush()


async def test_batches_failed_before_they_were_sent_leave_no_error_unread() -> None:
    # Found by a new user fencing transactional workers (zombies, two workers of one
    # static id): one "Future exception was never retrieved ... ProducerFenced" per
    # partition at each stop. A transaction's batches wait in aiokafka's queue until
    # their partition joins the transaction; fenced there, aiokafka's sender task ends
    # and fails each queued batch: its acknowledgement (which the outbox reads) and
    # its "taken by the sender" future, which nobody awaited.
    unread: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unread.append(context))
    await asyncio.create_task(_fenced_with_batches_queued())  # its frames go with its task
    gc.collect()
    await asyncio.sleep(0)
    assert unread == []


class _RefusingProducer(_Producer):
    """A producer whose transaction is gone: ``send_batch`` itself raises."""

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        from aiokafka.errors import IllegalOperation

        raise IllegalOperation("Can't send messages while not in transaction")


async def test_a_batch_the_producer_refuses_at_once_is_read_even_if_nobody_awaits_it() -> None:
    # Found by a new user's fuzz round (fencings under a long restore): "Future exception
    # was never retrieved ... IllegalOperation" from the outbox's own batch future, whose
    # record's writer had been abandoned by the fencing.
    unread: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unread.append(context))
    outbox = Outbox(_RefusingProducer(), lambda key, numbers, available: 0)  # type: ignore[arg-type]
    acks = await outbox.add([OutRecord("t", b"v", (), b"k", partition=0)])
    for _ in range(3):
        await asyncio.sleep(0)  # the sender tries, and fails the batch
    assert all(a.done() for a in acks)
    del acks
    gc.collect()
    await asyncio.sleep(0)
    assert unread == []


async def test_a_batch_waits_for_room_in_aiokafkas_queue_for_as_long_as_it_takes() -> None:
    # A new user's broker outage of 60 s: send_batch gave up waiting for the batch ahead
    # after request_timeout_ms (KafkaTimeoutError), and the worker stopped.
    from aiokafka.errors import KafkaTimeoutError

    class Full(_Producer):
        def __init__(self) -> None:
            super().__init__()
            self.refusals = 3

        async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
            if self.refusals:
                self.refusals -= 1
                raise KafkaTimeoutError()
            return await super().send_batch(builder, topic, partition=partition)

    producer = Full()
    outbox = Outbox(producer, lambda key, numbers, available: 0)  # type: ignore[arg-type]
    (ack,) = await outbox.add([OutRecord("t", b"v", (), b"k", partition=0)])
    for _ in range(10):
        await asyncio.sleep(0)
    (sent,) = producer.sent  # handed over on the fourth try
    assert producer.refusals == 0 and not ack.done()
    sent.set_result(None)
    await asyncio.sleep(0)
    assert ack.done() and ack.exception() is None
