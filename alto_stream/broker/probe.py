"""A minimal, synchronous Kafka metadata probe over the raw wire protocol.

The broker manager must know whether a cluster answers before any event loop or
client library is involved (the CLI is synchronous, and a pytest fixture may run
while another loop is alive), so it speaks one request itself: Metadata v4, a
non-flexible version that Apache Kafka 4.x still serves.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = ["BrokerInfo", "Metadata", "PartitionInfo", "TopicInfo", "fetch_metadata"]

_METADATA_KEY = 3
_METADATA_VERSION = 4
_CLIENT_ID = b"alto-stream-probe"


@dataclass(frozen=True)
class BrokerInfo:
    """A broker as the cluster advertises it."""

    node_id: int
    host: str
    port: int


@dataclass(frozen=True)
class PartitionInfo:
    """One partition of a topic: its leader and replicas (``leader == -1``: none)."""

    index: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class TopicInfo:
    """A topic with its partitions; ``error`` is Kafka's error code (0: none)."""

    name: str
    internal: bool
    error: int
    partitions: tuple[PartitionInfo, ...]

    @property
    def replication(self) -> int:
        """The replication factor (replicas of the first partition)."""
        return len(self.partitions[0].replicas) if self.partitions else 0


@dataclass(frozen=True)
class Metadata:
    """What a metadata request returned."""

    cluster_id: str | None
    controller_id: int
    brokers: tuple[BrokerInfo, ...]
    topics: tuple[TopicInfo, ...]


class _Reader:
    """Reads big-endian Kafka primitives from a response buffer."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def boolean(self) -> bool:
        return self._take(">b") != 0

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        raw = self._data[self._pos : self._pos + length]
        self._pos += length
        return raw.decode()

    def int32_array(self) -> tuple[int, ...]:
        return tuple(self.int32() for _ in range(max(self.int32(), 0)))


def _request(topics: bool) -> bytes:
    """Metadata v4: all topics (null array) or none (empty array), no auto-creation."""
    header = struct.pack(">hhih", _METADATA_KEY, _METADATA_VERSION, 1, len(_CLIENT_ID))
    body = struct.pack(">ib", -1 if topics else 0, 0)
    payload = header + _CLIENT_ID + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection mid-response")
        chunks.extend(chunk)
    return bytes(chunks)


def _parse(data: bytes) -> Metadata:
    reader = _Reader(data)
    reader.int32()  # correlation id
    reader.int32()  # throttle time
    brokers = []
    for _ in range(reader.int32()):
        node_id, host, port = reader.int32(), reader.string() or "", reader.int32()
        reader.string()  # rack
        brokers.append(BrokerInfo(node_id, host, port))
    cluster_id = reader.string()
    controller_id = reader.int32()
    topics = []
    for _ in range(max(reader.int32(), 0)):
        error, name, internal = reader.int16(), reader.string() or "", reader.boolean()
        partitions = []
        for _ in range(max(reader.int32(), 0)):
            reader.int16()  # partition error code
            index, leader = reader.int32(), reader.int32()
            replicas, isr = reader.int32_array(), reader.int32_array()
            partitions.append(PartitionInfo(index, leader, replicas, isr))
        partitions.sort(key=lambda p: p.index)
        topics.append(TopicInfo(name, internal, error, tuple(partitions)))
    topics.sort(key=lambda t: t.name)
    return Metadata(cluster_id, controller_id, tuple(brokers), tuple(topics))


def fetch_metadata(host: str, port: int, *, topics: bool = False, timeout: float = 2.0) -> Metadata:
    """Ask one broker for cluster metadata; raises ``OSError`` when it does not answer well."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_request(topics))
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        data = _recv_exactly(sock, size)
    try:
        return _parse(data)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ConnectionError(f"malformed metadata response from {host}:{port}: {exc}") from exc
