"""A broker down longer than the producer's request timeout: the workers go on once it is back.

A new user stopped the broker for 60 s and for 300 s with queries in flight: once
it was back, before its partitions had leaders again, every output that had
waited through the outage failed (aiokafka's ``LeaderNotAvailableError`` for a
batch older than ``request_timeout_ms``, 40 s) and each worker holding one
stopped: started by hand, it stayed down (8 of 72 queries never finished); under
``up``, its restart ran records again and gave finals twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from alto_stream import App, Child, broker
from alto_stream.client import Client
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(420)]

OUTAGE = 50.0
"""Seconds the broker is down: past aiokafka's request timeout of 40 s."""


def _app(name: str, started: asyncio.Event) -> App:
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.map(source=words, schema="alto.Text", max_in_flight=64)
    async def slow(word: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(8.0)  # finishes while the broker is down: its output waits
        return {"text": word["text"].upper()}

    @app.aggregate(source=slow, closes=words, schema="alto.Text")
    async def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def test_workers_go_on_after_an_outage_longer_than_the_request_timeout(
    tmp_path: Path,
) -> None:
    cluster = await asyncio.to_thread(broker.start, 1, 0, tmp_path)
    try:
        started = asyncio.Event()
        app = _app(unique_name("outage"), started)
        transport = KafkaTransport(cluster.bootstrap)
        await transport.ensure_topics(app.topology().topic_specs(partitions=8))
        texts = [f"query {i} of the outage" for i in range(16)]
        async with LocalRun(app, transport) as run, Client(app, transport) as client:
            ids = await client.push_many([{"text": t} for t in texts])
            await asyncio.wait_for(started.wait(), 60)
            await asyncio.to_thread(broker.stop, tmp_path)
            await asyncio.sleep(OUTAGE)
            await asyncio.to_thread(broker.start, None, None, tmp_path)
            finals = [r async for r in client.follow(ids, timeout=150, since=0, partials=False)]
            stopped = [w.plan.name for w in run.workers if w._fatal is not None]
            assert stopped == [], [w._fatal for w in run.workers]  # before: slow, joined
        assert sorted(r.value["text"] for r in finals if r.value) == sorted(
            t.upper() for t in texts
        )
        assert len(finals) == len(texts)
    finally:
        await asyncio.to_thread(broker.stop, tmp_path)
