"""A transactional worker fenced from outside, then stopped, exits 0; the next owner finishes.

A worker process runs a one-partition transactional map. While it works, a
producer started outside alto-stream takes over its partition's transactional
id (as a new owner does), which fences the worker's producer and aborts its
open transaction; then the worker gets SIGTERM. It must stop cleanly (exit
status 0, no traceback, no "exception was never retrieved"), and a second
worker, the partition's next owner, must finish every query exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]

APP = """
import asyncio
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")

@app.map(source=app.input, schema="alto.Text", max_in_flight=2)
async def slow(value):
    await asyncio.sleep(0.2)
    return {{"text": value["text"].upper()}}
"""


def _worker(ref: str, bootstrap: str, path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": bootstrap,
    }
    argv = [sys.executable, "-m", "alto_stream.cli", "worker", ref, "slow"]
    argv += ["--delivery", "transactional", "--bootstrap-servers", bootstrap]
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def _committed(transport: KafkaTransport, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(**transport.client_options(), group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        await consumer.stop()


async def test_a_fenced_worker_stops_with_status_0_and_its_next_owner_finishes(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    module = unique_name("fencedstop").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP.format(name=unique_name("fs"))))
    sys.path.insert(0, str(tmp_path))
    try:
        app = load_app(f"{module}:app")
    finally:
        sys.path.remove(str(tmp_path))
    topology = app.topology()
    plan = topology.plan("slow")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _worker(f"{module}:app", kafka_bootstrap, tmp_path, first_log)
    second = None
    try:
        async with Client(app, transport) as client:
            ids = await client.push_many([{"text": f"word{i}"} for i in range(40)])
            # The first worker has committed some transactions: it is mid-run.
            for _ in range(600):
                if await _committed(transport, plan.group, plan.input_topic) >= 4:
                    break
                assert first.poll() is None, first_log.read_text()
                await asyncio.sleep(0.2)
            else:
                pytest.fail(
                    "the first worker committed nothing in 120 s:\n" + first_log.read_text()
                )
            fencer = AIOKafkaProducer(
                **transport.client_options(),
                transactional_id=f"{plan.group}.{plan.input_topic}.0",
            )
            await fencer.start()  # InitProducerId: the worker's producer is fenced
            await fencer.stop()
            first.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(first.wait, 120)
            text = first_log.read_text(errors="replace")
            assert status == 0, text
            assert "Traceback" not in text and "never retrieved" not in text, text
            second = _worker(f"{module}:app", kafka_bootstrap, tmp_path, second_log)
            results = {r.query_id: r async for r in client.follow(ids, timeout=180, partials=False)}
        assert len(results) == len(ids), second_log.read_text()
        texts = {(results[q].value or {}).get("text") for q in ids}
        assert texts == {f"WORD{i}" for i in range(40)}
        outputs = Counter(
            env.ancestry.query_id for _, env in await read_topic(transport, plan.output_topic)
        )
        assert outputs == Counter(dict.fromkeys(ids, 1))  # read_committed: exactly once
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                await asyncio.to_thread(proc.wait, 30)
