"""Reading any topic, decoded: records with their ancestry, for tail, replay and trace.

Every alto-stream record names its schema and carries its ancestry in headers,
so no app is needed to decode it. A record that cannot be decoded is kept with
the error instead of stopping the read.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from alto_stream.errors import ConfigError, DecodeError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.state import FIRED_HEADER, key_ancestor
from alto_stream.transport import InRecord, Reader

__all__ = ["DecodedRecord", "OpsReader", "ReadWindow", "decode_record", "jsonable", "read_records"]


_CHANGELOG = ".changelog"
"""How an aggregate's changelog topic's name ends (see :mod:`alto_stream.topology`)."""


class OpsReader(Protocol):
    """What the tools read with: :class:`~alto_stream.runtime.kafka.KafkaOps` or ``MemoryOps``."""

    def reader(
        self,
        topics: Sequence[str],
        *,
        partitions: Sequence[int] | None = None,
        offset: int | None = None,
        start_time: float | None = None,
        from_end: bool = False,
    ) -> Reader:
        """A reader positioned at the beginning, the end, an offset or a time."""


@dataclass(frozen=True)
class DecodedRecord:
    """A record as read (topic, partition, offset, time) and, when decodable, its envelope."""

    record: InRecord
    envelope: Envelope | None
    error: str | None = None
    entry: str | None = None
    """What an aggregate's changelog entry with no envelope is (a fired entry, a tombstone)."""

    @property
    def query_id(self) -> str | None:
        """The root query's id (None when undecodable)."""
        return self.envelope.ancestry.query_id if self.envelope is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: where the record lies, its ancestry and its value."""
        r = self.record
        out: dict[str, Any] = {
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": jsonable(r.key),
        }
        if self.envelope is None:
            if self.entry is not None:
                out["changelog"] = self.entry
            else:
                out["error"] = self.error
            return out
        a = self.envelope.ancestry
        out.update(
            query_id=a.query_id,
            id=a.id,
            parent_id=a.parent_id,
            depth=a.depth,
            index=list(a.index),
            count=a.path[-1].count if a.path else None,
            kind=a.kind.value,
            stage=self.envelope.stage,
            schema=self.envelope.schema,
            value=jsonable(self.envelope.value),
            reason=a.reason,
            replay_of=a.replay_of,
            query_time=a.query_time,
        )
        return out


def jsonable(value: Any) -> Any:
    """``value`` with bytes turned into ``"base64:..."`` strings, recursively."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def decode_record(codec: MessageCodec, record: InRecord) -> DecodedRecord:
    """Decode ``record`` with the writer's schema; the error is kept when it fails."""
    try:
        envelope = codec.decode(
            record.value,
            record.headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
    except DecodeError as exc:
        if record.topic.endswith(_CHANGELOG):
            return _changelog_entry(codec, record) or DecodedRecord(record, None, str(exc))
        return DecodedRecord(record, None, str(exc))
    return DecodedRecord(record, envelope)


def _changelog_entry(codec: MessageCodec, record: InRecord) -> DecodedRecord | None:
    """An aggregate's changelog entry that is no stage's record, as what it is.

    A kept marker is stored with an empty value (None would be a tombstone); a
    fired entry has no ancestry; a tombstone has neither value nor headers.
    """
    if any(key == FIRED_HEADER for key, _ in record.headers):
        ancestor = key_ancestor((record.key or b"").decode("utf-8", "replace"))[0]
        return DecodedRecord(record, None, entry=f"fired: ancestor {ancestor} fired")
    if record.value is None and not record.headers:
        key = (record.key or b"").decode("utf-8", "replace")
        return DecodedRecord(record, None, entry=f"tombstone of {key}")
    if record.value == b"":
        try:
            envelope = codec.decode(None, record.headers, topic=record.topic)
        except DecodeError:
            return None
        return DecodedRecord(record, envelope) if envelope.kind.is_marker else None
    return None


@dataclass(frozen=True)
class ReadWindow:
    """Where a read starts and stops, and which records it keeps.

    Start: the beginning (default), the end (``from_end``), ``offset`` (negative:
    back from each partition's end) or ``start_time``. Stop: ``to_offset``
    (exclusive, per partition) and ``to_time`` bound what is kept; ``follow``
    keeps waiting for new records after the end; ``limit`` and ``duration``
    (seconds) end the read early.
    """

    from_end: bool = False
    offset: int | None = None
    start_time: float | None = None
    to_offset: int | None = None
    to_time: float | None = None
    partitions: tuple[int, ...] | None = None
    query_id: str | frozenset[str] | None = None
    """Keep only the records of this query, or of these queries."""
    limit: int | None = None
    follow: bool = False
    duration: float | None = None

    def __post_init__(self) -> None:
        starts = [self.from_end, self.offset is not None, self.start_time is not None]
        if sum(starts) > 1:
            raise ConfigError(
                "choose one start: the beginning, the end, an offset or a time; got several"
            )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"the record limit must be >= 1, got {self.limit}")

    def keeps(self, record: InRecord) -> bool:
        """True when ``record`` lies inside the window's upper bounds."""
        if self.to_offset is not None and record.offset >= self.to_offset:
            return False
        return self.to_time is None or record.timestamp <= self.to_time


async def read_records(
    ops: OpsReader, topics: Sequence[str], window: ReadWindow, codec: MessageCodec | None = None
) -> AsyncIterator[DecodedRecord]:
    """Yield the decoded records of ``topics`` inside ``window``, in fetch order."""
    codec = codec or MessageCodec()
    reader = ops.reader(
        topics,
        partitions=window.partitions,
        offset=window.offset,
        start_time=window.start_time,
        from_end=window.from_end,
    )
    await reader.start()
    deadline = None if window.duration is None else time.monotonic() + window.duration
    kept = 0
    query = window.query_id
    wanted = frozenset([query]) if isinstance(query, str) else query
    try:
        while True:
            if not window.follow and await reader.end_reached():
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            for record in await reader.fetch(0.2, 500):
                if not window.keeps(record):
                    continue
                if wanted is not None and not _about(codec, record, wanted):
                    continue
                yield decode_record(codec, record)
                kept += 1
                if window.limit is not None and kept >= window.limit:
                    return
            await asyncio.sleep(0)
    finally:
        await reader.stop()


def _about(codec: MessageCodec, record: InRecord, query_ids: frozenset[str]) -> bool:
    """Cheap filter: only the ancestry header is read."""
    try:
        return codec.decode_ancestry(record.headers).query_id in query_ids
    except DecodeError:
        return False
