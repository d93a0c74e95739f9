"""An in-memory transport: Kafka's semantics in one process, for tests and experiments.

Topics have partitions (a record's key picks one by hash, as in Kafka),
consumer groups share partitions among their members and keep committed
offsets, and a member that joins or leaves triggers a rebalance with the same
revoke/assign callbacks as Kafka. So the same workers run here and on Kafka
and must give the same results.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alto_stream.transport import InRecord, OutRecord, Partition, RebalanceCallback

__all__ = ["MemoryOps", "MemoryTransport"]


@dataclass
class _Group:
    members: list[_MemoryConsumer] = field(default_factory=list)
    committed: dict[Partition, int] = field(default_factory=dict)
    metadata: dict[Partition, str] = field(default_factory=dict)

    def commit(
        self, offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None
    ) -> None:
        """Commit ``offsets``, each with its metadata ("" when none given), as Kafka does."""
        self.committed.update(offsets)
        for tp in offsets:
            self.metadata[tp] = (metadata or {}).get(tp, "")


class MemoryTransport:
    """Topics, groups and offsets held in this process; ``partitions`` per new topic."""

    def __init__(self, partitions: int = 4) -> None:
        self.default_partitions = partitions
        self.topics: dict[str, list[list[InRecord]]] = {}
        self.groups: dict[str, _Group] = defaultdict(_Group)
        self._changed = asyncio.Condition()
        self._notifying: asyncio.Task[None] | None = None

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        """Create ``name`` (no-op when it exists)."""
        if name not in self.topics:
            self.topics[name] = [[] for _ in range(partitions or self.default_partitions)]

    def records(self, topic: str) -> list[InRecord]:
        """Every record of ``topic``, partition by partition."""
        self.create_topic(topic)
        return [record for part in self.topics[topic] for record in part]

    def append(self, record: OutRecord) -> InRecord:
        """Write one record (as a producer would) and wake readers."""
        self.create_topic(record.topic)
        parts = self.topics[record.topic]
        if record.partition is not None:
            index = record.partition
        elif record.key is not None:
            index = zlib.crc32(record.key) % len(parts)
        else:
            index = sum(len(p) for p in parts) % len(parts)
        stored = InRecord(
            record.topic,
            index,
            len(parts[index]),
            record.key,
            record.value,
            tuple(record.headers),
            time.time(),
        )
        parts[index].append(stored)
        return stored

    async def notify(self) -> None:
        """Wake every waiting reader."""
        async with self._changed:
            self._changed.notify_all()

    def notify_soon(self) -> None:
        """:meth:`notify` from a plain call: a task that wakes the readers (one at a time)."""
        if self._notifying is None or self._notifying.done():
            # A pending one covers these writes too: it notifies after they are appended.
            self._notifying = asyncio.get_running_loop().create_task(self.notify())

    async def take(
        self, take: Callable[[int], list[InRecord]], timeout: float, max_records: int
    ) -> list[InRecord]:
        """``take(max_records)`` now, or once more after waiting up to ``timeout`` for a write."""
        records = take(max_records)
        if not records and timeout > 0:
            await self.wait_for_change(timeout)
            records = take(max_records)
        return records

    async def wait_for_change(self, timeout: float) -> None:
        """Wait until something is written, at most ``timeout`` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    # -- Transport ----------------------------------------------------------

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        read_committed: bool = False,
    ) -> _MemoryConsumer:
        """A member of ``group`` reading ``topics``."""
        del read_committed  # writes are atomic here
        return _MemoryConsumer(self, list(topics), group, on_assigned, on_revoked)

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        """A producer; transactions commit atomically as in Kafka."""
        del transactional_id
        return _MemoryProducer(self)

    async def read_partition(self, topic: str, partition: int) -> list[InRecord]:
        """Every record of one partition."""
        self.create_topic(topic)
        return list(self.topics[topic][partition])

    async def partitions(self, topic: str) -> int:
        """The partition count of ``topic``."""
        return self._partition_count(topic)

    def _partition_count(self, topic: str) -> int:
        self.create_topic(topic)
        return len(self.topics[topic])

    def reader(self, topics: Sequence[str], *, start_time: float | None = None) -> _MemoryReader:
        """A reader of every partition of ``topics`` from ``start_time`` (or the start)."""
        return _MemoryReader(self, list(topics), start_time)

    async def rebalance(self, group: str) -> None:
        """Share the group's partitions among its members again (round robin)."""
        state = self.groups[group]
        for member in state.members:
            if member.assigned:
                revoked, member.assigned = member.assigned, set()
                await member.on_revoked(revoked)
        if not state.members:
            return
        tps = sorted(
            (topic, p)
            for topic in state.members[0].topics
            for p in range(self._partition_count(topic))
        )
        for i, tp in enumerate(tps):
            member = state.members[i % len(state.members)]
            member.assigned.add(tp)
            member.positions[tp] = state.committed.get(tp, 0)
        for member in state.members:
            await member.on_assigned(set(member.assigned))


