"""The Kafka transport: consumers, producers, readers (with :mod:`.ops`, the only aiokafka user).

Durations come in as float seconds and become Kafka's ``_ms`` here. Every
aiokafka error is wrapped in :class:`~alto_stream.errors.TransportError`
(``retriable`` copied from aiokafka's own flag).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidSessionTimeoutError,
    KafkaConnectionError,
    KafkaError,
    ProducerFenced,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
    for_code,
)
from aiokafka.producer.transaction_manager import TransactionState

from alto_stream.errors import ConfigError, FencedError, TransportError
from alto_stream.runtime.kafka.leaders import wait_until_served
from alto_stream.runtime.kafka.outbox import Outbox
from alto_stream.runtime.kafka.reach import Reach, watch
from alto_stream.runtime.kafka.security import access_error
from alto_stream.security import Security
from alto_stream.settings import (
    INSTANCE_ID_ENV,
    SESSION_TIMEOUT_ENV,
    GroupTiming,
    bootstrap_servers,
)
from alto_stream.topics import TopicSpec
from alto_stream.transport import InRecord, OutRecord, Partition, RebalanceCallback

__all__ = ["KafkaTransport", "is_fencing"]

log = logging.getLogger(__name__)

_REBALANCING = (
    CommitFailedError,
    IllegalStateError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


@asynccontextmanager
async def _wrapped(action: str, security: Security | None = None) -> AsyncIterator[None]:
    try:
        yield
    except KafkaError as exc:
        denied = access_error(exc, action, security or Security())
        if denied is not None:
            raise denied from None
        hint = ""
        if security is not None and security.secured and isinstance(exc, KafkaConnectionError):
            # aiokafka logs why (a refused password, an untrusted certificate) but raises
            # only "Unable to bootstrap": check() asks again and names the reason.
            hint = f" (over {security.describe()}; KafkaTransport.check() says why)"
        raise TransportError(
            f"Kafka failed to {action}: {exc}{hint}",
            retriable=bool(getattr(exc, "retriable", False)),
        ) from exc


async def _fetch(
    consumer: AIOKafkaConsumer, timeout: float, max_records: int, security: Security
) -> list[InRecord]:
    """Records ready now from ``consumer``, waiting at most ``timeout`` seconds."""
    async with _wrapped("fetch", security):
        batches = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
    return [_record(m) for messages in batches.values() for m in messages]


_FETCH_WAIT_MS = 200
"""How long the broker holds a worker's fetch while its partitions have no new record.

Data ends the wait at once (the hop latency is the same at 50 or 500 ms: 3-4 ms
p50, 6-8 ms p99 in both modes, ``bench latency``); what the wait sets is how often
an idle worker asks: at 50 ms (20 fetches/s) an idle textflow app's six workers took
23% of a core and the broker 13%; at 200 ms 13% and 7% (500 ms: 13% and 5%), CPU a
model sharing the host gets back. A partition resumed while a fetch is in flight
waits for that fetch (aiokafka sends one at a time per broker), so the wait is also
the most an admitted query can lose after its input partition is resumed.
"""

_POSITION_WAIT = 0.1
"""Seconds a worker waits for a partition's position (see ``_KafkaConsumer.position``)."""

_TOPIC_AUTHORIZATION_FAILED = 29
"""Kafka's error code of a topic the principal may not describe."""

_BATCH_BYTES = 256 * 1024
"""The most a producer puts in one partition's batch (Kafka's default request limit is 1 MiB)."""

_TX_RETRY_BACKOFF_MS = 20
"""Back-off of a transactional producer's retries (see ``_KafkaProducer``)."""

_REBALANCE_TIMEOUT = 20.0
"""Seconds a rebalance waits for the group's live members to rejoin (at least)."""

_TRANSACTION_TIMEOUT = 30.0
"""Seconds a transaction may take to commit before the worker gives up on it."""


def _partition(key: bytes | None, partitions: list[int], available: list[int]) -> int:
    """The partition of a key: CRC-32 (in C) instead of aiokafka's pure-Python murmur2.

    Every alto-stream producer uses it, so co-partitioning holds among them.
    """
    if key is None:
        return random.choice(available or partitions)
    return zlib.crc32(key) % len(partitions)  # Kafka numbers partitions 0..n-1


