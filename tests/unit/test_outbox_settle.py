"""The outbox reads every error aiokafka hands it, so asyncio never logs one as unread."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiokafka.errors import ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder

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
