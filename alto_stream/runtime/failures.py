"""What a worker writes for a record it could not process: a dead letter and a marker.

Nothing here may fail on a bad record: a dead letter is built from whatever
the record holds (a marker's ancestry, no ancestry at all, megabytes of
garbage) and always fits within the size limit, cut down if it must be, with
the cut said in its error text. The marker that flows on in the record's place
is an ERROR marker with the record's path, so that whoever counts the record's
siblings still completes; an END marker's stands for the split it ended (its
parent), since an error can hold no count.

:class:`RecordFailures` is a worker's per-record failure paths: a record its
handler failed on, one that cannot be decoded, and one whose output the broker
refused all end as a dead letter and a marker; an output not written at all
stops the worker instead (its record must run again).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sysconfig
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

from alto_stream.ancestry import Ancestry, Kind
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
]

log = logging.getLogger(__name__)

REASON_LIMIT = 1000
"""The most characters of an error kept in a marker's reason (it rides in a header)."""

NO_RECORD = -1
"""The offset in an aggregate's dead letter: it stands for an ancestor, no one input record."""

_LETTER_ROOM = 4096
"""Bytes kept free in a dead letter for its own fields, headers and error text."""


class OutputTooLargeError(StageError):
    """An output larger than the worker may write (``WorkerOptions.max_record_bytes``)."""


_NOT_THE_APP = tuple(
    os.path.normpath(path) + os.sep
    for path in {
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # alto_stream
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
    }
)


def where(exc: BaseException) -> str:
    """`` (at FILE:LINE in NAME)``: the app's innermost frame of ``exc``'s traceback, or "".

    What a log line of a handler's failure needs to be acted on (a handler's
    ``KeyError`` named neither its file nor its line, even with ``-v``).
    """
    error: BaseException | None = exc
    for _ in range(8):  # the chain: a time-out's handler frame is in its context
        if error is None:
            break
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            path = os.path.normpath(os.path.abspath(frame.filename))
            if frame.filename.startswith("<") or path.startswith(_NOT_THE_APP):
                continue
            return f" (at {frame.filename}:{frame.lineno} in {frame.name})"
        error = error.__cause__ or error.__context__
    return ""


def reason_of(exc: BaseException, stage: str | None = None) -> str:
    """The error as a marker's reason: type and message, at most :data:`REASON_LIMIT` chars.

    With ``stage``, the stage it happened in comes first (``stage score: ValueError: ...``):
    the marker flows on through later stages, each writing it under its own name, and a
    reader of the final result should still see where the query failed.
    """
    text = f"{type(exc).__name__}: {exc}"
    if stage is not None:
        text = f"stage {stage}: {text}"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def error_ancestry(ancestry: Ancestry, reason: str, *, now: float | None = None) -> Ancestry:
    """The ERROR marker that stands for a failed record of ``ancestry``.

    Same path; a failed END marker is replaced by an error about the record
    whose split it ended (a root END marker, which no stage writes, by an error
    about its query). A query time that is no time (NaN, infinite) becomes
    ``now`` (the record's timestamp; by default the current time).
    """
    if ancestry.kind is Kind.END and ancestry.path:
        ancestry = ancestry.prefix(ancestry.depth - 1)
    return Ancestry.from_fields(
        ancestry.query_id,
        _a_time(ancestry.query_time, time.time() if now is None else now),
        ancestry.path,
        Kind.ERROR,
        reason,
        ancestry.replay_of,
    )


def _letter_ancestry(ancestry: Ancestry | None, record: InRecord) -> Ancestry:
    """The ancestry a dead letter carries: the record's own as DATA (a letter has a value).

    A query time that is no time becomes the record's timestamp, so that the
    letter itself can be read (and replayed).
    """
    if ancestry is None:
        return Ancestry.root(
            f"undecodable-{record.topic}-{record.partition}-{record.offset}",
            query_time=record.timestamp,
        )
    if ancestry.kind is Kind.DATA and math.isfinite(ancestry.query_time):
        return ancestry
    query_time = _a_time(ancestry.query_time, record.timestamp)
    return Ancestry.from_fields(
        ancestry.query_id, query_time, ancestry.path, Kind.DATA, None, ancestry.replay_of
    )