def _record(message: Any) -> InRecord:
    return InRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        tuple(message.headers or ()),
        message.timestamp / 1000.0,
    )


def _produce_error(exc: KafkaError, security: Security) -> TransportError:
    denied = access_error(exc, "produce", security)
    if denied is not None:
        return denied
    return TransportError(f"Kafka failed to produce: {exc}", retriable=exc.retriable)


def is_fencing(exc: BaseException | None) -> bool:
    """True for aiokafka's error of a producer that a newer owner fenced."""
    return isinstance(exc, ProducerFenced)


def _unusable(failure: BaseException) -> TransportError:
    """The error of a commit on a transactional producer that ``failure`` broke for good."""
    if is_fencing(failure):
        error: TransportError = FencedError(
            f"this producer was fenced earlier ({failure!r}): a newer owner of the partition has it"
        )
    else:
        error = TransportError(f"this transactional producer failed earlier: {failure!r}")
    error.__cause__ = failure
    return error


class KafkaTransport:
    """Consumers, producers and admin calls against a Kafka cluster."""

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        client_id: str = "alto-stream",
        timing: GroupTiming | None = None,
        security: Security | None = None,
    ) -> None:
        self.bootstrap = bootstrap_servers(bootstrap)
        self.client_id = client_id
        self.timing = timing if timing is not None else GroupTiming.from_env()
        self.security = security if security is not None else Security.from_env()

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client of this transport gets (address, security)."""
        return {"bootstrap_servers": self.bootstrap, **self.security.kafka_options()}

    async def check(self, *, timeout: float = 10.0) -> None:
        """Authenticate once (AccessError on refused credentials or certificates)."""
        from alto_stream.runtime.kafka.security import probe

        if self.security.secured:
            servers = [s.strip().rpartition(":") for s in self.bootstrap.split(",")]
            await probe([(h.strip("[]"), int(p)) for h, _, p in servers], self.security, timeout)

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        read_committed: bool = False,
    ) -> _KafkaConsumer:
        """A member of ``group`` reading ``topics`` (from the earliest offset when new)."""
        return _KafkaConsumer(self, list(topics), group, on_assigned, on_revoked, read_committed)

    def producer(self, *, transactional_id: str | None = None) -> _KafkaProducer:
        """An idempotent producer; transactional when given an id."""
        return _KafkaProducer(self, transactional_id)

    async def read_partition(self, topic: str, partition: int) -> list[InRecord]:
        """Every committed record of one partition, up to its end now."""
        tp = TopicPartition(topic, partition)
        consumer = AIOKafkaConsumer(
            **self.client_options(),
            client_id=f"{self.client_id}-restore",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        out: list[InRecord] = []
        async with _wrapped(f"read {topic}[{partition}]", self.security):
            await consumer.start()
            try:
                consumer.assign([tp])
                end = (await consumer.end_offsets([tp]))[tp]
                # An explicit seek (seek_to_beginning races with assign's reset).
                consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    out.extend(_record(m) for m in batch.get(tp, []))
            finally:
                await _stop_consumer(consumer)
        return out

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (TransportError if it does not exist)."""
        return (await self.describe([topic]))[topic]

    async def describe(self, topics: Sequence[str]) -> dict[str, int]:
        """Partition counts of ``topics``; TransportError naming any that does not exist."""
        admin = AIOKafkaAdminClient(**self.client_options(), client_id=self.client_id)
        async with _wrapped(f"describe {', '.join(topics)}", self.security):
            await admin.start()
            try:
                described = await admin.describe_topics(list(topics))
            finally:
                await admin.close()
        counts = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
        denied = [d["topic"] for d in described if d["error_code"] == _TOPIC_AUTHORIZATION_FAILED]
        if denied:
            raise access_error(
                TopicAuthorizationFailedError(", ".join(denied)),
                f"describe {', '.join(denied)}",
                self.security,
            ) or TransportError(f"not authorized for topic(s) {', '.join(denied)}")
        missing = [t for t in topics if not counts.get(t)]
        if missing:
            raise TransportError(
                f"topic(s) {', '.join(missing)} do not exist: create them with "
                "`alto-stream topics apply APP`"
            )
        return counts

    def reader(self, topics: Sequence[str], *, start_time: float | None = None) -> _KafkaReader:
        """A reader of every partition of ``topics`` from ``start_time`` (or the start)."""
        return _KafkaReader(self, list(topics), start_time)

    async def broker_count(self) -> int:
        """How many brokers the cluster has now."""
        admin = AIOKafkaAdminClient(**self.client_options(), client_id=self.client_id)
        async with _wrapped("describe the cluster", self.security):
            await admin.start()
            try:
                cluster = await admin.describe_cluster()
            finally:
                await admin.close()
        return len(cluster["brokers"])

    async def ensure_topics(
        self, specs: Sequence[TopicSpec], *, timeout: float = 30.0
    ) -> list[str]:
        """Create the topics that do not exist yet; returns the names created.

        What a spec leaves to the cluster (its replication) is decided for the
        cluster's broker count (:meth:`TopicSpec.for_cluster`).
        """
        if any(s.replication is None for s in specs):
            brokers = await self.broker_count()
            specs = [s.for_cluster(brokers) for s in specs]
        admin = AIOKafkaAdminClient(**self.client_options(), client_id=self.client_id)
        created: list[str] = []
        async with _wrapped("create topics", self.security):
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                new = [
                    NewTopic(s.name, s.partitions, s.replication, topic_configs=s.kafka_configs())
                    for s in specs
                    if s.name not in existing
                ]
                if new:
                    with contextlib.suppress(TopicAlreadyExistsError):
                        response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
                        self._raise_refused(response)
                        # Not those another creator made first (TopicAlreadyExists).
                        created = [t[0] for t in response.topic_errors if t[1] == 0]
                    await self._wait_for_leaders({t.name: t.num_partitions for t in new}, timeout)
            finally:
                await admin.close()
        return created

    def _raise_refused(self, response: Any) -> None:
        """AccessError when an ACL refused creating a topic; TransportError for other refusals."""
        failed = [(t[0], t[1], t[2] if len(t) > 2 else "") for t in response.topic_errors]
        failed = [f for f in failed if f[1] not in (0, TopicAlreadyExistsError.errno)]
        for name, code, message in failed:
            error = for_code(code)
            denied = access_error(error(name), f"create topic {name}", self.security)
            if denied is not None:
                raise denied
            raise TransportError(
                f"Kafka refused to create topic {name!r}: {error.__name__} {message}"
            )

    async def _wait_for_leaders(self, topics: Mapping[str, int], timeout: float) -> None:
        """Wait until the leader of every partition of ``topics`` serves it.

        Metadata shows a fresh topic's leaders before they serve it (see
        :mod:`.leaders`): waiting for the metadata alone let the first produce
        meet ``NotLeaderForPartition``.
        """
        await wait_until_served(self.client_options(), topics, timeout)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        on_rejoin: Callable[[], None],
    ) -> None:
        self._assigned = on_assigned
        self._revoked = on_revoked
        self._rejoin = on_rejoin
        self.joined = False  # once assigned: later joins are rejoins

    async def on_partitions_revoked(self, revoked: Any) -> None:  # before every join
        if self.joined:
            self._rejoin()
        await self._revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.joined = True
        await self._assigned({(tp.topic, tp.partition) for tp in assigned})


