"""The transactional delivery mode: outputs and offsets in Kafka transactions.

Outputs, changelog writes and consumed offsets are committed in Kafka
transactions, one per input partition per round, each partition with a
transactional producer of its own (transactional id ``group.topic.partition``,
so a new owner fences the old one). A round commits while the next batches
run, whose outputs go into the next round; readers use read_committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Protocol

from alto_stream.errors import FencedError, TransportError
from alto_stream.runtime.offsets import CommitPoint, OffsetBook
from alto_stream.transport import Consumer, OutRecord, Partition, Producer, Transport

__all__ = ["ROUND", "Transactions"]

log = logging.getLogger(__name__)

ROUND = 1.0
"""Seconds of records a transactional round takes in before it commits (during a backlog)."""


class _Counters(Protocol):
    produced: int
    fenced: int


class Transactions:
    """A worker's transactions: its producers, buffered outputs, locks and rounds.

    ``books``, ``owned`` and ``stopping`` are the worker's own (shared, not
    copied): a fenced partition leaves both, and a taken-over one starts a new book.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        group: str,
        stage: str,
        books: dict[Partition, OffsetBook],
        owned: dict[Partition, asyncio.Event],
        stats: _Counters,
        max_buffered: int,
        stopping: asyncio.Event,
        rejoin: Callable[[], None] = lambda: None,
    ) -> None:
        self.transport = transport
        self.group = group
        self.stage = stage
        self.books = books
        self.owned = owned
        self.stats = stats
        self.max_buffered = max_buffered
        # Outputs per input partition, each with its input record's offset (None:
        # not from one record, such as an expiry).
        self.buffer: dict[Partition, list[tuple[int | None, OutRecord]]] = defaultdict(list)
        self._producers: dict[Partition, Producer] = {}
        self._locks: dict[Partition, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._round: asyncio.Task[None] | None = None  # transactions committing now
        self.stopping = stopping
        self._rejoin = rejoin
        # Partitions that could not commit once the worker was stopping, and why.
        self._uncommitted_at_stop: dict[Partition, TransportError] = {}

    @property
    def committing(self) -> bool:
        """Whether a round of transactions is in flight (or done, not yet awaited)."""
        return self._round is not None

    async def take_over(self, partitions: set[Partition], consumer: Consumer) -> None:
        """Fence the previous owners' producers, then read on from their last commit.

        Starting a partition's transactional producer fences the previous owner's
        and waits until that owner's last transaction is complete (committed or
        aborted); only then are committed offsets certain to include it. What was
        fetched from offsets read before (aiokafka reads them as the assignment
        arrives, without KIP-447's stable-offset wait) is dropped, else the
        inputs of a transaction the previous owner committed would run again:
        the books and buffers go here (each partition's new book knows what its
        last commit said was done above the offset), the caller drops the
        records not started.
        """
        started = time.monotonic()
        for tp in sorted(partitions):
            producer = self.transport.producer(transactional_id=f"{self.group}.{tp[0]}.{tp[1]}")
            await producer.start()
            self._producers[tp] = producer
        # Nothing awaited between the seeks and the new books (nor, in the worker,
        # before it drops the records fetched before): see Consumer.seek_to_committed.
        committed = await consumer.seek_to_committed(partitions)
        log.info(
            "stage %s: took over %d partitions in %.2f s (transactional producers started)",
            self.stage,
            len(partitions),
            time.monotonic() - started,
        )
        for tp in partitions:
            # Records in hand of the old book are skipped; the new one starts with what
            # the last commit says was done above its offset.
            self.books[tp] = OffsetBook.resuming(*committed.get(tp, (None, "")))
            self.buffer.pop(tp, None)

    async def release(self, tp: Partition) -> None:
        """Forget a revoked partition: its outputs (its next owner runs their records again)."""
        self.buffer.pop(tp, None)
        producer = self._producers.pop(tp, None)
        if producer is not None:
            await producer.stop()

    async def close(self) -> None:
        """Stop every partition's producer (one that fails has nothing committed to lose)."""
        for tp, producer in self._producers.items():
            try:
                await producer.stop()
            except TransportError as exc:
                log.warning("stage %s: stopping the producer of %s failed: %s", self.stage, tp, exc)

    async def commit_at_stop(self) -> None:
        """The worker's last commits: the round in flight, then what ran meanwhile.

        Once the worker is stopping, a partition that cannot commit (its producer
        fenced by a newer owner, or failed for good: aiokafka's FATAL_ERROR) loses
        nothing: Kafka aborts its open transaction (when the next owner's producer
        starts, or after the transaction timeout) and the next owner runs those
        records again. So the stop goes on, with one line logged, instead of
        failing the worker.
        """
        uncommitted = self._uncommitted_at_stop
        await self.finish_round()
        # Outputs of records not done stay out: see _split_at.
        await self.commit_all(self.partitions())
        if uncommitted:
            log.warning(
                "stage %s: stopping without committing %s (%s): this worker no longer owns "
                "them; Kafka aborts their open transactions and their next owners run "
                "those records again",
                self.stage,
                ", ".join(f"{t}[{p}]" for t, p in sorted(uncommitted)),
                "; ".join(sorted({str(exc) for exc in uncommitted.values()})),
            )

    async def end_batch(self, *, stopping: bool) -> None:
        """After a batch: start a round with what is done, unless one is committing.

        The commits run in the background while the next batches are fetched
        and processed; what those produce goes into the next round, which starts
        when this one is done (group commit). One round at a time, so a
        partition's transactions keep their order.
        """
        if self._round is not None and not self._round.done():
            buffered = sum(len(outputs) for outputs in self.buffer.values())
            if buffered < self.max_buffered and not stopping:
                return  # the round in flight commits; these outputs go into the next
        await self.finish_round()
        if any(self.buffer.values()) or any(
            book.to_commit() is not None for book in self.books.values()
        ):
            self._round = asyncio.get_running_loop().create_task(self.commit_all(self.partitions()))

    async def finish_round(self) -> None:
        """Wait for the round of transactions in flight (raises its failure)."""
        round_, self._round = self._round, None
        if round_ is not None:
            await round_

    def partitions(self) -> set[Partition]:
        """Partitions with something to commit: records read, or outputs of no record.

        An aggregate's time-out fires on a partition that may have read nothing
        since it was assigned (its state restored from the changelog).
        """
        return set(self.books) | {tp for tp, outputs in self.buffer.items() if outputs}

    async def commit_all(self, partitions: Iterable[Partition]) -> None:
        """Commit each of ``partitions`` (one producer per partition: side by side)."""
        await asyncio.gather(*(self.commit(tp) for tp in partitions))

    async def commit(self, tp: Partition) -> None:
        """Commit ``tp``'s buffered outputs and its safe offset in one transaction."""
        # The loop and a rebalance callback may both commit a partition: one of its
        # transactions at a time, and what to commit is read under its lock, so
        # nothing goes twice.
        async with self._locks[tp]:
            book = self.books.get(tp)
            point = book.point() if book is not None else None
            target = point if book is not None and point != book.committed else None
            records, held = _split_at(self.buffer.pop(tp, []), point)
            if held:
                # Outputs of records not done (or done above what the commit's metadata
                # could name) wait, since whoever reads on from the offset committed
                # (this worker, or the partition's next owner) runs those records again.
                # On a revocation they are dropped.
                self.buffer[tp] = held
            if target is None and not records:
                return
            offsets = {tp: target.offset} if target is not None else {}
            metadata = {tp: target.metadata} if target is not None else {}
            producer = self._producers.get(tp)
            if producer is None:
                # A rebalance took the partition away meanwhile: nothing of this work
                # was committed, so its new owner does it again. Drop it.
                log.warning(
                    "stage %s: %s was revoked before its transaction: %d outputs dropped",
                    self.stage,
                    tp,
                    len(records),
                )
                self.books.pop(tp, None)
                self.buffer.pop(tp, None)
                return
            try:
                await producer.commit_transaction(records, offsets, self.group, metadata=metadata)
            except TransportError as exc:
                if self.stopping.is_set():
                    self._uncommitted_at_stop[tp] = exc
                    await self._fenced(tp, exc, quiet=True)
                    return
                if not isinstance(exc, FencedError):
                    # The transaction may still commit or abort (a broker away): its
                    # outputs are out of the buffer either way, so nothing more of this
                    # partition may commit here, or a later transaction would commit
                    # these records' offsets without them. The worker stops on the error
                    # and the partition's next owner reads on from the last commit.
                    self._uncommitted_at_stop[tp] = exc
                    await self._fenced(tp, exc, quiet=True)
                    raise
                await self._fenced(tp, exc)
                return
            self.stats.produced += len(records)
            if book is not None and target is not None:
                book.committed = target

    async def _fenced(self, tp: Partition, exc: TransportError, *, quiet: bool = False) -> None:
        # A zombie (paused past its session): the partition has a new owner,
        # Kafka aborted this transaction, and the new owner redoes the work. Or
        # Kafka timed the transaction out (a broker away longer than the
        # transaction time-out): then nobody else owns the partition, and the
        # group must hand it out again (to this worker, perhaps): a rejoin,
        # which a zombie would meet at its next heartbeat anyway.
        if not quiet:
            log.warning(
                "stage %s: fenced on %s, dropping it and rejoining the group: %s",
                self.stage,
                tp,
                exc,
            )
            self._rejoin()
        if isinstance(exc, FencedError):
            self.stats.fenced += 1
        self.owned.pop(tp, None)
        self.books.pop(tp, None)
        self.buffer.pop(tp, None)
        fenced = self._producers.pop(tp, None)
        if fenced is not None:
            with contextlib.suppress(Exception):
                await fenced.stop()


def _split_at(
    buffered: list[tuple[int | None, OutRecord]], point: CommitPoint | None
) -> tuple[list[OutRecord], list[tuple[int | None, OutRecord]]]:
    """The outputs to commit with ``point`` (those of records it covers), and those to hold."""
    if point is None:
        return [record for _, record in buffered], []
    ready: list[OutRecord] = []
    held: list[tuple[int | None, OutRecord]] = []
    for offset, record in buffered:
        if offset is None or point.covers(offset):
            ready.append(record)
        else:
            held.append((offset, record))
    return ready, held
