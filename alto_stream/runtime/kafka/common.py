"""What every aiokafka client of the Kafka transport shares: wrapped errors, fetches, stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from alto_stream.errors import TransportError
from alto_stream.runtime.kafka.security import access_error
from alto_stream.security import Security
from alto_stream.transport import InRecord, Partition

__all__ = ["TOPIC_AUTHORIZATION_FAILED", "fetch_records", "in_record", "stop_consumer", "wrapped"]

TOPIC_AUTHORIZATION_FAILED = 29
"""Kafka's error code of a topic the principal may not describe."""


@asynccontextmanager
async def wrapped(action: str, security: Security | None = None) -> AsyncIterator[None]:
    """Raise aiokafka's errors within as TransportError (AccessError when refused) of ``action``."""
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


async def fetch_records(
    consumer: AIOKafkaConsumer, timeout: float, max_records: int, security: Security
) -> list[InRecord]:
    """Records ready now from ``consumer``, waiting at most ``timeout`` seconds."""
    async with wrapped("fetch", security):
        batches = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
    return [in_record(m) for messages in batches.values() for m in messages]


def connected(consumer: AIOKafkaConsumer) -> bool:
    """Whether ``consumer`` holds a live connection to any broker."""
    # aiokafka 0.14's AIOKafkaClient._conns: (node, group) -> connection, a closed
    # one kept until it is asked for again (tests/unit/test_kafka_internals.py).
    conns = getattr(consumer._client, "_conns", {})
    return any(conn.connected() for conn in list(conns.values()))


def in_record(message: Any) -> InRecord:
    """aiokafka's ConsumerRecord as an :class:`InRecord` (its timestamp in seconds)."""
    return InRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        tuple(message.headers or ()),
        message.timestamp / 1000.0,
    )


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
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


def with_metadata(
    offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None
) -> dict[TopicPartition, Any]:
    """Offsets as aiokafka commits them: ``(offset, metadata)`` where there is metadata."""
    metadata = metadata or {}
    return {
        TopicPartition(*tp): (offset, metadata[tp]) if metadata.get(tp) else offset
        for tp, offset in offsets.items()
    }
