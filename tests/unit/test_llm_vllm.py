"""The vllm backend with a fake ``vllm`` module (vLLM needs CUDA: it cannot be installed here).

This checks the orchestration only (request ids, priority, delta outputs,
abort on cancel, the one-line errors); the vLLM protocol itself is exercised
through the openai backend against ``llama_cpp.server`` in tests/e2e.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alto_stream.ancestry import Ancestry
from alto_stream.components.llm import (
    LLMConfig,
    LLMUnavailableError,
    Sampling,
    create_llm,
    vllm_engine,
)
from alto_stream.context import bind_record, unbind_record

pytestmark = pytest.mark.timeout(60)


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any, int]] = []
        self.aborted: list[str] = []

    async def generate(
        self, prompt: str, params: Any, request_id: str, *, priority: int = 0
    ) -> AsyncIterator[Any]:
        self.requests.append((request_id, params, priority))
        for i in range(params.kw["max_tokens"]):
            await asyncio.sleep(0.01)
            done = i == params.kw["max_tokens"] - 1
            yield types.SimpleNamespace(
                outputs=[types.SimpleNamespace(text=f"t{i} ")], finished=done
            )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def shutdown(self) -> None:
        pass


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine()
    params = types.SimpleNamespace
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: params(kw=kw)  # type: ignore[attr-defined]
    async_llm = types.ModuleType("vllm.v1.engine.async_llm")
    async_llm.AsyncLLM = types.SimpleNamespace(from_engine_args=lambda args: engine)  # type: ignore[attr-defined]
    arg_utils = types.ModuleType("vllm.engine.arg_utils")
    arg_utils.AsyncEngineArgs = lambda **kw: kw  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = types.SimpleNamespace(DELTA="delta")  # type: ignore[attr-defined]
    for name, module in {
        "vllm": vllm,
        "vllm.v1.engine.async_llm": async_llm,
        "vllm.engine.arg_utils": arg_utils,
        "vllm.sampling_params": sampling,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(vllm_engine.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(vllm_engine, "_cuda_available", lambda: True)
    return engine


async def test_vllm_without_the_package_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vllm_engine.importlib.util, "find_spec", lambda name: None)
    llm = create_llm(LLMConfig(backend="vllm", model="google/gemma-3-270m"))
    with pytest.raises(LLMUnavailableError) as info:
        await llm.start()
    assert "\n" not in str(info.value) and "ALTO_LLM_BACKEND=llama_cpp" in str(info.value)


async def test_vllm_without_a_gpu_fails_with_one_line(
    fake_vllm: FakeEngine, monkeypatch: Any
) -> None:
    monkeypatch.setattr(vllm_engine, "_cuda_available", lambda: False)
    llm = create_llm(LLMConfig(backend="vllm", model="m"))
    with pytest.raises(LLMUnavailableError, match="needs a CUDA GPU"):
        await llm.start()


async def test_vllm_request_id_priority_deltas_and_abort(fake_vllm: FakeEngine) -> None:
    llm = create_llm(LLMConfig(backend="vllm", model="m"))
    token = bind_record(Ancestry.root("q-9", query_time=50.0).child("a", 0))
    try:
        text = await llm.complete("p", Sampling(max_tokens=3, top_k=5))
        stream = llm.stream("p", Sampling(max_tokens=100))
        assert await anext(stream) == "t0 "
        await stream.aclose()  # type: ignore[attr-defined]  # the record was abandoned
    finally:
        unbind_record(token)
    assert text == "t0 t1 t2 "
    (rid1, params1, prio1), (rid2, _, prio2) = fake_vllm.requests
    record_id = Ancestry.root("q-9", query_time=50.0).child("a", 0).id
    assert rid1.startswith(record_id) and rid1 != rid2 and prio1 == prio2 == 50_000
    assert params1.kw["output_kind"] == "delta" and params1.kw["top_k"] == 5
    assert params1.kw["repetition_penalty"] == 1.0  # none, as every backend
    assert fake_vllm.aborted == [rid2]  # the finished one was not aborted
    await llm.close()


async def test_vllm_cancelled_reader_aborts_the_request(fake_vllm: FakeEngine) -> None:
    llm = create_llm(LLMConfig(backend="vllm", model="m"))

    async def read() -> None:
        async for _ in llm.stream("p", Sampling(max_tokens=1000)):
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake_vllm.aborted == [fake_vllm.requests[0][0]]
