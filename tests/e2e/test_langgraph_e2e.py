"""rag in LangGraph (graph and functional variants) against the real emulated engine and index.

The emulated GPU serving engine (``python -m benchmarks.engine``, an
OpenAI-compatible HTTP server; its text is a deterministic function of the
prompt) runs as a process on a free port; the LLM is the alto ``openai``
backend, the retriever and sentence scorer the real MiniLM index. Both
variants, durable (SQLite) and in memory, must give the very report the alto
app gives with the same components (run in memory), and a partial result per
streamed answer sentence. Needs the ``ml`` and ``bench`` extras.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("langgraph", reason="needs the bench extra: pip install -e '.[bench]'")
pytest.importorskip("sentence_transformers", reason="needs the ml extra: pip install -e '.[ml]'")

from alto_stream.components.llm import LLMConfig, create_llm
from alto_stream.components.sentences import sentences
from alto_stream.runner import run_in_memory
from benchmarks.langgraph import Parts, make_system, parts_for
from benchmarks.systems.base import BenchConfig
from workers import rag

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ai_apps_e2e import index  # the index fixture: the full one, or 300 summaries

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["Where does the Nile flow?", "Who was Marie Curie?"]

__all__ = ["index"]  # re-exported for pytest


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulated engine as its own process on a free port (fast timings): its /v1 URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    args = ["--port", str(port), "--first-token", "0.001", "--token-rate", "2000"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.engine", *args], cwd=ROOT, stdout=out, stderr=out
        )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the engine did not start: {log.read_text()}"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def config(engine_url: str, index: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchConfig:
    workdir = tmp_path_factory.mktemp("bench")
    return BenchConfig(app="rag", llm_url=engine_url, index_dir=str(index), workdir=str(workdir))


async def _alto_reports(parts: Parts) -> list[dict[str, Any]]:
    app = rag.build("lg-rag-e2e", llm=parts.llm, searcher=parts.searcher)
    results = await run_in_memory(app, [{"text": q} for q in QUESTIONS], timeout=120)
    assert all(r.ok for r in results)
    return [json.loads(r.value["json"]) for r in results]  # type: ignore[index]


@pytest.mark.parametrize("checkpointer", ["memory", "sqlite"])
@pytest.mark.parametrize("variant", ["graph", "functional"])
async def test_rag_gives_the_alto_report(
    config: BenchConfig, variant: str, checkpointer: str
) -> None:
    parts = parts_for(config)  # the openai backend on the engine, the real index and MiniLM
    assert parts.llm.backend == "openai"
    system = make_system(
        BenchConfig(**{**config.__dict__, "checkpointer": checkpointer}), variant, parts=parts
    )
    await system.start()
    try:
        reports, partials = [], []
        for i, question in enumerate(QUESTIONS):
            count: list[int] = []
            text = await system.run(f"q{i}", question, lambda count=count: count.append(1))
            reports.append(json.loads(text))
            partials.append(len(count))
        expected = await _alto_reports(parts)
    finally:
        await system.close()
    assert reports == expected
    for report, count in zip(reports, partials, strict=True):
        assert report["answer"] and report["sources"] and report["context"]
        assert count == len(sentences(report["answer"])) >= 1
        assert {s["title"] for s in report["context"]} == set(report["sources"])


def test_the_engine_is_emulated(engine_url: str) -> None:
    """The LLM these tests use says it is emulated (no model answered)."""
    llm = create_llm(LLMConfig(backend="openai", url=engine_url))
    assert llm.backend == "openai"
    assert "emulated" in httpx.get(f"{engine_url}/models", timeout=5).text
