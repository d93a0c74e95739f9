"""On Kafka, transactional: a split with ``commit_early=True`` streams its children.

The split writes one child, then waits (a long generation). Its child must be
readable (read_committed) while it waits. Its worker is then stopped mid-split
(the record is cut short, never done) and a new one runs the split again, to
its end: the aggregate fires once, on the second attempt's children, while the
first attempt's child stays on the split's topic (as documented).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.testing import read_topic
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (found := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return found


async def test_a_split_that_commits_early_streams_and_its_cut_attempt_is_ignored(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    runs = {"n": 0}
    app = App(unique_name("early"), input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text", commit_early=True)
    async def generate(query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        runs["n"] += 1
        run = runs["n"]
        yield {"text": f"a{run}"}
        if run == 1:
            await asyncio.sleep(3600)  # the first run hangs until its worker stops
        yield {"text": f"b{run}"}

    @app.aggregate(source=generate, closes=generate, schema="alto.Text")
    async def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    codec = MessageCodec()
    value, headers = codec.encode(Envelope(Ancestry.root("q0"), {"text": "q"}, "alto.Text"))
    producer = transport.producer()
    await producer.start()
    try:
        await producer.send(OutRecord(topology.input_topic, value, headers, b"q0"))
    finally:
        await producer.stop()

    async def texts(stage: str) -> list[str]:
        found = await read_topic(transport, topology.plan(stage).output_topic)
        return [env.value["text"] for _, env in found if env.value is not None]

    options = WorkerOptions(delivery="transactional", shutdown_timeout=0.3)
    aggregate = Worker(app, "joined", transport, options)
    first = Worker(app, "generate", transport, options)
    tasks = [asyncio.create_task(w.run(timeout=150)) for w in (aggregate, first)]
    try:
        # The first child is committed while its split still runs.
        assert await _until(lambda: _have(texts("generate"), ["a1"]), "a1 committed")
        first.stop()  # cut short: the record is not done, and runs again
        await tasks.pop()
        second = Worker(app, "generate", transport, options)
        tasks.append(asyncio.create_task(second.run(timeout=150)))
        finals = await _until(lambda: texts("joined"), "the final")
        await asyncio.sleep(2.0)  # time for a second final, were there one
        finals = await texts("joined")
        second.stop()
    finally:
        aggregate.stop()
        for worker in (first,):
            worker.stop()
        await asyncio.gather(*tasks)
    assert finals == ["a2 b2"]  # once, of the second attempt only
    assert sorted(await texts("generate")) == ["a1", "a2", "b2"]  # a1: the cut attempt's


async def _have(found: Any, expected: list[str]) -> bool:
    return bool(await found == expected)
