"""Multi-hop question answering (FanOutQA): decompose, answer the parts in parallel, combine.

A question comes in (``alto.Query``); ``decompose`` splits it into
sub-questions, by the LLM or, when the query's metadata carries them
(``metadata["subquestions"]``, a JSON list: what ``alto-stream eval fanout
--decomposition dataset`` sends), the dataset's own. Each sub-question is
retrieved (``retrieve``) and answered from its passages (``answer_sub``), all
in parallel across workers; ``gather`` waits for every sub-answer of one
question and ``final`` writes the answer from them.

The final record is a JSON report: the answer, each sub-question with its
answer and the titles of the passages it read (for retrieval recall), and the
query's metadata (the eval's question id).

Run it (the index must exist: ``alto-stream index build``)::

    alto-stream topics apply workers.fanout:app
    alto-stream up workers.fanout:app --replicas answer_sub=2
    alto-stream push workers.fanout:app "Which of Paris and Madrid is the older city?" --follow
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from alto_stream import App, Child
from alto_stream.aggregate import AggregateContext
from alto_stream.components.llm import LLM
from workers import prompts
from workers.common import (
    RETRIEVAL_IN_FLIGHT,
    Searcher,
    app_models,
    llm_in_flight,
    pack,
    search_passages,
    short_answer,
    unpack,
)
from workers.parsing import ParseError, parse_answer, parse_questions

__all__ = [
    "answer_sub_question",
    "app",
    "build",
    "failed_sub",
    "final_report",
    "gathered",
    "retrieve_for",
    "sub_questions",
]

RETRIEVAL_STAGES = ("retrieve",)
LLM_STAGES = ("decompose", "answer_sub", "final")


def build(
    name: str = "fanout",
    *,
    llm: LLM | None = None,
    searcher: Searcher | None = None,
    in_flight: int | None = None,
    k: int = 3,
) -> App:
    """The app under ``name``; ``llm`` and ``searcher`` default to this process's (from env)."""
    app = App(name, input_schema="alto.Query")
    in_flight = in_flight or llm_in_flight()
    model, retriever = app_models(
        llm, searcher, llm_stages=LLM_STAGES, retrieval_stages=RETRIEVAL_STAGES, app=name
    )

    @app.split(source=app.input, schema="alto.Json", max_in_flight=in_flight)
    async def decompose(query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One child per sub-question: the dataset's when given, else the LLM's."""
        question = query["text"].strip()
        for sub in await sub_questions(model, question, query.get("metadata") or {}):
            yield pack({"question": question, "sub": sub})

    @app.map(source=decompose, schema="alto.Json", max_in_flight=RETRIEVAL_IN_FLIGHT)
    async def retrieve(record: dict[str, Any]) -> dict[str, Any]:
        """The sub-question's best passages."""
        value = unpack(record)
        return pack({**value, "passages": await retrieve_for(retriever, value["sub"], k)})

    @app.map(source=retrieve, schema="alto.Json", max_in_flight=in_flight)
    async def answer_sub(record: dict[str, Any]) -> dict[str, Any]:
        """A short answer to the sub-question from its passages."""
        value = unpack(record)
        return pack(await answer_sub_question(model, value["sub"], value["passages"]))

    @app.aggregate(source=answer_sub, closes=decompose, schema="alto.Json")
    async def gather(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """Every sub-answer of one question (failed ones marked), with the question."""
        subs = [unpack(c.value) if c.ok else failed_sub(c.reason) for c in children]
        return pack(gathered(context.value or {}, subs))

    @app.map(source=gather, schema="alto.Json", max_in_flight=in_flight)
    async def final(record: dict[str, Any]) -> dict[str, Any]:
        """The final answer from the sub-answers."""
        return pack(await final_report(model, unpack(record)))

    return app


# The steps, free of records and stages: the app above and the LangGraph versions
# (benchmarks/langgraph) call the same code.


async def sub_questions(model: LLM, question: str, metadata: dict[str, str]) -> list[str]:
    """The sub-questions: the dataset's (in ``metadata``) when given, else the LLM's."""
    given = _given(metadata)
    if given is None:
        raw = await model.complete(prompts.decompose_prompt(question), prompts.LIST)
        given = parse_questions(raw, limit=4)
    return given


async def retrieve_for(searcher: Searcher, sub: str, k: int) -> list[dict[str, Any]]:
    """The sub-question's best ``k`` passages."""
    return await search_passages(searcher, sub, k)


async def answer_sub_question(model: LLM, sub: str, found: list[dict[str, Any]]) -> dict[str, Any]:
    """A short answer to ``sub`` from its passages, with their titles."""
    return {"sub": sub, **await short_answer(model, sub, found)}


def failed_sub(reason: str | None) -> dict[str, Any]:
    """A sub-question that could not be answered, and why."""
    return {"sub": None, "answer": None, "error": reason}


def gathered(query: dict[str, Any], subs: list[dict[str, Any]]) -> dict[str, Any]:
    """The question (an ``alto.Query`` dict) with its sub-answers, in sub-question order."""
    return {
        "question": str(query.get("text", "")).strip(),
        "metadata": dict(query.get("metadata") or {}),
        "subs": subs,
    }


async def final_report(model: LLM, value: dict[str, Any]) -> dict[str, Any]:
    """The final report: the gathered sub-answers with the answer written from them."""
    facts = [(s["sub"], s["answer"]) for s in value["subs"] if s.get("answer")]
    raw = await model.complete(prompts.combine_prompt(value["question"], facts), prompts.SHORT)
    try:
        answer: str | None = parse_answer(raw, "a final answer")
        error = None
    except ParseError as exc:  # the sub-answers are still worth reporting
        answer, error = None, str(exc)
    titles = sorted({t for s in value["subs"] for t in s.get("titles", [])})
    return {**value, "answer": answer, "error": error, "titles": titles}


def _given(metadata: dict[str, str]) -> list[str] | None:
    """The sub-questions in the query's metadata, if any (a JSON list of strings)."""
    raw = metadata.get("subquestions")
    if not raw:
        return None
    subs = json.loads(raw)
    if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
        raise ValueError(f"metadata subquestions must be a JSON list of strings, got {raw!r}")
    return subs


app = build()
