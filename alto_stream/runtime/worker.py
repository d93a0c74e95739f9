"""A worker: one process (or task) running one stage in its consumer group.

The loop fetches records, decodes their ancestry, and queues them by the age
of their query (query-aware scheduling: the oldest query's records start
first). Up to ``max_in_flight`` records run at once; partitions are paused
while too much is buffered (backpressure). An offset is committed only when
every record below it is done. Failures go to the dead-letter topic and an
error marker flows on, so the query still completes.

Two delivery modes:

- ``at-least-once`` (default): outputs are written as soon as they exist;
  re-deliveries after a crash are made harmless by the ancestry (deterministic
  ids, attempts, the aggregator's fired memory, deduplicating readers).
- ``transactional``: outputs, changelog writes and consumed offsets are
  committed in Kafka transactions, one per input partition per round
  (:mod:`alto_stream.runtime.transactional`); readers use read_committed.

The pieces: one turn of the loop (fetch, queue, start, backpressure) is in
:mod:`alto_stream.runtime.stepping`; the queue of ready records, oldest query
first, and the runner tasks that take from it in
:mod:`alto_stream.runtime.scheduling`; the admission limit of an app's first
stage in :mod:`alto_stream.runtime.admission`, and the worker's share of it and
its watch of the app's outputs in :mod:`alto_stream.runtime.admitting`;
writes tied to their input record in :mod:`alto_stream.runtime.writes`; an
aggregate stage's trackers, firing and time-outs in
:mod:`alto_stream.runtime.aggregating`; the per-record failure paths (dead
letters, error markers, refused outputs) in :mod:`alto_stream.runtime.failures`;
the partitions owned, their books and commits in :mod:`alto_stream.runtime.ownership`;
taking partitions over and handing them over in :mod:`alto_stream.runtime.rebalancing`;
fetched records decoded into the queue in :mod:`alto_stream.runtime.intake`; the
stop's drain and last commits in :mod:`alto_stream.runtime.stopping`.
"""

from __future__ import annotations

import asyncio
import functools
import time

from alto_stream.app import App, StageKind, StagePlan
from alto_stream.context import bind_record, unbind_record
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.acks import SOURCE, Source
from alto_stream.runtime.admitting import Admitting, admission_for
from alto_stream.runtime.aggregating import Aggregating
from alto_stream.runtime.failures import RecordFailures
from alto_stream.runtime.intake import Intake
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.options import DeliveryMode, WorkerOptions, WorkerStats
from alto_stream.runtime.ownership import Ownership
from alto_stream.runtime.rebalancing import Rebalancing
from alto_stream.runtime.scheduling import ReadyQueue, Runners
from alto_stream.runtime.stages import Processor, escaped
from alto_stream.runtime.stepping import Stepping
from alto_stream.runtime.stopping import close, drain
from alto_stream.runtime.transactional import Transactions
from alto_stream.runtime.writes import Writer
from alto_stream.transport import Consumer, InRecord, Partition, Producer, Transport

__all__ = ["DeliveryMode", "Worker", "WorkerOptions", "WorkerStats"]

_SLICE = 0.05
"""Seconds the loop, or one runner, handles records before it yields to the event loop.

aiokafka's heartbeats run as a task on the worker's event loop: a stretch of
records that never awaits (plain ``def`` handlers, async ones that do not
await, on a busy machine) must not keep them from running, or the group drops
the member and re-runs its uncommitted backlog elsewhere.
"""


