"""The partitions a worker owns: when each is ready, its offset book, the commits of what is done.

A partition is owned from its assignment to its revocation, and ready once
taken over (state restored, what its last commit said read back). Its
:class:`~alto_stream.runtime.offsets.OffsetBook` says which offset may be
committed; the commits here go to the consumer group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from alto_stream.errors import TransportError
from alto_stream.runtime.offsets import CommitPoint, OffsetBook
from alto_stream.transport import Consumer, Partition

__all__ = ["Ownership"]

log = logging.getLogger(__name__)

_MARKERS_AGAIN = 1.0
"""Seconds between two at-rest reads of every partition's position (see ``skip_markers``)."""


class Ownership:
    """The partitions one worker owns, their offset books, and the group commits of them."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.books: dict[Partition, OffsetBook] = {}
        # The partitions this worker owns, each with an event set once it is ready.
        self.owned: dict[Partition, asyncio.Event] = {}
        self.markers_checked = 0.0  # when every book's position was last asked again

    async def still_owned(self, tp: Partition, book: OffsetBook) -> bool:
        """Wait until ``tp`` is ready; False if it was revoked meanwhile (perhaps re-assigned)."""
        # aiokafka may hand out records of a new assignment while its callback
        # (state restore, transactional producer) still runs: wait for it.
        ready = self.owned.get(tp)
        if ready is not None and not ready.is_set():
            await ready.wait()
        return ready is not None and self.owned.get(tp) is ready and self.books.get(tp) is book

    async def commit(self, consumer: Consumer | None) -> None:
        offsets = {}
        for tp, book in list(self.books.items()):
            ready = self.owned.get(tp)
            if ready is None:
                del self.books[tp]  # revoked: its new owner commits it
                continue
            if not ready.is_set():
                continue  # being taken over: what its last commit said is not read yet
            target = book.to_commit()
            if target is not None:
                offsets[tp] = target
        if await self.commit_offsets(consumer, offsets):
            for tp, target in offsets.items():
                if tp in self.books:
                    self.books[tp].committed = target

    async def commit_offsets(
        self, consumer: Consumer | None, points: dict[Partition, CommitPoint]
    ) -> bool:
        """Commit ``points`` for the group; False when there were none or a rebalance refused."""
        assert consumer is not None
        if not points:
            return False
        try:
            await consumer.commit(
                {tp: point.offset for tp, point in points.items()},
                metadata={tp: point.metadata for tp, point in points.items()},
            )
        except TransportError as exc:
            if not exc.retriable:
                raise
            # aiokafka's CommitFailedError text spans lines: one line here.
            why = " ".join(str(exc).split())
            log.warning("stage %s: commit skipped during a rebalance: %s", self.stage, why)
            return False
        return True

    async def skip_markers(self, consumer: Consumer | None, *, again: bool = False) -> None:
        """At rest, let each partition's book move past the markers its consumer skipped.

        Every record fetched has been handed to its book by now, so what lies
        between one past the last record and the consumer's position was
        skipped (transaction markers, aborted records), and may be committed
        past. A book's position is asked once after each record (a cheap local
        call), and again every :data:`_MARKERS_AGAIN` seconds, or now when
        ``again``: markers may come in a later fetch than their records (a
        zombie's aborted records come whenever it wrote them). A partition
        taken over with nothing left to handle (its previous owner committed
        one past its last record) gets a book here, at its position, so that
        it too is committed past its markers.
        """
        assert consumer is not None
        now = time.monotonic()
        if now - self.markers_checked >= _MARKERS_AGAIN:
            again = True
        if again:
            self.markers_checked = now
        for tp, ready in list(self.owned.items()):
            book = self.books.get(tp)
            if not ready.is_set():
                continue
            if book is not None:
                if book.pending or (book.position_checked and not again):
                    continue
                book.position_checked = True
            position = await consumer.position(tp)
            if position is None or self.owned.get(tp) is not ready:
                continue  # not known yet, or revoked meanwhile
            if book is None and tp not in self.books:
                # Committed once: whether the group's offset is there already is not known.
                self.books[tp] = OffsetBook(next_offset=position, position_checked=True)
            elif book is not None and self.books.get(tp) is book:
                book.skip_to(position)

    async def resume_books(self, consumer: Consumer | None, partitions: set[Partition]) -> None:
        """Read what the previous owners' last commits say was done above their offsets."""
        assert consumer is not None
        committed = await consumer.committed(partitions)
        for tp in partitions:
            resumed = OffsetBook.resuming(*committed.get(tp, (None, "")))
            book = self.books.get(tp)
            if book is None:
                if resumed.done_before is not None:
                    # The consumer reads on from where aiokafka set it, not from a seek:
                    # no floor from this read (see OffsetBook.fetched_before).
                    self.books[tp] = dataclasses.replace(resumed, next_offset=None)
            else:  # records fetched meanwhile (the loop skips those done in Worker._handle)
                book.done_before = resumed.done_before

    def log_resumed(self, partitions: set[Partition]) -> None:
        for tp in sorted(partitions):
            book = self.books.get(tp)
            if book is not None and (done := book.done_before) is not None:
                log.info(
                    "stage %s: %s[%d] resumes at offset %d; %d records above it, done "
                    "before, are not run again",
                    self.stage,
                    tp[0],
                    tp[1],
                    min(done.pending),
                    done.end - min(done.pending) - len(done.pending),
                )
