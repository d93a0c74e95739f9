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
    "answer_check",
    "app",
    "baseline_answer",
    "build",
    "failed_check",
    "plan_checks",
    "retrieve_for",
    "revised_report",
]

RETRIEVAL_STAGES = ("retrieve",)
LLM_STAGES = ("baseline", "plan", "check", "revise")


def build(
    name: str = "cove",
    *,
    llm: LLM | None = None,
    searcher: Searcher | None = None,
    in_flight: int | None = None,
    k: int = 2,
) -> App:
    """The app under ``name``; ``llm`` and ``searcher`` default to this process's (from env)."""
    app = App(name, input_schema="alto.Text")
    in_flight = in_flight or llm_in_flight()
    model, retriever = app_models(
        llm, searcher, llm_stages=LLM_STAGES, retrieval_stages=RETRIEVAL_STAGES, app=name
    )

    @app.map(source=app.input, schema="alto.Json", max_in_flight=in_flight)
    async def baseline(query: dict[str, Any]) -> dict[str, Any]:
        """The model's first answer, unchecked."""
        return pack(await baseline_answer(model, query["text"].strip()))

    @app.split(source=baseline, schema="alto.Json", max_in_flight=in_flight)
    async def plan(record: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One child per verification question planned from the baseline."""
        for question in await plan_checks(model, unpack(record)):
            yield pack({"check": question})

    @app.map(source=plan, schema="alto.Json", max_in_flight=RETRIEVAL_IN_FLIGHT)
    async def retrieve(record: dict[str, Any]) -> dict[str, Any]:
        """Passages for the verification question."""
        value = unpack(record)
        return pack({**value, "passages": await retrieve_for(retriever, value["check"], k)})

    @app.map(source=retrieve, schema="alto.Json", max_in_flight=in_flight)
    async def check(record: dict[str, Any]) -> dict[str, Any]:
        """The verification question answered from its passages alone."""
        value = unpack(record)
        return pack(await answer_check(model, value["check"], value["passages"]))

    @app.aggregate(source=check, closes=plan, schema="alto.Json")
    async def collect(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The baseline with every check's answer (failed checks marked)."""
        value = unpack(context.value) if context.value else {"question": "", "baseline": ""}
        checks = [unpack(c.value) if c.ok else failed_check(c.reason) for c in children]
        return pack({**value, "checks": checks})

    @app.map(source=collect, schema="alto.Json", max_in_flight=in_flight)
    async def revise(record: dict[str, Any]) -> dict[str, Any]:
        """The final answer: the baseline corrected by the checks."""
        return pack(await revised_report(model, unpack(record)))

    return app


# The steps, free of records and stages: the app above and the LangGraph versions
# (benchmarks/langgraph) call the same code.


async def baseline_answer(model: LLM, question: str) -> dict[str, Any]:
    """The question with the model's first, unchecked answer."""
    raw = await model.complete(prompts.answer_prompt(question), prompts.ANSWER)
    return {"question": question, "baseline": parse_answer(raw, "a baseline answer")}


async def plan_checks(model: LLM, value: dict[str, Any]) -> list[str]:
    """Verification questions planned from the baseline (``value`` of :func:`baseline_answer`)."""
    raw = await model.complete(
        prompts.plan_prompt(value["question"], value["baseline"]), prompts.LIST
    )
    return parse_questions(raw, limit=3)


async def retrieve_for(searcher: Searcher, check: str, k: int) -> list[dict[str, Any]]:
    """The verification question's best ``k`` passages."""
    return await search_passages(searcher, check, k)


async def answer_check(model: LLM, check: str, found: list[dict[str, Any]]) -> dict[str, Any]:
    """The verification question answered from its passages alone, with their titles."""
    return {"check": check, **await short_answer(model, check, found)}


def failed_check(reason: str | None) -> dict[str, Any]:
    """A verification question that could not be answered, and why."""
    return {"check": None, "answer": None, "error": reason}


async def revised_report(model: LLM, value: dict[str, Any]) -> dict[str, Any]:
    """The final report: the baseline and checks with the answer revised by them."""
    pairs = [(c["check"], c["answer"]) for c in value["checks"] if c.get("answer")]
    raw = await model.complete(
        prompts.revise_prompt(value["question"], value["baseline"], pairs), prompts.ANSWER
    )
    try:
        revised, error = parse_answer(raw, "a revised answer"), None
    except ParseError as exc:  # keep the baseline and say why
        revised, error = value["baseline"], str(exc)
    return {**value, "revised": revised, "error": error}


app = build()
