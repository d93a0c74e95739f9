"""Query-aware scheduling inside a worker: records wait here, oldest query first.

A worker fetches more records than it runs at once (a stage's
``max_in_flight``, an LLM server's batch capacity). Those waiting start in
order of their query's arrival time (the root's ``query_time``, carried in
every record's ancestry), not of partition and offset, so that under load one
query's fragments go ahead of a younger query's and queries finish one after
another instead of all slowing down together. Ties (fragments of one query)
keep their fetch order.

Which record starts never changes what is committed: a worker commits a
partition's offset only as far as every record below it is done
(:class:`~alto_stream.runtime.offsets.OffsetBook`), whatever order they ran in.

At the first stage an :class:`~alto_stream.runtime.admission.Admission` may
gate the queue: a record of a query not yet admitted starts only while the app
has room for another query.

:class:`Runners` are the tasks that take the queue's next record and handle it.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from alto_stream.message import Envelope
from alto_stream.runtime.admission import Admission
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.transport import InRecord, Partition

__all__ = ["Queued", "ReadyQueue", "Runners", "SchedulerStats"]

_SAMPLES = 10_000
"""The most queue-wait samples kept between two reads (a metrics reporter takes them)."""


class Queued(NamedTuple):
    """A record waiting to start, in the order it starts (a heap entry)."""

    query_time: float
    seq: int
    record: InRecord
    envelope: Envelope
    book: OffsetBook
    since: float
    """When it was queued (``time.monotonic()``), for the queue-wait histogram."""


@dataclass
class SchedulerStats:
    """What the queue did: its depth and how long records waited (served as metrics)."""

    depth: int = 0
    started: int = 0
    wait_seconds: list[float] = field(default_factory=list, repr=False)

    def take_waits(self) -> list[float]:
        """The queue-wait samples since the last call (and forget them)."""
        samples, self.wait_seconds = self.wait_seconds, []
        return samples


class ReadyQueue:
    """Records fetched and not started, oldest query first (see the module docstring).

    With ``admission``, a record of a query not yet admitted waits until the
    admission has room; records of queries already in flight never wait for it.

    With ``in_offset_order`` (the transactional mode), each partition's records
    start in offset order, and of the partitions' next records the oldest
    query's goes first. A transaction commits a partition's outputs only up to
    its lowest record not done (``transactional._split_at``): an old query's
    record run ahead of a younger one at a lower offset would have its outputs
    held until that one is done, with a backlog until the end of it.
    """

    def __init__(
        self, admission: Admission | None = None, *, in_offset_order: bool = False
    ) -> None:
        self.admission = admission
        self.stats = SchedulerStats()
        self._heap: list[Queued] = []  # in offset order: each partition's next record only
        self._seq = itertools.count()
        self._size = 0
        # In offset order: the records of each partition behind its one in the heap.
        self._lanes: dict[Partition, collections.deque[Queued]] | None = (
            {} if in_offset_order else None
        )

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def push(self, record: InRecord, envelope: Envelope, book: OffsetBook) -> None:
        """Queue ``record`` behind the records of older queries."""
        entry = Queued(
            envelope.ancestry.query_time,
            next(self._seq),
            record,
            envelope,
            book,
            time.monotonic(),
        )
        self._size += 1
        self.stats.depth = self._size
        lanes = self._lanes
        if lanes is not None:
            lane = lanes.get(record.tp)
            if lane is not None:  # the partition's next record is in the heap: this waits
                lane.append(entry)
                return
            lanes[record.tp] = collections.deque()
        heapq.heappush(self._heap, entry)

    def startable(self) -> int:
        """How many records may start now (all of them, unless admission holds some back)."""
        if self.admission is None or not self._heap:
            return self._size
        head = self._heap[0]
        if not self.admission.needs_slot(head.envelope.ancestry.query_id):
            return self._size  # at least the head: callers only need > 0 to be exact
        return min(self._size, self.admission.free())

    def pop(self) -> Queued | None:
        """The next record to start, or None if there is none (or admission holds it back)."""
        if not self._heap:
            return None
        admission = self.admission
        if admission is not None:
            head = self._heap[0]
            query = head.envelope.ancestry.query_id
            if admission.needs_slot(query):
                if admission.free() <= 0:
                    return None
                admission.admit(query, head.envelope.ancestry.query_time)
        entry = heapq.heappop(self._heap)
        lanes = self._lanes
        if lanes is not None:
            tp = entry.record.tp
            lane = lanes[tp]
            if lane:
                heapq.heappush(self._heap, lane.popleft())  # the partition's next record
            else:
                del lanes[tp]
        self._size -= 1
        stats = self.stats
        stats.depth = self._size
        stats.started += 1
        if len(stats.wait_seconds) < _SAMPLES:
            stats.wait_seconds.append(time.monotonic() - entry.since)
        return entry

    def take_holes(self, limit: int) -> list[Queued]:
        """Up to ``limit`` records, oldest query first, below a record their partition has done.

        Taken out of the queue, for a stop to run them: records start oldest query
        first, so at a stop some above a partition's lowest record not done have
        finished, and the commit cannot pass the records below them. Run, they let
        it; left, the next owner ran the finished ones again (a graceful stop of an
        at-least-once worker wrote hundreds of duplicates downstream). Records of a
        query still waiting for admission stay (a stop admits nothing). Not for the
        offset-order queue (``in_offset_order``), whose partitions have no such holes.
        """
        admission = self.admission
        holes: list[Queued] = []
        for entry in sorted(self._heap):
            if len(holes) >= limit:
                break
            if entry.record.offset >= entry.book.highest_handled:
                continue
            if admission is not None and admission.needs_slot(entry.envelope.ancestry.query_id):
                continue
            holes.append(entry)
        if holes:
            taken = {id(entry) for entry in holes}
            self._heap = [entry for entry in self._heap if id(entry) not in taken]
            heapq.heapify(self._heap)
            self._size -= len(holes)
            self.stats.depth = self._size
        return holes

    def drop(self, partitions: set[Partition]) -> None:
        """Forget the records of ``partitions`` (revoked, or taken over): never started."""
        self._heap = [entry for entry in self._heap if entry.record.tp not in partitions]
        heapq.heapify(self._heap)
        lanes = self._lanes
        if lanes is not None:
            for tp in partitions:
                lanes.pop(tp, None)
        self._size = len(self._heap) + sum(map(len, (lanes or {}).values()))
        self.stats.depth = self._size

    def waiting_for_admission(self) -> bool:
        """True when the head waits for a query slot (the input may pause meanwhile)."""
        return (
            self.admission is not None
            and bool(self._heap)
            and self.admission.needs_slot(self._heap[0].envelope.ancestry.query_id)
            and self.admission.free() <= 0
        )


Handle = Callable[[InRecord, Envelope, OffsetBook], Awaitable[None]]
"""Handles one record to its end (the worker's per-record boundary)."""


class Runners:
    """Up to ``limit`` long-lived tasks that handle the queue's records, oldest query first.

    No task to create, schedule and discard per record: a runner takes the next
    record, handles it, and parks when none may start. Every ``slice_`` seconds
    a runner yields to the event loop (handlers that never await must not keep
    heartbeats from running). One-off tasks (:meth:`spawn`) count as work too.
    """

    def __init__(
        self,
        queue: ReadyQueue,
        handle: Handle,
        *,
        limit: int,
        stopping: asyncio.Event,
        slice_: float,
    ) -> None:
        self.queue = queue
        self.limit = limit
        self.busy = 0  # records a runner is handling now
        self._holding: dict[asyncio.Task[None], Partition] = {}  # runner -> its record's
        self.tasks: set[asyncio.Task[None]] = set()  # one-off tasks (undecodable records...)
        self._handle = handle
        self._stopping = stopping
        self._slice = slice_
        self._runners: set[asyncio.Task[None]] = set()
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()
        self._progress: list[asyncio.Future[None]] = []  # who waits for a record to finish

    @property
    def working(self) -> bool:
        """True while a record is handled or a one-off task runs."""
        return bool(self.busy or self.tasks)

    def wake(self) -> None:
        """Give every record that may start a runner: parked ones first, new ones to the limit."""
        wanted = self.queue.startable()
        while wanted and self._parked:
            parked = self._parked.popleft()
            if not parked.done():
                parked.set_result(None)
                wanted -= 1
        while wanted and len(self._runners) < self.limit:
            runner = asyncio.get_running_loop().create_task(self._run())
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
            wanted -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        runner = asyncio.current_task()
        assert runner is not None
        until = loop.time() + self._slice
        while not self._stopping.is_set():
            if loop.time() >= until:
                await asyncio.sleep(0)  # handlers that do not await: heartbeats run now
                until = loop.time() + self._slice
            entry = self.queue.pop()
            if entry is None:
                parked: asyncio.Future[None] = loop.create_future()
                self._parked.append(parked)
                await parked
                until = loop.time() + self._slice
                continue
            record = entry.record
            self.busy += 1
            self._holding[runner] = record.tp
            try:
                await self._handle(record, entry.envelope, entry.book)
            finally:
                del self._holding[runner]
                self.busy -= 1
                self._progressed()

    def _progressed(self) -> None:
        if self._progress:
            waiting, self._progress = self._progress, []
            for progress in waiting:
                if not progress.done():
                    progress.set_result(None)

    async def wait_progress(self, timeout: float) -> None:
        """Wait until a record or a one-off task finishes, or ``timeout`` passes."""
        progress: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._progress.append(progress)  # the loop and a rebalance callback may both wait
        try:
            await asyncio.wait(
                {progress, *self.tasks}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            progress.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a one-off task."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def handling(self, partitions: Collection[Partition]) -> bool:
        """True while a runner handles a record of ``partitions``."""
        return any(tp in partitions for tp in self._holding.values())

    async def cut(self, partitions: Collection[Partition], grace: float = 1.0) -> int:
        """Cancel the runners handling a record of ``partitions``; how many were.

        Their records are cut short (never done, so never committed: the partitions'
        next owner runs them again); the others run on. Waits up to ``grace`` s for
        the cancelled runners to end (a handler that swallows the cancellation is
        not waited for).
        """
        doomed = [runner for runner, tp in self._holding.items() if tp in partitions]
        for runner in doomed:
            runner.cancel()
        if doomed:
            await asyncio.wait(doomed, timeout=grace)
        return len(doomed)

    async def cancel(self) -> None:
        """Cancel every runner and one-off task (records still running are cut short)."""
        for task in [*self.tasks, *self._runners]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self._runners, return_exceptions=True)
