"""The four apps in LangGraph (benchmarks/langgraph) against their alto-stream versions.

With the same scripted model, retriever and embedder, every variant (graph,
fused, functional) with either checkpointer (memory, SQLite) must return the
very report the alto app writes (run in memory here), and call on_partial once
per partial result. They need the ``bench`` extra (LangGraph) and skip without it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
import sys
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph", reason="needs the bench extra: pip install -e '.[bench]'")
pytest.importorskip("langgraph.checkpoint.sqlite", reason="needs the bench extra")

from alto_stream.components.llm import Prompt, Request, Sampling
from benchmarks.langgraph import VARIANTS, Parts, make_system
from benchmarks.systems.base import BenchConfig
from workers import cove, factcheck, fanout, rag
from workers.parsing import ParseError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ai_apps import FakeEmbed, FakeSearch, ScriptedLLM

from alto_stream.runner import run_in_memory

pytestmark = pytest.mark.timeout(120)

CHECKPOINTERS = ("memory", "sqlite")


def _factcheck_claims(prompt: str) -> str:
    if "Sentence: Bad" in prompt:
        return " ??? ok\n"  # unparseable: the sentence fails as a whole
    if "Sentence: Hope" in prompt:
        return " None"
    return " Paris is in France.\n- Paris is old."


SCRIPTS: dict[str, dict[str, Callable[[str], str]]] = {
    "factcheck": {
        "Claims:": _factcheck_claims,
        "Queries:": lambda p: " Paris location\n- Paris age",
        "Verdict:": lambda p: " False. No." if "old" in p.rsplit("Claim:", 1)[1] else " True. Yes.",
        "Answer:": lambda p: " Paris is a city. Bad sentence here. Hope this helps!",
    },
    "fanout": {
        "Sub-questions:": lambda p: " When was Rome founded?\n- When was Paris founded?",
        "Facts:": lambda p: " Rome",
        "Answer:": lambda p: " 1900",
    },
    "rag": {"Answer:": lambda p: " Nile flows north. It is long. Egypt is dry."},
    "cove": {
        "Verification questions:": lambda p: " What is the capital of Australia?\n- Is it big?",
        "Revised:": lambda p: " The capital of Australia is Canberra.",
        "Answer:": lambda p: " Canberra" if "Context:" in p else " It is Sydney.",
    },
}
QUESTIONS = {
    "factcheck": "What is Paris?",
    "fanout": "Which is older, Rome or Paris?",
    "rag": "the Nile flows where in Egypt?",
    "cove": "What is the capital of Australia?",
}
BUILDERS = {"factcheck": factcheck.build, "fanout": fanout.build, "cove": cove.build}
# sentences checked, subs, sentences, checks: a failed step is no partial result, as alto's
# error markers are none (factcheck's "Bad sentence" fails; it counted before)
PARTIALS = {"factcheck": 2, "fanout": 2, "rag": 3, "cove": 2}


class RecordingLLM(ScriptedLLM):
    """The scripted model, also keeping each call's request (id and priority)."""

    def __init__(self, script: dict[str, Callable[[str], str]]) -> None:
        super().__init__(script)
        self.requests: list[Request] = []

    def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        self.requests.append(request)
        return super()._generate(prompt, sampling, request)


def _parts(app: str) -> Parts:
    return Parts(llm=RecordingLLM(SCRIPTS[app]), searcher=FakeSearch(), embedder=FakeEmbed())


async def _alto_report(app: str) -> dict[str, Any]:
    """The alto app's final report for the app's question (in memory, scripted models)."""
    parts = _parts(app)
    if app == "rag":
        built = rag.build("lg-rag", llm=parts.llm, searcher=parts.searcher, embedder=FakeEmbed())
    else:
        built = BUILDERS[app](f"lg-{app}", llm=parts.llm, searcher=parts.searcher)
    query: dict[str, Any] = {"text": QUESTIONS[app]}
    if app == "fanout":
        query["metadata"] = {}
    [result] = await run_in_memory(built, [query], timeout=30)
    assert result.ok, result.envelope
    return json.loads(result.value["json"])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def alto_reports() -> dict[str, dict[str, Any]]:
    return {app: await _alto_report(app) for app in SCRIPTS}


