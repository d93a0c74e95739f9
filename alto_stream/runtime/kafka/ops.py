"""Admin and positioned reads for the operating tools (topics, tail, replay, trace, up).

How the admin calls run (retried, bounded, closed to their end) is in
:mod:`alto_stream.runtime.kafka.admin_calls`; the ACLs ``topics grant`` makes in
:mod:`alto_stream.runtime.kafka.acls` (:class:`Grant` is importable from here too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAuthorizationFailedError, for_code
from aiokafka.protocol.admin import (
    DescribeGroupsRequest,
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
)

from alto_stream.errors import TransportError
from alto_stream.runtime.kafka.acls import Grant, grant
from alto_stream.runtime.kafka.admin_calls import (
    quiet_leader_elections,
    request_timeout,
    retrying,
    to_the_end,
    together,
)
from alto_stream.runtime.kafka.common import TOPIC_AUTHORIZATION_FAILED, wrapped
from alto_stream.runtime.kafka.reader import KafkaReader
from alto_stream.runtime.kafka.security import access_error
from alto_stream.runtime.kafka.transport import KafkaTransport
from alto_stream.transport import Partition

__all__ = ["Grant", "KafkaOps", "TopicState"]

_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config source of a config set on the topic


class _DescribeGroups(DescribeGroupsRequest):  # type: ignore[misc]
    """DescribeGroups at v2 at most: aiokafka 0.14 reads a v3 answer with v2's layout.

    (Its ``DescribeGroupsRequest_v3.RESPONSE_TYPE`` is ``DescribeGroupsResponse_v2``,
    which lacks ``authorized_operations``: "Buffer underrun" on Kafka 4.1.)
    """


# Set after the class: aiokafka's __init_subclass__ derives them from the generic base.
_DescribeGroups._CLASSES = (
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
)


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it: partitions, replication, configs, offsets."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]
    offsets: dict[int, tuple[int, int]]
    """Per partition: (first offset, end offset)."""


class KafkaOps:
    """Admin and reading calls for the operating tools, over one transport's cluster."""

    def __init__(self, transport: KafkaTransport) -> None:
        self.transport = transport

    def reader(
        self,
        topics: Sequence[str],
        *,
        partitions: Sequence[int] | None = None,
        offset: int | None = None,
        start_time: float | None = None,
        from_end: bool = False,
    ) -> KafkaReader:
        """A reader starting at the beginning, the end, an ``offset`` or ``start_time``.

        ``offset`` applies to every partition read; a negative one counts back
        from each partition's end. ``partitions`` restricts which are read.
        """
        return KafkaReader(
            self.transport,
            list(topics),
            start_time,
            partitions=partitions,
            offset=offset,
            from_end=from_end,
        )

    async def list_topics(self) -> list[str]:
        """The names of every topic but Kafka's internal ones, sorted."""
        names = await retrying("list topics", self._list_topics)
        return sorted(n for n in names if not n.startswith("__"))

    async def _list_topics(self) -> list[str]:
        admin = self._admin()
        async with wrapped("list topics", self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                names: list[str] = await admin.list_topics()
            finally:
                await admin.close()
        return names

    async def grant(self, user: str, prefix: str) -> list[Grant]:
        """Allow ``user`` what an app whose names start with ``prefix`` needs (prefixed ACLs).

        Asked as this connection's user, who must be allowed to alter the
        cluster's ACLs (a super user). :class:`ConfigError` when the cluster
        has no authorizer (nothing to grant).
        """
        return await grant(self._admin(), self.transport.security, user, prefix)

    async def raise_if_denied(self, names: Sequence[str]) -> None:
        """AccessError if ACLs hide any of ``names`` (a topic one may not describe looks absent).

        Asked only of secured connections, for topics that seem missing: Kafka
        answers TOPIC_AUTHORIZATION_FAILED for those, existing or not.
        """
        if not names or not self.transport.security.secured:
            return
        admin = self._admin()
        async with wrapped("describe topics", self.transport.security):
            try:
                await admin.start()
                meta = await admin.describe_topics(list(names))
            finally:
                await admin.close()
        denied = [t["topic"] for t in meta if t["error_code"] == TOPIC_AUTHORIZATION_FAILED]
        if denied:
            error = access_error(
                TopicAuthorizationFailedError(", ".join(denied)),
                f"describe {', '.join(denied)}",
                self.transport.security,
            )
            assert error is not None
            raise error

    async def broker_count(self) -> int:
        """How many brokers the cluster has now."""
        return await self.transport.broker_count()

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        """The state of each of ``names`` that exists (missing ones are left out)."""
        return await retrying("describe topics", lambda: self._describe_topics(names))

    async def _describe_topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        admin = self._admin()
        async with wrapped("describe topics", self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                # Only existing names: a metadata request may auto-create a missing topic.
                existing = set(await admin.list_topics())
                wanted = [n for n in names if n in existing]
                meta = await admin.describe_topics(wanted) if wanted else []
                meta = [t for t in meta if not t["error_code"]]
                configs: dict[str, dict[str, str]] = {}
                if meta:
                    resources = [ConfigResource(ConfigResourceType.TOPIC, t["topic"]) for t in meta]
                    for response in await admin.describe_configs(resources):
                        for _, _, _, name, entries in response.resources:
                            configs[name] = {e[0]: e[1] for e in entries if e[1] is not None}
            finally:
                await admin.close()
            offsets = await self._offsets(
                [TopicPartition(t["topic"], p["partition"]) for t in meta for p in t["partitions"]]
            )
        return {
            t["topic"]: TopicState(
                name=t["topic"],
                partitions=len(t["partitions"]),
                replication=max((len(p["replicas"]) for p in t["partitions"]), default=0),
                configs=configs.get(t["topic"], {}),
                offsets={p: v for (topic, p), v in offsets.items() if topic == t["topic"]},
            )
            for t in meta
        }

    async def alter_topic_configs(self, name: str, changes: Mapping[str, str]) -> None:
        """Set ``changes`` on topic ``name``, keeping the other configs set on it."""
        admin = self._admin()
        async with wrapped(f"alter the configs of topic {name}", self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                described = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name)]
                )
                # aiokafka has no IncrementalAlterConfigs, and AlterConfigs replaces the
                # topic's whole set: the ones set on it (source 1) go with the changes.
                kept = {
                    e[0]: e[1]
                    for response in described
                    for *_, entries in response.resources
                    for e in entries
                    if e[3] == _DYNAMIC_TOPIC_CONFIG and e[1] is not None
                }
                resource = ConfigResource(
                    ConfigResourceType.TOPIC, name, configs={**kept, **changes}
                )
                for response in await admin.alter_configs([resource]):
                    for code, message, *_ in response.resources:
                        if code:
                            raise for_code(code)(message)
            finally:
                await admin.close()

    async def delete_topics(self, names: Sequence[str]) -> list[str]:
        """Delete ``names`` (those that exist); return those deleted."""
        admin = self._admin()
        async with wrapped(f"delete topics {', '.join(names)}", self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                response = await admin.delete_topics(list(names))
            finally:
                await admin.close()
        deleted = []
        for topic, code, *rest in response.topic_error_codes:
            if code == _UNKNOWN_TOPIC:
                continue  # gone meanwhile: nothing to delete
            if code:
                raise TransportError(
                    f"could not delete topic {topic}: {for_code(code).__name__}"
                    + (f" ({rest[0]})" if rest and rest[0] else "")
                )
            deleted.append(topic)
        return deleted

    async def group_members(self, groups: Sequence[str]) -> dict[str, int]:
        """How many members each of ``groups`` has now (0: none, or no such group).

        Retried while Kafka cannot say yet (a fresh broker's group coordinator).
        """
        return await retrying("describe groups", lambda: self._group_members(groups))

    async def _group_members(self, groups: Sequence[str]) -> dict[str, int]:
        admin = self._admin()
        async with wrapped(f"describe groups {', '.join(groups)}", self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                coordinators: dict[int, list[str]] = {}
                for group in groups:
                    coordinators.setdefault(await admin.find_coordinator(group), []).append(group)
                responses = await together(
                    admin._send_request(_DescribeGroups(names), node)
                    for node, names in coordinators.items()
                )
            finally:
                await admin.close()
        members = dict.fromkeys(groups, 0)
        for response in responses:
            for group in response.to_object()["groups"]:
                members[group["group"]] = len(group["members"])
        return members

    async def committed_topics(self, group: str) -> set[str]:
        """The topics ``group`` has committed offsets on (none: it never committed)."""
        admin = self._admin()
        async with wrapped(f"read the offsets of group {group}", self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                return {tp.topic for tp in await admin.list_consumer_group_offsets(group)}
            finally:
                await admin.close()

    async def group_lag(self, group: str, topics: Sequence[str]) -> dict[Partition, int]:
        """Records of ``topics`` that ``group`` has not committed yet, per partition."""
        return (await self.group_lags({group: topics}))[group]

    async def group_lags(
        self, inputs: Mapping[str, Sequence[str]], *, timeout: float | None = None
    ) -> dict[str, dict[Partition, int]]:
        """Per group of ``inputs``: records of its topics it has not committed yet.

        One admin client and one consumer for all the groups (``up``'s live table asks
        for every stage every 2 s). With ``timeout``, a :class:`TransportError` after
        that many seconds without the answer (each request is bounded by it too). Its
        clients are closed in every case: cancelled, failed or timed out.
        """
        action = f"read the offsets of groups {', '.join(inputs)}"
        try:
            async with asyncio.timeout(timeout):
                return await self._group_lags(inputs, action, timeout)
        except TimeoutError as exc:
            raise TransportError(
                f"Kafka failed to {action}: no answer within {timeout:g} s", retriable=True
            ) from exc

    async def _group_lags(
        self, inputs: Mapping[str, Sequence[str]], action: str, timeout: float | None
    ) -> dict[str, dict[Partition, int]]:
        admin = self._admin(timeout)
        async with wrapped(action, self.transport.security):
            try:  # start() inside: a start cut short by cancellation still closes
                await admin.start()
                groups = list(inputs)  # asked at once: one round trip, not one per group
                answers = await together(
                    admin.list_consumer_group_offsets(group) for group in groups
                )
                committed = dict(zip(groups, answers, strict=True))
                existing = set(await admin.list_topics())
                wanted = sorted({t for topics in inputs.values() for t in topics if t in existing})
                meta = await admin.describe_topics(wanted) if wanted else []
            finally:
                await to_the_end(admin.close())
            partitions = {t["topic"]: [p["partition"] for p in t["partitions"]] for t in meta}
            offsets = await self._offsets(
                [TopicPartition(t, p) for t, ps in partitions.items() for p in ps], timeout
            )
        lags: dict[str, dict[Partition, int]] = {}
        for group, topics in inputs.items():
            lag = lags[group] = {}
            for topic in topics:
                for partition in partitions.get(topic, []):
                    first, end = offsets[(topic, partition)]
                    done = committed[group].get(TopicPartition(topic, partition))
                    position = done.offset if done is not None and done.offset >= 0 else first
                    lag[(topic, partition)] = max(end - position, 0)
        return lags

    def _admin(self, timeout: float | None = None) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(
            **self.transport.client_options(),
            **request_timeout(timeout),
            client_id=f"{self.transport.client_id}-ops",
        )

    async def _offsets(
        self, tps: list[TopicPartition], timeout: float | None = None
    ) -> dict[Partition, tuple[int, int]]:
        if not tps:
            return {}
        consumer = AIOKafkaConsumer(
            **self.transport.client_options(),
            **request_timeout(timeout),
            client_id=f"{self.transport.client_id}-ops",
        )
        # start() inside: a start cut short by cancellation still closes
        with quiet_leader_elections():
            try:
                await consumer.start()
                consumer.assign(tps)  # so that metadata covers them: lookups wait otherwise
                await consumer._client.force_metadata_update()
                first = await consumer.beginning_offsets(tps)
                end = await consumer.end_offsets(tps)
            finally:
                await to_the_end(consumer.stop())
        return {(tp.topic, tp.partition): (first[tp], end[tp]) for tp in tps}
