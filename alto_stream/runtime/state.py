"""An aggregator's state: one completeness tracker per partition, backed by a changelog.

Every accepted fragment is written to the changelog topic (compacted,
co-partitioned with the aggregator's input: partition p of the input keeps its
state in partition p of the changelog) under the key ``ancestor|record|kind``,
as the original record's bytes and headers. When an ancestor fires, a ``fired``
entry is written and every fragment key gets a tombstone. A worker that is
assigned a partition replays that changelog partition into a fresh tracker
before processing: the state is exactly what the previous owner had made
durable, and ancestors that fired are remembered so late fragments are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alto_stream.aggregate import Completed, Tracker
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.transport import InRecord, OutRecord, Transport

__all__ = ["FIRED_HEADER", "AggregateState", "PartitionState", "Unreadable", "key_ancestor"]

log = logging.getLogger(__name__)

FIRED_HEADER = "alto.fired"
_FIRED = "fired"


def fragment_key(ancestor_id: str, ancestry: Ancestry) -> str:
    """The changelog key of one fragment of an ancestor."""
    return f"{ancestor_id}|{ancestry.id}|{ancestry.kind.value}"


def key_ancestor(key: str) -> tuple[str, bool]:
    """The ancestor id a changelog key is about, and whether it is its ``fired`` entry.

    Read from the right: an ancestor that is a query may have any id, ``|``
    included (a fragment's own id is a hash, its kind a word). Read from the left,
    the fired entry of query ``x|y`` was taken for a fragment of ``x`` and the
    stage failed at every restore.
    """
    head, _, last = key.rpartition("|")
    if last == _FIRED:
        return head, True
    return head.rpartition("|")[0], False


_YIELD_EVERY = 1000
"""A restore lets the event loop run (heartbeats, fetches) after this many records."""


@dataclass(frozen=True)
class Unreadable:
    """A changelog record a restore could not read, and why."""

    record: InRecord
    error: Exception
    ancestry: Ancestry | None
    """Its ancestry, when its headers hold a readable one (its value did not read)."""


@dataclass
class PartitionState:
    """The state of one input partition: its tracker and the changelog keys per ancestor."""

    tracker: Tracker
    keys: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class AggregateState:
    """Trackers for the partitions a worker holds, restored from and written to the changelog."""

    changelog_topic: str
    make_tracker: Callable[[], Tracker]
    codec: MessageCodec
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    _unreadable: dict[int, list[Unreadable]] = field(default_factory=dict, init=False, repr=False)

    def tracker(self, partition: int) -> Tracker:
        """The tracker of ``partition`` (created empty if the partition was not restored)."""
        return self._state(partition).tracker

    def _state(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = PartitionState(self.make_tracker())
        return state

    def drop(self, partition: int) -> None:
        """Forget a partition's state (it was revoked; its changelog keeps it)."""
        self.partitions.pop(partition, None)

    async def restore(self, transport: Transport, partition: int) -> list[Completed]:
        """Rebuild ``partition``'s state from its changelog.

        Returns ancestors that turn out complete (the previous owner died between
        their last fragment and firing): the caller fires them again, and
        downstream deduplicates by id. A record that cannot be read (a key or
        headers that are not alto-stream's, a value its schema cannot read) is
        left out and kept for :meth:`take_unreadable`: before 2026-12-03 one such
        record stopped every worker that took the partition over, for ever. The
        loop yields every :data:`_YIELD_EVERY` records: a changelog of 100,000
        fragments held it for 10-15 s, past the session timeout, and the
        partition moved on before its restore could end.
        """
        started = time.perf_counter()
        log.info("restoring %s[%d]: reading the changelog", self.changelog_topic, partition)
        latest: dict[bytes, InRecord] = {}
        records = await transport.read_partition(self.changelog_topic, partition)
        for record in records:
            if record.key is not None:
                latest[record.key] = record
        state = self.partitions[partition] = PartitionState(self.make_tracker())
        unreadable = self._unreadable[partition] = []
        completed: list[Completed] = []
        fragments = 0
        for n, (raw, record) in enumerate(latest.items()):
            if n % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
            try:
                key = raw.decode()
                ancestor_id, fired = key_ancestor(key)
                if record.value is None and not _has_header(record, FIRED_HEADER):
                    continue  # tombstone
                if fired:
                    state.tracker.mark_fired(ancestor_id, _fired_at(record))
                    continue
                envelope = self._decode(record)
                result = state.tracker.add(envelope.ancestry, envelope)
            except Exception as exc:
                unreadable.append(Unreadable(record, exc, self._ancestry(record)))
                continue
            state.keys.setdefault(ancestor_id, []).append(key)
            fragments += 1
            if result.completed is not None:
                completed.append(result.completed)
        log.info(
            "restored %s[%d]: %d records read, %d fragments, %d pending ancestors, "
            "%d unreadable in %.3f s",
            self.changelog_topic,
            partition,
            len(records),
            fragments,
            len(state.tracker),
            len(unreadable),
            time.perf_counter() - started,
        )
        return completed

    def take_unreadable(self, partition: int) -> list[Unreadable]:
        """The records the last restore of ``partition`` could not read (once)."""
        return self._unreadable.pop(partition, [])

    def _ancestry(self, record: InRecord) -> Ancestry | None:
        """The record's ancestry, when its headers hold a readable one."""
        try:
            return self.codec.decode_ancestry(
                record.headers,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        except Exception:
            return None

    def _decode(self, record: InRecord) -> Envelope:
        ancestry = self.codec.decode_ancestry(
            record.headers, topic=record.topic, partition=record.partition, offset=record.offset
        )
        value = record.value if not ancestry.kind.is_marker else None
        return self.codec.decode(
            value,
            record.headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    def fragment_record(
        self, partition: int, ancestor_id: str, source: InRecord, ancestry: Ancestry
    ) -> OutRecord:
        """The changelog write for an accepted fragment (remembered for its tombstone)."""
        key = fragment_key(ancestor_id, ancestry)
        self._state(partition).keys.setdefault(ancestor_id, []).append(key)
        # Markers have no payload, but a None value would be a tombstone here.
        value = source.value if source.value is not None else b""
        return OutRecord(
            self.changelog_topic, value, source.headers, key.encode(), partition=partition
        )

    def fired_records(self, partition: int, ancestor_id: str) -> list[OutRecord]:
        """The changelog writes once an ancestor fired: a fired entry, then tombstones."""
        keys = self._state(partition).keys.pop(ancestor_id, [])
        fired = OutRecord(
            self.changelog_topic,
            b"",
            [(FIRED_HEADER, repr(time.time()).encode())],
            f"{ancestor_id}|{_FIRED}".encode(),
            partition=partition,
        )
        tombstones = [
            OutRecord(self.changelog_topic, None, (), key.encode(), partition=partition)
            for key in keys
        ]
        return [fired, *tombstones]

    def forgotten_records(self, partition: int, ancestor_ids: list[str]) -> list[OutRecord]:
        """Tombstones of the fired entries of ancestors whose memory has expired.

        Without them compaction kept one fired entry per ancestor that ever fired,
        and every restore read them all (166,110 records after 8,000 queries).
        """
        return [
            OutRecord(
                self.changelog_topic, None, (), f"{aid}|{_FIRED}".encode(), partition=partition
            )
            for aid in ancestor_ids
        ]

    def orphan_records(self, partition: int) -> list[OutRecord]:
        """Tombstones of restored fragments whose ancestor had fired.

        The previous owner died between the fired entry and these tombstones.
        """
        state = self._state(partition)
        orphans = [aid for aid in state.keys if state.tracker.is_fired(aid)]
        return [
            OutRecord(self.changelog_topic, None, (), key.encode(), partition=partition)
            for aid in orphans
            for key in state.keys.pop(aid)
        ]


def _has_header(record: InRecord, name: str) -> bool:
    return any(key == name for key, _ in record.headers)


def _fired_at(record: InRecord) -> float | None:
    for key, value in record.headers:
        if key == FIRED_HEADER:
            try:
                return float(value.decode())
            except ValueError:
                return None
    return None
