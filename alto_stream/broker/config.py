"""The shape of a local KRaft cluster and the files that configure it (pure, no I/O).

Every node is a combined broker + controller on 127.0.0.1 (or on the address
``--host`` names, which other hosts then reach it by). Node ``i`` (1-based)
listens for clients on ``port + i - 1`` and for the controller quorum on
``controller_port + i - 1``; ``controller.quorum.voters`` names every node, so
a 3-node cluster keeps a quorum when one node is down.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from alto_stream.errors import BrokerError, BrokerSettingsError

__all__ = [
    "CONTROLLER_PORT_OFFSET",
    "DEFAULT_HEAP",
    "DEFAULT_PORT",
    "HOST",
    "Layout",
    "check_host",
    "jvm_options",
    "log4j2_properties",
    "new_cluster_id",
    "server_properties",
]

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
# Controller ports sit this far above the broker ports: 9092 -> 9192, 9093 -> 9193, ...
CONTROLLER_PORT_OFFSET = 100
DEFAULT_HEAP = "512m"
_LAYOUT_FILE = "cluster.json"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True)
class Layout:
    """Where a cluster lives and which ports its nodes use; saved as ``cluster.json``."""

    brokers: int
    port: int
    controller_port: int
    cluster_id: str
    host: str = HOST

    def __post_init__(self) -> None:
        check_host(self.host)
        if self.brokers < 1:
            raise BrokerSettingsError(
                f"a cluster needs at least 1 node; got brokers={self.brokers}"
            )
        taken = set(self.broker_ports()) & set(self.controller_ports())
        if taken:
            raise BrokerSettingsError(
                f"broker and controller ports overlap on {sorted(taken)}: brokers use "
                f"{self.port}..{self.port + self.brokers - 1}, controllers "
                f"{self.controller_port}..{self.controller_port + self.brokers - 1}; "
                "fix: choose ports further apart"
            )
        if min(self.port, self.controller_port) < 1 or self.max_port() > 65535:
            raise BrokerSettingsError(f"ports must lie in 1..65535; got {self.broker_ports()}")

    @classmethod
    def create(
        cls,
        brokers: int = 1,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        host: str = HOST,
    ) -> Layout:
        """A new layout with a fresh cluster id; controllers default to ``port + 100``."""
        if controller_port is None:
            controller_port = port + CONTROLLER_PORT_OFFSET
        return cls(brokers, port, controller_port, new_cluster_id(), host)

    def node_ids(self) -> list[int]:
        """Node ids, 1-based."""
        return list(range(1, self.brokers + 1))

    def broker_port(self, node_id: int) -> int:
        """The client (PLAINTEXT) port of one node."""
        return self.port + node_id - 1

    def controller_port_of(self, node_id: int) -> int:
        """The controller (quorum) port of one node."""
        return self.controller_port + node_id - 1

    def broker_ports(self) -> list[int]:
        """Client ports of every node, in node order."""
        return [self.broker_port(n) for n in self.node_ids()]

    def controller_ports(self) -> list[int]:
        """Controller ports of every node, in node order."""
        return [self.controller_port_of(n) for n in self.node_ids()]

    def max_port(self) -> int:
        """The highest port any node uses."""
        return max(*self.broker_ports(), *self.controller_ports())

    @property
    def bootstrap(self) -> str:
        """The bootstrap address: every node's client listener, comma separated."""
        return ",".join(f"{self.host}:{p}" for p in self.broker_ports())

    def quorum_voters(self) -> str:
        """``controller.quorum.voters``: ``id@host:port`` for every node."""
        return ",".join(f"{n}@{self.host}:{self.controller_port_of(n)}" for n in self.node_ids())

    def save(self, data_dir: Path) -> None:
        """Write ``cluster.json`` into ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / _LAYOUT_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, data_dir: Path) -> Layout | None:
        """The layout saved in ``data_dir``, or None when there is none yet."""
        path = data_dir / _LAYOUT_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(
                int(raw["brokers"]),
                int(raw["port"]),
                int(raw["controller_port"]),
                str(raw["cluster_id"]),
                str(raw.get("host", HOST)),  # written before --host existed: loopback
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerError(
                f"{path} is not a valid cluster layout ({exc}); expected the JSON that "
                "`alto-stream broker start` writes; fix: delete the data dir to start afresh"
            ) from exc


def check_host(host: str) -> str:
    """``host`` if nodes can listen on it and clients reach it by it: an IPv4 address or a name.

    Raises ``BrokerError`` for an IPv6 literal, a wildcard (0.0.0.0 listens
    everywhere but cannot be advertised) or anything else no client could dial.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _HOST_NAME.fullmatch(host):
            return host
        raise BrokerSettingsError(
            f"--host must be an IPv4 address or a host name; got {host!r}; "
            "fix: pass the address other hosts reach this machine by, e.g. --host 10.0.0.4"
        ) from None
    if address.version != 4 or address.is_unspecified:
        raise BrokerSettingsError(
            f"--host must be one IPv4 address that clients can dial; got {host!r} "
            "(the broker advertises it to every client); fix: pass this machine's address "
            "on the network the workers share, e.g. --host 10.0.0.4"
        )
    return host


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (not starting '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(layout: Layout, node_id: int, log_dir: Path) -> str:
    """``server.properties`` for one node, tuned for tests on a small machine.

    Internal topics replicate to ``min(3, brokers)`` nodes. Topics are never
    created implicitly (``auto.create.topics.enable=false``): alto-stream creates
    every topic from its declaration, and a typo must fail loudly rather than
    produce into a fresh one-partition topic.
    """
    if node_id not in layout.node_ids():
        raise BrokerSettingsError(f"node id must be in 1..{layout.brokers}; got {node_id}")
    replication = min(3, layout.brokers)
    min_isr = min(2, layout.brokers)
    port = layout.broker_port(node_id)
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": layout.quorum_voters(),
        "listeners": f"PLAINTEXT://{layout.host}:{port},"
        f"CONTROLLER://{layout.host}:{layout.controller_port_of(node_id)}",
        "advertised.listeners": f"PLAINTEXT://{layout.host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": 1,
        "default.replication.factor": replication,
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": replication,
        # Fewer internal partitions: 50 per topic (times RF 3) slows start-up on 2 cores.
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Consumer groups rebalance at once: tests would otherwise wait 3 s per group.
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "log.retention.hours": 168,
        "log.segment.bytes": 1073741824,
        "log.retention.check.interval.ms": 300000,
    }
    lines = [
        f"# Written by alto-stream for node {node_id} of {layout.brokers}; regenerated on start."
    ]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def log4j2_properties() -> str:
    """A log4j2 configuration: everything to ``${kafka.logs.dir}/server.log``, rolled at 20 MB."""
    return """\
# Written by alto-stream: the broker logs to files under its node directory.
status = warn
name = alto-stream-kafka
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def jvm_options(heap: str, log4j_config: Path, logs_dir: Path) -> list[str]:
    """JVM flags for one node: a small heap and Kafka's usual G1 settings."""
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", heap):
        raise BrokerSettingsError(f"heap must look like 512m or 1g; got {heap!r}")
    return [
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
        f"-Dkafka.logs.dir={logs_dir}",
    ]
