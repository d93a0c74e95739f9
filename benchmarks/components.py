"""Benchmarks of the embedding and retrieval components, through Kafka and called directly.

``embed``: real Wikipedia sentences pre-filled on the input topic of
``workers.embedding`` (one batch stage), then ONE worker process started;
sentences/s from the first output record's Kafka timestamp to the last one's,
against the same model called in this process on the same sentences in the
same batch size (measured before and after the Kafka run, averaged, so that a
drift in the machine's load hits both sides). At batch 1, 8 and 32.

``retrieve``: FanOutQA questions over an index, one at a time: the latency of a
direct call in this process (embedding + exact search, and the search alone),
and of the ``workers.retrieval`` stage through Kafka (the hop: the output
record's timestamp minus the input record's).

Both report the worker processes' peak resident memory (VmHWM).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from alto_stream.client import Client
from alto_stream.components.embed import DEFAULT_MODEL, Embedder
from alto_stream.components.index import Retriever, default_index_dir
from alto_stream.components.index.corpus import sentences as split_sentences
from alto_stream.components.index.corpus import wiki_file
from alto_stream.components.index.recall import fanoutqa_questions
from alto_stream.errors import AltoError
from alto_stream.message import MessageCodec
from alto_stream.runtime.worker import DeliveryMode
from alto_stream.transport import Transport
from benchmarks.harness import (
    Where,
    Workers,
    create_topics,
    percentile,
    query_ids,
    read_all,
    unique_name,
)

__all__ = [
    "BATCH_SIZES",
    "EmbedResult",
    "RetrieveResult",
    "embed",
    "retrieve",
    "wiki_file",
    "wiki_sentences",
]

BATCH_SIZES = (1, 8, 32)


@dataclass(frozen=True)
class EmbedResult:
    """Sentences per second of the embedding stage through Kafka and of direct model calls."""

    delivery: str
    where: str
    sentences: int
    direct_b1_per_s: float
    kafka_b1_per_s: float
    ratio_b1: float
    direct_b8_per_s: float
    kafka_b8_per_s: float
    ratio_b8: float
    direct_b32_per_s: float
    kafka_b32_per_s: float
    ratio_b32: float
    worker_peak_rss_mb: float
    """The largest VmHWM of the three worker processes (model loaded, after the run)."""
    loadavg_1m: float
    """The machine's 1-minute load average at the end (2 cores: above 2 means contention)."""


@dataclass(frozen=True)
class RetrieveResult:
    """Per-query retrieval latency (milliseconds) over one index."""

    delivery: str
    where: str
    queries: int
    passages: int
    direct_p50_ms: float
    direct_p99_ms: float
    search_only_p50_ms: float
    """The exact top-k over the memory-mapped matrix, the query already embedded."""
    search_only_p99_ms: float
    kafka_hop_p50_ms: float
    kafka_hop_p99_ms: float
    worker_peak_rss_mb: float
    bench_peak_rss_mb: float
    """This process (model and index loaded) for comparison."""
    loadavg_1m: float


def wiki_sentences(count: int) -> list[str]:
    """``count`` distinct real sentences (4 words or more) from the Wikipedia summaries."""
    pages = json.loads(wiki_file().read_text(encoding="utf-8"))
    found: dict[str, None] = {}
    for page in pages.values():
        for sentence in split_sentences(page["extract"]):
            if len(sentence.split()) >= 4:
                found.setdefault(sentence)
        if len(found) >= count:
            break
    return list(found)[:count]


def _direct_rate(embedder: Embedder, texts: list[str], batch: int) -> float:
    began = time.perf_counter()
    for first in range(0, len(texts), batch):
        embedder.embed(texts[first : first + batch])
    return len(texts) / (time.perf_counter() - began)


async def embed(
    transport: Transport,
    delivery: DeliveryMode = "at-least-once",
    *,
    sentences: int = 1000,
    where: Where = "process",
    partitions: int = 4,
    timeout: float = 1800.0,
) -> EmbedResult:
    """Measure the embedding stage at each batch size of :data:`BATCH_SIZES` (see above)."""
    texts = wiki_sentences(sentences)
    embedder = Embedder(batch_size=32)
    await asyncio.to_thread(embedder.embed, texts[:64])  # load and warm up
    figures: dict[str, float] = {}
    peak = 0.0
    for batch in BATCH_SIZES:
        embedder.batch_size = batch
        before = await asyncio.to_thread(_direct_rate, embedder, texts, batch)
        kafka, rss = await _embed_kafka(
            transport, delivery, texts, batch, where, partitions, timeout
        )
        after = await asyncio.to_thread(_direct_rate, embedder, texts, batch)
        direct = (before + after) / 2.0
        figures |= {f"direct_b{batch}_per_s": direct, f"kafka_b{batch}_per_s": kafka}
        figures[f"ratio_b{batch}"] = kafka / direct
        peak = max(peak, rss)
    return EmbedResult(
        delivery=delivery,
        where=where,
        sentences=len(texts),
        worker_peak_rss_mb=peak,
        loadavg_1m=_load(),
        **figures,
    )


