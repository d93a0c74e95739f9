"""A reader of whole topics outside any consumer group (follow, tail, replay, trace)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from alto_stream.errors import TransportError
from alto_stream.runtime.kafka.common import connected, fetch_records, stop_consumer, wrapped
from alto_stream.transport import InRecord, Partition

if TYPE_CHECKING:
    from alto_stream.runtime.kafka.transport import KafkaTransport

__all__ = ["KafkaReader"]


class KafkaReader:
    """Reads whole topics outside any group, from the beginning, the end, an offset or a time.

    ``offset`` applies to every partition read; a negative one counts back from
    each partition's end. ``partitions`` restricts which are read.
    """

    def __init__(
        self,
        transport: KafkaTransport,
        topics: list[str],
        start: float | None,
        *,
        partitions: Sequence[int] | None = None,
        offset: int | None = None,
        from_end: bool = False,
    ) -> None:
        self._topics = topics
        self._security = transport.security
        self._start = start
        self._only = None if partitions is None else set(partitions)
        self._offset = offset
        self._from_end = from_end
        self._ends: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            **transport.client_options(),
            client_id=f"{transport.client_id}-reader",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )

    async def start(self) -> None:
        try:
            await self._open()
        except BaseException:
            # A reader that failed to start is not stopped by its caller: close its
            # connections here (aiokafka warns "Unclosed AIOKafkaConsumer" otherwise).
            with contextlib.suppress(KafkaError):
                await stop_consumer(self._consumer)
            raise

    async def _open(self) -> None:
        async with wrapped(f"read {', '.join(self._topics)}", self._security):
            await self._consumer.start()
            # A fresh metadata snapshot: the client's cached one may not know new topics yet.
            cluster = await self._consumer._client.fetch_all_metadata()
            tps = []
            for topic in self._topics:
                if topic not in cluster.topics():
                    raise TransportError(
                        f"topic {topic!r} does not exist: create it with "
                        "`alto-stream topics apply APP`"
                    )
                parts = sorted(cluster.partitions_for_topic(topic) or set())
                tps += [TopicPartition(topic, p) for p in parts if self._wanted(p)]
            self._consumer.assign(tps)
            await self._consumer._client.force_metadata_update()
            self._ends = await self._consumer.end_offsets(tps)
            firsts = await self._consumer.beginning_offsets(tps)
            times = {}
            if self._start is not None and self._offset is None:
                times = await self._consumer.offsets_for_times(
                    {tp: int(self._start * 1000) for tp in tps}
                )
            for tp in tps:
                first, end = firsts[tp], self._ends[tp]
                if self._from_end:
                    target = end
                elif self._offset is not None:
                    target = end + self._offset if self._offset < 0 else self._offset
                elif self._start is not None:
                    hit = times.get(tp)
                    target = hit.offset if hit is not None else end
                else:
                    target = first
                # An explicit seek: seek_to_beginning() races with the reset that
                # assign() starts, and may leave a partition at its end.
                self._consumer.seek(tp, min(max(target, first), end))

    def _wanted(self, partition: int) -> bool:
        return self._only is None or partition in self._only

    async def stop(self) -> None:
        async with wrapped("stop a reader", self._security):
            await stop_consumer(self._consumer)

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        return await fetch_records(self._consumer, timeout, max_records, self._security)

    def connected(self) -> bool:
        return connected(self._consumer)

    async def end_reached(self) -> bool:
        return await self.reached({(tp.topic, tp.partition): end for tp, end in self._ends.items()})

    async def ends(self) -> dict[Partition, int]:
        async with wrapped("read end offsets", self._security):
            ends = await self._consumer.end_offsets(list(self._ends))
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def reached(self, ends: Mapping[Partition, int]) -> bool:
        async with wrapped("read positions", self._security):
            for (topic, partition), end in ends.items():
                if await self._consumer.position(TopicPartition(topic, partition)) < end:
                    return False
        return True
