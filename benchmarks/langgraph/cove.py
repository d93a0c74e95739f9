"""cove (workers/cove.py) in LangGraph: baseline, plan checks, answer each, revise.

- ``graph``: one node per alto stage: ``baseline`` -> ``plan`` -> ``Send``
  ``retrieve`` per check -> (``Command`` to) ``check`` -> ``collect``
  (``operator.add``) -> ``revise``.
- ``fused``: ``draft`` (baseline and plan) -> ``verify`` per check (retrieve and
  answer) -> ``revise`` (collect and revise).
- ``functional``: an ``@entrypoint`` with a task per step; each check's
  retrieve -> answer chain runs on its own.

A failed check is marked as the alto app's error markers are; a failed
baseline or plan fails the query.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send

from benchmarks.langgraph.system import Parts, failure, partial
from workers import cove as cv

__all__ = ["compile", "direct"]

K = 2  # as workers.cove.build's default


class Query(TypedDict):
    question: str


class State(TypedDict, total=False):
    question: str
    baseline: dict[str, Any]  # {"question", "baseline"}
    checks: list[str]
    answers: Annotated[list[dict[str, Any]], operator.add]  # {"index", "check"}
    collected: dict[str, Any]
    result: dict[str, Any]


class Out(TypedDict):
    result: dict[str, Any]


class Check(TypedDict, total=False):
    index: int
    check: str
    passages: list[dict[str, Any]]
    error: str | None


def compile(variant: str, parts: Parts, checkpointer: Any) -> Any:
    """The ``variant`` of the app over ``parts``, checkpointed by ``checkpointer``."""
    builders = {"graph": _graph, "fused": _fused, "functional": _functional}
    return builders[variant](parts, checkpointer)


def _collected(state: State) -> dict[str, Any]:
    answers = sorted(state.get("answers", []), key=operator.itemgetter("index"))
    return {**state["baseline"], "checks": [a["check"] for a in answers]}


def _to_checks(target: str, otherwise: str) -> Any:
    def route(state: State) -> list[Send] | str:
        sends = [Send(target, {"index": i, "check": c}) for i, c in enumerate(state["checks"])]
        return sends or otherwise

    return route


async def _answer(parts: Parts, check: Check) -> dict[str, Any]:
    """The check's report line (or its failure's)."""
    if check.get("error"):
        return cv.failed_check(check["error"])
    try:
        return await cv.answer_check(parts.llm, check["check"], check["passages"])
    except Exception as exc:
        return cv.failed_check(failure(exc, "check"))


def _graph(parts: Parts, checkpointer: Any) -> Any:
    async def baseline(state: State) -> dict[str, Any]:
        return {"baseline": await cv.baseline_answer(parts.llm, state["question"].strip())}

    async def plan(state: State) -> dict[str, Any]:
        return {"checks": await cv.plan_checks(parts.llm, state["baseline"])}

    async def retrieve(state: Check) -> Command[Any]:
        try:
            found = await cv.retrieve_for(parts.searcher, state["check"], K)
            return Command(goto=Send("check", {**state, "passages": found}))
        except Exception as exc:  # the failure flows on, as an error marker does
            return Command(goto=Send("check", {**state, "error": failure(exc, "retrieve")}))

    async def check(state: Check) -> dict[str, Any]:
        entry = await _answer(parts, state)
        partial(entry)
        return {"answers": [{"index": state["index"], "check": entry}]}

    def collect(state: State) -> dict[str, Any]:
        return {"collected": _collected(state)}

    async def revise(state: State) -> dict[str, Any]:
        return {"result": await cv.revised_report(parts.llm, state["collected"])}

    graph = StateGraph(State, input_schema=Query, output_schema=Out)
    graph.add_node("baseline", baseline)
    graph.add_node("plan", plan)
    graph.add_node("retrieve", retrieve, destinations=("check",), input_schema=Check)
    graph.add_node("check", check, input_schema=Check)
    graph.add_node("collect", collect)
    graph.add_node("revise", revise)
    graph.add_edge(START, "baseline")
    graph.add_edge("baseline", "plan")
    graph.add_conditional_edges("plan", _to_checks("retrieve", "collect"), ["retrieve", "collect"])
    graph.add_edge("check", "collect")
    graph.add_edge("collect", "revise")
    graph.add_edge("revise", END)
    return graph.compile(checkpointer=checkpointer)


async def _verify(parts: Parts, check: str) -> dict[str, Any]:
    try:
        found = await cv.retrieve_for(parts.searcher, check, K)
    except Exception as exc:
        return cv.failed_check(failure(exc, "retrieve"))
    return await _answer(parts, {"check": check, "passages": found})


def _fused(parts: Parts, checkpointer: Any) -> Any:
    async def draft(state: State) -> dict[str, Any]:
        value = await cv.baseline_answer(parts.llm, state["question"].strip())
        return {"baseline": value, "checks": await cv.plan_checks(parts.llm, value)}

    async def verify(state: Check) -> dict[str, Any]:
        entry = await _verify(parts, state["check"])
        partial(entry)
        return {"answers": [{"index": state["index"], "check": entry}]}

    async def revise(state: State) -> dict[str, Any]:
        return {"result": await cv.revised_report(parts.llm, _collected(state))}

    graph = StateGraph(State, input_schema=Query, output_schema=Out)
    graph.add_node("draft", draft)
    graph.add_node("verify", verify, input_schema=Check)
    graph.add_node("revise", revise)
    graph.add_edge(START, "draft")
    graph.add_conditional_edges("draft", _to_checks("verify", "revise"), ["verify", "revise"])
    graph.add_edge("verify", "revise")
    graph.add_edge("revise", END)
    return graph.compile(checkpointer=checkpointer)


def _functional(parts: Parts, checkpointer: Any) -> Any:
    @task
    async def baseline(question: str) -> dict[str, Any]:
        return await cv.baseline_answer(parts.llm, question)

    @task
    async def plan(value: dict[str, Any]) -> list[str]:
        return await cv.plan_checks(parts.llm, value)

    @task
    async def retrieve(check: str) -> list[dict[str, Any]]:
        return await cv.retrieve_for(parts.searcher, check, K)

    @task
    async def answer(check: str, found: list[dict[str, Any]]) -> dict[str, Any]:
        return await _answer(parts, {"check": check, "passages": found})

    @task
    async def revise(collected: dict[str, Any]) -> dict[str, Any]:
        return await cv.revised_report(parts.llm, collected)

    async def one(check: str) -> dict[str, Any]:
        try:
            found = await retrieve(check)
        except Exception as exc:
            entry = cv.failed_check(failure(exc, "retrieve"))
        else:
            entry = await answer(check, found)
        partial(entry)
        return entry

    @entrypoint(checkpointer=checkpointer)
    async def cove(query: Query) -> dict[str, Any]:
        value = await baseline(query["question"].strip())
        checks = await asyncio.gather(*(one(c) for c in await plan(value)))
        return {"result": await revise({**value, "checks": list(checks)})}

    return cove


async def direct(parts: Parts, question: str) -> dict[str, Any]:
    """The same steps in plain asyncio, no LangGraph: the baseline of the cost figures."""
    value = await cv.baseline_answer(parts.llm, question.strip())
    checks = await cv.plan_checks(parts.llm, value)
    entries = await asyncio.gather(*(_verify(parts, c) for c in checks))
    return await cv.revised_report(parts.llm, {**value, "checks": list(entries)})
