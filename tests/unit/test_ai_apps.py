"""The four AI apps' orchestration in memory, with a scripted model and retriever.

The real models run in tests/e2e; here a scripted LLM answers each prompt by
its kind, so that the dataflow (splits, nested aggregates, markers for
unparseable outputs) is checked fast and exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from alto_stream.client import Client
from alto_stream.components.llm import LLM, Prompt, Request, Sampling
from alto_stream.message import MessageCodec
from alto_stream.runner import LocalRun, run_in_memory
from alto_stream.runtime.memory import MemoryTransport
from workers import cove, factcheck, fanout, rag

pytestmark = pytest.mark.timeout(60)


class ScriptedLLM(LLM):
    """Answers by the prompt's last label; ``script`` maps a label to a function of the prompt."""

    backend = "scripted"

    def __init__(self, script: dict[str, Callable[[str], str]]) -> None:
        super().__init__()
        self.script = script
        self.prompts: list[str] = []

    async def _load(self) -> None:
        pass

    async def _release(self) -> None:
        pass

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        assert isinstance(prompt, str)
        self.prompts.append(prompt)
        last = prompt.rsplit("\n###\n", 1)[-1]
        label = next(label for label in self.script if label in last)
        text = self.script[label](last)
        for i in range(0, len(text), 7):  # deltas cut mid-word, as tokens are
            yield text[i : i + 7]


@dataclass(frozen=True)
class FakePassage:
    title: str
    text: str
    score: float


