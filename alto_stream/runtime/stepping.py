"""One turn of a worker's loop: fetch, queue, start what is ready, backpressure.

Each turn fetches what the input has, queues it (:mod:`alto_stream.runtime.intake`)
and starts the records that may start: a plain-function stage runs them here,
oldest query first, for one slice; the others wake the runner tasks
(:mod:`alto_stream.runtime.scheduling`). The input partitions are paused while
too much is buffered. In the transactional mode a turn processes everything
fetched (for up to a round) and then lets the round commit it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from alto_stream.message import Envelope
from alto_stream.runtime.intake import Intake
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.options import WorkerOptions, WorkerStats
from alto_stream.runtime.ownership import Ownership
from alto_stream.runtime.scheduling import ReadyQueue, Runners
from alto_stream.runtime.transactional import ROUND, Transactions
from alto_stream.transport import Consumer, InRecord

__all__ = ["Stepping"]


class Stepping:
    """The turns of one worker's loop, and the backpressure on its input."""

    def __init__(
        self,
        ownership: Ownership,
        ready: ReadyQueue,
        runners: Runners,
        intake: Intake,
        handle: Callable[[InRecord, Envelope, OffsetBook], Coroutine[Any, Any, None]],
        *,
        options: WorkerOptions,
        stats: WorkerStats,
        tx: Transactions | None,
        inline: bool,
        stopping: asyncio.Event,
        slice_: float,
    ) -> None:
        self._ownership = ownership
        self._owned = ownership.owned
        self._ready = ready
        self._runners = runners
        self._tasks = runners.tasks
        self._intake = intake
        self._handle = handle
        self.options = options
        self.stats = stats
        self._tx = tx
        self._inline = inline
        self._stopping = stopping
        self._slice = slice_
        self._paused = False

    async def step(self, consumer: Consumer | None) -> None:
        assert consumer is not None
        ready = self._ready
        if ready.startable():
            wait = 0.0
        elif self._tx is not None and self._tx.committing:
            wait = 0.005  # outputs wait for the round in flight: start theirs soon after it
        else:
            wait = 0.05
        records = await consumer.fetch(wait, self.options.fetch_max)
        for record in records:
            self._intake.enqueue(record, self.options.max_ancestry_bytes)
        if not records and not ready:
            await self._ownership.skip_markers(consumer)
        if self._tx is not None:
            await self._run_transactional_batch(self._tx, consumer)
            return
        await self._start_ready()
        self.backpressure(consumer)
        startable = ready.startable()
        if startable and self._inline:
            # A slice is done: heartbeats run now, then the loop commits and goes on.
            await asyncio.sleep(0)
            return
        if startable:
            await asyncio.sleep(0)  # the runners just woken start now, before the wait below
        if startable or (self._runners.working and not records):
            # Records waiting for a runner, or nothing new: let the runners work rather
            # than fetch again (a fetch with records buffered returns at once, and the
            # loop would spin without giving them a turn).
            await self._runners.wait_progress(0.01)

    async def _start_ready(self) -> None:
        runners = self._runners
        if self._inline:
            # A plain-function stage: each record runs to its end here, oldest query
            # first, for one slice; the rest wait for the loop's next turn.
            loop = asyncio.get_running_loop()
            until = loop.time() + self._slice
            while loop.time() < until and (entry := self._ready.pop()) is not None:
                record, envelope, book = entry.record, entry.envelope, entry.book
                ready = self._owned.get(record.tp)
                if ready is not None and ready.is_set():
                    await self._handle(record, envelope, book)
                else:  # not ready yet (or revoked): a task waits for it
                    runners.spawn(self._handle(record, envelope, book))
        else:
            runners.wake()
        self.count()

    def count(self) -> None:
        """Note what is in flight and buffered now (the stats `up`, metrics and logs show)."""
        self.stats.in_flight = self._runners.busy + len(self._tasks)
        self.stats.buffered = len(self._ready)

    def backpressure(self, consumer: Consumer) -> None:
        """Pause the input while too much is buffered, or while admission holds queries back."""
        buffered = len(self._ready) + len(self._tasks) + self._runners.busy
        if self._ready.waiting_for_admission():
            pause = True  # the queries behind wait in the topic, not here
        elif self._paused:
            pause = buffered > self.options.max_buffered // 2
        else:
            pause = buffered >= self.options.max_buffered
        if pause:
            # Again while paused: partitions assigned since then start unpaused.
            consumer.pause(consumer.assignment())
            if not self._paused:
                self._paused = True
                self.stats.pauses += 1
        elif self._paused:
            consumer.resume(consumer.assignment())
            self._paused = False

    # -- transactional mode -------------------------------------------------

    async def _run_transactional_batch(self, tx: Transactions, consumer: Consumer) -> None:
        """Process everything fetched (for up to a round), then let ``tx`` commit it.

        The round's commits run in the background while the next batches are
        fetched and processed (see :meth:`Transactions.end_batch`).
        """
        loop = asyncio.get_running_loop()
        until = loop.time() + ROUND
        runners = self._runners
        while self._ready.startable() or runners.working:
            await self._start_ready()
            if self._stopping.is_set() and not runners.working:
                break  # records not started stay uncommitted: whoever reads next runs them
            if loop.time() >= until:
                break  # a backlog: commit what is done, the rest goes on in the next round
            if self._ready.startable() and self._inline:
                await asyncio.sleep(0)  # a slice is done: heartbeats run
            elif self._ready.startable() or runners.working:
                await runners.wait_progress(0.05)
        self.count()  # the loop above counted before its last records ended
        self.backpressure(consumer)
        await tx.end_batch(stopping=self._stopping.is_set())
