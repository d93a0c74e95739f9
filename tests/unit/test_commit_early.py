"""A split with ``commit_early=True``: transactional, its children commit as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("early", [True, False])
async def test_the_first_child_commits_while_the_split_runs_only_when_early(early: bool) -> None:
    release = asyncio.Event()
    app = App(f"early-{early}", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text", commit_early=early)
    async def generate(query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"text": "first"}
        await release.wait()
        yield {"text": "second"}

    @app.aggregate(source=generate, closes=generate, schema="alto.Text")
    async def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    topology = app.topology()
    plan = topology.plan("generate")
    transport = MemoryTransport(1)
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    codec = MessageCodec()
    value, headers = codec.encode(Envelope(Ancestry.root("q0"), {"text": "q"}, "alto.Text"))
    transport.append(OutRecord(topology.input_topic, value, headers, b"q0"))
    worker = Worker(app, "generate", transport, WorkerOptions(delivery="transactional"))
    run = asyncio.create_task(worker.run(timeout=20))

    def children() -> list[str]:
        records = transport.records(plan.output_topic)
        envelopes = [codec.decode(r.value, r.headers) for r in records]
        return [e.value["text"] for e in envelopes if e.value is not None]

    await asyncio.sleep(2.5)  # two rounds (ROUND: 1 s) while the split waits
    assert children() == (["first"] if early else [])
    release.set()
    for _ in range(100):
        if len(children()) == 2:
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await run
    assert children() == ["first", "second"]
