"""Client.follow on a real broker: finished queries followed again, a broker gone mid-follow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alto_stream import App, Child, broker
from alto_stream.client import Client
from alto_stream.errors import TransportError
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def _app(name: str) -> App:
    """pieces (split on '|') -> work (map) -> answer (aggregate closing pieces)."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def pieces(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": p} for p in q["text"].split("|")]

    @app.map(source=pieces, schema="alto.Text")
    async def work(p: dict[str, Any]) -> dict[str, Any]:
        return {"text": p["text"].upper()}

    @app.aggregate(source=work, closes=pieces, schema="alto.Text")
    async def answer(children: list[Child]) -> dict[str, Any]:
        return {"text": " / ".join(c.value["text"] for c in children if c.ok)}

    return app


async def test_queries_followed_again_show_every_partial_before_their_final(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: 300 finished queries followed again with
    # partials_from=["work"]: 256 showed no partial. The reader, behind, fetched
    # the finals (one topic) before the partials (another), and each final ended
    # its query at once.
    app = _app(unique_name("followback"))
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=1))
    since = time.time() - 1.0
    async with LocalRun(app, transport) as run, run.client() as client:
        finals = await client.run(
            [{"text": f"a{i}|b{i}|c{i}|d{i}"} for i in range(300)], timeout=90
        )
    assert len(finals) == 300
    lost = []
    async with Client(app, transport) as client:
        for _ in range(10):  # which partition a reader is handed first varies: ten readers
            shown: dict[str, list[str]] = {q: [] for q in finals}
            async for result in client.follow(
                list(finals), timeout=60, since=since, partials_from=["work"]
            ):
                shown[result.query_id].append("final" if result.final else result.stage)
            lost.append(sum(kinds != ["work"] * 4 + ["final"] for kinds in shown.values()))
    assert lost == [0] * 10, f"queries of 300 that lost partials, per follow: {lost}"


async def test_a_broker_stopped_mid_follow_gives_a_timeout_not_a_cancellation(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: follow(timeout=15) raised CancelledError, though
    # nothing cancelled it, when the broker stopped while it waited.
    cluster = broker.start(port=0, data_dir=tmp_path)
    try:
        app = _app(unique_name("gone"))
        transport = KafkaTransport(cluster.bootstrap)
        await transport.ensure_topics(app.topology().topic_specs(partitions=1))
        async with Client(app, transport) as client:
            query = await client.push({"text": "nobody|answers"})

            async def stop_soon() -> None:
                await asyncio.sleep(2.0)  # the follow has started reading
                await asyncio.to_thread(broker.stop, tmp_path)

            stopped = asyncio.create_task(stop_soon())
            began = time.monotonic()
            with pytest.raises((TimeoutError, TransportError)) as raised:
                async for _ in client.follow([query], timeout=8):
                    pass
            took = time.monotonic() - began
            await stopped
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        assert isinstance(raised.value, TimeoutError), raised.value
        assert f"did not finish within 8s: {query}" in str(raised.value)
        assert "Kafka was unreachable when the time ran out" in str(raised.value)
        assert took < 20
    finally:
        broker.stop(tmp_path)


async def test_run_gives_finals_in_push_order_on_kafka(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: run() returned its finals in the order they finished.
    app = App(unique_name("runorder"), input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def slow(q: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(q["text"]))
        return {"text": "done"}

    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    values = [{"text": "2.0"}, {"text": "1.0"}, {"text": "0.0"}]
    ids = [unique_name("q") for _ in values]
    async with LocalRun(app, transport) as run, run.client() as client:
        finals = await client.run(values, timeout=60, query_ids=ids)
    assert list(finals) == ids
    latencies = [result.latency for result in finals.values()]
    assert latencies == sorted(latencies, reverse=True)
