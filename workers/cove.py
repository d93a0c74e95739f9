"""Chain of verification (CoVe): answer, plan checks, answer each independently, revise.

A question (``alto.Text``) gets a baseline answer (``baseline``); the LLM
plans verification questions from it (``plan``, a split: one child per
question); each is answered on its own, from retrieved passages
(``retrieve``, ``check``), without seeing the baseline, so that its errors
are not copied; ``collect`` waits for every check of one question, and
``revise`` writes the final answer, corrected by the checks.

Run it (the index must exist: ``alto-stream index build``)::

    alto-stream topics apply workers.cove:app
    alto-stream up workers.cove:app --replicas check=2
    alto-stream push workers.cove:app "Who was Marie Curie?" --follow
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from alto_stream import App, Child
from alto_stream.aggregate import AggregateContext
from alto_stream.components.llm import LLM
from workers import prompts
from workers.common import Searcher, llm_for, pack, passages, searcher_for, unpack
from workers.parsing import ParseError, parse_answer, parse_questions

__all__ = ["app", "build"]

RETRIEVAL_STAGES = ("retrieve",)
LLM_STAGES = ("baseline", "plan", "check", "revise")


def build(
    name: str = "cove",
    *,
    llm: LLM | None = None,
    searcher: Searcher | None = None,
    in_flight: int = 4,
    k: int = 2,
) -> App:
    """The app under ``name``; ``llm`` and ``searcher`` default to this process's (from env)."""
    app = App(name, input_schema="alto.Text")
    model = llm or llm_for(LLM_STAGES)

    retriever = searcher or searcher_for(RETRIEVAL_STAGES)

    def search() -> Searcher:
        return retriever

    @app.map(source=app.input, schema="alto.Json", max_in_flight=in_flight)
    async def baseline(query: dict[str, Any]) -> dict[str, Any]:
        """The model's first answer, unchecked."""
        question = query["text"].strip()
        raw = await model.complete(prompts.answer_prompt(question), prompts.ANSWER)
        return pack({"question": question, "baseline": parse_answer(raw, "a baseline answer")})

    @app.split(source=baseline, schema="alto.Json", max_in_flight=in_flight)
    async def plan(record: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One child per verification question planned from the baseline."""
        value = unpack(record)
        raw = await model.complete(
            prompts.plan_prompt(value["question"], value["baseline"]), prompts.LIST
        )
        for question in parse_questions(raw, limit=3):
            yield pack({"check": question})

    @app.map(source=plan, schema="alto.Json", max_in_flight=16)
    async def retrieve(record: dict[str, Any]) -> dict[str, Any]:
        """Passages for the verification question."""
        value = unpack(record)
        return pack({**value, "passages": passages(await search().asearch(value["check"], k))})

    @app.map(source=retrieve, schema="alto.Json", max_in_flight=in_flight)
    async def check(record: dict[str, Any]) -> dict[str, Any]:
        """The verification question answered from its passages alone."""
        value = unpack(record)
        context = [f"{p['title']}: {p['text']}" for p in value["passages"]]
        raw = await model.complete(
            prompts.short_answer_prompt(value["check"], context), prompts.SHORT
        )
        titles = [p["title"] for p in value["passages"]]
        return pack({"check": value["check"], "answer": parse_answer(raw), "titles": titles})

    @app.aggregate(source=check, closes=plan, schema="alto.Json")
    async def collect(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The baseline with every check's answer (failed checks marked)."""
        value = unpack(context.value) if context.value else {"question": "", "baseline": ""}
        checks = [
            unpack(c.value) if c.ok else {"check": None, "answer": None, "error": c.reason}
            for c in children
        ]
        return pack({**value, "checks": checks})

    @app.map(source=collect, schema="alto.Json", max_in_flight=in_flight)
    async def revise(record: dict[str, Any]) -> dict[str, Any]:
        """The final answer: the baseline corrected by the checks."""
        value = unpack(record)
        pairs = [(c["check"], c["answer"]) for c in value["checks"] if c.get("answer")]
        raw = await model.complete(
            prompts.revise_prompt(value["question"], value["baseline"], pairs), prompts.ANSWER
        )
        try:
            revised, error = parse_answer(raw, "a revised answer"), None
        except ParseError as exc:  # keep the baseline and say why
            revised, error = value["baseline"], str(exc)
        return pack({**value, "revised": revised, "error": error})

    return app


app = build()
