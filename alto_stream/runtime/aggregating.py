"""An aggregate stage's side of a worker: its trackers, firing and time-outs.

Each fragment an aggregate accepts is counted by its partition's tracker and
written to the changelog; once an ancestor is complete (or times out) the
aggregate fires on it, its result is written, then its ``fired`` entry, once
the result is acknowledged: a fired entry in the changelog with its result
lost (a write retried when the worker died) would never fire again. The
writes go through the worker's own (delivery mode, acknowledgements), handed
in as callbacks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from alto_stream.aggregate import Completed, Outcome, Tracker
from alto_stream.ancestry import Ancestry
from alto_stream.app import StagePlan
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime import failures
from alto_stream.runtime.stages import Processor
from alto_stream.runtime.state import AggregateState, Unreadable
from alto_stream.transport import InRecord, OutRecord, Partition, Transport

__all__ = ["Aggregating"]

log = logging.getLogger(__name__)

Write = Callable[[Partition, Sequence[OutRecord]], Awaitable[None]]
"""Writes records for an input partition (the worker's ``_write``)."""


class _Counters(Protocol):
    errors: int
    fired: int


class Aggregating:
    """The trackers of an aggregate stage's partitions, and what fires on them.

    ``write``, ``emit`` and ``forward`` write as the worker does; ``settle``
    waits for the acknowledgement of what the record being handled wrote so far
    (False: a write failed); ``failed`` dead-letters a record (its failure path);
    ``letter`` writes a dead letter alone (the aggregate's own failure);
    ``no_record`` brackets writes of no one input record (time-outs),
    acknowledged at its exit.
    """

    def __init__(
        self,
        plan: StagePlan,
        processor: Processor,
        codec: MessageCodec,
        stats: _Counters,
        *,
        max_children: int,
        fired_retention: float = 7 * 24 * 3600.0,
        write: Write,
        emit: Callable[[Partition, Envelope], Awaitable[None]],
        forward: Callable[[InRecord, Envelope], Awaitable[None]],
        failed: Callable[[InRecord, Exception, Ancestry | None], Awaitable[bool]],
        letter: Callable[[InRecord, Exception, Ancestry | None], Awaitable[bool]],
        no_record: Callable[[], AbstractAsyncContextManager[None]],
        settle: Callable[[], Awaitable[bool]],
        transactional: bool = False,
    ) -> None:
        assert plan.changelog_topic is not None
        self.plan = plan
        self.processor = processor
        self.stats = stats
        self.max_children = max_children
        self.fired_retention = fired_retention
        self.state = AggregateState(plan.changelog_topic, self._new_tracker, codec)
        self._write = write
        self._emit = emit
        self._forward = forward
        self._failed = failed
        self._letter = letter
        self._no_record = no_record
        self._settle = settle
        self._transactional = transactional

    def _new_tracker(self) -> Tracker:
        assert self.plan.aggregate_depth is not None
        return Tracker(
            self.plan.aggregate_depth,
            self.plan.depth_in,
            max_count=self.max_children,
            fired_retention=self.fired_retention,
        )

    async def add(self, record: InRecord, envelope: Envelope) -> None:
        """Count ``record`` at its ancestor: forward it, keep it, or fire the ancestor."""
        state = self.state
        result = state.tracker(record.partition).add(envelope.ancestry, envelope)
        if result.outcome is Outcome.FORWARD:
            await self._forward(record, envelope)
            if result.ancestor_id is not None:  # the ancestor's own marker ended it
                # Remembered in the changelog too, and the children it had dropped: a
                # restart would otherwise restore them, and time them out.
                await self._remember(record.tp, result.ancestor_id)
            return
        if result.outcome is not Outcome.ACCEPTED:
            return
        assert result.ancestor_id is not None
        await self._write(
            record.tp,
            [
                state.fragment_record(
                    record.partition, result.ancestor_id, record, envelope.ancestry
                )
            ],
        )
        if result.completed is not None:
            await self.fire(record.tp, result.completed)

    async def fire(
        self,
        tp: Partition,
        completed: Completed,
        fired: list[tuple[Partition, list[OutRecord]]] | None = None,
    ) -> None:
        """Run the aggregate on ``completed``, write its result, then its ``fired`` entry.

        With ``fired`` given, the changelog writes go there instead, for the
        caller to write once the results are acknowledged.
        """
        ancestor_id = completed.ancestor.id
        try:
            await self.processor.fire(completed, lambda out: self._emit(tp, out))
        except Exception as exc:
            reason = failures.reason_of(exc)
            log.warning(
                "aggregate %s failed on %s: %s%s",
                self.plan.name,
                ancestor_id,
                reason,
                failures.where(exc),
            )
            log.debug("aggregate %s: the failure's traceback", self.plan.name, exc_info=exc)
            self.stats.errors += 1
            marker = self.processor.error_marker(
                completed.ancestor, failures.reason_of(exc, self.plan.name)
            )
            # No record failed: the letter stands for the ancestor (its id as key, no offset).
            stand_in = InRecord(
                tp[0], tp[1], failures.NO_RECORD, ancestor_id.encode(), None, (), time.time()
            )
            try:
                await self._emit(tp, marker)
            except failures.OutputTooLargeError as too_large:
                # Not even the marker fits (an ancestry of most of a megabyte): say so
                # in the dead letters, naming the ancestor, rather than stop the worker.
                await self._failed(stand_in, too_large, None)
            else:
                await self._letter(stand_in, exc, completed.ancestor)
        self.stats.fired += 1
        if fired is not None:
            fired.append((tp, self.state.fired_records(tp[1], ancestor_id)))
        else:
            await self._remember(tp, ancestor_id)

    async def _remember(self, tp: Partition, ancestor_id: str) -> None:
        """Once its result is acknowledged, write the ancestor's fired entry and tombstones."""
        records = self.state.fired_records(tp[1], ancestor_id)
        if await self._settle():
            await self._write(tp, records)
        else:  # the result was not written: the worker stops, the record runs again
            log.warning("aggregate %s: %s's result was not written", self.plan.name, ancestor_id)

    async def expire(self) -> None:
        """Fire the ancestors past their time-out: all results, then all fired entries.

        Each phase is handed to the producer at once and acknowledged together:
        waiting for each write in turn held the loop for seconds when hundreds
        of (bogus) ancestors expired at once, and valid queries timed out behind it.
        In the transactional mode, where nothing waits for an acknowledgement,
        each ancestor's fired entry follows its result at once, before the loop
        runs on: a round of transactions committing between the two phases (while
        a handler awaited) made a result durable without its fired entry, and a
        fenced worker's successor fired the ancestor again (a new user saw a
        time-out's final twice).
        """
        timeout = self.plan.stage.timeout
        fired: list[tuple[Partition, list[OutRecord]]] = []
        later = None if self._transactional else fired
        async with self._no_record():
            for partition, state in list(self.state.partitions.items()):
                if timeout is not None:
                    for completed in state.tracker.expire(timeout):
                        await self.fire((self.plan.input_topic, partition), completed, later)
                forgotten = state.tracker.forget_fired()
                if forgotten:
                    tombstones = self.state.forgotten_records(partition, forgotten)
                    fired.append(((self.plan.input_topic, partition), tombstones))
        if fired:
            async with self._no_record():
                for tp, records in fired:
                    await self._write(tp, records)

    async def restore(self, transport: Transport, tp: Partition) -> None:
        """Replay ``tp``'s changelog into a fresh tracker; fire what it completes."""
        for completed in await self.state.restore(transport, tp[1]):
            await self.fire(tp, completed)
        for completed in await self._repair(tp, self.state.take_unreadable(tp[1])):
            await self.fire(tp, completed)
        orphans = self.state.orphan_records(tp[1])
        if orphans:
            await self._write(tp, orphans)

    async def _repair(self, tp: Partition, unreadable: list[Unreadable]) -> list[Completed]:
        """Dead-letter the changelog records a restore could not read, and clear them.

        Each one's key gets a tombstone (the next restore does not meet it again);
        one whose ancestry could be read stands in its ancestor's tracker as an
        ERROR marker, written to the changelog in its place, so that its query
        completes with the error, as for a record that fails on the input.
        Returns the ancestors that completes.
        """
        if not unreadable:
            return []
        log.warning(
            "aggregate %s: %d records of %s[%d] could not be read (the first: %s): each "
            "to the dead letters, and out of the changelog",
            self.plan.name,
            len(unreadable),
            self.state.changelog_topic,
            tp[1],
            failures.reason_of(unreadable[0].error),
        )
        tracker = self.state.tracker(tp[1])
        writes: list[OutRecord] = []
        completed: list[Completed] = []
        for item in unreadable:
            await self._letter(item.record, item.error, item.ancestry)
            writes.append(
                OutRecord(self.state.changelog_topic, None, (), item.record.key, partition=tp[1])
            )
            if item.ancestry is None or item.ancestry.kind.is_marker:
                continue
            marker = failures.error_ancestry(
                item.ancestry, failures.reason_of(item.error, self.plan.name)
            )
            try:
                result = tracker.add(marker, Envelope(marker, None, None, self.plan.name))
            except Exception:  # a marker the tracker refuses too: the dead letter says it
                continue
            if result.outcome is Outcome.ACCEPTED and result.ancestor_id is not None:
                stand_in = InRecord(
                    tp[0], tp[1], failures.NO_RECORD, None, b"", self._marker_headers(marker), 0.0
                )
                writes.append(
                    self.state.fragment_record(tp[1], result.ancestor_id, stand_in, marker)
                )
                if result.completed is not None:
                    completed.append(result.completed)
        await self._write(tp, writes)
        return completed

    def _marker_headers(self, marker: Ancestry) -> list[tuple[str, bytes]]:
        return list(self.state.codec.encode(Envelope(marker, None, None, self.plan.name))[1])

    def drop(self, tp: Partition) -> None:
        """Forget a revoked partition's tracker (its next owner restores it)."""
        self.state.drop(tp[1])