_REPLACED_TIMES = 3
_REPLACED_WINDOW = 60.0
"""A static member put out of its group this many times within this many seconds has a twin.

Kafka gives a group instance id's place to whichever consumer joined with it last;
the one put out is told only that its member id is unknown, and aiokafka joins
again with the same id, putting the other out: two workers started with one
``--instance-id`` took each other's place about once a second for ever, neither
keeping its partitions. Once is also what a worker frozen past its session
time-out meets.
"""


class _KafkaConsumer:
    def __init__(
        self,
        transport: KafkaTransport,
        topics: list[str],
        group: str,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        read_committed: bool,
    ) -> None:
        self._topics = topics
        self._security = transport.security
        self._listener = _Listener(on_assigned, on_revoked, self._rejoining)
        self._group = group
        self._replaced: collections.deque[float] = collections.deque()
        self._twin: ConfigError | None = None
        self._watch: asyncio.Task[None] | None = None
        timing = self._timing = transport.timing
        self._consumer = AIOKafkaConsumer(
            **transport.client_options(),
            client_id=f"{transport.client_id}-{group}",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            session_timeout_ms=int(timing.session_timeout * 1000),
            heartbeat_interval_ms=int(timing.heartbeat_interval * 1000),
            max_poll_interval_ms=int(timing.max_poll_interval * 1000),
            # How long a rebalance waits for live members to rejoin: a member's
            # revocation callback lets its records in hand finish (up to the
            # worker's shutdown timeout, 10 s) before it rejoins. A dead member is
            # noticed by the session timeout, so this does not slow recovery.
            rebalance_timeout_ms=int(max(timing.session_timeout, _REBALANCE_TIMEOUT) * 1000),
            group_instance_id=timing.instance_id,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )

    async def start(self) -> None:
        try:
            async with _wrapped("join the consumer group", self._security):
                self._consumer.subscribe(self._topics, listener=self._listener)
                await self._consumer.start()
            self._watch = asyncio.get_running_loop().create_task(
                watch(self._connected, Reach(self._group)), name="kafka-reach"
            )
        except TransportError as exc:
            if not isinstance(exc.__cause__, InvalidSessionTimeoutError):
                raise
            # A setting, not a fault: retrying (a supervisor's restarts) cannot help.
            raise ConfigError(
                f"Kafka refused a group session timeout of {self._timing.session_timeout:g} s: "
                "a broker takes group.min.session.timeout.ms to group.max.session.timeout.ms "
                "(6 to 1800 s unless configured otherwise); fix: --session-timeout "
                f"({SESSION_TIMEOUT_ENV}) within them"
            ) from exc.__cause__

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        async with _wrapped("leave the consumer group", self._security):
            await _stop_consumer(self._consumer)

    def _connected(self) -> bool:
        """Whether the consumer holds a live connection to any broker (see ``reach``)."""
        # aiokafka 0.14's AIOKafkaClient._conns: (node, group) -> connection, a closed
        # one kept until it is asked for again (tests/unit/test_kafka_internals.py).
        conns = getattr(self._consumer._client, "_conns", {})
        return any(conn.connected() for conn in list(conns.values()))

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        if self._twin is not None:
            raise self._twin
        return await _fetch(self._consumer, timeout, max_records, self._security)

    def _rejoining(self) -> None:
        """A static member put out of its group too often stops (see ``_REPLACED_TIMES``)."""
        instance = self._timing.instance_id
        coordinator = getattr(self._consumer, "_coordinator", None)
        if instance is None or coordinator is None or self._twin is not None:
            return
        if coordinator.member_id:  # a rebalance, not a member put out (its id forgotten)
            return
        now = time.monotonic()
        self._replaced.append(now)
        while now - self._replaced[0] > _REPLACED_WINDOW:
            self._replaced.popleft()
        if len(self._replaced) < _REPLACED_TIMES:
            return
        # The join about to be made goes without the id, as a member of its own: with
        # the id it would put the other out once more, and that one would stop too.
        # (aiokafka 0.14's GroupCoordinator: its JoinGroup reads _group_instance_id, and
        # member_id is "" once the coordinator forgot it; tests/unit/test_kafka_internals.py.)
        coordinator._group_instance_id = None
        self._twin = ConfigError(
            f"another consumer of group {self._group!r} uses group instance id {instance!r}: "
            f"it took this worker's place {len(self._replaced)} times in "
            f"{_REPLACED_WINDOW:g} s; fix: give each worker its own --instance-id "
            f"({INSTANCE_ID_ENV}; each `up --static-membership` of the app its own --host-id), "
            "or stop the other one"
        )

    async def commit(
        self, offsets: Mapping[Partition, int], *, metadata: Mapping[Partition, str] | None = None
    ) -> None:
        try:
            async with _wrapped("commit offsets", self._security):
                await self._consumer.commit(_with_metadata(offsets, metadata))
        except TransportError as exc:
            if isinstance(exc.__cause__, _REBALANCING):
                # The group moved on: the new owner re-reads from the last commit.
                raise TransportError(str(exc), retriable=True) from exc.__cause__
            raise

    async def committed(self, partitions: set[Partition]) -> dict[Partition, tuple[int, str]]:
        tps = [TopicPartition(t, p) for t, p in sorted(partitions)]
        async with _wrapped("fetch committed offsets", self._security):
            # aiokafka's committed() gives the offset alone; its coordinator's fetch has
            # the metadata too (tests/unit/test_kafka_internals.py pins it).
            found = await self._consumer._coordinator.fetch_committed_offsets(tps)
        return {
            (tp.topic, tp.partition): (found[tp].offset, found[tp].metadata or "")
            for tp in tps
            if tp in found and found[tp].offset >= 0
        }

    def pause(self, partitions: set[Partition]) -> None:
        self._consumer.pause(*(TopicPartition(t, p) for t, p in partitions))

    def resume(self, partitions: set[Partition]) -> None:
        self._consumer.resume(*(TopicPartition(t, p) for t, p in partitions))

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def position(self, tp: Partition) -> int | None:
        topic_partition = TopicPartition(*tp)
        try:
            # Known, it is local and comes at once. Not known (a partition assigned again
            # and not fetched from yet), aiokafka waits for it, up to its request
            # time-out (40 s): the worker's loop must not (its transactions time out).
            position: int = await asyncio.wait_for(
                self._consumer.position(topic_partition), _POSITION_WAIT
            )
        except (IllegalStateError, KafkaError, TimeoutError):  # revoked, or not known now
            return None
        return position

    async def seek_to_committed(self, partitions: set[Partition]) -> None:
        # aiokafka fetches a new assignment's committed offsets while the rebalance
        # callback still runs, and without KIP-447's require_stable (its OffsetFetch
        # stops at v3): a transaction of the previous owner that is still completing
        # is not seen. Fetched again after the callback has initialised the
        # partitions' transactional producers (which waits for that transaction to
        # complete), the offsets are the ones its transactions committed.
        owned = self._consumer.assignment()
        tps = [TopicPartition(t, p) for t, p in sorted(partitions)]
        async with _wrapped("fetch committed offsets", self._security):
            targets = {tp: await self._consumer.committed(tp) for tp in tps if tp in owned}
            uncommitted = [tp for tp, offset in targets.items() if offset is None]
            if uncommitted:  # as auto_offset_reset="earliest" does
                targets.update(await self._consumer.beginning_offsets(uncommitted))
            for tp, offset in targets.items():
                assert offset is not None
                # Always a seek: it also drops what was fetched from the earlier read.
                self._consumer.seek(tp, offset)


