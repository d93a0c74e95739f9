"""Testing with a real Kafka: a session fixture for a broker, unique names, topic creation.

Load it as a pytest plugin (``pytest_plugins = ["alto_stream.testing"]`` in a
``conftest.py``) to get the fixtures:

- ``kafka_bootstrap`` (session): a bootstrap address. ``ALTO_BOOTSTRAP_SERVERS``
  when set (``make test`` sets it); else an ``apache/kafka`` container when a
  Docker engine answers (``ALTO_TEST_DOCKER=0`` skips this); else a throwaway
  local cluster (``alto_stream.broker``) in the session's temp dir on free
  ports, stopped at the end. It never reuses a broker you started yourself:
  point ``ALTO_BOOTSTRAP_SERVERS`` at it for that. ``ALTO_TEST_BROKERS=3``
  makes the local cluster three nodes.
- ``unique_name``: the :func:`unique_name` function, for topic and group names.

:func:`create_topics` creates topics and waits until every broker knows a
leader for every partition and each leader serves its partitions, so that the
first produce does not fail with ``NotLeaderForPartition``. :func:`read_topic`
reads a whole topic, decoded, to check what a run left on it (on an aggregate's
changelog, the fragments it holds); :func:`read_changelog` reads every entry of
a changelog, ``fired`` entries and tombstones included.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from alto_stream import broker
from alto_stream.broker import fetch_metadata
from alto_stream.broker.nodes import free_ports
from alto_stream.errors import BrokerError, DecodeError, TransportError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.ops.records import DecodedRecord, decode_record
from alto_stream.security import Security
from alto_stream.transport import InRecord, Transport

__all__ = [
    "KAFKA_IMAGE",
    "TOPIC_TIMEOUT",
    "TopicLike",
    "create_topics",
    "free_ports",
    "kafka_bootstrap",
    "read_changelog",
    "read_topic",
    "unique_name",
    "wait_for_topics",
]

KAFKA_IMAGE = f"apache/kafka:{broker.KAFKA_VERSION}"
TOPIC_TIMEOUT = 30.0
"""Seconds :func:`create_topics` and :func:`wait_for_topics` wait before giving up."""
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class TopicLike(Protocol):
    """Anything with a name, partitions and replication (``topics.TopicSpec`` fits).

    Optional attributes are honoured when present: ``configs`` (a mapping of
    Kafka topic configs) and ``cleanup_policy``.
    """

    @property
    def name(self) -> str: ...

    @property
    def partitions(self) -> int: ...

    @property
    def replication(self) -> int | None: ...  # None: 1 here (TopicSpec's "the cluster's")


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses: ``<prefix>-<12 hex digits>``."""
    clean = _NOT_NAME.sub("-", prefix).strip("-") or "t"
    return f"{clean[:200]}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(name="unique_name")
def _unique_name_fixture() -> Callable[[str], str]:
    """The :func:`unique_name` function, as a fixture."""
    return unique_name


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka bootstrap address for the whole session (see the module docstring)."""
    explicit = os.environ.get("ALTO_BOOTSTRAP_SERVERS")
    if explicit:
        yield explicit
        return
    if _docker_answers():
        container = _start_container()
        if container is not None:
            try:
                yield container[0]
            finally:
                container[1].stop()
            return
    data_dir = tmp_path_factory.mktemp("kafka")
    brokers = int(os.environ.get("ALTO_TEST_BROKERS", "1"))
    cluster = broker.start(brokers, broker.free_base_port(brokers), data_dir)
    try:
        yield cluster.bootstrap
    finally:
        broker.stop(data_dir)


def _docker_answers() -> bool:
    """Whether a Docker engine responds (quickly: no socket, no import)."""
    if os.environ.get("ALTO_TEST_DOCKER", "1") == "0":
        return False
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]
        from docker.errors import DockerException  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        return bool(docker.from_env(timeout=3).ping())
    except (DockerException, OSError):
        return False


def _start_container() -> tuple[str, Any] | None:
    """A single-node KRaft ``apache/kafka`` container, or None (with a warning) if it fails."""
    try:
        from docker.errors import DockerException
        from testcontainers.core.container import DockerContainer
    except ImportError:
        return None
    port = broker.free_base_port(1)
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9094, port)
        .with_envs(**_container_env(f"127.0.0.1:{port}"))
    )
    try:
        container.start()
        _wait_answering("127.0.0.1", port, timeout=120.0)
    except (DockerException, OSError, BrokerError) as exc:
        warnings.warn(
            f"a Docker engine answers but {KAFKA_IMAGE} did not start ({exc}); "
            "falling back to the local broker (set ALTO_TEST_DOCKER=0 to skip Docker)",
            stacklevel=2,
        )
        container.stop()
        return None
    return f"127.0.0.1:{port}", container


def _container_env(external: str) -> dict[str, str]:
    """KRaft single-node settings for the apache/kafka image (as in compose.yaml)."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "INTERNAL://:9092,CONTROLLER://:9093,EXTERNAL://:9094",
        "KAFKA_ADVERTISED_LISTENERS": f"INTERNAL://localhost:9092,EXTERNAL://{external}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "1",
    }


