"""The LLM stage benchmark: llama.cpp through Kafka against llama.cpp called directly.

Both sides run the same model (Gemma 3 270M on llama.cpp, or ``ALTO_LLM_MODEL``),
the same few-shot prompts (``workers/llmflow.py``) and the same sampling with a
fixed seed, so they generate the same text token for token (the benchmark
checks it). Questions run one at a time, after one warm-up question each side.

- direct: this process loads the model and streams each answer through the
  sentence splitter; time to first sentence and to the end of the stream;
- through Kafka: ``workers.llmflow`` with its ``generate`` stage (the model) and
  its ``answer`` aggregate as two worker processes; time to first sentence =
  the first sentence record's Kafka timestamp minus the query's push time; end
  = the split's END marker's timestamp.

Tokens/s = the direct run's token count (deltas) / generation time; the
slowdowns are medians of the per-question ratios (Kafka / direct - 1). Both
sides run at the same time on one machine (two model instances), alternating
which goes first per question. Peak RSS is each worker process's VmHWM just
before it stops, and this process's (which also holds the direct model).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alto_stream.client import Client
from alto_stream.components.llm import LLM, LLMConfig, Sampling, create_llm
from alto_stream.components.sentences import split_sentences
from alto_stream.message import MessageCodec
from alto_stream.runtime.kafka import KafkaTransport
from workers import llmflow

__all__ = ["QUESTIONS", "LLMBenchResult", "run"]

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "Why is the sky blue?",
    "What is a river?",
    "How do bees make honey?",
    "What causes the seasons?",
    "Why do leaves change colour in autumn?",
)


@dataclass(frozen=True)
class LLMBenchResult:
    """Medians over the questions (seconds, tokens/s, MiB)."""

    questions: int
    tokens: int
    same_text: bool
    direct_first_sentence_s: float
    kafka_first_sentence_s: float
    direct_tokens_per_s: float
    kafka_tokens_per_s: float
    slowdown_tokens_pct: float
    slowdown_first_sentence_pct: float
    generate_worker_peak_rss_mib: float
    answer_worker_peak_rss_mib: float
    direct_process_peak_rss_mib: float
    per_question: tuple[tuple[float, float, float, float], ...] = ()
    """(direct first, Kafka first, direct end, Kafka end) per question, seconds."""


def _sampling(max_tokens: int, seed: int) -> Sampling:
    return Sampling(max_tokens=max_tokens, stop=("\nQuestion:",), seed=seed)


async def _direct(llm: LLM, question: str, max_tokens: int, seed: int) -> dict[str, Any]:
    """One question answered in this process: first sentence, end, tokens, text."""
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    sentences = []

    async def counted() -> AsyncIterator[str]:
        nonlocal tokens
        async for delta in llm.stream(llmflow.prompt(question), _sampling(max_tokens, seed)):
            tokens += 1
            yield delta

    async for sentence in split_sentences(counted()):
        first = first or time.perf_counter() - started
        sentences.append(sentence)
    total = time.perf_counter() - started
    return {"first": first or total, "total": total, "tokens": tokens, "text": " ".join(sentences)}


def _worker(ref: str, stage: str, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALTO_BOOTSTRAP_SERVERS": bootstrap}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "alto_stream.cli", "worker", ref, stage],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _kafka(client: Client, topic: str, question: str) -> dict[str, Any]:
    """One question through the worker processes (timings from Kafka timestamps)."""
    finals = await client.run([{"text": question}], timeout=600)
    (result,) = finals.values()
    return await _timings(client.transport, topic, result)


async def _timings(transport: KafkaTransport, topic: str, result: Any) -> dict[str, Any]:
    """First sentence and END marker times of one query, from their Kafka timestamps."""
    codec = MessageCodec()
    query_time = result.envelope.ancestry.query_time
    reader = transport.reader([topic], start_time=query_time - 1)
    await reader.start()
    stamps, ends, texts = [], [], {}
    try:
        while not await reader.end_reached():
            for record in await reader.fetch(0.5, 1000):
                env = codec.decode(record.value, record.headers)
                if env.ancestry.query_id != result.query_id:
                    continue
                if env.value is None:
                    ends.append(record.timestamp)
                else:
                    stamps.append(record.timestamp)
                    texts[env.ancestry.path[-1].index] = env.value["text"]
    finally:
        await reader.stop()
    return {
        "first": min(stamps) - query_time,
        "total": max(ends or stamps) - query_time,
        "text": " ".join(texts[i] for i in sorted(texts)),
    }


async def run(
    transport: KafkaTransport,
    *,
    questions: int = 2 * len(QUESTIONS),
    max_tokens: int = 160,
    seed: int = 1234,
    logs: Path | None = None,
) -> LLMBenchResult:
    """Measure both sides, question by question, alternating which side goes first.

    Alternating cancels the drift of a machine whose load changes during the
    run; each figure is the median over the questions, after one warm-up each.
    """
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    logs = logs or Path(os.environ.get("TMPDIR", "/tmp")) / f"alto-bench-llm-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    name = f"bench-llm-{uuid.uuid4().hex[:8]}"
    ref = f"workers.llmflow:build({name!r}, max_tokens={max_tokens}, seed={seed}, in_flight=1)"
    llm = create_llm(LLMConfig.from_env())
    app = llmflow.build(name, llm=llm, max_tokens=max_tokens, seed=seed)
    topology = app.topology()
    topic = topology.plan("generate").output_topic
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    procs = {s: _worker(ref, s, transport.bootstrap, logs / f"{s}.log") for s in topology.stages}
    direct, kafka = [], []
    try:
        await llm.start()
        async with Client(app, transport) as client:
            for i, question in enumerate(["What is a lake?", *asked]):
                if i % 2:
                    kafka.append(await _kafka(client, topic, question))
                    direct.append(await _direct(llm, question, max_tokens, seed))
                else:
                    direct.append(await _direct(llm, question, max_tokens, seed))
                    kafka.append(await _kafka(client, topic, question))
        rss = {stage: _peak_rss_mib(proc.pid) for stage, proc in procs.items()}
    finally:
        await llm.close()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=60)
    direct, kafka = direct[1:], kafka[1:]
    pairs = list(zip(direct, kafka, strict=True))
    return LLMBenchResult(
        questions=len(asked),
        tokens=sum(d["tokens"] for d in direct),
        same_text=all(d["text"] == k["text"] for d, k in pairs),
        direct_first_sentence_s=statistics.median(d["first"] for d in direct),
        kafka_first_sentence_s=statistics.median(k["first"] for k in kafka),
        direct_tokens_per_s=statistics.median(d["tokens"] / d["total"] for d in direct),
        kafka_tokens_per_s=statistics.median(d["tokens"] / k["total"] for d, k in pairs),
        slowdown_tokens_pct=_slowdown(pairs, "total"),
        slowdown_first_sentence_pct=_slowdown(pairs, "first"),
        generate_worker_peak_rss_mib=rss.get("generate", float("nan")),
        answer_worker_peak_rss_mib=rss.get("answer", float("nan")),
        direct_process_peak_rss_mib=_peak_rss_mib(os.getpid()),
        per_question=tuple(
            (round(d["first"], 3), round(k["first"], 3), round(d["total"], 3), round(k["total"], 3))
            for d, k in pairs
        ),
    )


def _slowdown(pairs: list[tuple[dict[str, Any], dict[str, Any]]], figure: str) -> float:
    """Median over the questions of Kafka's time / direct time, as a percentage over 100."""
    return 100 * (statistics.median(k[figure] / d[figure] for d, k in pairs) - 1)
