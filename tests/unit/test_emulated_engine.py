"""The emulated GPU serving engine (benchmarks/engine), served over real HTTP in-process.

The project's OpenAI backend streams from it unchanged; its queue honours vLLM's
``priority`` field. No assertion depends on timing: the priority tests hold the
engine's clock (its ``sleep``) closed until every request is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn

from alto_stream.components.llm import Sampling
from alto_stream.components.llm.base import Request
from alto_stream.components.llm.openai_http import OpenAILLM
from benchmarks.engine import EmulatedEngine, EngineConfig, Scheduler, answer_tokens

FAST = EngineConfig(capacity=4, first_token=0.001, token_rate=2000.0, prefill_rate=1e6)


@asynccontextmanager
async def serving(engine: EmulatedEngine) -> AsyncIterator[str]:
    """The engine on a free local port, for the body of the ``async with``: its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(engine.app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _until(lambda: server.started or task.done())
        if task.done():
            task.result()  # raises what stopped the server
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll state that another task changes (nothing to wait on); pytest-timeout bounds it."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.002)


@pytest.mark.parametrize(
    "prompt",
    ["Why is the sky blue?", [{"role": "user", "content": "Why is the sky blue?"}]],
    ids=["completion", "chat"],
)
async def test_the_openai_backend_streams_the_non_streamed_text(prompt: object) -> None:
    engine = EmulatedEngine(FAST)
    async with serving(engine) as url:
        llm = OpenAILLM(f"{url}/v1", "whatever-the-client-names")
        sampling = Sampling(max_tokens=40, seed=3)
        try:
            deltas = [d async for d in llm.stream(prompt, sampling)]  # type: ignore[arg-type]
        finally:
            await llm.close()
        chat = isinstance(prompt, list)
        body = llm.body(prompt, sampling, Request("r")) | {"stream": False}  # type: ignore[arg-type]
        path = "/v1/chat/completions" if chat else "/v1/completions"
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post(path, json=body)
            stats = (await client.get("/stats")).json()
    assert response.status_code == 200
    assert response.headers["x-emulated-engine"] == "true"
    whole = response.json()
    choice = whole["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    assert "".join(deltas) == text
    assert len(deltas) == whole["usage"]["completion_tokens"] <= 40
    assert "emulated" in whole["model"]
    assert text.count(". ") >= 1 and text.endswith(".")  # whole sentences for a splitter
    assert choice["finish_reason"] == "stop"
    assert stats["served"] == 2 and stats["running"] == stats["queued"] == 0
    assert stats["tokens"] == 2 * len(deltas)


async def test_max_tokens_models_and_metrics() -> None:
    engine = EmulatedEngine(FAST)
    async with serving(engine) as url, httpx.AsyncClient(base_url=url) as client:
        short = await client.post("/v1/completions", json={"prompt": "p", "max_tokens": 3})
        bad = await client.post("/v1/completions", json={"max_tokens": 3})
        models = (await client.get("/v1/models")).json()
        metrics = (await client.get("/metrics")).text
    assert short.json()["choices"][0]["finish_reason"] == "length"
    assert short.json()["usage"]["completion_tokens"] == 3
    assert len(short.json()["choices"][0]["text"].split()) == 3
    assert bad.status_code == 400 and "prompt" in bad.json()["error"]["message"]
    assert [m["id"] for m in models["data"]] == ["emulated-gpu-engine"]
    assert "emulated" in metrics and 'emulated_engine_served{model="emulated-gpu-engine"} 1' in (
        metrics
    )


def test_answers_are_deterministic_whole_sentences_and_honour_stop() -> None:
    tokens, reason = answer_tokens("q", 50, seed=1)
    assert (tokens, reason) == answer_tokens("q", 50, seed=1)
    assert tokens != answer_tokens("q", 50, seed=2)[0] != answer_tokens("r", 50, seed=1)[0]
    assert reason == "stop" and tokens[-1].endswith(".") and len(tokens) <= 50
    cut, why = answer_tokens("q", 50, seed=1, stop=(". ",))
    assert "".join(cut) == "".join(tokens).split(". ")[0] and why == "stop"


def test_answers_end_after_a_drawn_number_of_sentences_or_list_items() -> None:
    counts, items = set(), set()
    for seed in range(60):
        text = "".join(answer_tokens("Question: why?\nAnswer:", 500, seed=seed)[0])
        counts.add(text.count("."))
        listed = "".join(answer_tokens("Claims:\n-", 500, seed=seed, items=(1, 3))[0])
        items.add(listed.count("\n- ") + 1)
    assert counts == {2, 3, 4, 5, 6}  # the default 2-6, each drawn
    assert items == {1, 2, 3}
    few, _ = answer_tokens("q", 500, seed=3, sentences=(1, 1))
    assert "".join(few).count(".") == 1


def test_inter_token_time_grows_with_the_running_requests() -> None:
    config = EngineConfig(capacity=10, token_rate=50.0, slowdown=1.0)
    assert config.inter_token(1) == pytest.approx(0.02)
    assert config.inter_token(6) == pytest.approx(0.02 * 1.5)
    assert config.inter_token(11) == pytest.approx(0.04)


async def _served_order(*, priority: bool, fifo: bool = False) -> list[str]:
    """Capacity 1: "a" runs (the clock held), then b, c, d queue; the admission order."""
    gate = asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        await gate.wait()

    engine = EmulatedEngine(
        EngineConfig(capacity=1, first_token=0.0, token_rate=1e4, fifo=fifo), sleep=held_sleep
    )
    async with serving(engine) as url:
        llm = OpenAILLM(f"{url}/v1", priority=priority, request_ids=True)
        sampling = Sampling(max_tokens=5, seed=0)

        async def ask(rid: str, prio: int) -> str:
            return await llm.complete(f"q-{rid}", sampling, request=Request(rid, priority=prio))

        try:
            calls = [asyncio.create_task(ask("a", 9))]
            await _until(lambda: engine.scheduler.running == 1)
            for n, (rid, prio) in enumerate([("b", 5), ("c", 1), ("d", 3)], start=1):
                calls.append(asyncio.create_task(ask(rid, prio)))
                await _until(lambda n=n: engine.scheduler.queued == n)
            gate.set()
            texts = await asyncio.gather(*calls)
        finally:
            await llm.close()
    assert all(t.endswith(".") or len(t.split()) == 5 for t in texts)
    assert engine.served == 4 and engine.scheduler.running == 0
    return list(engine.scheduler.admitted)


async def test_the_lowest_priority_value_is_served_first_after_the_running_one() -> None:
    assert await _served_order(priority=True) == ["a", "c", "d", "b"]


async def test_without_priority_the_queue_is_first_come_first_served() -> None:
    assert await _served_order(priority=False) == ["a", "b", "c", "d"]


async def test_a_fifo_engine_ignores_the_priority_as_llama_cpp_server_does() -> None:
    assert await _served_order(priority=True, fifo=True) == ["a", "b", "c", "d"]


def test_the_fifo_setting_is_a_flag_of_the_engine_process() -> None:
    from benchmarks.systems import EngineOptions

    assert EngineOptions(capacity=1, fifo=True).flags() == ["--capacity", "1", "--fifo"]
    assert EngineOptions(fifo=False).flags() == []


async def test_a_cancelled_waiter_leaves_its_place_and_no_slot_leaks() -> None:
    scheduler = Scheduler(1)
    order: list[str] = []

    async def run(name: str, prio: int, hold: asyncio.Event) -> None:
        async with scheduler.slot(prio, name):
            order.append(name)
            await hold.wait()

    hold = asyncio.Event()
    first = asyncio.create_task(run("first", 0, hold))
    await _until(lambda: scheduler.running == 1)
    doomed = asyncio.create_task(run("doomed", 0, hold))
    later = asyncio.create_task(run("later", 1, hold))
    await _until(lambda: scheduler.queued == 2)
    doomed.cancel()
    await _until(lambda: scheduler.queued == 1)
    hold.set()
    await asyncio.gather(first, later)
    assert order == ["first", "later"] and scheduler.running == 0 and scheduler.queued == 0
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_a_full_queue_answers_429() -> None:
    gate = asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        await gate.wait()

    engine = EmulatedEngine(EngineConfig(capacity=1, max_queue=1), sleep=held_sleep)
    async with serving(engine) as url, httpx.AsyncClient(base_url=url) as client:
        body = {"prompt": "p", "max_tokens": 2}
        running = asyncio.create_task(client.post("/v1/completions", json=body))
        await _until(lambda: engine.scheduler.running == 1)
        waiting = asyncio.create_task(client.post("/v1/completions", json=body))
        await _until(lambda: engine.scheduler.queued == 1)
        refused = await client.post("/v1/completions", json=body)
        gate.set()
        assert [r.status_code for r in await asyncio.gather(running, waiting)] == [200, 200]
    assert refused.status_code == 429 and engine.rejected == 1


async def test_a_client_that_hangs_up_mid_stream_frees_its_slot() -> None:
    gate = asyncio.Event()
    sleeps = 0

    async def held_after_two(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps > 2:
            await gate.wait()

    engine = EmulatedEngine(EngineConfig(capacity=1), sleep=held_after_two)
    async with serving(engine) as url:
        llm = OpenAILLM(f"{url}/v1")
        try:
            async with contextlib.aclosing(llm.stream("p", Sampling(max_tokens=50))) as deltas:
                first = await anext(deltas)  # then the reader goes away mid-stream
            await _until(lambda: engine.scheduler.running == 0)
            gate.set()
            again = await llm.complete("p", Sampling(max_tokens=2))
        finally:
            await llm.close()
    assert first and len(again.split()) == 2
    assert engine.served == 1  # the abandoned request is not counted as served
