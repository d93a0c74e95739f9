"""The Transport protocol: what a worker needs from Kafka (or from memory).

Two implementations exist: :mod:`alto_stream.runtime.kafka` (aiokafka, the only
module that touches it) and :mod:`alto_stream.runtime.memory` (one process, no
broker, for unit tests and quick experiments). A worker runs the same code
over either, so the in-memory run gives the same results as Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

__all__ = [
    "Consumer",
    "InRecord",
    "OutRecord",
    "Partition",
    "Producer",
    "Reader",
    "RebalanceCallback",
    "Transport",
    "record_size",
]

Partition = tuple[str, int]
"""A topic partition: (topic, partition number)."""

Headers = Sequence[tuple[str, bytes]]
RebalanceCallback = Callable[[set[Partition]], Awaitable[None]]


class InRecord(NamedTuple):
    """A record read from a topic (a named tuple: made for every record, it must be cheap)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: float
    """When the record was written, in seconds since the epoch."""

    @property
    def tp(self) -> Partition:
        """The record's topic partition."""
        return (self.topic, self.partition)


class OutRecord(NamedTuple):
    """A record to write. ``partition`` None lets the key choose it (a named tuple, as above)."""

    topic: str
    value: bytes | None
    headers: Headers = ()
    key: bytes | None = None
    partition: int | None = None


def record_size(record: OutRecord) -> int:
    """About what ``record`` weighs on the wire: key, value and headers."""
    size = len(record.value or b"") + len(record.key or b"")
    for key, value in record.headers:
        size += len(key) + len(value or b"")
    return size


class Consumer(Protocol):
    """A consumer-group member reading one or more topics."""

    async def start(self) -> None:
        """Join the group; ``on_assigned``/``on_revoked`` run around each rebalance."""

    async def stop(self) -> None:
        """Leave the group."""

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        """Records ready now, waiting at most ``timeout`` seconds for the first."""

    async def commit(
        self, offsets: Mapping[Partition, int], *, metadata: Mapping[Partition, str] | None = None
    ) -> None:
        """Commit the next offset to read, per partition, with its ``metadata`` (if any)."""

    async def committed(self, partitions: set[Partition]) -> dict[Partition, tuple[int, str]]:
        """The committed offset of each of ``partitions`` that has one, with its metadata."""

    def pause(self, partitions: set[Partition]) -> None:
        """Stop fetching from these partitions (backpressure)."""

    def resume(self, partitions: set[Partition]) -> None:
        """Fetch from these partitions again."""

    def assignment(self) -> set[Partition]:
        """The partitions this member holds now."""

    def rejoin(self) -> None:
        """Rejoin the group soon: the partitions are revoked and assigned again."""

    async def seek_to_committed(
        self, partitions: set[Partition]
    ) -> dict[Partition, tuple[int, str]]:
        """Read ``partitions`` on from their committed offsets, fetched now; return them.

        Each owned partition's offset (its first offset when none is committed)
        with the commit's metadata. Records of these partitions fetched earlier
        are not handed out again. The seeks come last, after every wait: a
        caller that resets its own state of these partitions as soon as this
        returns drops nothing read from the new offsets.
        """

    async def position(self, tp: Partition) -> int | None:
        """The offset of the next record ``fetch`` would hand out from ``tp``.

        Past the transaction markers (and aborted records) the consumer skipped
        after the last record it handed out; None when not known (not assigned).
        """


class Producer(Protocol):
    """Writes records; ``send`` returns once the broker acknowledged."""

    async def start(self) -> None:
        """Connect (and, when transactional, fence older producers of the same id)."""

    async def stop(self) -> None:
        """Flush and disconnect."""

    def abort(self, error: BaseException) -> None:
        """Fail every record not acknowledged yet with ``error`` (a broker gone for good).

        ``stop`` then ends without waiting for them.
        """

    async def send(self, record: OutRecord) -> None:
        """Write one record and wait for the acknowledgement."""

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        """Write records (pipelined) and wait for every acknowledgement."""

    async def enqueue(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
        """Hand records to the producer without waiting: one future per acknowledgement."""

    def enqueue_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]] | None:
        """:meth:`enqueue` as a plain call; None (nothing taken) when it would have to wait."""

    async def commit_transaction(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[Partition, int],
        group: str,
        *,
        metadata: Mapping[Partition, str] | None = None,
    ) -> None:
        """Write ``records`` and commit ``offsets`` for ``group`` atomically (transactional).

        ``metadata`` goes with the offsets it names, as in :meth:`Consumer.commit`.
        """


class Transport(Protocol):
    """Creates consumers and producers and reads partitions directly."""

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        read_committed: bool = False,
    ) -> Consumer:
        """A member of ``group`` reading ``topics`` (not yet started)."""

    def producer(self, *, transactional_id: str | None = None) -> Producer:
        """A producer (not yet started); transactional when given an id."""

    async def read_partition(self, topic: str, partition: int) -> list[InRecord]:
        """Every record in a partition, from the beginning to its end now (changelog restore)."""

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has."""

    def reader(self, topics: Sequence[str], *, start_time: float | None = None) -> Reader:
        """A reader of all partitions of ``topics`` (no group), from ``start_time`` or the start."""


class Reader(Protocol):
    """Reads whole topics outside any consumer group (tail, replay, trace, results)."""

    async def start(self) -> None:
        """Assign every partition and seek to the start time."""

    async def stop(self) -> None:
        """Disconnect."""

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        """Records ready now, waiting at most ``timeout`` seconds for the first."""

    async def end_reached(self) -> bool:
        """True once every partition was read up to the end it had at ``start()``."""

    async def ends(self) -> dict[Partition, int]:
        """Every partition's end now: the offset its next record will have."""

    async def reached(self, ends: Mapping[Partition, int]) -> bool:
        """True once every partition in ``ends`` was read up to its offset there."""

    def connected(self) -> bool:
        """Whether the reader holds a live connection to any broker (a hint for messages)."""
