"""A worker's side of a rebalance: taking partitions over when assigned, handing them over.

Taking over makes a partition ready: the transactional producer fences the
previous owner's, or the books read what its last commit said was done; an
aggregate stage's state is restored. Handing over lets the records in hand
finish (or cuts them short at the deadline), commits what is done, and drops
the partition's book, state and producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from alto_stream.runtime.acks import Acknowledgements
from alto_stream.runtime.aggregating import Aggregating
from alto_stream.runtime.options import WorkerStats
from alto_stream.runtime.ownership import Ownership
from alto_stream.runtime.scheduling import ReadyQueue, Runners
from alto_stream.runtime.transactional import Transactions
from alto_stream.transport import Consumer, Partition, Transport

__all__ = ["Rebalancing"]

log = logging.getLogger(__name__)


class Rebalancing:
    """The assignment and revocation callbacks of one worker's consumer."""

    def __init__(
        self,
        stage: str,
        ownership: Ownership,
        *,
        transport: Transport,
        stats: WorkerStats,
        ready: ReadyQueue,
        runners: Runners,
        acks: Acknowledgements,
        tx: Transactions | None,
        aggregating: Aggregating | None,
        share_admission: Callable[[], None],
        cut_now: Callable[[], bool],
        fail: Callable[[Exception], bool],
    ) -> None:
        self.stage = stage
        self.ownership = ownership
        self.transport = transport
        self.stats = stats
        self.ready = ready
        self.runners = runners
        self.acks = acks
        self.tx = tx
        self.aggregating = aggregating
        self.share_admission = share_admission
        self.cut_now = cut_now
        self.fail = fail

    async def assigned(self, partitions: set[Partition], consumer: Consumer | None) -> None:
        self.stats.rebalances += 1
        ownership = self.ownership
        events = {tp: asyncio.Event() for tp in partitions}
        ownership.owned.update(events)
        try:
            if self.tx is not None:
                assert consumer is not None
                await self.tx.take_over(partitions, consumer)
                self.ready.drop(partitions)  # fetched from offsets read before the take-over
            else:
                await ownership.resume_books(consumer, partitions)
            ownership.log_resumed(partitions)
            for tp in partitions:
                if self.aggregating is not None:
                    await self.aggregating.restore(self.transport, tp)
                    if self.tx is not None:
                        await self.tx.commit(tp)
                events[tp].set()
            self.share_admission()
        except Exception as exc:
            # A partition that cannot be made ready would stall forever: stop the
            # worker instead, so that its supervisor restarts it.
            log.exception("stage %s: could not take over %s", self.stage, sorted(partitions))
            self.fail(exc)

    async def revoked(
        self, partitions: set[Partition], consumer: Consumer | None, shutdown_timeout: float
    ) -> None:
        ownership = self.ownership
        # The books first: the loop's next commit forgets partitions no longer owned.
        books = {tp: book for tp in partitions if (book := ownership.books.get(tp)) is not None}
        for tp in partitions:
            event = ownership.owned.pop(tp, None)
            if event is not None:
                event.set()
        # Records not started stay unstarted: the partition's next owner runs them.
        self.ready.drop(partitions)
        self.share_admission()
        # Records of these partitions in hand finish (or the deadline passes).
        runners = self.runners
        deadline = time.monotonic() + shutdown_timeout
        while (
            time.monotonic() < deadline
            and not self.cut_now()
            and (runners.tasks or runners.handling(partitions))
        ):
            await runners.wait_progress(0.05)
        # Those still running are cut short, as at a stop: never done, so never committed;
        # the next owner runs them again (an LLM call left running would be wasted work).
        if cut := await runners.cut(partitions):
            log.warning(
                "stage %s: %d records of revoked partitions still running after %.1f s are "
                "cut short; their next owner runs them again",
                self.stage,
                cut,
                shutdown_timeout,
            )
        if self.tx is not None:
            await self.tx.commit_all(partitions)
        else:
            # A record finished is done once its outputs are acknowledged: wait for those
            # (moments, unless Kafka is away), or its next owner runs it again.
            await self.acks.settle(books.values(), max(1.0, deadline - time.monotonic()))
            await ownership.commit(consumer)
            # What was done on the partitions going away, so their next owner does not
            # run it again (allowed: the group waits for this callback).
            done = {tp: book.to_commit() for tp, book in books.items()}
            await ownership.commit_offsets(
                consumer, {tp: p for tp, p in done.items() if p is not None}
            )
        for tp in partitions:
            ownership.books.pop(tp, None)
            if self.aggregating is not None:
                self.aggregating.drop(tp)
            if self.tx is not None:
                await self.tx.release(tp)  # outputs of records its next owner runs again