async def _embed_kafka(
    transport: Transport,
    delivery: DeliveryMode,
    texts: list[str],
    batch: int,
    where: Where,
    partitions: int,
    timeout: float,
) -> tuple[float, float]:
    """(sentences/s of one worker over a pre-filled topic, its peak RSS in MB)."""
    from workers.embedding import build

    name = unique_name(f"embed-b{batch}", delivery)
    app = build(name, size=batch, wait=0.05)
    topology = app.topology()
    await create_topics(transport, topology, partitions)
    async with Client(topology, transport) as client:
        await client.push_many([{"text": t} for t in texts])
    ref = f"workers.embedding:build({name!r}, size={batch}, wait=0.05)"
    output = topology.plan("embed").output_topic
    async with Workers(app, transport, delivery, where=where, app_ref=ref) as workers:
        await _count(transport, output, len(texts), workers, timeout)
        rss = peak_rss_mb(workers)
    stamps = sorted(r.timestamp for r in await read_all(transport, [output]))
    # The first batch's outputs share the first timestamp: count what came after it.
    seconds = max(stamps[-1] - stamps[0], 1e-3)
    return (len(stamps) - min(batch, len(stamps) - 1)) / seconds, rss


async def retrieve(
    transport: Transport,
    delivery: DeliveryMode = "at-least-once",
    *,
    index: str | None = None,
    queries: int = 200,
    where: Where = "process",
    partitions: int = 4,
) -> RetrieveResult:
    """Per-query latency of retrieval, direct and through Kafka (see the module docstring)."""
    path = Path(index) if index else default_index_dir("wiki", DEFAULT_MODEL)
    questions = [q.question for q in fanoutqa_questions()][:queries]
    retriever = Retriever(path, k=5)
    await asyncio.to_thread(retriever.search_many, questions[:16])  # load, warm up
    direct, search_only = await asyncio.to_thread(_direct_latencies, retriever, questions)
    hops, rss = await _retrieve_kafka(transport, delivery, path, questions, where, partitions)
    return RetrieveResult(
        delivery=delivery,
        where=where,
        queries=len(questions),
        passages=len(retriever.open()),
        direct_p50_ms=percentile(direct, 50),
        direct_p99_ms=percentile(direct, 99),
        search_only_p50_ms=percentile(search_only, 50),
        search_only_p99_ms=percentile(search_only, 99),
        kafka_hop_p50_ms=percentile(hops, 50),
        kafka_hop_p99_ms=percentile(hops, 99),
        worker_peak_rss_mb=rss,
        bench_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        loadavg_1m=_load(),
    )


def _direct_latencies(
    retriever: Retriever, questions: list[str]
) -> tuple[list[float], list[float]]:
    index, embedder = retriever.open(), retriever.embedder
    whole, search = [], []
    for question in questions:
        began = time.perf_counter()
        vector = embedder.embed([question])
        embedded = time.perf_counter()
        index.search(vector, retriever.k)
        done = time.perf_counter()
        whole.append((done - began) * 1000.0)
        search.append((done - embedded) * 1000.0)
    return whole, search


async def _retrieve_kafka(
    transport: Transport,
    delivery: DeliveryMode,
    path: Path,
    questions: list[str],
    where: Where,
    partitions: int,
) -> tuple[list[float], float]:
    """Queries pushed one at a time (each once the previous one came out): hops, worker RSS."""
    from workers.retrieval import build

    name = unique_name("retrieve", delivery)
    app = build(name, index=str(path), k=5)
    topology = app.topology()
    await create_topics(transport, topology, partitions)
    ref = f"workers.retrieval:build({name!r}, index={str(path)!r}, k=5)"
    async with (
        Workers(app, transport, delivery, where=where, app_ref=ref) as workers,
        Client(topology, transport) as client,
    ):
        await client.run([{"text": questions[0]}], timeout=600)  # model load, group join
        for question in questions:
            await client.run([{"text": question}], timeout=60)
        rss = peak_rss_mb(workers)
    codec = MessageCodec()
    inputs = query_ids(await read_all(transport, [topology.input_topic]), codec)
    outputs = query_ids(await read_all(transport, [topology.plan("retrieve").output_topic]), codec)
    hops = [(outputs[q] - inputs[q]) * 1000.0 for q in list(inputs)[1:] if q in outputs]
    if len(hops) != len(questions):
        raise AltoError(f"expected {len(questions)} retrieval results, got {len(hops)}")
    return hops, rss


async def _count(
    transport: Transport, topic: str, expected: int, workers: Workers, timeout: float
) -> None:
    """Wait until ``topic`` holds ``expected`` records."""
    deadline = time.monotonic() + timeout
    reader = transport.reader([topic])
    await reader.start()
    seen = 0
    try:
        while seen < expected:
            seen += len(await reader.fetch(0.5, 5000))
            workers.check()
            if time.monotonic() > deadline:
                raise AltoError(f"{seen} of {expected} embeddings after {timeout} s")
    finally:
        await reader.stop()


def peak_rss_mb(workers: Workers) -> float:
    """The largest peak resident set (VmHWM) of the workers' processes, in MB (0 in-process)."""
    peak = 0.0
    for pid in workers.pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024.0)
    return peak


def _load() -> float:
    return os.getloadavg()[0]
