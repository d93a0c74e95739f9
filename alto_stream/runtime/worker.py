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

An aggregate stage's trackers, firing and time-outs are in
:mod:`alto_stream.runtime.aggregating`; dead letters and error markers are
built by :mod:`alto_stream.runtime.failures`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from alto_stream.aggregate import DEFAULT_MAX_COUNT
from alto_stream.ancestry import Ancestry
from alto_stream.app import App, StageKind, StagePlan
from alto_stream.context import bind_record, unbind_record
from alto_stream.errors import (
    AncestryError,
    DecodeError,
    RecordRejectedError,
    TransportError,
)
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime import failures
from alto_stream.runtime.acks import Acknowledgements, Waiting
from alto_stream.runtime.aggregating import Aggregating
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.stages import Processor
from alto_stream.runtime.transactional import ROUND, Transactions
from alto_stream.transport import Consumer, InRecord, OutRecord, Partition, Producer, Transport

__all__ = ["DeliveryMode", "Worker", "WorkerOptions", "WorkerStats"]

log = logging.getLogger(__name__)

_RECORD: contextvars.ContextVar[_Source | None] = contextvars.ContextVar(
    "alto_record", default=None
)
"""The input record being handled (each task has its own context; inline ones reset it)."""

DeliveryMode = Literal["at-least-once", "transactional"]

