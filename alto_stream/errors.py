"""Every error alto-stream raises, under one root.

The tree::

    AltoError
    ├── ConfigError            bad settings, unknown names, missing files
    │   └── TopologyError      an app whose stages do not fit together
    ├── BrokerError            the local Kafka broker cannot be installed, started or reached
    │   └── BrokerSettingsError  broker options that cannot work (also a ConfigError)
    ├── SchemaError            an Avro schema that is missing, invalid or incompatible
    ├── DecodeError            bytes that are not a valid record (topic/partition/offset attached)
    ├── AncestryError          an ancestry that breaks the rules of nested ancestry
    ├── StageError             a handler failed on a record (stage attached)
    │   └── RetriableError     raise it (or a subclass) to have the worker retry with backoff
    └── TransportError         Kafka or the in-memory transport failed (``retriable`` says whether)
        ├── FencedError        a newer owner of a partition fenced this transactional producer
        ├── RecordRejectedError  the broker refused a record itself (too large for its topic)
        └── AccessError        Kafka refused the credentials, the TLS handshake or an ACL

Each error says what was expected, what came, and how to fix it. Context sits on
attributes so that callers can act on it without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AccessError",
    "AltoError",
    "AncestryError",
    "BrokerError",
    "BrokerSettingsError",
    "ConfigError",
    "CountConflictError",
    "DecodeError",
    "FencedError",
    "RecordRejectedError",
    "RetriableError",
    "SchemaError",
    "StageError",
    "TopologyError",
    "TransportError",
]


class AltoError(Exception):
    """Root of every alto-stream error."""

    retriable: bool = False


class ConfigError(AltoError):
    """Bad settings, unknown names or missing files."""


class TopologyError(ConfigError):
    """An application whose stages do not fit together (reported at load time)."""


class BrokerError(AltoError):
    """The local Kafka broker cannot be installed, started, stopped or reached."""


class BrokerSettingsError(BrokerError, ConfigError):
    """Broker options that cannot work (ports, host, size, security): bad usage, exit 2."""


class SchemaError(AltoError):
    """An Avro schema that is missing, invalid or incompatible."""


class DecodeError(AltoError):
    """Bytes that cannot be decoded into a record.

    ``topic``, ``partition`` and ``offset`` say where the bad record lies, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        where = ""
        if topic is not None:
            where = f" (at {topic}[{partition}]@{offset})"
        super().__init__(message + where)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class AncestryError(AltoError):
    """An ancestry that breaks the rules of nested ancestry."""


class CountConflictError(AncestryError):
    """A record whose split count or index contradicts one its aggregate already took."""


class StageError(AltoError):
    """A stage's handler failed on a record."""

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


class RetriableError(StageError):
    """Raise it from a handler to have the worker retry the record with backoff."""

    retriable = True


class TransportError(AltoError):
    """The transport (Kafka or in-memory) failed."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class FencedError(TransportError):
    """A newer worker took over the partition and fenced this transactional producer.

    The fenced (zombie) worker's transaction is aborted by Kafka; it must drop
    its work on that partition, which its new owner re-processes.
    """


class RecordRejectedError(TransportError):
    """The broker refused a record itself (larger than its topic's ``max.message.bytes``).

    Retrying cannot help: a worker fails the record that made it instead
    (dead letter + ERROR marker) and goes on. ``records`` holds the refused
    records when known (the transport's ``OutRecord`` objects).
    """

    def __init__(self, message: str, *, records: Sequence[object] = ()) -> None:
        super().__init__(message, retriable=False)
        self.records = tuple(records)


class AccessError(TransportError):
    """Kafka refused the connection's credentials, its TLS handshake, or an operation (ACL).

    Retrying cannot help: the settings (``ALTO_SASL_*``, ``ALTO_SSL_*``) or the
    cluster's ACLs must change. The CLI exits with status 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)
