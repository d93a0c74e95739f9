"""The runtime benchmarks: per-hop latency, map throughput, split/aggregate throughput.

Each function runs one measurement on a fresh app (its own topics and groups)
over any transport and returns a frozen result; :func:`repeat` runs one of them
several times and :func:`summary` gives the median and spread of each figure.
Timings come from the records' Kafka timestamps (CreateTime, set by each
producer in milliseconds), so they measure the pipeline, not this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from alto_stream.client import Client
from alto_stream.errors import AltoError, TransportError
from alto_stream.message import MessageCodec
from alto_stream.runtime.worker import DeliveryMode
from alto_stream.transport import Transport
from benchmarks.apps import build_fanout, build_map
from benchmarks.harness import (
    Summary,
    Where,
    Workers,
    create_topics,
    lag,
    percentile,
    prefill,
    query_ids,
    read_all,
    summarize,
    unique_name,
)

__all__ = [
    "AggregateResult",
    "LatencyResult",
    "ThroughputResult",
    "aggregate",
    "floor",
    "latency",
    "repeat",
    "summary",
    "throughput",
]


@dataclass(frozen=True)
class LatencyResult:
    """Per-hop latency of a map stage at low load (milliseconds)."""

    delivery: str
    where: str
    queries: int
    hop_p50_ms: float
    hop_p99_ms: float
    hop_mean_ms: float
    hop_max_ms: float
    roundtrip_p50_ms: float
    """Client push (acknowledged) -> output seen by a reader in this process."""
    roundtrip_p99_ms: float


@dataclass(frozen=True)
class ThroughputResult:
    """Records per second of one map worker over a pre-filled input topic."""

    delivery: str
    where: str
    handler: str
    """``async`` (an ``async def`` echo) or ``plain`` (a ``def`` echo)."""
    records: int
    seconds: float
    """From the first output record's timestamp to the last one's."""
    records_per_s: float
    steady_records_per_s: float
    """Over the middle 80% of the outputs (10th to 90th percentile of their timestamps):
    the rate once the worker is warm (fetches in full flow), before the tail drains."""
    wall_records_per_s: float
    """From the worker's start (process start-up and group join included)."""
    prefill_records_per_s: float


@dataclass(frozen=True)
class AggregateResult:
    """Throughput of split (1 -> fanout) -> map -> aggregate, one worker per stage."""

    delivery: str
    where: str
    queries: int
    fanout: int
    seconds: float
    """From the split's first output to the aggregate's last output."""
    queries_per_s: float
    fragments_per_s: float
    wall_queries_per_s: float


async def latency(
    transport: Transport,
    delivery: DeliveryMode = "at-least-once",
    *,
    queries: int = 300,
    interval: float = 0.015,
    where: Where = "process",
    partitions: int = 4,
) -> LatencyResult:
    """Push ``queries`` one at a time through ``input -> echo``; per-hop latency.

    Each query is pushed once the previous one came out, ``interval`` seconds
    later (low load). The hop latency is the output record's timestamp minus
    the input record's, both read back from the topics afterwards.
    """
    return await _hops(transport, delivery, queries, interval, where, partitions, bare=False)


async def floor(
    transport: Transport,
    delivery: DeliveryMode = "at-least-once",
    *,
    queries: int = 300,
    interval: float = 0.015,
    where: Where = "process",
    partitions: int = 4,
) -> LatencyResult:
    """:func:`latency`, with a bare aiokafka echo in place of the worker (``benchmarks.floor``).

    The bare echo has one delivery mode (a plain idempotent producer):
    ``delivery`` only names the run.
    """
    return await _hops(transport, delivery, queries, interval, where, partitions, bare=True)