_SLICE = 0.05
"""Seconds the loop, or one runner, handles records before it yields to the event loop.

aiokafka's heartbeats run as a task on the worker's event loop: a stretch of
records that never awaits (plain ``def`` handlers, async ones that do not
await, on a busy machine) must not keep them from running, or the group drops
the member and re-runs its uncommitted backlog elsewhere.
"""


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs (durations in seconds).

    ``shutdown_timeout``: how long a stop or a revocation lets records in hand
    finish; those still running then are cut short, stay uncommitted, and run
    again at the partition's next owner. ``max_record_bytes``: the largest
    output a worker writes (Kafka's default limit is 1 MiB); a larger one fails
    its record (dead letter + ERROR marker), and dead letters are cut to fit.
    ``max_children``: the most children a split may claim at an aggregate.
    ``max_ancestry_bytes``: the largest ancestry header a record may carry (a
    1,000-frame ancestry takes about 20 KB); a larger one is a dead letter.
    """

    delivery: DeliveryMode = "at-least-once"
    max_in_flight: int | None = None  # default: the stage's own
    max_buffered: int = 2000
    fetch_max: int = 500
    commit_interval: float = 0.2
    shutdown_timeout: float = 10.0
    expire_interval: float = 1.0
    max_record_bytes: int = 1_000_000
    max_children: int = DEFAULT_MAX_COUNT
    max_ancestry_bytes: int = 65_536


@dataclass
class WorkerStats:
    """Counters a worker keeps (served as metrics, shown by ``up``)."""

    consumed: int = 0  # input records handled (not those fetched, then dropped by a rebalance)
    produced: int = 0
    errors: int = 0
    dead_letters: int = 0
    fired: int = 0
    pauses: int = 0
    fenced: int = 0
    rebalances: int = 0  # assignments received (the first one included)
    in_flight: int = 0
    buffered: int = 0
    handler_seconds: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """The counters on one line (for logs)."""
        return (
            f"consumed={self.consumed} produced={self.produced} errors={self.errors} "
            f"dead_letters={self.dead_letters} fired={self.fired} in_flight={self.in_flight}"
        )


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
        self.processor = Processor(self.plan, self.codec)
        self.stats = WorkerStats()
        self._max_in_flight = self.options.max_in_flight or self.plan.stage.max_in_flight
        self._inline = self.plan.stage.inline
        self._map = self.plan.stage.kind is StageKind.MAP
        self._handler = self.plan.stage.handler
        if self.plan.stage.kind is StageKind.BATCH:
            self._max_in_flight = max(self._max_in_flight, 2 * self.plan.stage.batch_size)
        self._books: dict[Partition, OffsetBook] = {}
        self._ready: list[tuple[float, int, InRecord, Envelope, OffsetBook]] = []
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()  # one-off tasks (undecodable records...)
        # Async handlers run in up to max_in_flight long-lived runner tasks that take the
        # oldest query's record next: no task to create, schedule and discard per record.
        self._runners: set[asyncio.Task[None]] = set()
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()
        self._busy = 0  # records a runner is handling now
        self._handling: dict[Partition, int] = {}  # per partition, of _busy
        self._progress: list[asyncio.Future[None]] = []  # who waits for a record to finish
        self._paused = False
        self._stopping = asyncio.Event()
        self._producer: Producer | None = None
        self._producer_stopped = False
        self._consumer: Consumer | None = None
        # The partitions this worker owns, each with an event set once it is ready.
        self._owned: dict[Partition, asyncio.Event] = {}
        self._fatal: Exception | None = None
        self._acks = Acknowledgements(self._ack_failed)
        self._tx = self._transactions() if self.options.delivery == "transactional" else None
        self._aggregating = self._aggregation() if self.plan.changelog_topic else None

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
        )

    def _aggregation(self) -> Aggregating:
        """An aggregate stage's trackers, writing through this worker."""
        return Aggregating(
            self.plan,
            self.processor,
            self.codec,
            self.stats,
            max_children=self.options.max_children,
            write=self._write,
            emit=self._emit_to,
            forward=self._forward,
            failed=self._failed,
            no_record=self._writes_of_no_record,
        )

    # -- lifecycle ----------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop (graceful: in-flight work finishes within the deadline)."""
        self._stopping.set()

    @property
    def partitions(self) -> list[Partition]:
        """The input partitions this worker owns and has made ready (state restored)."""
        return sorted(tp for tp, ready in self._owned.items() if ready.is_set())

    async def run(self, *, count: int | None = None, timeout: float | None = None) -> WorkerStats:
        """Run until stopped, or until ``count`` records were handled or ``timeout`` passed."""
        self._producer = self.transport.producer()
        await self._producer.start()
        self._consumer = self.transport.consumer(
            [self.plan.input_topic],
            self.plan.group,
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
            read_committed=True,
        )
        await self._consumer.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        last_commit = last_expire = time.monotonic()
        try:
            while not self._stopping.is_set():
                idle = not self._tasks and not self._ready and not self._busy
                if count is not None and self.stats.consumed >= count and idle:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                await self._step()
                now = time.monotonic()
                if now - last_commit >= self.options.commit_interval and self._tx is None:
                    await self._commit()
                    last_commit = now
                aggregating = self._aggregating
                if aggregating is not None and now - last_expire >= self.options.expire_interval:
                    await aggregating.expire()
                    last_expire = now
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _shutdown(self) -> None:
        self._stopping.set()  # runners take no further record
        deadline = time.monotonic() + self.options.shutdown_timeout
        while (self._busy or self._tasks) and time.monotonic() < deadline:
            await self._wait_progress(0.05)
        # Records still running are cut short: never done, so never committed; the
        # partition's next owner runs them again.
        cut = self._busy + len(self._tasks)
        if cut:
            log.warning(
                "stage %s: %d records still running after %.1f s are cut short; "
                "their next owner runs them again",
                self.plan.name,
                cut,
                self.options.shutdown_timeout,
            )
        for task in [*self._tasks, *self._runners]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._runners, return_exceptions=True)
        assert self._consumer is not None
        assert self._producer is not None
        try:
            await self.processor.stop()
            if self._tx is not None:
                await self._tx.finish_round()
                # And what ran while that round committed (outputs of records not done
                # stay out: see transactional._split_at).
                await self._tx.commit_all(self._tx.partitions())
            else:
                # Outputs acknowledged first, so that finished records count as done.
                self._producer_stopped = True
                try:
                    await self._producer.stop()
                except Exception:
                    log.exception("stage %s: flushing outputs at the stop failed", self.plan.name)
                await self._commit()
        finally:
            await self._consumer.stop()
            if self._tx is not None:
                await self._tx.close()
            if not self._producer_stopped:
                await self._producer.stop()

    # -- the loop -----------------------------------------------------------

    async def _step(self) -> None:
        assert self._consumer is not None
        if self._ready:
            wait = 0.0
        elif self._tx is not None and self._tx.committing:
            wait = 0.005  # outputs wait for the round in flight: start theirs soon after it
        else:
            wait = 0.05
        records = await self._consumer.fetch(wait, self.options.fetch_max)
        for record in records:
            self._enqueue(record)
        if self._tx is not None:
            await self._run_transactional_batch(self._tx)
            return
        await self._start_ready()
        self._backpressure()
        if self._ready and self._inline:
            # A slice is done: heartbeats run now, then the loop commits and goes on.
            await asyncio.sleep(0)
            return
        if self._ready:
            await asyncio.sleep(0)  # the runners just woken start now, before the wait below
        if self._ready or ((self._busy or self._tasks) and not records):
            # Records waiting for a runner, or nothing new: let the runners work rather
            # than fetch again (a fetch with records buffered returns at once, and the
            # loop would spin without giving them a turn).
            await self._wait_progress(0.01)

    def _enqueue(self, record: InRecord) -> None:
        assert self._consumer is not None
        tp = record.tp
        if tp not in self._owned:
            return  # fetched around a rebalance that took the partition away
        book = self._books.get(tp)
        if book is None:
            book = self._books[tp] = OffsetBook()
        book.fetched(record.offset)
        try:
            envelope = self.codec.decode(
                record.value,
                record.headers,
                reader_schema=self.plan.input_schema,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        except DecodeError as exc:
            self._spawn(self._undecodable(record, exc, self._ancestry_of(record), book))
            return
        wire = envelope.ancestry.wire
        if wire is not None and len(wire) > self.options.max_ancestry_bytes:
            error = DecodeError(
                f"an {len(wire)}-byte ancestry header, larger than the limit of "
                f"{self.options.max_ancestry_bytes} (WorkerOptions.max_ancestry_bytes): "
                "corrupt or runaway lineage",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
            self._spawn(self._undecodable(record, error, None, book))
            return
        priority = envelope.ancestry.query_time
        heapq.heappush(self._ready, (priority, next(self._seq), record, envelope, book))

    async def _start_ready(self) -> None:
        if self._inline:
            # A plain-function stage: each record runs to its end here, oldest query
            # first, for one slice; the rest wait for the loop's next turn.
            loop = asyncio.get_running_loop()
            until = loop.time() + _SLICE
            while self._ready and loop.time() < until:
                _, _, record, envelope, book = heapq.heappop(self._ready)
                ready = self._owned.get(record.tp)
                if ready is not None and ready.is_set():
                    await self._handle(record, envelope, book)
                else:  # not ready yet (or revoked): a task waits for it
                    self._spawn(self._handle(record, envelope, book))
        else:
            self._wake_runners()
        self.stats.in_flight = self._busy + len(self._tasks)
        self.stats.buffered = len(self._ready)

    def _wake_runners(self) -> None:
        """Give every ready record a runner: parked ones first, new ones up to the limit."""
        wanted = len(self._ready)
        while wanted and self._parked:
            parked = self._parked.popleft()
            if not parked.done():
                parked.set_result(None)
                wanted -= 1
        while wanted and len(self._runners) < self._max_in_flight:
            runner = asyncio.get_running_loop().create_task(self._runner())
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
            wanted -= 1

    async def _runner(self) -> None:
        """Handle ready records, oldest query first, one at a time; park when none is left."""
        loop = asyncio.get_running_loop()
        until = loop.time() + _SLICE
        while not self._stopping.is_set():
            if loop.time() >= until:
                await asyncio.sleep(0)  # handlers that do not await: heartbeats run now
                until = loop.time() + _SLICE
            if not self._ready:
                parked: asyncio.Future[None] = loop.create_future()
                self._parked.append(parked)
                await parked
                until = loop.time() + _SLICE
                continue
            _, _, record, envelope, book = heapq.heappop(self._ready)
            tp = record.tp
            handling = self._handling
            self._busy += 1
            handling[tp] = handling.get(tp, 0) + 1
            try:
                await self._handle(record, envelope, book)
            finally:
                self._busy -= 1
                handling[tp] -= 1
                if self._progress:
                    waiting, self._progress = self._progress, []
                    for progress in waiting:
                        if not progress.done():
                            progress.set_result(None)

    async def _wait_progress(self, timeout: float) -> None:
        """Wait until a record or a one-off task finishes, or ``timeout`` passes."""
        progress: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._progress.append(progress)  # the loop and a rebalance callback may both wait
        try:
            await asyncio.wait(
                {progress, *self._tasks}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            progress.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _backpressure(self) -> None:
        assert self._consumer is not None
        buffered = len(self._ready) + len(self._tasks) + self._busy
        if not self._paused and buffered >= self.options.max_buffered:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
            self.stats.pauses += 1
        elif self._paused and buffered <= self.options.max_buffered // 2:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    async def _commit(self) -> None:
        offsets = {}
        for tp, book in list(self._books.items()):
            if tp not in self._owned:
                del self._books[tp]  # revoked: its new owner commits it
                continue
            target = book.to_commit()
            if target is not None:
                offsets[tp] = target
        if await self._commit_offsets(offsets):
            for tp, target in offsets.items():
                if tp in self._books:
                    self._books[tp].committed = target

    async def _commit_offsets(self, offsets: dict[Partition, int]) -> bool:
        """Commit ``offsets`` for the group; False when there were none or a rebalance refused."""
        assert self._consumer is not None
        if not offsets:
            return False
        try:
            await self._consumer.commit(offsets)
        except TransportError as exc:
            if not exc.retriable:
                raise
            log.warning("stage %s: commit skipped during a rebalance: %s", self.plan.name, exc)
            return False
        return True

    # -- one record ---------------------------------------------------------

    async def _still_owned(self, tp: Partition, book: OffsetBook) -> bool:
        """Wait until ``tp`` is ready; False if it was revoked meanwhile (perhaps re-assigned)."""
        # aiokafka may hand out records of a new assignment while its callback
        # (state restore, transactional producer) still runs: wait for it.
        ready = self._owned.get(tp)
        if ready is not None and not ready.is_set():
            await ready.wait()
        return ready is not None and self._owned.get(tp) is ready and self._books.get(tp) is book

    async def _handle(self, record: InRecord, envelope: Envelope, book: OffsetBook) -> None:
        tp = record.tp
        ready = self._owned.get(tp)
        if (
            ready is None or not ready.is_set() or self._books.get(tp) is not book
        ) and not await self._still_owned(tp, book):
            return  # whoever owns the partition now runs the record
        # Counted here, not when fetched: a take-over or a revocation drops records fetched
        # before it (they are fetched again), and run(count=...) waits for handled ones.
        self.stats.consumed += 1
        started = time.perf_counter()
        source = _Source(record.offset)
        token = _RECORD.set(source)  # reset below: an inline record runs in the worker's context
        current = bind_record(envelope.ancestry)  # for handlers: alto_stream.context
        finished = False  # a record cut short (cancelled by a stop) is never done
        try:
            if self._aggregating is not None:
                await self._aggregating.add(record, envelope)
            elif envelope.kind.is_marker:
                await self._forward(record, envelope)
            elif self._map:
                # The hot path, without process()'s emit callback and its layers of coroutines.
                value = envelope.value
                result = self._handler(value) if self._inline else await self.processor.call(value)
                records = self._outputs(self.processor.result_envelope(envelope.ancestry, result))
                if not self._write_now(tp, records):
                    await self._write_waiting(tp, records)
            else:
                await self.processor.process(envelope, functools.partial(self._emit_to, tp))
            finished = True
        except Exception as exc:  # the per-record boundary: dead letter + error marker
            finished = await self._failed(record, exc, envelope.ancestry)
        finally:
            unbind_record(current)
            _RECORD.reset(token)
            self.stats.handler_seconds.append(time.perf_counter() - started)
            if len(self.stats.handler_seconds) > 10_000:
                del self.stats.handler_seconds[:5_000]
            if finished:
                # The book of this assignment: a stale one after a rebalance is discarded.
                self._acks.done_when_acked(
                    record.offset, book, source.acks, record, envelope.ancestry
                )

    async def _undecodable(
        self, record: InRecord, exc: DecodeError, ancestry: Ancestry | None, book: OffsetBook
    ) -> None:
        if not await self._still_owned(record.tp, book):
            return
        self.stats.consumed += 1
        source = _Source(record.offset)
        _RECORD.set(source)  # a task of its own: no reset needed
        if await self._failed(record, exc, ancestry):
            self._acks.done_when_acked(record.offset, book, source.acks, record, ancestry)

    def _ancestry_of(self, record: InRecord) -> Ancestry | None:
        """The ancestry of a record whose value could not be decoded, if it can be read."""
        try:
            return self.codec.decode_ancestry(record.headers)
        except DecodeError:
            return None

    @contextlib.asynccontextmanager
    async def _writes_of_no_record(self) -> AsyncIterator[None]:
        """Writes not for one input record: handed over without waiting, acknowledged at exit."""
        source = _Source(None)
        token = _RECORD.set(source)
        try:
            yield
        finally:
            _RECORD.reset(token)
        if source.acks:
            await asyncio.gather(*source.acks)

    async def _forward(self, record: InRecord, envelope: Envelope) -> None:
        await self._write(
            record.tp,
            [OutRecord(self.plan.output_topic, record.value, record.headers, self._key(envelope))],
        )

    async def _emit_to(self, tp: Partition, envelope: Envelope) -> None:
        await self._write(tp, self._outputs(envelope))

    def _outputs(self, envelope: Envelope) -> list[OutRecord]:
        value, headers = self.codec.encode(envelope)
        record = OutRecord(self.plan.output_topic, value, headers, self._key(envelope))
        limit = self.options.max_record_bytes
        if (value is not None and len(value) > limit) or failures.record_size(record) > limit:
            raise failures.OutputTooLargeError(
                f"stage {self.plan.name!r} made an output of {failures.record_size(record)} "
                f"bytes ({envelope.ancestry.id}), larger than the limit of {limit}: emit "
                "smaller records, or raise WorkerOptions.max_record_bytes (and the topic's "
                "max.message.bytes)",
                stage=self.plan.name,
            )
        return [record]

    def _key(self, envelope: Envelope) -> bytes:
        depth = self.plan.key_depth
        ancestry = envelope.ancestry
        return ancestry.routing_key(depth) if depth is not None else ancestry.id.encode()

    async def _write(self, tp: Partition, records: Sequence[OutRecord]) -> None:
        if not self._write_now(tp, records):
            await self._write_waiting(tp, records)

    async def _write_waiting(self, tp: Partition, records: Sequence[OutRecord]) -> None:
        """:meth:`_write` where :meth:`_write_now` could not: waits for the producer."""
        assert self._producer is not None
        source = _RECORD.get()
        self.stats.produced += len(records)
        if source is None:  # not for one record (expiry, restore): wait here
            await self._producer.send_many(records)
        else:  # the record is done once these are acknowledged (see _handle)
            source.acks.extend(await self._producer.enqueue(records))

    def _write_now(self, tp: Partition, records: Sequence[OutRecord]) -> bool:
        """:meth:`_write` when it needs no waiting (most records); False: _write_waiting."""
        source = _RECORD.get()
        tx = self._tx
        if tx is not None:
            offset = None if source is None else source.offset
            tx.buffer[tp].extend((offset, r) for r in records)
            return True
        if source is None:
            return False
        assert self._producer is not None
        acks = self._producer.enqueue_now(records)
        if acks is None:  # the producer must learn a topic's partitions first
            return False
        self.stats.produced += len(records)
        source.acks.extend(acks)
        return True

    async def _failed(self, record: InRecord, exc: Exception, ancestry: Ancestry | None) -> bool:
        """Write ``record``'s dead letter and the marker in its place; False if that failed.

        The per-record boundary: nothing raised here leaves it. If even the dead
        letter cannot be handed to the producer, the record is not done: the
        worker stops (its supervisor restarts it) and the record runs again.
        """
        self.stats.errors += 1
        self.stats.dead_letters += 1
        reason = failures.reason_of(exc)
        log.warning(
            "stage %s: %s[%d]@%d to dead letters: %s",
            self.plan.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        try:
            letter = failures.dead_letter(
                record,
                exc,
                ancestry,
                stage=self.plan.name,
                topic=self.plan.dead_letter_topic,
                codec=self.codec,
                limit=self.options.max_record_bytes,
            )
            await self._write(record.tp, [letter])
            marker = None if ancestry is None else failures.error_ancestry(ancestry, reason)
            if marker is not None:
                await self._error_marker(record, Envelope(marker, None, None, self.plan.name))
        except Exception as failure:
            log.exception("stage %s: could not dead-letter %s", self.plan.name, record[:3])
            if self._fatal is None:
                self._fatal = failure
            self.stop()
            return False
        return True

    async def _error_marker(self, record: InRecord, marker: Envelope) -> None:
        """Send ``marker`` on in place of ``record``; an aggregate counts it itself.

        An aggregate's output is one level up from its input: a marker for one
        of its input records belongs in its own tracker (the ancestor completes
        with an error child), not downstream, where it would be too deep.
        """
        if self._aggregating is None:
            await self._write(record.tp, self._outputs(marker))
            return
        _, headers = self.codec.encode(marker)
        try:
            await self._aggregating.add(record._replace(value=None, headers=headers), marker)
        except AncestryError as exc:  # refused as its record was: the dead letter says it all
            log.info("stage %s: no error marker for %s: %s", self.plan.name, marker.id, exc)

    def _ack_failed(self, ack: asyncio.Future[Any], waiting: list[Waiting]) -> list[Waiting]:
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
        if self._fatal is None:
            self._fatal = TransportError(f"a write was not acknowledged: {error!r}")
            log.error("stage %s: %s", self.plan.name, self._fatal)
        self.stop()
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
        source = _Source(record.offset)
        _RECORD.set(source)  # a task of its own: no reset needed
        if await self._failed(record, error, ancestry):
            self._acks.done_when_acked(record.offset, book, source.acks)

    # -- rebalancing --------------------------------------------------------

    async def _on_assigned(self, partitions: set[Partition]) -> None:
        self.stats.rebalances += 1
        events = {tp: asyncio.Event() for tp in partitions}
        self._owned.update(events)
        try:
            if self._tx is not None:
                assert self._consumer is not None
                await self._tx.take_over(partitions, self._consumer)
                self._drop_ready(partitions)  # fetched from offsets read before the take-over
            for tp in partitions:
                if self._aggregating is not None:
                    await self._aggregating.restore(self.transport, tp)
                    if self._tx is not None:
                        await self._tx.commit(tp)
                events[tp].set()
        except Exception as exc:
            # A partition that cannot be made ready would stall forever: stop the
            # worker instead, so that its supervisor restarts it.
            log.exception("stage %s: could not take over %s", self.plan.name, sorted(partitions))
            self._fatal = exc
            self.stop()

    def _drop_ready(self, partitions: set[Partition]) -> None:
        """Forget the records of ``partitions`` not started yet."""
        self._ready = [item for item in self._ready if item[2].tp not in partitions]
        heapq.heapify(self._ready)

    async def _on_revoked(self, partitions: set[Partition]) -> None:
        # The books first: the loop's next commit forgets partitions no longer owned.
        books = {tp: book for tp in partitions if (book := self._books.get(tp)) is not None}
        for tp in partitions:
            event = self._owned.pop(tp, None)
            if event is not None:
                event.set()
        # Records not started stay unstarted: the partition's next owner runs them.
        self._drop_ready(partitions)
        # Records of these partitions in hand finish (or the deadline passes).
        deadline = time.monotonic() + self.options.shutdown_timeout
        while time.monotonic() < deadline and (
            self._tasks or any(self._handling.get(tp) for tp in partitions)
        ):
            await self._wait_progress(0.05)
        if self._tx is not None:
            await self._tx.commit_all(partitions)
        else:
            await self._commit()
            # What was done on the partitions going away, so their next owner does not
            # run it again (allowed: the group waits for this callback).
            done = {tp: book.to_commit() for tp, book in books.items()}
            await self._commit_offsets({tp: o for tp, o in done.items() if o is not None})
        for tp in partitions:
            self._books.pop(tp, None)
            if self._aggregating is not None:
                self._aggregating.drop(tp)
            if self._tx is not None:
                await self._tx.release(tp)  # outputs of records its next owner runs again

    # -- transactional mode -------------------------------------------------

    async def _run_transactional_batch(self, tx: Transactions) -> None:
        """Process everything fetched (for up to a round), then let ``tx`` commit it.

        The round's commits run in the background while the next batches are
        fetched and processed (see :meth:`Transactions.end_batch`).
        """
        loop = asyncio.get_running_loop()
        until = loop.time() + ROUND
        while self._ready or self._busy or self._tasks:
            await self._start_ready()
            if self._stopping.is_set() and not self._busy and not self._tasks:
                break  # records not started stay uncommitted: whoever reads next runs them
            if loop.time() >= until:
                break  # a backlog: commit what is done, the rest goes on in the next round
            if self._ready and self._inline:
                await asyncio.sleep(0)  # a slice is done: heartbeats run
            elif self._ready or self._busy or self._tasks:
                await self._wait_progress(0.05)
        self._backpressure()
        await tx.end_batch(stopping=self._stopping.is_set())


@dataclass(slots=True)
class _Source:
    """The input record a task handles: its offset and its outputs' acknowledgements."""

    offset: int | None  # None: writes of no one record (time-outs)
    acks: list[asyncio.Future[Any]] = field(default_factory=list)
