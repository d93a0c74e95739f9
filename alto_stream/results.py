"""A query's results, and how :meth:`alto_stream.client.Client.follow` reads them.

:func:`follow_results` reads the app's output topics (and the stages named in
``partials_from``) from a time on, and yields what :class:`~alto_stream.following.Following`
decides to show: partials as they come, each final once every partial written
before it was read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from alto_stream.app import Topology
from alto_stream.errors import DecodeError
from alto_stream.following import Following
from alto_stream.message import Envelope, MessageCodec
from alto_stream.transport import InRecord, Partition, Reader, Transport

__all__ = ["Result", "follow_results"]


@dataclass(frozen=True)
class Result:
    """One result of a query: partial (a fragment) or final (the whole query)."""

    query_id: str
    stage: str
    envelope: Envelope
    final: bool
    latency: float
    """Seconds from the query's arrival to this result."""
    rerun: bool = False
    """A partial that replaces the one shown before at its place: a re-run of its split
    (a retry after a failure half-way, a crash) made it with another value."""

    @property
    def value(self) -> dict[str, Any] | None:
        """The payload (None for a marker)."""
        return self.envelope.value

    @property
    def ok(self) -> bool:
        """False when the result is a skip, error or timeout marker."""
        return not self.envelope.kind.is_marker

    @property
    def index(self) -> tuple[int, ...]:
        """Where the result sits in its query's tree (``()`` for a final): sort partials by it.

        A split's children are read in no fixed order (see docs/client.md).
        """
        return self.envelope.ancestry.index

    @property
    def reason(self) -> str | None:
        """Why a skip, error or timeout marker came instead of a value (None for data)."""
        return self.envelope.ancestry.reason


async def follow_results(
    transport: Transport,
    topology: Topology,
    codec: MessageCodec,
    query_ids: Iterable[str],
    *,
    timeout: float | None = None,
    since: float | None = None,
    partials: bool = True,
    partials_from: Sequence[str] = (),
    pushed_at: float | None = None,
) -> AsyncIterator[Result]:
    """The results of ``query_ids`` as :meth:`alto_stream.client.Client.follow` says."""
    stage_of = _result_stages(topology, partials_from)
    state = Following(
        query_ids, finals_on=set(topology.output_topics().values()), partials=partials
    )
    start = time.time() - 60.0 if since is None else since
    reader = transport.reader(list(stage_of), start_time=start)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:  # the time-out bounds the start too (a broker gone: 40 s of Kafka's own)
        await asyncio.wait_for(reader.start(), timeout)
    except TimeoutError:
        raise TimeoutError(
            f"could not start reading {', '.join(stage_of)} within {timeout}s "
            f"to follow {len(state.waiting)} queries: is Kafka reachable?"
        ) from None
    # Finals read, each with every topic's end when it was read: a partial written
    # before the final lies below those ends, and records are ordered only within
    # one partition, so a final waits until the reader has passed them.
    held: deque[tuple[dict[Partition, int], list[Result]]] = deque()
    try:
        while state.waiting:
            left = 0.2 if deadline is None else min(0.2, deadline - loop.time())
            if left <= 0:
                for result in await _release(held, state, reader, everything=True):
                    yield result  # a final held is final: shown before giving up
                if state.waiting:
                    why = state.unfinished(timeout, start, list(stage_of), pushed_at)
                    if not reader.connected():
                        why += (
                            "; Kafka was unreachable when the time ran out (no live connection "
                            "to any broker): results written meanwhile could not be read; fix: "
                            "bring Kafka back (`alto-stream broker status`), then follow again"
                        )
                    raise TimeoutError(why)
                continue
            finals = []
            for result in _results(codec, await reader.fetch(left, 500), state, stage_of):
                if not result.final:
                    yield result
                elif partials:
                    finals.append(result)
                else:
                    state.ended(result.query_id)
                    yield result
            if finals:
                held.append((await _ends(reader, deadline), finals))
            for result in await _release(held, state, reader):
                yield result
    finally:
        await reader.stop()


def _result_stages(topology: Topology, partials_from: Sequence[str]) -> dict[str, str]:
    """The topics ``follow`` reads, each with the stage that writes it."""
    stage_of = {topic: stage for stage, topic in topology.output_topics().items()}
    for stage in partials_from:  # an unknown stage: ConfigError naming the stages
        stage_of.setdefault(topology.plan(stage).output_topic, stage)
    return stage_of


def _results(
    codec: MessageCodec, records: list[InRecord], state: Following, stage_of: dict[str, str]
) -> Iterator[Result]:
    """The results among ``records``: finals and partials to show, in time order.

    Among records of one moment (the children a transaction commits together, read
    partition by partition) a split's children come in index order.
    """
    decoded = []
    for record in records:
        try:
            decoded.append((record, codec.decode(record.value, record.headers)))
        except DecodeError:
            continue
    decoded.sort(key=lambda pair: (pair[0].timestamp, pair[1].ancestry.index))
    for record, envelope in decoded:
        verdict = state.sort(envelope.ancestry, record.topic, envelope.value)
        if verdict is None:
            continue
        yield Result(
            envelope.ancestry.query_id,
            stage_of.get(record.topic, record.topic),
            envelope,
            verdict == "final",
            record.timestamp - envelope.ancestry.query_time,
            rerun=verdict == "rerun",
        )


async def _ends(reader: Reader, deadline: float | None) -> dict[Partition, int]:
    """The reader's ends now; none (wait for nothing) if they come too late."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(
            reader.ends(), None if deadline is None else max(deadline - loop.time(), 0.0)
        )
    except TimeoutError:
        return {}


async def _release(
    held: deque[tuple[dict[Partition, int], list[Result]]],
    state: Following,
    reader: Reader,
    *,
    everything: bool = False,
) -> list[Result]:
    """The finals held that the reader has passed the ends of (``everything``: all)."""
    released = []
    while held and (everything or await reader.reached(held[0][0])):
        released += held.popleft()[1]
    for result in released:
        state.ended(result.query_id)
    return released
