"""How the operating tools' admin calls run: retried, bounded, and closed to their end.

A call Kafka cannot answer yet (a fresh broker, a node just died) is retried
for a while; a call bounded by a timeout leaves aiokafka room to give up first;
calls made together leave none running; the steps that close run to their end
even when cancelled; offset lookups on a topic just created log no ERROR for
leaders not elected yet. Used by :class:`~alto_stream.runtime.kafka.ops.KafkaOps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

from alto_stream.errors import TransportError

__all__ = [
    "RETRY_FOR",
    "quiet_leader_elections",
    "request_timeout",
    "retrying",
    "to_the_end",
    "together",
]

# The name its lines had before they left alto_stream.runtime.kafka.ops: logging set up
# for it still works, and the lines read as they did.
log = logging.getLogger("alto_stream.runtime.kafka.ops")
T = TypeVar("T")

_FETCHER = logging.getLogger("aiokafka.consumer.fetcher")
_RETRIED = ("NotLeaderForPartitionError", "LeaderNotAvailableError")


def _not_retried(record: logging.LogRecord) -> bool:
    """False for aiokafka's ERROR on an offset lookup it retries (a topic just created)."""
    message = record.getMessage()
    return not (message.startswith("Failed fetch offsets") and any(e in message for e in _RETRIED))


@contextlib.contextmanager
def quiet_leader_elections() -> Iterator[None]:
    """While offsets are looked up: no ERROR lines for leaders not elected yet (retried)."""
    _FETCHER.addFilter(_not_retried)
    try:
        yield
    finally:
        _FETCHER.removeFilter(_not_retried)


RETRY_FOR = 20.0
"""Seconds an admin call is retried on a retriable error. A node that died is left out
of the metadata once the controller fences it (~10 s here): until then a call may
go to it and fail with NodeNotReadyError while the rest of the cluster is fine."""


async def retrying(action: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again after a growing pause while it fails retriably (up to RETRY_FOR s)."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + RETRY_FOR, 0.25
    while True:
        try:
            return await call()
        except TransportError as exc:
            if not exc.retriable or loop.time() + pause > deadline:
                raise
            log.info("%s failed (%s): retrying in %.2g s", action, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


def request_timeout(timeout: float | None) -> dict[str, int]:
    """aiokafka's request timeout for a call bounded by ``timeout`` s: half of it.

    So that aiokafka gives up on a request first, where it closes what it opened,
    rather than the caller's timeout cutting it short (without: aiokafka's 40 s).
    """
    return {} if timeout is None else {"request_timeout_ms": max(int(timeout * 500), 1)}


async def together(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Every call's answer (as :func:`asyncio.gather`), none left running when it returns.

    When one fails, or this is cancelled, the others are cancelled and awaited
    before the error goes on. ``gather`` left them running: they went on using a
    client that was being closed, and the connections they opened on it then were
    never closed ("Unclosed AIOKafkaConnection" when the garbage collector found
    them, while a broker node was down).
    """
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # nothing for one done
        if tasks:
            await to_the_end(asyncio.wait(tasks))


async def to_the_end(step: Awaitable[object]) -> None:
    """Await ``step`` to its end even when cancelled meanwhile (the cancellation then goes on).

    For the steps that close: cut short by a timeout, a client's stop left its
    connections open, and a wait for the calls still running left them running.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()