async def _hops(
    transport: Transport,
    delivery: DeliveryMode,
    queries: int,
    interval: float,
    where: Where,
    partitions: int,
    *,
    bare: bool,
) -> LatencyResult:
    name = unique_name("floor" if bare else "lat", delivery)
    app = build_map(name)
    topology = app.topology()
    await create_topics(transport, topology, partitions)
    output = topology.plan("echo").output_topic
    codec = MessageCodec()
    seen: dict[str, float] = {}
    changed = asyncio.Event()
    sent: dict[str, float] = {}
    ref = _ref("build_map", name)
    workers = Workers(app, transport, delivery, where=where, app_ref=ref, bare=bare)
    async with workers, Client(topology, transport) as client:
        watcher = asyncio.create_task(_watch(transport, output, codec, seen, changed))
        try:
            await _warm_up(client, seen, changed, workers)
            for i in range(queries):
                pushed = time.time()
                [query_id] = await client.push_many([{"text": f"q{i}"}])
                sent[query_id] = pushed
                await _seen(query_id, seen, changed, 15.0)
                await asyncio.sleep(interval)
        finally:
            watcher.cancel()
    inputs = query_ids(await read_all(transport, [topology.input_topic]), codec)
    outputs = query_ids(await read_all(transport, [output]), codec)
    hops = [(outputs[q] - inputs[q]) * 1000.0 for q in sent]
    trips = [(seen[q] - sent[q]) * 1000.0 for q in sent]
    return LatencyResult(
        delivery=delivery,
        where=where,
        queries=queries,
        hop_p50_ms=percentile(hops, 50),
        hop_p99_ms=percentile(hops, 99),
        hop_mean_ms=sum(hops) / len(hops),
        hop_max_ms=max(hops),
        roundtrip_p50_ms=percentile(trips, 50),
        roundtrip_p99_ms=percentile(trips, 99),
    )


async def throughput(
    transport: Transport,
    delivery: DeliveryMode = "at-least-once",
    *,
    records: int = 100_000,
    where: Where = "process",
    partitions: int = 4,
    timeout: float = 600.0,
    handler: str = "async",
) -> ThroughputResult:
    """Pre-fill ``records`` queries, then run ONE ``echo`` worker over them."""
    name = unique_name("tput", delivery)
    app = build_map(name, handler)
    topology = app.topology()
    plan = topology.plan("echo")
    await create_topics(transport, topology, partitions)
    filled = await prefill(transport, topology, records)
    ref = _ref("build_map", name, handler)
    workers = Workers(app, transport, delivery, where=where, app_ref=ref)
    async with workers:
        await _drained(transport, [(plan.group, plan.input_topic)], workers, timeout)
    stamps = sorted(r.timestamp for r in await read_all(transport, [plan.output_topic]))
    if len(stamps) < records:
        raise AltoError(f"expected {records} outputs, got {len(stamps)}")
    seconds = max(stamps[-1] - stamps[0], 1e-3)
    return ThroughputResult(
        delivery=delivery,
        where=where,
        handler=handler,
        records=records,
        seconds=seconds,
        records_per_s=(len(stamps) - 1) / seconds,
        steady_records_per_s=_steady_rate(stamps),
        wall_records_per_s=len(stamps) / max(stamps[-1] - workers.started, 1e-3),
        prefill_records_per_s=records / filled,
    )


async def aggregate(
    transport: Transport,
    delivery: DeliveryMode = "at-least-once",
    *,
    queries: int = 200,
    fanout: int = 100,
    where: Where = "process",
    partitions: int = 4,
    timeout: float = 600.0,
) -> AggregateResult:
    """Pre-fill ``queries``, then run ``parts -> echo -> join`` with one worker each."""
    name = unique_name("agg", delivery)
    app = build_fanout(name, fanout)
    topology = app.topology()
    await create_topics(transport, topology, partitions)
    await prefill(transport, topology, queries)
    stages = [topology.plan(s) for s in ("parts", "echo", "join")]
    ref = _ref("build_fanout", name, fanout)
    async with Workers(app, transport, delivery, where=where, app_ref=ref) as workers:
        # Not the groups' lag: transaction markers keep it above zero in that mode.
        await _finals(transport, stages[2].output_topic, queries, workers, timeout)
    finals = await read_all(transport, [stages[2].output_topic])
    done = query_ids(finals, MessageCodec())
    if len(done) != queries or len(finals) != queries:
        raise AltoError(f"expected {queries} final results, got {len(finals)} ({len(done)} ids)")
    first = min(r.timestamp for r in await read_all(transport, [stages[0].output_topic]))
    last = max(r.timestamp for r in finals)
    seconds = max(last - first, 1e-3)
    return AggregateResult(
        delivery=delivery,
        where=where,
        queries=queries,
        fanout=fanout,
        seconds=seconds,
        queries_per_s=queries / seconds,
        fragments_per_s=queries * fanout / seconds,
        wall_queries_per_s=queries / max(last - workers.started, 1e-3),
    )