class _KafkaProducer:
    def __init__(self, transport: KafkaTransport, transactional_id: str | None) -> None:
        self._security = transport.security
        self._producer = AIOKafkaProducer(
            **transport.client_options(),
            client_id=f"{transport.client_id}-producer",
            acks="all",
            enable_idempotence=True,
            transactional_id=transactional_id,
            linger_ms=0,
            # A transaction begun right after a commit is refused (CONCURRENT_TRANSACTIONS)
            # until the coordinator has written its markers: retry soon, not after 100 ms
            # (Kafka's Java client does the same for that error, KAFKA-5477).
            retry_backoff_ms=_TX_RETRY_BACKOFF_MS if transactional_id else 100,
            max_batch_size=_BATCH_BYTES,
            partitioner=_partition,
        )
        self._outbox = Outbox(self._producer, _partition)
        self._aborted = False

    async def start(self) -> None:
        async with _wrapped("start a producer", self._security):
            await self._producer.start()

    async def stop(self) -> None:
        async with _wrapped("stop a producer", self._security):
            try:
                await self._outbox.flush()
            finally:
                if self._aborted:
                    await self._drop_unsent()
                await self._producer.stop()
                self._failure()  # retrieved: no "exception was never retrieved" at exit

    def abort(self, error: BaseException) -> None:
        # An idempotent aiokafka producer retries a broker that is down for ever, and
        # its stop() waits for every batch: stop its sender, and stop() drops the rest.
        self._aborted = True
        self._outbox.abort(error)
        sender = self._producer._sender.sender_task
        if sender is not None:
            sender.cancel()

    async def _drop_unsent(self) -> None:
        """Drop aiokafka's batches once its sender has stopped (it re-queues them until then).

        Their futures stay pending (the outbox failed its own): failing them with
        aiokafka's ``fail_all`` broke on re-queued batches (a KeyError in a callback).
        """
        sender = self._producer._sender.sender_task
        if sender is not None:
            await asyncio.wait({sender})  # the sender ends its requests in flight first
        accumulator = self._producer._message_accumulator
        accumulator._batches.clear()
        accumulator._pending_batches.clear()

    def _failure(self) -> BaseException | None:
        """Why this transactional producer cannot begin a transaction; None if it can.

        aiokafka's sender task ends on a fatal error (fenced by a newer producer of
        the same transactional id, above all) and leaves the producer in its
        FATAL_ERROR state, where beginning a transaction fails an assertion
        (``FATAL_ERROR -> IN_TRANSACTION``); a transaction cut short by
        :data:`_TRANSACTION_TIMEOUT` may leave it in another state than READY.
        Reading the error also retrieves it (and the sender task's, and those of the
        batches it failed), so no "exception was never retrieved" traceback is
        logged for them.
        """
        # aiokafka keeps this state private: its transaction manager and sender task.
        manager = self._producer._txn_manager
        if manager is None or manager.transactional_id is None:
            return None
        sender = self._producer._sender.sender_task
        ended = sender is not None and sender.done() and not sender.cancelled()
        if ended and sender.exception() is not None:
            self._outbox.read_queued_failures()  # the batches it failed as it ended
        if manager.is_fatal_error():
            waiter = manager.wait_for_transaction_end()
            done = waiter is not None and waiter.done() and not waiter.cancelled()
            error: BaseException | None = waiter.exception() if done else None
            return error or RuntimeError("the producer is in aiokafka's FATAL_ERROR state")
        if manager.state in (TransactionState.UNINITIALIZED, TransactionState.READY):
            return None  # UNINITIALIZED: not started, begin_transaction waits for its id
        state: str = manager.state.name
        return RuntimeError(f"a transaction of this producer did not end ({state})")

    async def send(self, record: OutRecord) -> None:
        await self.send_many([record])

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        futures = await self.enqueue(records)
        async with _wrapped("produce", self._security):
            for future in futures:
                await future

    async def enqueue(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
        try:  # not _wrapped(): this runs for every record, a plain try costs nothing
            return await self._outbox.add(records)
        except KafkaError as exc:
            raise _produce_error(exc, self._security) from exc

    def enqueue_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]] | None:
        try:
            return self._outbox.add_now(records)
        except KafkaError as exc:
            raise _produce_error(exc, self._security) from exc

    async def commit_transaction(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[Partition, int],
        group: str,
        *,
        metadata: Mapping[Partition, str] | None = None,
    ) -> None:
        failure = self._failure()
        if failure is not None:
            raise _unusable(failure)
        try:
            # Bounded, as Kafka's own client does since KAFKA-10309: aiokafka's
            # send_offsets_to_transaction was seen waiting forever after rebalances.
            await asyncio.wait_for(
                self._commit_transaction(records, _with_metadata(offsets, metadata), group),
                _TRANSACTION_TIMEOUT,
            )
        except TimeoutError as exc:
            failure = self._failure()
            if is_fencing(failure):
                # Cut off past the session: fenced meanwhile (the abort then failed as such).
                assert failure is not None
                raise _unusable(failure) from failure
            raise TransportError(
                f"a transaction did not commit within {_TRANSACTION_TIMEOUT:.0f}s; "
                "the worker stops so that its supervisor restarts it"
            ) from exc
        except TransportError as exc:
            if isinstance(exc.__cause__, ProducerFenced):
                raise FencedError(
                    f"{exc}: a newer owner of the partition fenced this producer"
                ) from exc.__cause__
            raise

    async def _commit_transaction(
        self, records: Sequence[OutRecord], offsets: dict[TopicPartition, Any], group: str
    ) -> None:
        async with _wrapped("commit a transaction", self._security), self._producer.transaction():
            await self._outbox.add(records)
            # Every batch must be in aiokafka's hands before it commits the transaction.
            await self._outbox.flush()
            if offsets:
                await self._producer.send_offsets_to_transaction(offsets, group)


