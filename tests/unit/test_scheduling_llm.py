"""Oldest query first at the model: the in-process gate, and the priority sent to servers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from alto_stream.ancestry import Ancestry
from alto_stream.components.llm import LLMConfig, Request, Sampling
from alto_stream.components.llm.gate import PriorityGate
from alto_stream.components.llm.llama_cpp import LlamaCppLLM
from alto_stream.components.llm.openai_http import OpenAILLM
from alto_stream.context import bind_record, unbind_record

pytestmark = pytest.mark.timeout(60)


async def _served(gate: PriorityGate, priorities: list[float | None]) -> list[float | None]:
    """The order in which calls of ``priorities`` (queued behind a holder) get their turn."""
    order: list[float | None] = []
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.turn(0):
            await hold.wait()

    async def call(priority: float | None) -> None:
        async with gate.turn(priority):
            order.append(priority)
            await asyncio.sleep(0)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    calls = []
    for priority in priorities:
        calls.append(asyncio.create_task(call(priority)))
        await asyncio.sleep(0)  # queued in this order
    assert gate.waiting == len(priorities)
    hold.set()
    await asyncio.gather(first, *calls)
    return order


async def test_the_gate_serves_the_lowest_priority_first_and_unprioritised_calls_last() -> None:
    assert await _served(PriorityGate(), [30, None, 10, 20, 10]) == [10, 10, 20, 30, None]


async def test_a_cancelled_waiter_does_not_keep_the_gate_shut() -> None:
    gate = PriorityGate()
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.turn(0):
            await hold.wait()

    async def call() -> str:
        async with gate.turn(5):
            return "served"

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    doomed = asyncio.create_task(call())
    later = asyncio.create_task(call())
    await asyncio.sleep(0)
    doomed.cancel()
    hold.set()
    assert await asyncio.wait_for(later, 5) == "served"
    await first
    with pytest.raises(asyncio.CancelledError):
        await doomed
    async with gate.turn(1):  # and the slot is free again
        assert gate.waiting == 0


class _BlockingLlama:
    """Stands in for llama_cpp.Llama: the first generation waits until released."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.release = threading.Event()

    def create_completion(self, prompt: str, **options: Any) -> Iterator[dict[str, Any]]:
        self.prompts.append(prompt)
        if len(self.prompts) == 1:
            self.release.wait(10)
        yield {"choices": [{"text": "ok."}]}


async def test_llama_cpp_serves_the_oldest_querys_call_next_not_the_first_to_arrive() -> None:
    fake = _BlockingLlama()
    llm = LlamaCppLLM(sampling=Sampling(max_tokens=2))
    llm._open = lambda: fake  # type: ignore[method-assign]

    async def ok() -> None:
        return None

    llm.check = ok  # type: ignore[method-assign]
    await llm.start()

    async def ask(name: str, query_time: float) -> str:
        request = Request(name, priority=int(query_time * 1000), query_time=query_time)
        return await llm.complete(name, request=request)

    running = asyncio.create_task(ask("running", 5.0))
    for _ in range(1000):
        if fake.prompts:
            break
        await asyncio.sleep(0.01)
    # Calls arrive youngest query first (as stages of one process would make them).
    waiting = []
    for name, query_time in [("young", 40.0), ("middle", 20.0), ("old", 10.0)]:
        waiting.append(asyncio.create_task(ask(name, query_time)))
        await asyncio.sleep(0.01)
    fake.release.set()
    await asyncio.gather(running, *waiting)
    assert fake.prompts == ["running", "old", "middle", "young"]
    await llm.close()


def _openai(bodies: list[dict[str, Any]], priority: bool | None) -> OpenAILLM:
    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        events = b'data: {"choices": [{"text": ".", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
        return httpx.Response(200, content=events)

    llm = OpenAILLM("http://llm.test/v1", "m", priority=priority)

    async def load() -> None:
        llm._client = httpx.AsyncClient(base_url=llm.url, transport=httpx.MockTransport(handler))

    llm._load = load  # type: ignore[method-assign]
    llm._probed = True  # no start-up probe of the server (tested in test_llm_orchestration)
    llm._llama_server = False  # what the probe would have learned of another server
    return llm


@pytest.mark.parametrize(
    ("setting", "app_asks", "sent"),
    [
        (None, True, True),  # the default follows the app
        (None, False, False),
        (True, False, True),  # ALTO_LLM_PRIORITY=1: always
        (False, True, False),  # ALTO_LLM_PRIORITY=0: never (a server that rejects the field)
    ],
)
async def test_openai_sends_priority_when_the_app_asks_unless_configured(
    setting: bool | None, app_asks: bool, sent: bool
) -> None:
    bodies: list[dict[str, Any]] = []
    llm = _openai(bodies, setting)
    token = bind_record(Ancestry.root("q", query_time=12.5), priority=app_asks)
    try:
        await llm.complete("x")
    finally:
        unbind_record(token)
    await llm.complete("outside a handler")
    await llm.close()
    assert ("priority" in bodies[0]) is sent
    if sent:
        assert bodies[0]["priority"] == 12_500
    assert "priority" not in bodies[1]  # no record, no priority


@pytest.mark.parametrize(("env", "value"), [(None, None), ("1", True), ("0", False)])
def test_alto_llm_priority_forces_it_on_or_off(env: str | None, value: bool | None) -> None:
    environ = {"ALTO_LLM_BACKEND": "openai", "ALTO_LLM_URL": "http://x/v1"}
    if env is not None:
        environ["ALTO_LLM_PRIORITY"] = env
    assert LLMConfig.from_env(environ).priority is value
