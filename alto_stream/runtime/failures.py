"""What a worker writes for a record it could not process: a dead letter and a marker.

:class:`RecordFailures` is a worker's per-record failure paths: a record its
handler failed on, one that cannot be decoded, and one whose output the broker
refused all end as a dead letter and a marker; an output not written at all
stops the worker instead (its record must run again).

The dead letter and the marker themselves (built from whatever the record
holds, never failing) are made in :mod:`alto_stream.runtime.dead_letters`;
its names stay importable from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from alto_stream.ancestry import Ancestry
from alto_stream.app import StagePlan
from alto_stream.errors import (
    AncestryError,
    CountConflictError,
    DecodeError,
    RecordRejectedError,
    StageError,
    TransportError,
)
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.acks import SOURCE, Acknowledgements, Source, Waiting
from alto_stream.runtime.dead_letters import (
    NO_RECORD,
    REASON_LIMIT,
    dead_letter,
    error_ancestry,
    letter_ancestor,
    letter_source,
    reason_of,
    where,
)
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.transport import InRecord, OutRecord, Partition, record_size

__all__ = [
    "NO_RECORD",
    "REASON_LIMIT",
    "OutputTooLargeError",
    "RecordFailures",
    "dead_letter",
    "error_ancestry",
    "letter_ancestor",
    "letter_source",
    "reason_of",
    "record_size",
    "where",
]

log = logging.getLogger(__name__)


class OutputTooLargeError(StageError):
    """An output larger than the worker may write (``WorkerOptions.max_record_bytes``)."""


class _Counters(Protocol):
    errors: int
    dead_letters: int
    consumed: int


class _Writes(Protocol):
    async def write(self, tp: Partition, records: Sequence[OutRecord]) -> None: ...

    def outputs(self, envelope: Envelope) -> list[OutRecord]: ...


class RecordFailures:
    """A worker's failure paths for one record: dead letter + marker, or a stop.

    ``writer`` writes as the worker does; ``aggregate`` (an aggregate stage)
    counts a marker at its own tracker; ``spawn`` runs a one-off task;
    ``still_owned`` says whether a record's partition is still this worker's;
    ``fatal`` stops the worker with an error (its supervisor restarts it; True
    when it was the first).
    :attr:`acks` are the worker's acknowledgements, failing records here.
    """

    def __init__(
        self,
        plan: StagePlan,
        codec: MessageCodec,
        stats: _Counters,
        writer: _Writes,
        *,
        max_record_bytes: int,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        still_owned: Callable[[Partition, OffsetBook], Awaitable[bool]],
        fatal: Callable[[Exception], bool],
    ) -> None:
        self.plan = plan
        self.codec = codec
        self.stats = stats
        self.writer = writer
        self.max_record_bytes = max_record_bytes
        self.aggregate: Callable[[InRecord, Envelope], Awaitable[None]] | None = None
        self._spawn = spawn
        self._still_owned = still_owned
        self._fatal = fatal
        self.acks = Acknowledgements(self.ack_failed)

    async def failed(self, record: InRecord, exc: Exception, ancestry: Ancestry | None) -> bool:
        """Write ``record``'s dead letter and the marker in its place; False if that failed.

        The per-record boundary: nothing raised here leaves it. If even the dead
        letter cannot be handed to the producer, the record is not done: the
        worker stops (its supervisor restarts it) and the record runs again.
        """
        self.stats.errors += 1
        reason = reason_of(exc)
        log.warning(
            "stage %s: %s[%d]@%d to dead letters: %s%s",
            self.plan.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
            where(exc),
        )
        log.debug("stage %s: the failure's traceback", self.plan.name, exc_info=exc)
        if not await self.letter(record, exc, ancestry):
            return False
        if ancestry is None:
            return True
        if self.aggregate is not None and isinstance(exc, CountConflictError):
            # The first count an aggregate took stands; a record that contradicts it is
            # refused alone. Its marker, about the split it ends, would have ended the
            # ancestor with an ERROR: a copied END marker with another count turned a
            # real query's result into one (a new user's fuzz, before 2026-12-03).
            return True
        marker = error_ancestry(ancestry, reason_of(exc, self.plan.name), now=record.timestamp)
        try:
            await self._error_marker(record, Envelope(marker, None, None, self.plan.name))
        except Exception as failure:
            log.exception(
                "stage %s: could not send the error marker of %s", self.plan.name, record[:3]
            )
            self._fatal(failure)
            return False
        return True

    async def letter(self, record: InRecord, exc: Exception, ancestry: Ancestry | None) -> bool:
        """Write ``record``'s dead letter alone; False (and the worker stops) if that failed.

        Alone, it is an aggregate's own failure, whose ERROR marker is its result.
        """
        self.stats.dead_letters += 1
        try:
            letter = dead_letter(
                record,
                exc,
                ancestry,
                stage=self.plan.name,
                topic=self.plan.dead_letter_topic,
                codec=self.codec,
                limit=self.max_record_bytes,
            )
            await self.writer.write(record.tp, [letter])
        except Exception as failure:
            log.exception("stage %s: could not dead-letter %s", self.plan.name, record[:3])
            self._fatal(failure)
            return False
        return True

    async def _error_marker(self, record: InRecord, marker: Envelope) -> None:
        """Send ``marker`` on in place of ``record``; an aggregate counts it itself.

        An aggregate's output is one level up from its input: a marker for one
        of its input records belongs in its own tracker (the ancestor completes
        with an error child), not downstream, where it would be too deep.
        """
        if self.aggregate is None:
            await self.writer.write(record.tp, self.writer.outputs(marker))
            return
        _, headers = self.codec.encode(marker)
        try:
            await self.aggregate(record._replace(value=None, headers=headers), marker)
        except AncestryError as exc:  # refused as its record was: the dead letter says it all
            log.info("stage %s: no error marker for %s: %s", self.plan.name, marker.id, exc)

    def ack_failed(self, ack: asyncio.Future[Any], waiting: list[Waiting]) -> list[Waiting]:
        """Records whose outputs were not written: fail them, or stop the worker."""
        error = None if ack.cancelled() else ack.exception()
        if isinstance(error, RecordRejectedError) and all(w.record for w in waiting):
            # The broker refused an output itself (too large for its topic): retrying
            # cannot help, so the record it came from fails instead.
            guilty = self._refused_by(error, waiting)
            for entry in guilty:
                assert entry.record is not None
                self._spawn(self._rejected(entry.record, entry.ancestry, error, entry.book))
            return guilty
        # An output was not written: the record must run again, so its offset
        # never moves; the worker stops and its restart re-reads it.
        failure = TransportError(f"a write was not acknowledged: {error!r}")
        if self._fatal(failure):
            log.error("stage %s: %s", self.plan.name, failure)
        return waiting

    def _refused_by(self, error: RecordRejectedError, waiting: list[Waiting]) -> list[Waiting]:
        """The records among ``waiting`` whose output was refused (all, when unknown).

        An output descends from its record, or is its ancestor (an aggregate's):
        their ancestries share the record's id or the output's.
        """
        refused: list[Ancestry] = []
        for out in error.records:
            try:
                refused.append(self.codec.decode_ancestry(getattr(out, "headers", ())))
            except DecodeError:
                return waiting
        if not refused:
            return waiting
        ids = {ancestry.id for ancestry in refused}
        below = {i for ancestry in refused for i in ancestry.ids}
        return [
            entry
            for entry in waiting
            if entry.ancestry is None
            or entry.ancestry.id in below  # the output is the record's, or its child
            or not ids.isdisjoint(entry.ancestry.ids)  # the output is an ancestor's
        ]

    async def _rejected(
        self, record: InRecord, ancestry: Ancestry | None, error: Exception, book: OffsetBook
    ) -> None:
        """A record whose output the broker refused: its dead letter and an ERROR marker."""
        source = Source(record.offset)
        SOURCE.set(source)  # a task of its own: no reset needed
        if await self.failed(record, error, ancestry):
            self.acks.done_when_acked(record.offset, book, source.acks)

    async def undecodable(
        self, record: InRecord, exc: DecodeError, ancestry: Ancestry | None, book: OffsetBook
    ) -> None:
        """A record that cannot be decoded: its dead letter (and a marker, if it has a path)."""
        if not await self._still_owned(record.tp, book):
            return
        self.stats.consumed += 1
        source = Source(record.offset)
        SOURCE.set(source)  # a task of its own: no reset needed
        if await self.failed(record, exc, ancestry):
            self.acks.done_when_acked(record.offset, book, source.acks, record, ancestry)

    def ancestry_of(self, record: InRecord) -> Ancestry | None:
        """The ancestry of a record whose value could not be decoded, if it can be read."""
        try:
            return self.codec.decode_ancestry(record.headers)
        except DecodeError:
            return None
