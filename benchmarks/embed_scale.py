"""Scale across processes: the embedding stage with 1, 2, 4 worker processes vs one event loop.

``alto-stream``: ``workers.embedding`` (one batch stage, batches of ``batch`` texts) run by
``alto-stream up --replicas embed=N`` on a topic of 8 partitions; once every worker has
its partitions and has loaded the model (a warm-up of a few batches per worker), real
Wikipedia sentences are pushed at once, and the rate is the outputs counted from the first
output record's Kafka timestamp to the last one's.

The single-process peer (what a LangGraph app does: async nodes on one event loop): the
same sentences, the same batch size, the same model, ``aembed`` called from ``concurrency``
tasks of one asyncio loop (each call runs in a thread, as the stage's does).

Run: ``python -m benchmarks.embed_scale --processes 1,2,4 --sentences 2000 [--json]``.
On the shared 2-core machine the processes compete for 2 cores: read the figures with
the load average printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from alto_stream.client import Client
from alto_stream.components.embed import Embedder
from alto_stream.errors import AltoError
from alto_stream.runtime.kafka import KafkaTransport
from benchmarks.components import wiki_sentences
from benchmarks.harness import REPO, read_all

__all__ = ["processes_rate", "single_loop_rate"]


async def single_loop_rate(texts: list[str], batch: int, concurrency: int) -> float:
    """Sentences/s of ``concurrency`` tasks of one event loop embedding ``batch`` at a time."""
    embedder = Embedder(batch_size=batch)
    await embedder.aembed(texts[:batch])  # load and warm up
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def worker() -> None:
        while not queue.empty():
            await embedder.aembed(queue.get_nowait())

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(texts) / (time.perf_counter() - began)


async def processes_rate(
    bootstrap: str, texts: list[str], batch: int, processes: int, timeout: float = 1800.0
) -> float:
    """Sentences/s of ``processes`` embedding worker processes over Kafka (module docstring)."""
    from workers.embedding import build

    name = f"embscale-{processes}-{uuid.uuid4().hex[:6]}"
    ref = f"workers.embedding:build({name!r}, size={batch}, wait=0.05)"
    topology = build(name, size=batch, wait=0.05).topology()
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=8))
    output = topology.plan("embed").output_topic
    with tempfile.TemporaryDirectory(prefix="embscale-") as scratch:
        ready = Path(scratch, "ready")
        cmd = [sys.executable, "-m", "alto_stream.cli", "up", ref, "--json"]
        cmd += ["--replicas", f"embed={processes}", "--bootstrap-servers", bootstrap]
        cmd += ["--ready-file", str(ready), "--log-dir", str(Path(scratch, "logs"))]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        log = Path(scratch, "up.log").open("wb")  # noqa: SIM115, ASYNC230 (closed below)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        try:
            await _until(lambda: ready.exists(), proc, timeout, "the workers to be ready")
            async with Client(topology, transport) as client:
                warm = texts[: batch * processes * 2]
                await client.push_many([{"text": t} for t in warm])
                await _count(transport, output, len(warm), proc, timeout)
                since = time.time()
                await client.push_many([{"text": t} for t in texts])
                await _count(transport, output, len(warm) + len(texts), proc, timeout)
        finally:
            proc.send_signal(2)
            await asyncio.to_thread(proc.wait, 60)
            log.close()
    stamps = sorted(
        r.timestamp for r in await read_all(transport, [output]) if r.timestamp >= since
    )
    seconds = max(stamps[-1] - stamps[0], 1e-3)
    return (len(stamps) - min(batch, len(stamps) - 1)) / seconds


async def _until(check: Any, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AltoError(f"alto-stream up exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AltoError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def _count(
    transport: KafkaTransport,
    topic: str,
    expected: int,
    proc: subprocess.Popen[bytes],
    timeout: float,
) -> None:
    """Wait until ``topic`` holds ``expected`` records (the workers still running)."""
    reader = transport.reader([topic])
    await reader.start()
    deadline = time.monotonic() + timeout
    seen = 0
    try:
        while seen < expected:
            seen += len(await reader.fetch(0.5, 5000))
            if proc.poll() is not None:
                raise AltoError(f"alto-stream up exited ({proc.returncode})")
            if time.monotonic() > deadline:
                raise AltoError(f"{seen} of {expected} embeddings after {timeout} s")
    finally:
        await reader.stop()


async def scale(
    bootstrap: str, *, processes: list[int], sentences: int, batch: int
) -> dict[str, Any]:
    """Every figure: sentences/s per process count, and of one loop at concurrency 1 and 4."""
    texts = wiki_sentences(sentences)
    result: dict[str, Any] = {"sentences": len(texts), "batch": batch}
    result["single_loop_per_s"] = await single_loop_rate(texts, batch, 1)
    result["single_loop_4_tasks_per_s"] = await single_loop_rate(texts, batch, 4)
    for count in processes:
        result[f"processes_{count}_per_s"] = await processes_rate(bootstrap, texts, batch, count)
    result["loadavg"] = list(os.getloadavg())
    result["cpus"] = os.cpu_count()
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.embed_scale``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed_scale", description=__doc__)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("ALTO_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.processes.split(",")]
    result = asyncio.run(
        scale(args.bootstrap, processes=counts, sentences=args.sentences, batch=args.batch)
    )
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"{name:28s} {value:,.1f}" if isinstance(value, float) else f"{name:28s} {value}")


if __name__ == "__main__":
    main()
