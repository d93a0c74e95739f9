"""Client.run and run_in_memory: results in the order of the queries, and how a time-out reads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from alto_stream import App
from alto_stream.client import Client
from alto_stream.runner import LocalRun, run_in_memory
from alto_stream.runtime.memory import MemoryTransport

pytestmark = pytest.mark.timeout(30)


def _sleepy() -> App:
    """One map that sleeps as long as the query's text says, and does not repeat it."""
    app = App("sleepy", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def slow(q: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(q["text"]))
        return {"text": "done"}

    return app


async def test_run_gives_the_finals_in_the_order_of_the_values_not_of_finishing() -> None:
    # Found by a new user: run() returned {id: final} in the order the queries
    # finished, with ids made inside, so no final could be matched to its value.
    app, transport = _sleepy(), MemoryTransport()
    values = [{"text": "0.6"}, {"text": "0.3"}, {"text": "0.0"}]
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run(values, timeout=10)
        named = await client.run(values[:2], timeout=10, query_ids=["slow-one", "fast-one"])
    latencies = [result.latency for result in finals.values()]
    assert latencies == sorted(latencies, reverse=True)  # the first pushed finished last
    assert [result.query_id for result in finals.values()] == list(finals)
    assert list(named) == ["slow-one", "fast-one"]


async def test_run_in_memory_gives_the_finals_in_query_order() -> None:
    results = await run_in_memory(_sleepy(), [{"text": "0.4"}, {"text": "0.0"}], timeout=10)
    assert results[0].latency > results[1].latency


async def test_run_in_memory_timing_out_names_its_timeout_and_stops_at_once() -> None:
    # Found by a new user: the TimeoutError advised since= (run_in_memory reads from
    # the start: no use), and leaving took 15 s more, waiting for the record to end.
    start = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        await run_in_memory(_sleepy(), [{"text": "60"}], timeout=0.5)
    message = str(raised.value)
    assert "1 queries did not finish within 0.5s" in message
    assert "run_in_memory(..., timeout=SECONDS) (0.5 s now)" in message
    assert "since=" not in message
    assert time.monotonic() - start < 5
