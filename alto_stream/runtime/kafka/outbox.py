"""Batches a producer's records per partition, on top of aiokafka's batch API.

aiokafka's ``send()`` costs about 15 microseconds of Python per record (a future,
partitioning, the accumulator's bookkeeping); appending to a batch builder
(C code) costs about 1. So records go into one open batch per partition, and a
sender per partition hands each batch to aiokafka as soon as the previous one of
that partition has left: while a request is on the wire, the next batch fills.
That is Kafka's own batching (``linger.ms`` = 0) with one future per batch
instead of one per record.

Order within a partition is kept (one sender per partition, batches in order);
idempotence and transactions are aiokafka's (its builders carry the producer's
state, and a batch joins the open transaction when aiokafka takes it).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from alto_stream.errors import RecordRejectedError, TransportError
from alto_stream.transport import OutRecord, Partition

__all__ = ["Outbox"]

Partitioner = Callable[[bytes | None, list[int], list[int]], int]

_METADATA_TTL = 5.0
"""Seconds a topic's partition list is reused before the producer's metadata is read again."""


@dataclass
class _Batch:
    builder: Any  # aiokafka's BatchBuilder
    future: asyncio.Future[None]
    records: list[OutRecord] = field(default_factory=list)  # to resend one by one if refused


@dataclass
class _Partitions:
    numbers: list[int]
    available: list[int]
    read_at: float = field(default_factory=time.monotonic)


class Outbox:
    """Appends records to per-partition batches and sends each batch when its turn comes."""

    def __init__(self, producer: AIOKafkaProducer, partitioner: Partitioner) -> None:
        self._producer = producer
        self._partitioner = partitioner
        self._open: dict[Partition, _Batch] = {}
        self._full: dict[Partition, collections.deque[_Batch]] = {}
        self._senders: dict[Partition, asyncio.Task[None]] = {}
        self._partitions: dict[str, _Partitions] = {}
        self._unacked: set[asyncio.Future[None]] = set()
        self._resending: set[asyncio.Task[None]] = set()

    async def add(self, records: Sequence[OutRecord]) -> list[asyncio.Future[None]]:
        """Append ``records``; a future per record, done when its batch is acknowledged."""
        futures = self.add_now(records)
        if futures is not None:
            return futures
        now = time.monotonic()
        for record in records:
            if record.partition is None and self._unknown(record.topic, now):
                await self._read_partitions(record.topic)
        return self._add_known(records)

    def add_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[None]] | None:
        """:meth:`add` without waiting: None (nothing appended) while partitions must be read."""
        now = time.monotonic()
        for record in records:
            if record.partition is None and self._unknown(record.topic, now):
                return None
        return self._add_known(records)

    def _unknown(self, topic: str, now: float) -> bool:
        """True while ``topic``'s partitions are not known, or known for too long."""
        known = self._partitions.get(topic)
        return known is None or now - known.read_at >= _METADATA_TTL

    def _add_known(self, records: Sequence[OutRecord]) -> list[asyncio.Future[None]]:
        futures = []
        for record in records:
            partition = record.partition
            if partition is None:
                known = self._partitions[record.topic]
                partition = self._partitioner(record.key, known.numbers, known.available)
            futures.append(self._append((record.topic, partition), record))
        return futures

    async def flush(self) -> None:
        """Wait until every batch appended so far is acknowledged (raises its failure)."""
        while self._senders:  # (a sender cancelled by abort() is done too)
            await asyncio.gather(*self._senders.values(), return_exceptions=True)
        # Every batch has been handed over; a sender's batches are acknowledged in order.
        pending = list(self._unacked)
        self._unacked.clear()
        # Every one is retrieved (no "exception never retrieved" noise); the first failure raises.
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                self.read_queued_failures()
                raise outcome

    def abort(self, error: BaseException) -> None:
        """Fail every batch not acknowledged yet with ``error`` and stop handing batches over."""
        for sender in self._senders.values():
            sender.cancel()  # it may wait for room in aiokafka's queue for a long time
        self._open.clear()
        self._full.clear()
        for future in list(self._unacked):
            _fail(future, error)
            future.exception()  # retrieved: the caller of abort() reports the loss once

    def read_queued_failures(self) -> None:
        """Retrieve the errors of the batches aiokafka failed while they waited in its queue.

        When aiokafka's sender task ends on a fatal error (fenced by a newer producer
        of the same transactional id, above all), it fails every batch still queued:
        the acknowledgement, which the outbox reads, and a future that is set when
        its sender takes the batch, which nobody awaits (its own ``send()`` would).
        A transaction's batches queue until their partition has joined the
        transaction, so a producer fenced there left one per partition, each logged
        as "Future exception was never retrieved" when the producer was freed.
        """
        # aiokafka keeps these private: its accumulator's queues and each batch's waiter.
        accumulator = getattr(self._producer, "_message_accumulator", None)
        for queue in getattr(accumulator, "_batches", {}).values():
            for batch in queue:
                taken = getattr(batch, "_drain_waiter", None)
                if taken is not None and taken.done() and not taken.cancelled():
                    taken.exception()

    # -- internals ------------------------------------------------------------

    def _append(self, tp: Partition, record: OutRecord) -> asyncio.Future[None]:
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = self._new_batch()
        headers = record.headers
        if type(headers) is not list:  # aiokafka's builder takes a list, nothing else
            headers = list(headers)
        append = batch.builder.append
        if append(timestamp=None, key=record.key, value=record.value, headers=headers) is None:
            # Full: it waits its turn, and a new batch opens (it takes at least one record).
            self._full.setdefault(tp, collections.deque()).append(self._open.pop(tp))
            batch = self._open[tp] = self._new_batch()
            batch.builder.append(
                timestamp=None, key=record.key, value=record.value, headers=headers
            )
        batch.records.append(record)
        if tp not in self._senders:
            self._senders[tp] = asyncio.get_running_loop().create_task(self._send(tp))
        return batch.future

    def _new_batch(self) -> _Batch:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unacked.add(future)
        future.add_done_callback(self._unacked.discard)
        # Read here as well: a record whose writer a fencing abandoned never awaits
        # it, and asyncio logged each failed one as "never retrieved". Its awaiters
        # still get the error.
        future.add_done_callback(_read)
        return _Batch(self._producer.create_batch(), future)

    async def _send(self, tp: Partition) -> None:
        """Hand ``tp``'s batches to aiokafka one after the other until none is left."""
        try:
            while True:
                full = self._full.get(tp)
                batch = full.popleft() if full else self._open.pop(tp, None)
                if batch is None:
                    return
                try:
                    sent = await self._hand_over(batch, tp)
                except Exception as exc:
                    _fail(batch.future, exc)
                    continue
                sent.add_done_callback(lambda done, b=batch, t=tp: self._settle(done, b, t))
        finally:
            self._senders.pop(tp, None)
            if not self._full.get(tp):
                self._full.pop(tp, None)

    async def _hand_over(self, batch: _Batch, tp: Partition) -> Any:
        """aiokafka's ``send_batch``, asked again while its queue for ``tp`` stays full.

        It waits at most ``request_timeout_ms`` (40 s) for the batch ahead of this
        one to leave: through a broker outage longer than that, the wait ran out
        (KafkaTimeoutError) and the worker stopped (a new user's broker restart).
        The batch waits for Kafka as its records do; a stop cancels the wait.
        """
        while True:
            try:
                return await self._producer.send_batch(batch.builder, tp[0], partition=tp[1])
            except KafkaTimeoutError:
                continue  # the builder was not taken: it is handed over again

    def _rewind(self, tp: Partition, count: int) -> None:
        """Give back the sequence numbers of a batch the broker refused.

        An idempotent producer numbers each partition's records; the broker did
        not take the refused ones, so the next batch must reuse their numbers or
        be refused as out of order (Kafka's Java client does the same). This
        runs in the refusal's callback, before aiokafka sends that partition's
        next batch (it has one request in flight per partition).
        """
        manager = getattr(self._producer, "_txn_manager", None)
        if manager is not None:
            manager.increment_sequence_number(TopicPartition(*tp), -count)

    async def _read_partitions(self, topic: str) -> _Partitions:
        await self._producer.client._wait_on_metadata(topic)
        cluster = self._producer.client.cluster
        numbers = sorted(cluster.partitions_for_topic(topic) or ())
        if not numbers:
            raise TransportError(f"topic {topic!r} has no partitions known to the producer")
        available = sorted(cluster.available_partitions_for_topic(topic) or ())
        known = self._partitions[topic] = _Partitions(numbers, available)
        return known

    def _settle(self, done: asyncio.Future[Any], batch: _Batch, tp: Partition) -> None:
        future = batch.future
        # Retrieved first, always: a batch already failed otherwise (a fenced transaction
        # fails them all) left aiokafka's future's error unread, and asyncio logged a
        # "Future exception was never retrieved" traceback for each.
        exc = None if done.cancelled() else done.exception()
        if future.done():
            return
        if done.cancelled():
            future.cancel()
        elif exc is not None:
            if isinstance(exc, _REJECTED):
                self._rewind(tp, len(batch.records))
            if isinstance(exc, _REJECTED) and len(batch.records) > 1:
                # Perhaps one record too large for its topic: the others must not fail with it.
                task = asyncio.get_running_loop().create_task(self._one_by_one(batch, tp))
                self._resending.add(task)
                task.add_done_callback(self._resending.discard)
            else:
                _fail(future, exc, batch.records)
        else:
            future.set_result(None)

    async def _one_by_one(self, batch: _Batch, tp: Partition) -> None:
        """Send a refused batch's records one per batch: fail it with those refused alone."""
        refused: list[OutRecord] = []
        error: BaseException | None = None
        for record in batch.records:
            builder = self._producer.create_batch()
            builder.append(
                timestamp=None, key=record.key, value=record.value, headers=list(record.headers)
            )
            try:
                await (await self._producer.send_batch(builder, tp[0], partition=tp[1]))
            except _REJECTED as exc:
                self._rewind(tp, 1)
                refused.append(record)
                error = exc
            except Exception as exc:
                _fail(batch.future, exc)
                return
        if error is None:
            if not batch.future.done():
                batch.future.set_result(None)
        else:
            _fail(batch.future, error, refused)


_REJECTED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
"""aiokafka's errors for a record refused whatever the retries (see RecordRejectedError)."""


def _read(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _fail(
    future: asyncio.Future[None], exc: BaseException, records: Sequence[OutRecord] = ()
) -> None:
    if isinstance(exc, _REJECTED):
        rejected = RecordRejectedError(f"Kafka refused a record: {exc}", records=records)
        rejected.__cause__ = exc
        exc = rejected
    if not future.done():
        future.set_exception(exc)