@pytest.mark.parametrize("checkpointer", CHECKPOINTERS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("app", list(SCRIPTS))
async def test_same_report_as_alto(
    app: str,
    variant: str,
    checkpointer: str,
    tmp_path: Path,
    alto_reports: dict[str, dict[str, Any]],
) -> None:
    parts = _parts(app)
    config = BenchConfig(app=app, checkpointer=checkpointer, workdir=str(tmp_path))
    system = make_system(config, variant, parts=parts)
    assert system.name == f"langgraph-{variant}" + ("-sqlite" if checkpointer == "sqlite" else "")
    partials: list[str] = []
    await system.start()
    try:
        for query_id in ("q-1", "q-2"):  # a second query on a fresh thread: nothing carried over
            partials.clear()
            text = await system.run(query_id, QUESTIONS[app], lambda: partials.append("p"))
            assert json.loads(text) == alto_reports[app]
            assert len(partials) == PARTIALS[app]
    finally:
        await system.close()
    requests = parts.llm.requests  # type: ignore[attr-defined]
    assert requests and all(r.priority is not None for r in requests)
    assert {r.request_id.rsplit("-", 1)[0] for r in requests} == {"q-1", "q-2"}
    if checkpointer == "sqlite":
        assert _threads(tmp_path) == {"q-1", "q-2"}


def _threads(workdir: Path) -> set[str]:
    """The thread ids checkpointed in the one SQLite file under ``workdir``."""
    [db] = workdir.glob("*.sqlite")
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT thread_id FROM checkpoints")}


def test_factcheck_report_has_the_failed_sentence(alto_reports: dict[str, Any]) -> None:
    """The comparison above covers a step that fails (an unreadable claims output)."""
    sentences = alto_reports["factcheck"]["sentences"]
    assert [s["sentence"] for s in sentences] == ["Paris is a city.", None, "Hope this helps!"]
    assert "could not parse claims" in sentences[1]["error"]


class GatedLLM(ScriptedLLM):
    """The answer's stream stops after its first sentence until that sentence's claims are asked."""

    def __init__(self, script: dict[str, Callable[[str], str]]) -> None:
        super().__init__(script)
        self.claims_asked = asyncio.Event()

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        assert isinstance(prompt, str)
        last = prompt.rsplit("\n###\n", 1)[-1]
        if "Claims:" in last:
            self.claims_asked.set()
        if "Answer:" in last and "Claim" not in last:
            yield " Paris is a city. Hope"  # the next word closes the first sentence
            await asyncio.wait_for(self.claims_asked.wait(), 10)
            yield " this helps!"
            return
        async for delta in super()._generate(prompt, sampling, request):
            yield delta


async def test_functional_checks_a_sentence_while_the_answer_streams(tmp_path: Path) -> None:
    parts = Parts(llm=GatedLLM(SCRIPTS["factcheck"]), searcher=FakeSearch())
    config = BenchConfig(app="factcheck", workdir=str(tmp_path))
    system = make_system(config, "functional", parts=parts)
    await system.start()
    try:
        report = json.loads(await system.run("q-1", QUESTIONS["factcheck"], lambda: None))
    finally:
        await system.close()
    assert report["answer"] == "Paris is a city. Hope this helps!"


@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_failed_decomposition_fails_the_query(variant: str, tmp_path: Path) -> None:
    """As the alto app ends such a query with an error marker."""
    parts = Parts(
        llm=ScriptedLLM({"Sub-questions:": lambda p: " The answer is Rome."}), searcher=FakeSearch()
    )
    system = make_system(BenchConfig(app="fanout", workdir=str(tmp_path)), variant, parts=parts)
    await system.start()
    try:
        with pytest.raises(ParseError, match="could not parse questions"):
            await system.run("q-1", "Which is older?", lambda: None)
    finally:
        await system.close()


def test_unknown_variant_or_checkpointer_is_a_clear_error() -> None:
    from alto_stream.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown LangGraph variant"):
        make_system(BenchConfig(app="rag"), "fast")
    with pytest.raises(ConfigError, match="unknown checkpointer"):
        make_system(BenchConfig(app="rag", checkpointer="postgres"), "graph")


@pytest.mark.parametrize("app", list(SCRIPTS))
async def test_direct_steps_give_the_alto_report(
    app: str, alto_reports: dict[str, dict[str, Any]]
) -> None:
    """The plain-asyncio baseline of the cost figures does the same work."""
    module = importlib.import_module(f"benchmarks.langgraph.{app}")
    assert await module.direct(_parts(app), QUESTIONS[app]) == alto_reports[app]


async def test_measure_runs_on_the_scripted_components() -> None:
    from benchmarks.langgraph import measure
    from benchmarks.langgraph.doubles import Delays

    rows = await measure.cost(["cove"], 2)
    assert [r["system"] for r in rows] == [
        "direct (no LangGraph)",
        *(f"langgraph-{v}{s}" for v in VARIANTS for s in ("", "-sqlite")),
    ]
    assert all(r["cpu_ms"] > 0 for r in rows)
    # 3 sentences of 0.3 s; the 2nd is cut when the 3rd's first word comes (0.1 s later),
    # then claims 0.2, queries 0.2, 3 searches of 0.05, the verdict 0.3.
    delays = Delays(llm={"Claims:": 0.2, "Queries:": 0.2, "Verdict:": 0.3}, per_sentence=0.3)
    assert measure.factcheck_bound(replace(delays, search=0.05)) == pytest.approx(1.55)