class FakeSearch:
    """Passages whose titles are the query's capitalised words."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def asearch(self, query: str, k: int | None = None) -> list[FakePassage]:
        self.queries.append(query)
        words = [w.strip("?.,") for w in query.split() if w[:1].isupper()] or ["Misc"]
        return [
            FakePassage(w, f"{w} is a thing. {w} was founded in 1900. It is big.", 1.0 - i / 10)
            for i, w in enumerate(words[: k or 3])
        ]


class FakeEmbed:
    """Bag-of-letters unit vectors: similar texts score higher."""

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        rows = []
        for text in texts:
            row = [float(text.lower().count(c)) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
            norm = math.sqrt(sum(x * x for x in row)) or 1.0
            rows.append([x / norm for x in row])
        return rows


def _json(result: Any) -> dict[str, Any]:
    assert result.ok, result.envelope
    return json.loads(result.value["json"])


async def test_factcheck_reports_every_sentence_and_claim() -> None:
    def claims(prompt: str) -> str:
        if "Sentence: Bad" in prompt:
            return " ??? ok\n"  # unparseable: an error marker, the rest goes on
        if "Sentence: Hope" in prompt:
            return " None"
        return " Paris is in France.\n- Paris is old."

    llm = ScriptedLLM(
        {
            "Claims:": claims,
            "Queries:": lambda p: " Paris location\n- Paris age",
            "Verdict:": lambda p: (
                " False. No." if "old" in p.rsplit("Claim:", 1)[1] else " True. Yes."
            ),
            "Answer:": lambda p: " Paris is a city. Bad sentence here. Hope this helps!",
        }
    )
    search = FakeSearch()
    app = factcheck.build("fc-mem", llm=llm, searcher=search)
    [result] = await run_in_memory(app, [{"text": "What is Paris?"}], timeout=30)
    report = _json(result)
    assert report["question"] == "What is Paris?"
    # The sentence whose claims could not be read failed as a whole: an error
    # marker with the model's raw output stands in its place.
    assert report["answer"] == "Paris is a city. Hope this helps!"
    first, bad, hope = report["sentences"]
    assert first["sentence"] == "Paris is a city."
    assert [(c["claim"], c["label"]) for c in first["claims"]] == [
        ("Paris is in France.", "supported"),
        ("Paris is old.", "refuted"),
    ]
    assert bad["sentence"] is None and bad["claims"] == []
    assert "could not parse claims" in bad["error"] and "??? ok" in bad["error"]
    assert hope == {"sentence": "Hope this helps!", "claims": []}
    assert (report["claims"], report["checked"], report["supported"], report["unchecked"]) == (
        2,
        2,
        1,
        0,
    )
    assert report["factuality"] == 0.5
    assert "Paris location" in search.queries


@pytest.mark.parametrize("given", [None, ["Who founded Rome?", "Who founded Paris?"]])
async def test_fanout_answers_each_sub_question(given: list[str] | None) -> None:
    llm = ScriptedLLM(
        {
            "Sub-questions:": lambda p: " When was Rome founded?\n- When was Paris founded?",
            "Facts:": lambda p: " Rome",
            "Answer:": lambda p: " 1900",
        }
    )
    app = fanout.build("fo-mem", llm=llm, searcher=FakeSearch())
    metadata = {"id": "q1"} | ({"subquestions": json.dumps(given)} if given else {})
    [result] = await run_in_memory(
        app, [{"text": "Which is older, Rome or Paris?", "metadata": metadata}], timeout=30
    )
    report = _json(result)
    expected = given or ["When was Rome founded?", "When was Paris founded?"]
    assert [s["sub"] for s in report["subs"]] == expected
    assert all(s["answer"] == "1900" for s in report["subs"])
    assert report["answer"] == "Rome" and report["metadata"]["id"] == "q1"
    assert {"Rome", "Paris"} <= set(report["titles"])
    assert any("Sub-questions:" in p for p in llm.prompts) is (given is None)


async def test_fanout_unparseable_decomposition_completes_as_an_error_marker() -> None:
    """The query ends with an error marker; the raw output is in the dead-letter topic."""
    llm = ScriptedLLM({"Sub-questions:": lambda p: " The answer is Rome."})
    app = fanout.build("fo-bad", llm=llm, searcher=FakeSearch())
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run([{"text": "Which is older?", "metadata": {}}], timeout=30)
    [result] = finals.values()
    assert result.final and not result.ok
    assert "could not parse questions" in (result.envelope.ancestry.reason or "")
    [dead] = transport.records("fo-bad.decompose.dlq")
    letter = MessageCodec().decode(dead.value, dead.headers).value
    assert letter is not None and letter["error_type"] == "ParseError"
    assert "The answer is Rome." in letter["error"]


async def test_fanout_unparseable_final_answer_keeps_the_sub_answers() -> None:
    llm = ScriptedLLM(
        {
            "Sub-questions:": lambda p: " Who is A?",
            "Facts:": lambda p: "\n",
            "Answer:": lambda p: " A",
        }
    )
    app = fanout.build("fo-final", llm=llm, searcher=FakeSearch())
    [result] = await run_in_memory(app, [{"text": "Which is older?", "metadata": {}}], timeout=30)
    report = _json(result)
    assert [s["answer"] for s in report["subs"]] == ["A"]
    assert report["answer"] is None and "a final answer" in report["error"]


async def test_rag_keeps_the_best_sentences_and_streams_the_answer() -> None:
    llm = ScriptedLLM({"Answer:": lambda p: " Nile flows north. It is long."})
    app = rag.build("rag-mem", llm=llm, searcher=FakeSearch(), embedder=FakeEmbed(), documents=2)
    [result] = await run_in_memory(app, [{"text": "the Nile flows where in Egypt?"}], timeout=30)
    report = _json(result)
    assert report["answer"] == "Nile flows north. It is long."
    assert report["sources"] == ["Egypt", "Nile"]
    assert len(report["context"]) == 4  # two best sentences of each of the two documents
    assert all(s["query"] == "the Nile flows where in Egypt?" for s in report["context"])
    prompt = llm.prompts[0]
    assert all(s["sentence"] in prompt for s in report["context"])


async def test_rag_scores_a_batch_of_documents_of_several_queries_in_one_call() -> None:
    calls: list[int] = []

    class Counting(FakeEmbed):
        async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
            calls.append(len(texts))
            return await super().aembed(texts)

    docs = [
        {"query": "Where is the Nile?", "title": "Nile", "text": "The Nile is long. Cats sleep."},
        {"query": "What do cats do?", "title": "Cat", "text": "Cats sleep a lot. Rivers flow."},
        {"query": "Where is the Nile?", "title": "Empty", "text": ""},
    ]
    together = await rag.score_documents(Counting(), docs, 1)
    assert calls == [4 + 2]  # four sentences and two distinct queries, in one call
    alone = [(await rag.score_documents(FakeEmbed(), [d], 1))[0] for d in docs]
    assert together == alone  # each document is scored against its own query
    assert [b["best"][0]["sentence"] for b in together[:2]] == [
        "The Nile is long.",
        "Cats sleep a lot.",
    ]
    assert together[2] == {"title": "Empty", "query": "Where is the Nile?", "best": []}


async def test_cove_revises_with_its_checks() -> None:
    llm = ScriptedLLM(
        {
            "Verification questions:": lambda p: " What is the capital of Australia?\n- Is it big?",
            "Revised:": lambda p: " The capital of Australia is Canberra.",
            "Answer:": lambda p: " Canberra" if "Context:" in p else " It is Sydney.",
        }
    )
    app = cove.build("cove-mem", llm=llm, searcher=FakeSearch())
    [result] = await run_in_memory(app, [{"text": "What is the capital of Australia?"}], timeout=30)
    report = _json(result)
    assert report["baseline"] == "It is Sydney."
    assert [c["check"] for c in report["checks"]] == [
        "What is the capital of Australia?",
        "Is it big?",
    ]
    assert all(c["answer"] == "Canberra" for c in report["checks"])
    assert report["revised"] == "The capital of Australia is Canberra."


def test_a_rag_answer_the_model_left_empty_says_so() -> None:
    # Found by a new user: 6 of 34 rag questions ended with "answer": "" and nothing
    # else, as if that were the answer.
    from workers import rag

    value = {"query": "q", "context": [{"title": "T", "sentence": "s"}]}
    assert "error" not in rag.answer_report(value, ["An answer."])
    empty = rag.answer_report(value, [])
    assert empty["answer"] == "" and "no answer" in empty["error"]