class Worker:
    """Runs one stage of an app over a transport until stopped."""

    def __init__(
        self,
        app: App,
        stage: str,
        transport: Transport,
        options: WorkerOptions | None = None,
        *,
        codec: MessageCodec | None = None,
    ) -> None:
        self.topology = app.topology()
        self.plan: StagePlan = self.topology.plan(stage)
        self.transport = transport
        self.options = options or WorkerOptions()
        self.codec = codec or self.topology.codec()
        self.processor = Processor(
            self.plan, self.codec, settled=self._settled, max_children=self.options.max_children
        )
        self.stats = WorkerStats()
        self._max_in_flight = self.options.max_in_flight or self.plan.stage.max_in_flight
        self._inline = self.plan.stage.inline
        self._map = self.plan.stage.kind is StageKind.MAP
        self._reads_queries = self.plan.input_topic == self.topology.input_topic
        self._handler = self.plan.stage.handler
        # Whether model calls carry the query's priority (alto_stream.context): the stage's say,
        # else the app's.
        stage_priority = self.plan.stage.priority
        self._priority = app.priority if stage_priority is None else stage_priority
        if self.plan.stage.kind is StageKind.BATCH:
            self._max_in_flight = max(self._max_in_flight, 2 * self.plan.stage.batch_size)
        # The partitions this worker owns, each with an event set once it is ready, and
        # their offset books (see alto_stream.runtime.ownership).
        self._ownership = Ownership(self.plan.name)
        self._books = self._ownership.books
        self._owned = self._ownership.owned
        self.admission = admission_for(app, self.plan, self.topology, self.options)
        self._ready = ReadyQueue(
            self.admission, in_offset_order=self.options.delivery != "at-least-once"
        )
        self.stats.scheduler = self._ready.stats
        self.stats.admission = None if self.admission is None else self.admission.stats
        self._stopping = asyncio.Event()
        self._cut_now = False  # a second stop: records in flight are cut short at once
        # Async handlers run in up to max_in_flight long-lived runner tasks that take the
        # oldest query's record next (see alto_stream.runtime.scheduling).
        self._runners = Runners(
            self._ready,
            self._handle,
            limit=self._max_in_flight,
            stopping=self._stopping,
            slice_=_SLICE,
        )
        self._admitting = Admitting(
            self.admission,
            self.plan,
            self.topology,
            self._ownership,
            self._runners,
            transport=self.transport,
            codec=self.codec,
            lookback=self.options.admission_lookback,
            inline=self._inline,
            fail=self._fail,
        )
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._fatal: Exception | None = None
        self._tx = self._transactions() if self.options.delivery == "transactional" else None
        self._writer = Writer(
            self.plan,
            self.codec,
            self.stats,
            max_record_bytes=self.options.max_record_bytes,
            tx=self._tx,
        )
        self._failures = RecordFailures(
            self.plan,
            self.codec,
            self.stats,
            self._writer,
            max_record_bytes=self.options.max_record_bytes,
            spawn=self._runners.spawn,
            still_owned=self._ownership.still_owned,
            fatal=self._fail,
        )
        self._acks = self._failures.acks
        self._aggregating = self._aggregation() if self.plan.changelog_topic else None
        if self._aggregating is not None:
            self._failures.aggregate = self._aggregating.add
        self._intake = Intake(
            self.plan,
            self.codec,
            self._ownership,
            self._ready,
            self._runners,
            self._failures,
            reads_queries=self._reads_queries,
        )
        self._rebalancing = Rebalancing(
            self.plan.name,
            self._ownership,
            transport=self.transport,
            stats=self.stats,
            ready=self._ready,
            runners=self._runners,
            acks=self._acks,
            tx=self._tx,
            aggregating=self._aggregating,
            share_admission=self._admitting.share,
            cut_now=self._cut_short,
            fail=self._fail,
        )
        self._stepping = Stepping(
            self._ownership,
            self._ready,
            self._runners,
            self._intake,
            self._handle,
            options=self.options,
            stats=self.stats,
            tx=self._tx,
            inline=self._inline,
            stopping=self._stopping,
            slice_=_SLICE,
        )

    def _transactions(self) -> Transactions:
        """The transactional mode's producers, buffers and rounds for this worker."""
        return Transactions(
            self.transport,
            group=self.plan.group,
            stage=self.plan.name,
            books=self._books,
            owned=self._owned,
            stats=self.stats,
            max_buffered=self.options.max_buffered,
            stopping=self._stopping,
            rejoin=self._rejoin,
        )

    def _rejoin(self) -> None:
        """Have the group hand out its partitions again (a partition fenced, owned by none)."""
        if self._consumer is not None:
            self._consumer.rejoin()

    def _aggregation(self) -> Aggregating:
        """An aggregate stage's trackers, writing through this worker."""
        return Aggregating(
            self.plan,
            self.processor,
            self.codec,
            self.stats,
            max_children=self.options.max_children,
            fired_retention=self.options.fired_retention,
            write=self._writer.write,
            emit=self._writer.emit_to,
            forward=self._writer.forward,
            failed=self._failures.failed,
            letter=self._failures.letter,
            no_record=self._writer.of_no_record,
            settle=self._writer.settle,
            transactional=self._tx is not None,
        )

    def _fail(self, exc: Exception) -> bool:
        """Stop the worker with ``exc`` (raised by :meth:`run`); True if it is the first."""
        first = self._fatal is None
        if first:
            self._fatal = exc
        self.stop()
        return first

    # -- lifecycle ----------------------------------------------------------

    def stop(self, *, now: bool = False) -> None:
        """Ask the worker to stop (graceful: in-flight work finishes within the deadline).

        ``now``: records in flight are cut short at once instead (never done, so never
        committed: the next owner runs them again); the stop then goes on as usual,
        committing what is done and leaving the group.
        """
        self._stopping.set()
        if now:
            self._cut_now = True

    @property
    def partitions(self) -> list[Partition]:
        """The input partitions this worker owns and has made ready (state restored)."""
        return sorted(tp for tp, ready in self._owned.items() if ready.is_set())

    async def run(self, *, count: int | None = None, timeout: float | None = None) -> WorkerStats:
        """Run until stopped, or until ``count`` records were handled or ``timeout`` passed."""
        self._producer = self._writer.producer = self.transport.producer()
        await self._producer.start()
        self._consumer = self.transport.consumer(
            [self.plan.input_topic],
            self.plan.group,
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
            read_committed=True,
        )
        watch = await self._admitting.watch_completions()
        await self._consumer.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        last_commit = last_expire = time.monotonic()
        try:
            while not self._stopping.is_set():
                idle = not self._runners.working and not self._ready
                if count is not None and self.stats.consumed >= count and idle:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                await self._stepping.step(self._consumer)
                now = time.monotonic()
                if now - last_commit >= self.options.commit_interval and self._tx is None:
                    await self._ownership.commit(self._consumer)
                    last_commit = now
                aggregating = self._aggregating
                if aggregating is not None and now - last_expire >= self.options.expire_interval:
                    await aggregating.expire()
                    last_expire = now
        finally:
            try:
                await self._shutdown()
            finally:
                if watch is not None:
                    watch.cancel()
                    await asyncio.gather(watch, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _shutdown(self) -> None:
        self._stopping.set()  # runners take no further record
        await drain(
            self.plan.name,
            self._runners,
            self._ready,
            self._handle,
            transactional=self._tx is not None,
            timeout=self.options.shutdown_timeout,
            cut_now=self._cut_short,
        )
        self._stepping.count()  # nothing runs now (what was cut short is logged above)
        await close(
            self.plan.name,
            processor=self.processor,
            ownership=self._ownership,
            consumer=self._consumer,
            producer=self._producer,
            tx=self._tx,
        )

    def _cut_short(self) -> bool:
        """Whether a second stop cuts the records in flight short at once."""
        return self._cut_now

    # -- the loop -----------------------------------------------------------

    def _settled(self) -> bool:
        """Whether no fetched record waits for a runner (a batch need not wait for more)."""
        return not self._ready.startable()

    # -- one record ---------------------------------------------------------

    async def _handle(self, record: InRecord, envelope: Envelope, book: OffsetBook) -> None:
        tp = record.tp
        ready = self._owned.get(tp)
        if (
            ready is None or not ready.is_set() or self._books.get(tp) is not book
        ) and not await self._ownership.still_owned(tp, book):
            return  # whoever owns the partition now runs the record
        if book.skips(record.offset):
            # Fetched while the partition was being taken over: its previous owner ran
            # it to its end (its outputs are out) and said so in its last commit.
            book.highest_handled = max(book.highest_handled, record.offset)
            book.done(record.offset)
            return
        # Counted here, not when fetched: a take-over or a revocation drops records fetched
        # before it (they are fetched again), and run(count=...) waits for handled ones.
        self.stats.consumed += 1
        started = time.perf_counter()
        source = Source(record.offset)
        if self.admission is not None:
            source.admitted_ms = self.admission.admitted_ms(envelope.ancestry.query_id)
        token = SOURCE.set(source)  # reset below: an inline record runs in the worker's context
        current = bind_record(envelope.ancestry, priority=self._priority)  # for handlers
        finished = False  # a record cut short (cancelled by a stop) is never done
        writer = self._writer
        try:
            if self._aggregating is not None:
                await self._aggregating.add(record, envelope)
            elif envelope.kind.is_marker:
                await self._writer.forward(record, envelope)
            elif self._map:
                # The hot path, without process()'s emit callback and its layers of coroutines.
                value = envelope.value
                result = self._handler(value) if self._inline else await self.processor.call(value)
                records = writer.outputs(self.processor.result_envelope(envelope.ancestry, result))
                if not writer.write_now(tp, records):
                    await writer.write_waiting(tp, records)
            else:
                await self.processor.process(envelope, functools.partial(writer.emit_to, tp))
            finished = True
        except Exception as exc:  # the per-record boundary: dead letter + error marker
            finished = await self._failures.failed(record, exc, envelope.ancestry)
        except (asyncio.CancelledError, SystemExit) as exc:  # from a handler: a failure
            # (a plain map's and a generator split's: Processor.call converts the others)
            failure = escaped(exc)
            if failure is None:
                raise  # a stop cuts the record short
            finished = await self._failures.failed(record, failure, envelope.ancestry)
        finally:
            unbind_record(current)
            SOURCE.reset(token)
            self.stats.handler_seconds.append(time.perf_counter() - started)
            if len(self.stats.handler_seconds) > 10_000:
                del self.stats.handler_seconds[:5_000]
            if finished:
                if record.offset > book.highest_handled:
                    book.highest_handled = record.offset
                # The book of this assignment: a stale one after a rebalance is discarded.
                self._acks.done_when_acked(
                    record.offset, book, source.acks, record, envelope.ancestry
                )

    # -- rebalancing --------------------------------------------------------

    async def _on_assigned(self, partitions: set[Partition]) -> None:
        await self._rebalancing.assigned(partitions, self._consumer)

    async def _on_revoked(self, partitions: set[Partition]) -> None:
        await self._rebalancing.revoked(partitions, self._consumer, self.options.shutdown_timeout)