def _wait_answering(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if fetch_metadata(host, port).brokers:
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka at {host}:{port} did not answer in {timeout} s") from exc
        time.sleep(0.5)


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


def _leaders_everywhere(bootstrap: str, expected: Mapping[str, int]) -> bool:
    """Whether every broker of the cluster knows a leader for every expected partition."""
    seeds = _addresses(bootstrap)
    first = None
    for host, port in seeds:
        try:
            first = fetch_metadata(host, port)
            break
        except OSError:
            continue
    if first is None:
        return False
    for node in first.brokers:
        try:
            seen = fetch_metadata(node.host, node.port, topics=True)
        except OSError:
            return False
        topics = {t.name: t for t in seen.topics}
        for name, partitions in expected.items():
            topic = topics.get(name)
            if topic is None or topic.error or len(topic.partitions) < partitions:
                return False
            if any(p.leader < 0 for p in topic.partitions):
                return False
    return True


async def wait_for_topics(bootstrap: str, expected: Mapping[str, int]) -> None:
    """Wait until every broker has a leader for each ``{topic: partitions}``, and it serves it.

    A leader is in the metadata before it serves its partition (a produce then
    meets ``NotLeaderForPartition``): each leader is asked for its partitions'
    end offsets, as a produce would find them. Gives up with ``TransportError``
    after ``TOPIC_TIMEOUT`` seconds.
    """
    timeout = TOPIC_TIMEOUT
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(_leaders_everywhere, bootstrap, expected):
        if loop.time() > deadline:
            raise TransportError(
                f"topics {sorted(expected)} have no leader on every broker of {bootstrap} "
                f"after {timeout} s; expected leaders within seconds of creation; fix: check "
                "the broker logs (alto-stream broker status)"
            )
        await asyncio.sleep(0.1)
    from alto_stream.runtime.kafka.leaders import wait_until_served

    options = {"bootstrap_servers": bootstrap, **Security.from_env().kafka_options()}
    await wait_until_served(options, expected, max(deadline - loop.time(), 1.0))


def _new_topic(spec: str | TopicLike) -> Any:
    from aiokafka.admin import NewTopic

    if isinstance(spec, str):
        return NewTopic(spec, 1, 1)
    configs = dict(getattr(spec, "configs", None) or {})
    policy = getattr(spec, "cleanup_policy", None)
    if policy:
        configs["cleanup.policy"] = policy
    replication = spec.replication if spec.replication is not None else 1
    return NewTopic(spec.name, spec.partitions, replication, topic_configs=configs)


async def create_topics(bootstrap: str, specs: Iterable[str | TopicLike]) -> list[str]:
    """Create topics (a bare name: 1 partition, RF 1) and wait for their leaders.

    Topics that already exist are left as they are. Returns the names asked for.
    Each step gives up after ``TOPIC_TIMEOUT`` seconds.
    """
    timeout = TOPIC_TIMEOUT
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    new = [_new_topic(spec) for spec in specs]
    if not new:
        return []
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout * 1000),
        **Security.from_env().kafka_options(),
    )
    try:
        await admin.start()
        response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
    except KafkaError as exc:
        raise TransportError(f"creating topics on {bootstrap} failed: {exc!r}") from exc
    finally:
        await admin.close()
    for name, code, message in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise TransportError(f"creating topic {name!r} failed: error {code}: {message}")
    await wait_for_topics(bootstrap, {t.name: t.num_partitions for t in new})
    return [t.name for t in new]


async def read_topic(
    transport: Transport,
    topic: str,
    codec: MessageCodec | None = None,
    *,
    start_time: float | None = None,
) -> list[tuple[InRecord, Envelope]]:
    """Every record of ``topic`` up to its end, with its decoded envelope.

    On an aggregate's changelog these are the fragments it holds (records and
    kept markers, decoded as ``alto-stream tail`` decodes them); its ``fired``
    entries and tombstones are no stage's records and are left out:
    :func:`read_changelog` returns them too. A record that cannot be decoded
    raises ``DecodeError``. On Kafka the reader is read_committed: records of
    aborted transactions are not returned. ``codec`` decodes an app's own
    schemas (``topology.codec()``).
    """
    return [
        (item.record, item.envelope)
        for item in await _read_decoded(transport, topic, codec, start_time)
        if item.envelope is not None
    ]


async def read_changelog(
    transport: Transport,
    topic: str,
    codec: MessageCodec | None = None,
    *,
    start_time: float | None = None,
) -> list[DecodedRecord]:
    """Every entry of an aggregate's changelog ``topic`` up to its end, in read order.

    A fragment has its ``envelope``; a ``fired`` entry or a tombstone has none
    and its ``entry`` says what it is (``fired: ancestor A fired``,
    ``tombstone of KEY``), as ``alto-stream tail`` shows them. A record that is
    neither raises ``DecodeError``.
    """
    return await _read_decoded(transport, topic, codec, start_time)


async def _read_decoded(
    transport: Transport, topic: str, codec: MessageCodec | None, start_time: float | None
) -> list[DecodedRecord]:
    codec = codec or MessageCodec()
    reader = transport.reader([topic], start_time=start_time)
    await reader.start()
    out: list[DecodedRecord] = []
    try:
        while not await reader.end_reached():
            out.extend(_decoded(codec, record) for record in await reader.fetch(0.5, 1000))
    finally:
        await reader.stop()
    return out


def _decoded(codec: MessageCodec, record: InRecord) -> DecodedRecord:
    """``record`` decoded as tail decodes it; its ``DecodeError`` when it is no changelog entry."""
    try:
        envelope = codec.decode(
            record.value,
            record.headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
    except DecodeError:
        item = decode_record(codec, record)  # a changelog's kept marker, fired entry, tombstone
        if item.envelope is None and item.entry is None:
            raise
        return item
    return DecodedRecord(record, envelope)
