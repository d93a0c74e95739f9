"""An idempotent (or transactional) producer, and the partitioner every one of them uses."""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState

from alto_stream.errors import FencedError, TransportError
from alto_stream.runtime.kafka.common import with_metadata, wrapped
from alto_stream.runtime.kafka.outbox import Outbox
from alto_stream.runtime.kafka.security import access_error
from alto_stream.security import Security
from alto_stream.transport import OutRecord, Partition

if TYPE_CHECKING:
    from alto_stream.runtime.kafka.transport import KafkaTransport

__all__ = ["KafkaProducer", "is_fencing"]

_BATCH_BYTES = 256 * 1024
"""The most a producer puts in one partition's batch (Kafka's default request limit is 1 MiB)."""

_TX_RETRY_BACKOFF_MS = 20
"""Back-off of a transactional producer's retries (see ``KafkaProducer``)."""

_TRANSACTION_TIMEOUT = 30.0
"""Seconds a transaction may take to commit before the worker gives up on it."""


def _partition(key: bytes | None, partitions: list[int], available: list[int]) -> int:
    """The partition of a key: CRC-32 (in C) instead of aiokafka's pure-Python murmur2.

    Every alto-stream producer uses it, so co-partitioning holds among them.
    """
    if key is None:
        return random.choice(available or partitions)
    return zlib.crc32(key) % len(partitions)  # Kafka numbers partitions 0..n-1


def _produce_error(exc: KafkaError, security: Security) -> TransportError:
    denied = access_error(exc, "produce", security)
    if denied is not None:
        return denied
    return TransportError(f"Kafka failed to produce: {exc}", retriable=exc.retriable)


def is_fencing(exc: BaseException | None) -> bool:
    """True for aiokafka's error of a producer that a newer owner fenced."""
    return isinstance(exc, ProducerFenced)


def _unusable(failure: BaseException) -> TransportError:
    """The error of a commit on a transactional producer that ``failure`` broke for good."""
    if is_fencing(failure):
        error: TransportError = FencedError(
            f"this producer was fenced earlier ({failure!r}): a newer owner of the partition has it"
        )
    else:
        error = TransportError(f"this transactional producer failed earlier: {failure!r}")
    error.__cause__ = failure
    return error


