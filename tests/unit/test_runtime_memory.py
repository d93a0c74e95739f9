"""The runtime over the in-memory transport: every stage kind, nesting, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.errors import RetriableError, TopologyError
from alto_stream.runner import LocalRun, run_in_memory
from alto_stream.runtime.memory import MemoryTransport
from workers import textflow

pytestmark = pytest.mark.timeout(60)

DOCS = [
    "Hello there. General Kenobi!\n\nYou are a bold one. Skip this word.",
    "",
    "One.",
    "A b c. D e f g. H.\n\nI j.\n\n\n\nK l m n o p.",
    "skip skip. skip.",
]


async def test_textflow_matches_sequential_reference() -> None:
    results = await run_in_memory(textflow.app, [{"text": d} for d in DOCS], timeout=30)
    assert [r.value for r in results] == [{"text": textflow.reference(d)} for d in DOCS]
    assert all(r.final and r.ok for r in results)


async def test_textflow_with_replicas_matches_reference() -> None:
    results = await run_in_memory(
        textflow.app, [{"text": d} for d in DOCS * 3], replicas=2, partitions=3
    )
    assert [r.value["text"] for r in results if r.value] == [
        textflow.reference(d) for d in DOCS * 3
    ]


def _app_with(handler_kind: str, **options: Any) -> App:
    app = App(f"t-{handler_kind}", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            yield {"text": w}

    if handler_kind == "batch":
        calls: list[int] = []

        @app.batch(source=parts, schema="alto.Text", size=4, wait=0.05)
        async def step(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
            calls.append(len(values))
            return [{"text": v["text"][::-1]} for v in values]

        app.calls = calls  # type: ignore[attr-defined]
    else:
        failures = {"n": 0}

        @app.map(source=parts, schema="alto.Text", **options)
        async def step(v: dict[str, Any]) -> dict[str, Any]:
            if v["text"] == "boom":
                raise ValueError("boom is not a word")
            if v["text"] == "flaky" and failures["n"] < 2:
                failures["n"] += 1
                raise RetriableError("try again")
            return {"text": v["text"][::-1]}

    @app.aggregate(source=step, closes=parts, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)}

    return app


async def test_batch_stage_gets_micro_batches() -> None:
    app = _app_with("batch")
    results = await run_in_memory(app, [{"text": "ab cd ef gh ij kl mn"}])
    assert results[0].value == {"text": "ba dc fe hg ji lk nm"}
    assert max(app.calls) <= 4 and sum(app.calls) == 7  # type: ignore[attr-defined]


async def test_failure_goes_to_dead_letters_and_error_marker_completes_query() -> None:
    app = _app_with("map", retries=3, retry_backoff=0.01)
    transport = MemoryTransport(2)
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "ok boom flaky"}], timeout=20)
    (result,) = results.values()
    assert result.value == {"text": "ko <ERROR> ykalf"}
    letters = transport.records("t-map.step.dlq")
    assert len(letters) == 1
    letter = client.codec.decode(letters[0].value, letters[0].headers)
    assert letter.value is not None and "boom is not a word" in letter.value["error"]
    assert letter.value["stage"] == "step"


async def test_zero_child_split_and_filter() -> None:
    results = await run_in_memory(textflow.app, [{"text": ""}, {"text": "skip"}])
    assert [r.value for r in results] == [{"text": ""}, {"text": ""}]


async def test_query_aware_scheduling_finishes_queries_in_arrival_order() -> None:
    app = App("sched", input_schema="alto.Text")
    running = {"n": 0}

    @app.split(source=app.input, schema="alto.Text")
    async def fan(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": f"{q['text']}-{i}"} for i in range(8)]

    @app.map(source=fan, schema="alto.Text", max_in_flight=4)
    async def slow(v: dict[str, Any]) -> dict[str, Any]:
        running["n"] += 1
        await asyncio.sleep(0.02)
        return v

    @app.aggregate(source=slow, closes=fan, schema="alto.Text")
    async def done(children: list[Child]) -> dict[str, Any]:
        return {"text": str(len(children))}

    transport = MemoryTransport(1)
    async with LocalRun(app, transport) as run, run.client() as client:
        ids = await client.push_many([{"text": f"q{i}"} for i in range(6)])
        order = [r.query_id async for r in client.follow(ids, timeout=20, since=0, partials=False)]
    assert order == ids  # oldest query first: they finish one after another


def test_topology_infers_depths_keys_and_topics() -> None:
    topology = textflow.app.topology()
    plan = topology.plan("sentence_text")
    assert (plan.depth_in, plan.aggregate_depth, plan.depth_out) == (3, 2, 2)
    assert topology.plan("shout").key_depth == 2  # keyed for the aggregate that reads it
    assert topology.plan("words").key_depth is None
    assert topology.plan("document").aggregate_depth == 0
    assert topology.outputs == ("document",)
    assert plan.changelog_topic == "textflow.sentence_text.changelog"
    assert "textflow.input" in topology.topic_names()


def test_topology_errors_are_clear() -> None:
    app = App("bad", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def first(v: dict[str, Any]) -> dict[str, Any]:
        return v

    @app.split(source=app.input, schema="alto.Text")
    async def other(v: dict[str, Any]) -> list[dict[str, Any]]:
        return [v]

    @app.aggregate(source=first, closes=other, schema="alto.Text")
    async def agg(children: list[Child]) -> dict[str, Any]:
        return {}

    with pytest.raises(TopologyError, match="not upstream"):
        app.topology()