async def repeat(runs: int, measure: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``measure`` ``runs`` times, one after the other; the results in order."""
    return [await measure() for _ in range(runs)]


def summary(results: list[Any]) -> dict[str, Summary | Any]:
    """Per field of the results: the :class:`Summary` of numbers, the value otherwise."""
    fields = [f.name for f in dataclasses.fields(results[0])]
    out: dict[str, Summary | Any] = {}
    for name in fields:
        values = [getattr(r, name) for r in results]
        numeric = all(isinstance(v, float) for v in values)
        out[name] = summarize(values) if numeric else values[0]
    return out


# -- helpers ------------------------------------------------------------------


_WARM_UP_QUERIES = 1000
"""Queries pushed one at a time before the latency measurement starts."""


def _steady_rate(stamps: list[float]) -> float:
    """Records per second between the 10th and the 90th percentile of sorted timestamps."""
    low, high = len(stamps) // 10, (len(stamps) * 9) // 10
    return (high - low) / max(stamps[high] - stamps[low], 1e-3)


def _ref(factory: str, *args: Any) -> str:
    return f"benchmarks.apps:{factory}({', '.join(repr(a) for a in args)})"


async def _watch(
    transport: Transport,
    topic: str,
    codec: MessageCodec,
    seen: dict[str, float],
    changed: asyncio.Event,
) -> None:
    """Note when each query's output becomes visible to a reader."""
    reader = transport.reader([topic], start_time=time.time() - 5.0)
    await reader.start()
    try:
        while True:
            for record in await reader.fetch(0.5, 500):
                now = time.time()
                seen.setdefault(codec.decode(record.value, record.headers).ancestry.query_id, now)
                changed.set()
    finally:
        await reader.stop()


async def _seen(
    query_id: str, seen: dict[str, float], changed: asyncio.Event, within: float
) -> bool:
    deadline = time.monotonic() + within
    while query_id not in seen:
        changed.clear()  # no await between the check and the clear: no lost wake-up
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            await asyncio.wait_for(changed.wait(), left)
        except TimeoutError:
            return False
    return True


async def _warm_up(
    client: Client,
    seen: dict[str, float],
    changed: asyncio.Event,
    workers: Workers,
) -> None:
    """Wait until the worker answers (start-up, group join), then warm up (see below)."""
    deadline = time.monotonic() + 90.0
    while True:
        [query_id] = await client.push_many([{"text": "warm-up"}])
        if await _seen(query_id, seen, changed, 1.0):
            break
        workers.check()
        if time.monotonic() > deadline:
            raise AltoError("the worker did not answer within 90 s")
    # Then a steady state: the broker's JIT compiler and the processes' caches warm up over
    # the first thousand or so hops (a fresh broker's first hops take 1-2 ms longer). One
    # query at a time, as measured, so the same paths warm up; no pause, to be quick.
    for _ in range(_WARM_UP_QUERIES):
        [query_id] = await client.push_many([{"text": "warm-up"}])
        await _seen(query_id, seen, changed, 10.0)


async def _finals(
    transport: Transport, topic: str, queries: int, workers: Workers, timeout: float
) -> None:
    """Wait until ``topic`` holds a record of ``queries`` distinct queries."""
    codec = MessageCodec()
    found: set[str] = set()
    deadline = time.monotonic() + timeout
    reader = transport.reader([topic])
    await reader.start()
    try:
        while len(found) < queries:
            for record in await reader.fetch(0.5, 500):
                found.add(codec.decode(record.value, record.headers).ancestry.query_id)
            workers.check()
            if time.monotonic() > deadline:
                raise AltoError(f"{len(found)} of {queries} queries done after {timeout} s")
    finally:
        await reader.stop()


async def _drained(
    transport: Transport, groups: list[tuple[str, str]], workers: Workers, timeout: float
) -> None:
    """Wait until each (group, topic) in order has committed everything (no lag)."""
    deadline = time.monotonic() + timeout
    for group, topic in groups:
        while await _lag_or_unknown(transport, group, topic) != 0:
            workers.check()
            if time.monotonic() > deadline:
                raise AltoError(f"group {group} still lags on {topic} after {timeout} s")
            await asyncio.sleep(0.5)


async def _lag_or_unknown(transport: Transport, group: str, topic: str) -> int | None:
    """The group's lag, or None while Kafka cannot tell yet (a fresh broker's coordinator)."""
    try:
        return await lag(transport, group, topic)
    except TransportError as exc:
        if not exc.retriable:
            raise
        return None
