"""The Kafka transport: :class:`KafkaTransport`, the aiokafka clients' factory and admin calls.

Its consumers (:mod:`.consumer`), producers (:mod:`.producer`) and readers
(:mod:`.reader`) live beside it; with :mod:`.ops`, this package is the only
aiokafka user. Durations come in as float seconds and become Kafka's ``_ms``
here. Every aiokafka error is wrapped in :class:`~alto_stream.errors.TransportError`
(``retriable`` copied from aiokafka's own flag; see :mod:`.common`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from alto_stream.errors import TransportError
from alto_stream.runtime.kafka.common import (
    TOPIC_AUTHORIZATION_FAILED,
    in_record,
    stop_consumer,
    wrapped,
)
from alto_stream.runtime.kafka.consumer import KafkaConsumer
from alto_stream.runtime.kafka.leaders import wait_until_served
from alto_stream.runtime.kafka.producer import KafkaProducer
from alto_stream.runtime.kafka.reader import KafkaReader
from alto_stream.runtime.kafka.security import access_error
from alto_stream.security import Security
from alto_stream.settings import GroupTiming, bootstrap_servers
from alto_stream.topics import TopicSpec
from alto_stream.transport import InRecord, RebalanceCallback

__all__ = ["KafkaTransport"]

log = logging.getLogger(__name__)


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
    ) -> KafkaConsumer:
        """A member of ``group`` reading ``topics`` (from the earliest offset when new)."""
        return KafkaConsumer(self, list(topics), group, on_assigned, on_revoked, read_committed)

    def producer(self, *, transactional_id: str | None = None) -> KafkaProducer:
        """An idempotent producer; transactional when given an id."""
        return KafkaProducer(self, transactional_id)

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
        async with wrapped(f"read {topic}[{partition}]", self.security):
            await consumer.start()
            try:
                consumer.assign([tp])
                begin, end = await _bounds(consumer, tp)
                # An explicit seek (seek_to_beginning races with assign's reset).
                consumer.seek(tp, begin)
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    out.extend(in_record(m) for m in batch.get(tp, []))
            finally:
                await stop_consumer(consumer)
        return out

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (TransportError if it does not exist)."""
        return (await self.describe([topic]))[topic]

    async def describe(self, topics: Sequence[str]) -> dict[str, int]:
        """Partition counts of ``topics``; TransportError naming any that does not exist."""
        admin = AIOKafkaAdminClient(**self.client_options(), client_id=self.client_id)
        async with wrapped(f"describe {', '.join(topics)}", self.security):
            await admin.start()
            try:
                described = await admin.describe_topics(list(topics))
            finally:
                await admin.close()
        counts = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
        denied = [d["topic"] for d in described if d["error_code"] == TOPIC_AUTHORIZATION_FAILED]
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

    def reader(self, topics: Sequence[str], *, start_time: float | None = None) -> KafkaReader:
        """A reader of every partition of ``topics`` from ``start_time`` (or the start)."""
        return KafkaReader(self, list(topics), start_time)

    async def broker_count(self) -> int:
        """How many brokers the cluster has now."""
        admin = AIOKafkaAdminClient(**self.client_options(), client_id=self.client_id)
        async with wrapped("describe the cluster", self.security):
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
        async with wrapped("create topics", self.security):
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


_LEADER_WAIT = 60.0
"""Seconds between the warnings of a restore that waits for its partition's offsets."""


async def _bounds(consumer: AIOKafkaConsumer, tp: TopicPartition) -> tuple[int, int]:
    """``tp``'s first and end offsets, asked again for as long as Kafka answers "not now".

    A broker that went away, or came back with no leader elected yet for the
    partition, failed an aggregate's restore, and with it the take-over: the
    worker stopped (a new user's broker restart). It waits, as its records do.
    """
    loop = asyncio.get_running_loop()
    began = warned = loop.time()
    while True:
        try:
            end = (await consumer.end_offsets([tp]))[tp]
            return (await consumer.beginning_offsets([tp]))[tp], end
        except KafkaError as exc:
            # aiokafka gives up on its own after request_timeout_ms (a KafkaTimeoutError,
            # not flagged retriable): a broker down that long is asked again too.
            if not (exc.retriable or isinstance(exc, KafkaTimeoutError)):
                raise
            if loop.time() - warned >= _LEADER_WAIT:
                warned = loop.time()
                log.warning(
                    "restoring %s[%d]: its offsets are not to be had for %.0f s (%r); "
                    "the restore waits for Kafka",
                    tp.topic,
                    tp.partition,
                    warned - began,
                    exc,
                )
            await asyncio.sleep(0.5)