class _MemoryConsumer:
    def __init__(
        self,
        transport: MemoryTransport,
        topics: list[str],
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
    ) -> None:
        self.transport = transport
        self.topics = topics
        self.group = group
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.assigned: set[Partition] = set()
        self.paused: set[Partition] = set()
        self.positions: dict[Partition, int] = {}
        self._rejoining: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for topic in self.topics:
            self.transport.create_topic(topic)
        self.transport.groups[self.group].members.append(self)
        await self.transport.rebalance(self.group)

    async def stop(self) -> None:
        members = self.transport.groups[self.group].members
        if self in members:
            # As aiokafka leaves a group: no revocation callback for the member that leaves
            # (the worker commits on its way out), then the others rebalance.
            members.remove(self)
            self.assigned = set()
            await self.transport.rebalance(self.group)

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        return await self.transport.take(self._take, timeout, max_records)

    def _take(self, max_records: int) -> list[InRecord]:
        out: list[InRecord] = []
        for tp in sorted(self.assigned - self.paused):
            log = self.transport.topics[tp[0]][tp[1]]
            start = self.positions.get(tp, 0)
            chunk = log[start : start + max_records - len(out)]
            out.extend(chunk)
            self.positions[tp] = start + len(chunk)
            if len(out) >= max_records:
                break
        return out

    async def commit(
        self, offsets: Mapping[Partition, int], *, metadata: Mapping[Partition, str] | None = None
    ) -> None:
        self.transport.groups[self.group].commit(offsets, metadata)

    async def committed(self, partitions: set[Partition]) -> dict[Partition, tuple[int, str]]:
        group = self.transport.groups[self.group]
        return {
            tp: (group.committed[tp], group.metadata.get(tp, ""))
            for tp in partitions
            if tp in group.committed
        }

    def pause(self, partitions: set[Partition]) -> None:
        self.paused |= partitions

    def resume(self, partitions: set[Partition]) -> None:
        self.paused -= partitions

    def assignment(self) -> set[Partition]:
        return set(self.assigned)

    def rejoin(self) -> None:
        if self in self.transport.groups[self.group].members:
            self._rejoining = asyncio.get_running_loop().create_task(
                self.transport.rebalance(self.group)
            )

    async def seek_to_committed(
        self, partitions: set[Partition]
    ) -> dict[Partition, tuple[int, str]]:
        owned = partitions & self.assigned
        committed = await self.committed(owned)
        targets = {tp: committed.get(tp, (0, "")) for tp in owned}
        for tp, (offset, _) in targets.items():
            self.positions[tp] = offset
        return targets

    async def position(self, tp: Partition) -> int | None:
        return self.positions.get(tp) if tp in self.assigned else None


class _MemoryProducer:
    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def abort(self, error: BaseException) -> None:
        return None  # every record is acknowledged as it is written

    async def send(self, record: OutRecord) -> None:
        self.transport.append(record)
        await self.transport.notify()

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        for record in records:
            self.transport.append(record)
        await self.transport.notify()

    async def enqueue(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
        return self.enqueue_now(records)

    def enqueue_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
        for record in records:
            self.transport.append(record)
        self.transport.notify_soon()
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    async def commit_transaction(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[Partition, int],
        group: str,
        *,
        metadata: Mapping[Partition, str] | None = None,
    ) -> None:
        for record in records:
            self.transport.append(record)
        self.transport.groups[group].commit(offsets, metadata)
        await self.transport.notify()


class _MemoryReader:
    def __init__(self, transport: MemoryTransport, topics: list[str], start: float | None) -> None:
        self.transport = transport
        self.topics = topics
        self.start_time = start
        self.positions: dict[Partition, int] = {}
        self.start_ends: dict[Partition, int] = {}

    async def start(self) -> None:
        for topic in self.topics:
            self.transport.create_topic(topic)
            for p, log in enumerate(self.transport.topics[topic]):
                first = 0
                if self.start_time is not None:
                    first = next(
                        (r.offset for r in log if r.timestamp >= self.start_time), len(log)
                    )
                self.positions[(topic, p)] = first
                self.start_ends[(topic, p)] = len(log)

    async def stop(self) -> None:
        return None

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        return await self.transport.take(self._take, timeout, max_records)

    def _take(self, max_records: int) -> list[InRecord]:
        out: list[InRecord] = []
        for tp, start in sorted(self.positions.items()):
            chunk = self.transport.topics[tp[0]][tp[1]][start : start + max_records - len(out)]
            out.extend(chunk)
            self.positions[tp] = start + len(chunk)
        return out

    async def end_reached(self) -> bool:
        return await self.reached(self.start_ends)

    def connected(self) -> bool:
        return True  # no network

    async def ends(self) -> dict[Partition, int]:
        return {tp: len(self.transport.topics[tp[0]][tp[1]]) for tp in self.positions}

    async def reached(self, ends: Mapping[Partition, int]) -> bool:
        return all(self.positions[tp] >= end for tp, end in ends.items())


# -- operations: what `alto-stream tail/replay/trace` need (see KafkaOps) ------


class MemoryOps:
    """The operating tools' reads over a :class:`MemoryTransport` (tests, experiments)."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport

    def reader(
        self,
        topics: Sequence[str],
        *,
        partitions: Sequence[int] | None = None,
        offset: int | None = None,
        start_time: float | None = None,
        from_end: bool = False,
    ) -> _MemoryReader:
        """A reader starting at the beginning, the end, an ``offset`` or ``start_time``.

        Same meaning as :meth:`alto_stream.runtime.kafka.KafkaOps.reader`.
        """
        return _PositionedMemoryReader(
            self.transport, list(topics), partitions, offset, start_time, from_end
        )


class _PositionedMemoryReader(_MemoryReader):
    def __init__(
        self,
        transport: MemoryTransport,
        topics: list[str],
        partitions: Sequence[int] | None,
        offset: int | None,
        start_time: float | None,
        from_end: bool,
    ) -> None:
        super().__init__(transport, topics, None if offset is not None else start_time)
        self._only = None if partitions is None else set(partitions)
        self._offset = offset
        self._from_end = from_end

    async def start(self) -> None:
        await super().start()
        for tp in list(self.positions):
            if self._only is not None and tp[1] not in self._only:
                del self.positions[tp], self.start_ends[tp]
                continue
            end = self.start_ends[tp]
            if self._from_end:
                self.positions[tp] = end
            elif self._offset is not None:
                target = end + self._offset if self._offset < 0 else self._offset
                self.positions[tp] = min(max(target, 0), end)
