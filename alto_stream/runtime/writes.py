"""How a worker writes: outputs keyed for their next stage, sized, and tied to their record.

Each input record being handled has a :class:`~alto_stream.runtime.acks.Source`
(a context variable: each record's task sees its own) that collects the
acknowledgements of the outputs it wrote; the record is done once they all
arrive (see :mod:`alto_stream.runtime.acks`). In the transactional mode outputs go to the
round's buffer instead, tagged with their record's offset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from alto_stream.app import StagePlan
from alto_stream.message import HEADER_ADMITTED, Envelope, MessageCodec
from alto_stream.runtime import failures
from alto_stream.runtime.acks import SOURCE, Source
from alto_stream.runtime.transactional import Transactions
from alto_stream.transport import InRecord, OutRecord, Partition, Producer

__all__ = ["Writer"]


class _Counters(Protocol):
    produced: int


class Writer:
    """Writes a stage's outputs through its producer, or a transaction's buffer.

    ``producer`` is set once the worker has started it.
    """

    def __init__(
        self,
        plan: StagePlan,
        codec: MessageCodec,
        stats: _Counters,
        *,
        max_record_bytes: int,
        tx: Transactions | None,
    ) -> None:
        self.plan = plan
        self.codec = codec
        self.stats = stats
        self.max_record_bytes = max_record_bytes
        self.tx = tx
        self.producer: Producer | None = None
        # A split that commits early: its outputs are tied to no record's offset, so each
        # round commits them whether or not the record is done (Stage.commit_early).
        self._early = plan.stage.commit_early

    @contextlib.asynccontextmanager
    async def of_no_record(self) -> AsyncIterator[None]:
        """Writes not for one input record: handed over without waiting, acknowledged at exit."""
        source = Source(None)
        token = SOURCE.set(source)
        try:
            yield
        finally:
            SOURCE.reset(token)
        if source.acks:
            await asyncio.gather(*source.acks)

    async def settle(self) -> bool:
        """Wait until what the record being handled wrote so far is acknowledged.

        False if a write failed (the worker stops on it; the record runs again).
        At once True in the transactional mode, where a transaction commits the
        writes together, and outside a record, where each write was awaited.
        """
        source = SOURCE.get()
        if self.tx is not None or source is None or not source.acks:
            return True
        await asyncio.wait(source.acks)
        return all(not ack.cancelled() and ack.exception() is None for ack in source.acks)

    async def forward(self, record: InRecord, envelope: Envelope) -> None:
        """Pass ``record`` on unchanged (a marker), keyed for the next stage."""
        await self.write(
            record.tp,
            [OutRecord(self.plan.output_topic, record.value, record.headers, self.key(envelope))],
        )

    async def emit_to(self, tp: Partition, envelope: Envelope) -> None:
        """Write ``envelope`` as an output of a record of ``tp``."""
        await self.write(tp, self.outputs(envelope))

    def outputs(self, envelope: Envelope) -> list[OutRecord]:
        """``envelope`` encoded for the output topic; :class:`OutputTooLargeError` if too big."""
        value, headers = self.codec.encode(envelope)
        source = SOURCE.get()
        if source is not None and source.admitted_ms is not None:
            headers.append((HEADER_ADMITTED, b"%d" % source.admitted_ms))
        record = OutRecord(self.plan.output_topic, value, headers, self.key(envelope))
        limit = self.max_record_bytes
        if (value is not None and len(value) > limit) or failures.record_size(record) > limit:
            raise failures.OutputTooLargeError(
                _too_large(self.plan.name, envelope, failures.record_size(record), limit),
                stage=self.plan.name,
            )
        return [record]

    def key(self, envelope: Envelope) -> bytes:
        """The key of an output: its ancestor's id at the plan's key depth, or its own id."""
        depth = self.plan.key_depth
        ancestry = envelope.ancestry
        return ancestry.routing_key(depth) if depth is not None else ancestry.id.encode()

    async def write(self, tp: Partition, records: Sequence[OutRecord]) -> None:
        """Write ``records`` for the record being handled (of partition ``tp``)."""
        if not self.write_now(tp, records):
            await self.write_waiting(tp, records)

    async def write_waiting(self, tp: Partition, records: Sequence[OutRecord]) -> None:
        """:meth:`write` where :meth:`write_now` could not: waits for the producer."""
        assert self.producer is not None
        source = SOURCE.get()
        self.stats.produced += len(records)
        if source is None:  # not for one record (expiry, restore): wait here
            await self.producer.send_many(records)
        else:  # the record is done once these are acknowledged (see Worker._handle)
            source.acks.extend(await self.producer.enqueue(records))

    def write_now(self, tp: Partition, records: Sequence[OutRecord]) -> bool:
        """:meth:`write` when it needs no waiting (most records); False: :meth:`write_waiting`."""
        source = SOURCE.get()
        tx = self.tx
        if tx is not None:
            offset = None if source is None or self._early else source.offset
            tx.buffer[tp].extend((offset, r) for r in records)
            return True
        if source is None:
            return False
        assert self.producer is not None
        acks = self.producer.enqueue_now(records)
        if acks is None:  # the producer must learn a topic's partitions first
            return False
        self.stats.produced += len(records)
        source.acks.extend(acks)
        return True


def _too_large(stage: str, envelope: Envelope, size: int, limit: int) -> str:
    """Why an output is refused; for a split's end marker, the context it carries."""
    why, fix = "", "emit smaller records"
    if envelope.context is not None:  # only a split's end marker carries one
        why = (
            f" (the split's end marker, carrying the split's input, {len(envelope.context)} "
            "bytes, as the context of an aggregate that takes one)"
        )
        fix = "push smaller queries (split smaller records), or make the aggregate take no context"
    return (
        f"stage {stage!r} made an output of {size} bytes ({envelope.ancestry.id}){why}, larger "
        f"than the limit of {limit}: {fix}, or raise WorkerOptions.max_record_bytes (a worker "
        "process: ALTO_MAX_RECORD_BYTES) and the topic's max.message.bytes"
    )