class KafkaProducer:
    """An idempotent producer (``KafkaTransport.producer``), transactional when given an id."""

    def __init__(self, transport: KafkaTransport, transactional_id: str | None) -> None:
        self._security = transport.security
        self._producer = AIOKafkaProducer(
            **transport.client_options(),
            client_id=f"{transport.client_id}-producer",
            acks="all",
            enable_idempotence=True,
            transactional_id=transactional_id,
            linger_ms=0,
            # A transaction begun right after a commit is refused (CONCURRENT_TRANSACTIONS)
            # until the coordinator has written its markers: retry soon, not after 100 ms
            # (Kafka's Java client does the same for that error, KAFKA-5477).
            retry_backoff_ms=_TX_RETRY_BACKOFF_MS if transactional_id else 100,
            max_batch_size=_BATCH_BYTES,
            partitioner=_partition,
        )
        # aiokafka's sender retries an idempotent producer's batch until the broker takes
        # it, however old; its accumulator still failed one whose partition had no leader
        # once it was older than request_timeout_ms (40 s). Just after a broker came back
        # from an outage longer than that, before its leaders were elected, the batches
        # that had waited through it failed (LeaderNotAvailableError), and every worker
        # with one stopped (a new user's broker restart). They wait as the others do.
        self._producer._message_accumulator._batch_ttl = math.inf
        self._outbox = Outbox(self._producer, _partition)
        self._aborted = False

    async def start(self) -> None:
        async with wrapped("start a producer", self._security):
            await self._producer.start()

    async def stop(self) -> None:
        async with wrapped("stop a producer", self._security):
            try:
                await self._outbox.flush()
            finally:
                if self._aborted:
                    await self._drop_unsent()
                await self._producer.stop()
                self._failure()  # retrieved: no "exception was never retrieved" at exit

    def abort(self, error: BaseException) -> None:
        # An idempotent aiokafka producer retries a broker that is down for ever, and
        # its stop() waits for every batch: stop its sender, and stop() drops the rest.
        self._aborted = True
        self._outbox.abort(error)
        sender = self._producer._sender.sender_task
        if sender is not None:
            sender.cancel()

    async def _drop_unsent(self) -> None:
        """Drop aiokafka's batches once its sender has stopped (it re-queues them until then).

        Their futures stay pending (the outbox failed its own): failing them with
        aiokafka's ``fail_all`` broke on re-queued batches (a KeyError in a callback).
        """
        sender = self._producer._sender.sender_task
        if sender is not None:
            await asyncio.wait({sender})  # the sender ends its requests in flight first
        accumulator = self._producer._message_accumulator
        accumulator._batches.clear()
        accumulator._pending_batches.clear()

    def _failure(self) -> BaseException | None:
        """Why this transactional producer cannot begin a transaction; None if it can.

        aiokafka's sender task ends on a fatal error (fenced by a newer producer of
        the same transactional id, above all) and leaves the producer in its
        FATAL_ERROR state, where beginning a transaction fails an assertion
        (``FATAL_ERROR -> IN_TRANSACTION``); a transaction cut short by
        :data:`_TRANSACTION_TIMEOUT` may leave it in another state than READY.
        Reading the error also retrieves it (and the sender task's, and those of the
        batches it failed), so no "exception was never retrieved" traceback is
        logged for them.
        """
        # aiokafka keeps this state private: its transaction manager and sender task.
        manager = self._producer._txn_manager
        if manager is None or manager.transactional_id is None:
            return None
        sender = self._producer._sender.sender_task
        ended = sender is not None and sender.done() and not sender.cancelled()
        if ended and sender.exception() is not None:
            self._outbox.read_queued_failures()  # the batches it failed as it ended
        if manager.is_fatal_error():
            waiter = manager.wait_for_transaction_end()
            done = waiter is not None and waiter.done() and not waiter.cancelled()
            error: BaseException | None = waiter.exception() if done else None
            return error or RuntimeError("the producer is in aiokafka's FATAL_ERROR state")
        if manager.state in (TransactionState.UNINITIALIZED, TransactionState.READY):
            return None  # UNINITIALIZED: not started, begin_transaction waits for its id
        state: str = manager.state.name
        return RuntimeError(f"a transaction of this producer did not end ({state})")

    async def send(self, record: OutRecord) -> None:
        await self.send_many([record])

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        futures = await self.enqueue(records)
        async with wrapped("produce", self._security):
            for future in futures:
                await future

    async def enqueue(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
        try:  # not wrapped(): this runs for every record, a plain try costs nothing
            return await self._outbox.add(records)
        except KafkaError as exc:
            raise _produce_error(exc, self._security) from exc

    def enqueue_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]] | None:
        try:
            return self._outbox.add_now(records)
        except KafkaError as exc:
            raise _produce_error(exc, self._security) from exc

    async def commit_transaction(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[Partition, int],
        group: str,
        *,
        metadata: Mapping[Partition, str] | None = None,
    ) -> None:
        failure = self._failure()
        if failure is not None:
            raise _unusable(failure)
        try:
            # Bounded, as Kafka's own client does since KAFKA-10309: aiokafka's
            # send_offsets_to_transaction was seen waiting forever after rebalances.
            await asyncio.wait_for(
                self._commit_transaction(records, with_metadata(offsets, metadata), group),
                _TRANSACTION_TIMEOUT,
            )
        except TimeoutError as exc:
            failure = self._failure()
            if is_fencing(failure):
                # Cut off past the session: fenced meanwhile (the abort then failed as such).
                assert failure is not None
                raise _unusable(failure) from failure
            raise TransportError(
                f"a transaction did not commit within {_TRANSACTION_TIMEOUT:.0f}s; "
                "the worker stops so that its supervisor restarts it"
            ) from exc
        except TransportError as exc:
            if isinstance(exc.__cause__, ProducerFenced):
                raise FencedError(
                    f"{exc}: a newer owner of the partition fenced this producer"
                ) from exc.__cause__
            raise

    async def _commit_transaction(
        self, records: Sequence[OutRecord], offsets: dict[TopicPartition, Any], group: str
    ) -> None:
        async with wrapped("commit a transaction", self._security), self._producer.transaction():
            await self._outbox.add(records)
            # Every batch must be in aiokafka's hands before it commits the transaction.
            await self._outbox.flush()
            if offsets:
                await self._producer.send_offsets_to_transaction(offsets, group)
