"""The floor under the hop latency: a bare aiokafka consume-produce loop.

``alto-stream bench floor`` measures the same hop as ``bench latency`` (queries
pushed one at a time through ``input -> echo``, the output's CreateTime minus
the input's), but the echo is this module, run as a process of its own
(``python -m benchmarks.floor BOOTSTRAP INPUT OUTPUT GROUP``): an aiokafka
consumer in a group and an idempotent producer (acks=all, no linger) on uvloop,
copying each record's value, key and headers. No decoding, no ancestry, no
offset bookkeeping: its hop is what Kafka and its Python client take on this
machine, and the difference to ``bench latency`` is what alto-stream adds.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alto_stream.security import Security

__all__ = ["echo"]


async def echo(bootstrap: str, source: str, target: str, group: str) -> None:
    """Copy every record of ``source`` to ``target`` as soon as it arrives, until cancelled."""
    secured = Security.from_env().kafka_options()  # ALTO_SECURITY_PROTOCOL and the rest
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        **secured,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        isolation_level="read_committed",  # as alto-stream's workers read
        fetch_max_wait_ms=50,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0, **secured
    )
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=50)
            for messages in batches.values():
                for message in messages:
                    await producer.send(
                        target, message.value, key=message.key, headers=list(message.headers)
                    )
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    import uvloop

    bootstrap, source, target, group = sys.argv[1:5]
    try:
        uvloop.run(echo(bootstrap, source, target, group))
    except KeyboardInterrupt:
        pass
    except asyncio.CancelledError:
        pass
