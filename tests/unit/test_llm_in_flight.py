"""How many LLM calls an app's LLM stages keep open per worker (workers.common.llm_in_flight)."""

from __future__ import annotations

import pytest

from workers import rag
from workers.common import llm_in_flight


def test_a_model_server_gets_many_calls_at_once_and_llama_cpp_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ALTO_LLM_IN_FLIGHT", raising=False)
    monkeypatch.delenv("ALTO_LLM_BACKEND", raising=False)
    assert llm_in_flight() == 4  # llama.cpp in process: one call at a time anyway
    for backend in ("openai", "vllm"):
        monkeypatch.setenv("ALTO_LLM_BACKEND", backend)
        assert llm_in_flight() == 32  # the server batches (vLLM: continuous batching)
    monkeypatch.setenv("ALTO_LLM_IN_FLIGHT", "7")
    assert llm_in_flight() == 7
    monkeypatch.setenv("ALTO_LLM_IN_FLIGHT", "0")
    with pytest.raises(ValueError, match="ALTO_LLM_IN_FLIGHT must be >= 1"):
        llm_in_flight()


def test_the_generate_stage_takes_the_default_unless_the_app_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALTO_LLM_BACKEND", "openai")
    monkeypatch.delenv("ALTO_LLM_IN_FLIGHT", raising=False)
    served = rag.build("rag-inflight", llm=object(), searcher=object())  # type: ignore[arg-type]
    assert served.topology().plan("generate").stage.max_in_flight == 32
    fixed = rag.build("rag-inflight", llm=object(), searcher=object(), in_flight=2)  # type: ignore[arg-type]
    assert fixed.topology().plan("generate").stage.max_in_flight == 2