def _a_time(query_time: float, fallback: float) -> float:
    """``query_time``, or ``fallback`` when it is no time (NaN, infinite: written by hand)."""
    return query_time if math.isfinite(query_time) else fallback


def dead_letter(
    record: InRecord,
    exc: BaseException,
    ancestry: Ancestry | None,
    *,
    stage: str,
    topic: str,
    codec: MessageCodec,
    limit: int,
) -> OutRecord:
    """The dead letter of ``record`` on ``topic``: at most ``limit`` bytes, whatever came.

    The original value and headers are kept whole when they fit, else cut to
    fit (the error text says how much was cut); an ancestry header too large to
    carry is replaced by a stand-in root.
    """
    text = str(exc)
    # As the marker's reason and the log say it (a repr before: ValueError('...')).
    error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(error) > REASON_LIMIT * 4:
        error = error[: REASON_LIMIT * 4] + "..."
    room = max(0, limit - _LETTER_ROOM)
    origin = _letter_ancestry(ancestry, record)
    if len(codec.encode_ancestry(origin)) > room // 2:
        origin = _letter_ancestry(None, record)
    room -= len(codec.encode_ancestry(origin))
    headers, cut_headers = _fit_headers(record.headers, room // 2)
    room -= sum(len(h["key"]) + len(h["value"] or b"") for h in headers)
    value, key = record.value, record.key
    cut = []
    if key is not None and len(key) > 256:
        key = key[:256]
        cut.append(f"key cut from {len(record.key or b'')} bytes to 256")
    if value is not None and len(value) > room:
        value = value[: max(0, room)]
        cut.append(f"value cut from {len(record.value or b'')} bytes to {len(value)}")
    if cut_headers:
        cut.append(f"{cut_headers} header(s) left out")
    if cut:
        error += f" [dead letter truncated to fit {limit} bytes: {'; '.join(cut)}]"
    letter: dict[str, Any] = {
        "stage": stage,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "error": error,
        "error_type": type(exc).__name__,
        "time": time.time(),
        "key": key,
        "value": value,
        "headers": headers,
    }
    data, out_headers = codec.encode(Envelope(origin, letter, "alto.DeadLetter", stage))
    return OutRecord(topic, data, out_headers, key)


def letter_ancestor(letter: Mapping[str, Any]) -> str | None:
    """The ancestor an aggregate's dead letter stands for; None for one record's letter.

    An aggregate that fails on an ancestor (its handler, or a result too large)
    failed on no one record: its letter has offset :data:`NO_RECORD`, the
    ancestor's id as key, and no value or headers.
    """
    if letter.get("offset") != NO_RECORD or letter.get("headers") or letter.get("value"):
        return None
    return bytes(letter.get("key") or b"").decode("utf-8", "replace")


def letter_source(letter: Mapping[str, Any]) -> str:
    """Where a dead letter's record was read (``topic[partition]@offset``), as lines say it.

    An aggregate's letter names the ancestor it stands for instead of an offset.
    """
    where = f"{letter.get('topic')}[{letter.get('partition')}]"
    ancestor = letter_ancestor(letter)
    if ancestor is None:
        return f"{where}@{letter.get('offset')}"
    return (
        f"ancestor {ancestor} as a whole (an aggregate's failure, no one input record of {where})"
    )


def _fit_headers(
    headers: Sequence[tuple[str, bytes | None]], room: int
) -> tuple[list[dict[str, Any]], int]:
    """The record's headers that fit in ``room`` bytes (in order), and how many did not."""
    kept: list[dict[str, Any]] = []
    left_out = 0
    for key, value in headers:
        size = len(key) + len(value or b"")
        if size > room:
            left_out += 1
            continue
        room -= size
        kept.append({"key": str(key), "value": None if value is None else bytes(value)})
    return kept, left_out


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