class _KafkaReader:
    """Reads whole topics outside any group, from the beginning, the end, an offset or a time.

    ``offset`` applies to every partition read; a negative one counts back from
    each partition's end. ``partitions`` restricts which are read.
    """

    def __init__(
        self,
        transport: KafkaTransport,
        topics: list[str],
        start: float | None,
        *,
        partitions: Sequence[int] | None = None,
        offset: int | None = None,
        from_end: bool = False,
    ) -> None:
        self._topics = topics
        self._security = transport.security
        self._start = start
        self._only = None if partitions is None else set(partitions)
        self._offset = offset
        self._from_end = from_end
        self._ends: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            **transport.client_options(),
            client_id=f"{transport.client_id}-reader",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )

    async def start(self) -> None:
        try:
            await self._open()
        except BaseException:
            # A reader that failed to start is not stopped by its caller: close its
            # connections here (aiokafka warns "Unclosed AIOKafkaConsumer" otherwise).
            with contextlib.suppress(KafkaError):
                await _stop_consumer(self._consumer)
            raise

    async def _open(self) -> None:
        async with _wrapped(f"read {', '.join(self._topics)}", self._security):
            await self._consumer.start()
            # A fresh metadata snapshot: the client's cached one may not know new topics yet.
            cluster = await self._consumer._client.fetch_all_metadata()
            tps = []
            for topic in self._topics:
                if topic not in cluster.topics():
                    raise TransportError(
                        f"topic {topic!r} does not exist: create it with "
                        "`alto-stream topics apply APP`"
                    )
                parts = sorted(cluster.partitions_for_topic(topic) or set())
                tps += [TopicPartition(topic, p) for p in parts if self._wanted(p)]
            self._consumer.assign(tps)
            await self._consumer._client.force_metadata_update()
            self._ends = await self._consumer.end_offsets(tps)
            firsts = await self._consumer.beginning_offsets(tps)
            times = {}
            if self._start is not None and self._offset is None:
                times = await self._consumer.offsets_for_times(
                    {tp: int(self._start * 1000) for tp in tps}
                )
            for tp in tps:
                first, end = firsts[tp], self._ends[tp]
                if self._from_end:
                    target = end
                elif self._offset is not None:
                    target = end + self._offset if self._offset < 0 else self._offset
                elif self._start is not None:
                    hit = times.get(tp)
                    target = hit.offset if hit is not None else end
                else:
                    target = first
                # An explicit seek: seek_to_beginning() races with the reset that
                # assign() starts, and may leave a partition at its end.
                self._consumer.seek(tp, min(max(target, first), end))

    def _wanted(self, partition: int) -> bool:
        return self._only is None or partition in self._only

    async def stop(self) -> None:
        async with _wrapped("stop a reader", self._security):
            await _stop_consumer(self._consumer)

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        return await _fetch(self._consumer, timeout, max_records, self._security)

    async def end_reached(self) -> bool:
        return await self.reached({(tp.topic, tp.partition): end for tp, end in self._ends.items()})

    async def ends(self) -> dict[Partition, int]:
        async with _wrapped("read end offsets", self._security):
            ends = await self._consumer.end_offsets(list(self._ends))
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def reached(self, ends: Mapping[Partition, int]) -> bool:
        async with _wrapped("read positions", self._security):
            for (topic, partition), end in ends.items():
                if await self._consumer.position(TopicPartition(topic, partition)) < end:
                    return False
        return True


def _with_metadata(
    offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None
) -> dict[TopicPartition, Any]:
    """Offsets as aiokafka commits them: ``(offset, metadata)`` where there is metadata."""
    metadata = metadata or {}
    return {
        TopicPartition(*tp): (offset, metadata[tp]) if metadata.get(tp) else offset
        for tp, offset in offsets.items()
    }


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, past the CancelledError aiokafka may raise of its own.

    Stopping, aiokafka's fetcher cancels its fetch requests and awaits them: one
    cut in its retry back-off (the broker is gone) raises CancelledError out of
    ``stop()`` though nothing cancelled the caller, and skips closing the
    connections. A cancellation of the caller itself still propagates.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        await consumer._client.close()
