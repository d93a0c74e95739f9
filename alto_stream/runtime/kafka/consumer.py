"""A member of a consumer group: a worker's reads, commits, pauses and seeks."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidSessionTimeoutError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from alto_stream.errors import ConfigError, TransportError
from alto_stream.runtime.kafka.common import (
    connected,
    fetch_records,
    stop_consumer,
    with_metadata,
    wrapped,
)
from alto_stream.runtime.kafka.reach import Reach, watch
from alto_stream.settings import INSTANCE_ID_ENV, SESSION_TIMEOUT_ENV
from alto_stream.transport import InRecord, Partition, RebalanceCallback

if TYPE_CHECKING:
    from alto_stream.runtime.kafka.transport import KafkaTransport

__all__ = ["KafkaConsumer"]

# Errors of a commit that the group's rebalance made moot (see ``KafkaConsumer.commit``).
_REBALANCING = (
    CommitFailedError,
    IllegalStateError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

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
"""Seconds a worker waits for a partition's position (see ``KafkaConsumer.position``)."""

_REBALANCE_TIMEOUT = 20.0
"""Seconds a rebalance waits for the group's live members to rejoin (at least)."""


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


_GONE_RECHECK = 5.0
"""Seconds between the two looks that find a topic a worker reads deleted (``_check_gone``)."""

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


class KafkaConsumer:
    """A member of a consumer group (``KafkaTransport.consumer``), reading for one worker."""

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
        self._on_assigned = on_assigned
        self._listener = _Listener(self._assigned, on_revoked, self._rejoining)
        self._group = group
        self._replaced: collections.deque[float] = collections.deque()
        self._twin: ConfigError | None = None
        self._gone: ConfigError | None = None
        self._gone_check: asyncio.Task[None] | None = None
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
            async with wrapped("join the consumer group", self._security):
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
        for task in (self._watch, self._gone_check):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        async with wrapped("leave the consumer group", self._security):
            await stop_consumer(self._consumer)

    def _connected(self) -> bool:
        """Whether the consumer holds a live connection to any broker (see ``reach``)."""
        return connected(self._consumer)

    async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
        if self._twin is not None:
            raise self._twin
        if self._gone is not None:
            raise self._gone
        return await fetch_records(self._consumer, timeout, max_records, self._security)

    async def _assigned(self, assigned: set[Partition]) -> None:
        self._keep_heartbeating()
        await self._on_assigned(assigned)
        unassigned = set(self._topics) - {topic for topic, _ in assigned}
        if unassigned and self._gone_check is None:
            self._gone_check = asyncio.get_running_loop().create_task(
                self._check_gone(unassigned), name="kafka-topics-gone"
            )

    def _keep_heartbeating(self) -> None:
        """Heartbeat while the worker takes its partitions over (an aggregate's restore).

        aiokafka stops its heartbeat task for a join and starts it again only once
        the assignment callback has returned: a restore longer than the session
        timeout (a changelog of 360,000 records: 13-30 s) had the member put out
        of its group as it ended, then its partitions assigned, restored and lost
        again, for minutes (a new user's transactional app after a burst). The
        group's generation and member id are known by now; Kafka's Java client
        heartbeats from there on too.
        """
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None:
            coordinator._start_heartbeat_task()  # a no-op when it runs already

    async def _check_gone(self, topics: set[str]) -> None:
        """Stop the worker (``fetch`` raises) when a topic it reads was deleted while it ran.

        A group whose topic is gone assigns nothing, and the worker would wait for it
        for ever without a word (`topics delete --force` under running workers did
        that); Kafka Streams stops on a vanished source topic too. A topic merely not
        assigned to this member (more workers than partitions) is still listed. It is
        looked for twice, ``_GONE_RECHECK`` apart, so that a topic whose metadata has
        not reached every node yet is not taken for a deleted one; an unreachable
        cluster proves nothing (``reach`` reports it).
        """
        try:
            for look in range(2):
                missing = topics - set(await self._consumer.topics())
                if not missing:
                    return
                if look == 0:
                    await asyncio.sleep(_GONE_RECHECK)
        except (KafkaError, OSError, TimeoutError):
            return
        finally:
            self._gone_check = None
        names = ", ".join(sorted(missing))
        self._gone = ConfigError(
            f"topic {names}, which group {self._group!r} reads, was deleted while this worker "
            "ran (is no longer on the cluster); expected it to stay while the app runs; fix: "
            "create the app's topics again (`alto-stream topics apply APP`, as `up` does when "
            "it starts) and start the worker again"
        )

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
            async with wrapped("commit offsets", self._security):
                await self._consumer.commit(with_metadata(offsets, metadata))
        except TransportError as exc:
            if isinstance(exc.__cause__, _REBALANCING):
                # The group moved on: the new owner re-reads from the last commit.
                raise TransportError(str(exc), retriable=True) from exc.__cause__
            raise

    async def committed(self, partitions: set[Partition]) -> dict[Partition, tuple[int, str]]:
        tps = [TopicPartition(t, p) for t, p in sorted(partitions)]
        async with wrapped("fetch committed offsets", self._security):
            # aiokafka's committed() gives the offset alone; its coordinator's fetch has
            # the metadata too (tests/unit/test_kafka_internals.py pins it).
            found = await self._consumer._coordinator.fetch_committed_offsets(tps)
        return {
            (tp.topic, tp.partition): (found[tp].offset, found[tp].metadata or "")
            for tp in tps
            if tp in found and found[tp].offset >= 0
        }

    def rejoin(self) -> None:
        # aiokafka has no public call for it; its coordinator's (test_kafka_internals.py).
        self._consumer._coordinator.request_rejoin()

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

    async def seek_to_committed(
        self, partitions: set[Partition]
    ) -> dict[Partition, tuple[int, str]]:
        # aiokafka fetches a new assignment's committed offsets while the rebalance
        # callback still runs, and without KIP-447's require_stable (its OffsetFetch
        # stops at v3): a transaction of the previous owner that is still completing
        # is not seen. Fetched again after the callback has initialised the
        # partitions' transactional producers (which waits for that transaction to
        # complete), the offsets are the ones its transactions committed.
        owned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        targets = await self.committed(partitions & owned)
        uncommitted = [TopicPartition(*tp) for tp in sorted(partitions & owned - set(targets))]
        if uncommitted:  # as auto_offset_reset="earliest" does
            async with wrapped("fetch committed offsets", self._security):
                first = await self._consumer.beginning_offsets(uncommitted)
            targets.update({(tp.topic, tp.partition): (offset, "") for tp, offset in first.items()})
        # The seeks last, with no wait after them: records the fetcher hands out from
        # the new offsets meanwhile would otherwise be dropped by the caller as read
        # before (the worker's loop fetches while this callback waits), and lost.
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        for tp, (offset, _) in targets.items():
            if tp in assigned:
                # Always a seek: it also drops what was fetched from the earlier read.
                self._consumer.seek(TopicPartition(*tp), offset)
        return {tp: target for tp, target in targets.items() if tp in assigned}
