"""fanout (workers/fanout.py) in LangGraph: decompose, answer the sub-questions, combine.

- ``graph``: one node per alto stage: ``decompose`` -> ``Send`` ``retrieve`` per
  sub-question -> (``Command`` to) ``answer_sub`` -> ``gather`` (``operator.add``)
  -> ``final``.
- ``fused``: ``decompose`` -> ``sub`` per sub-question (retrieve and answer) ->
  ``final`` (gather and combine).
- ``functional``: an ``@entrypoint`` with a task per step; each sub-question's
  retrieve -> answer chain runs on its own (no barrier between the two steps).

A failed sub-question is marked as the alto app's error markers are
(``{"sub": None, "answer": None, "error": ...}``); a failed decomposition fails
the query.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send

from benchmarks.langgraph.system import Parts, failure, partial
from workers import fanout as fo

__all__ = ["compile", "direct"]

K = 3  # as workers.fanout.build's default


class Query(TypedDict):
    question: str


class State(TypedDict, total=False):
    question: str
    subs: list[str]
    answers: Annotated[list[dict[str, Any]], operator.add]  # {"index", "sub"}
    gathered: dict[str, Any]
    result: dict[str, Any]


class Out(TypedDict):
    result: dict[str, Any]


class Sub(TypedDict, total=False):
    index: int
    sub: str
    passages: list[dict[str, Any]]
    error: str | None


def compile(variant: str, parts: Parts, checkpointer: Any) -> Any:
    """The ``variant`` of the app over ``parts``, checkpointed by ``checkpointer``."""
    builders = {"graph": _graph, "fused": _fused, "functional": _functional}
    return builders[variant](parts, checkpointer)


def _query(question: str) -> dict[str, Any]:
    """The alto app's input record for ``question`` (no dataset metadata)."""
    return {"text": question, "metadata": {}}


def _gathered(state: State) -> dict[str, Any]:
    answers = sorted(state.get("answers", []), key=operator.itemgetter("index"))
    return fo.gathered(_query(state["question"]), [a["sub"] for a in answers])


def _decompose(parts: Parts) -> Any:
    async def decompose(state: State) -> dict[str, Any]:
        return {"subs": await fo.sub_questions(parts.llm, state["question"].strip(), {})}

    return decompose


def _to_subs(target: str, otherwise: str) -> Any:
    def route(state: State) -> list[Send] | str:
        sends = [Send(target, {"index": i, "sub": s}) for i, s in enumerate(state["subs"])]
        return sends or otherwise

    return route


async def _answer(parts: Parts, sub: Sub) -> dict[str, Any]:
    """The sub-question's report line (or its failure's)."""
    if sub.get("error"):
        return fo.failed_sub(sub["error"])
    try:
        return await fo.answer_sub_question(parts.llm, sub["sub"], sub["passages"])
    except Exception as exc:
        return fo.failed_sub(failure(exc, "answer_sub"))


def _graph(parts: Parts, checkpointer: Any) -> Any:
    async def retrieve(state: Sub) -> Command[Any]:
        try:
            found = await fo.retrieve_for(parts.searcher, state["sub"], K)
            return Command(goto=Send("answer_sub", {**state, "passages": found}))
        except Exception as exc:  # the failure flows on, as an error marker does
            return Command(goto=Send("answer_sub", {**state, "error": failure(exc, "retrieve")}))

    async def answer_sub(state: Sub) -> dict[str, Any]:
        entry = await _answer(parts, state)
        partial(entry)
        return {"answers": [{"index": state["index"], "sub": entry}]}

    def gather(state: State) -> dict[str, Any]:
        return {"gathered": _gathered(state)}

    async def final(state: State) -> dict[str, Any]:
        return {"result": await fo.final_report(parts.llm, state["gathered"])}

    graph = StateGraph(State, input_schema=Query, output_schema=Out)
    graph.add_node("decompose", _decompose(parts))
    graph.add_node("retrieve", retrieve, destinations=("answer_sub",), input_schema=Sub)
    graph.add_node("answer_sub", answer_sub, input_schema=Sub)
    graph.add_node("gather", gather)
    graph.add_node("final", final)
    graph.add_edge(START, "decompose")
    graph.add_conditional_edges("decompose", _to_subs("retrieve", "gather"), ["retrieve", "gather"])
    graph.add_edge("answer_sub", "gather")
    graph.add_edge("gather", "final")
    graph.add_edge("final", END)
    return graph.compile(checkpointer=checkpointer)


async def _retrieve_and_answer(parts: Parts, sub: str) -> dict[str, Any]:
    try:
        found = await fo.retrieve_for(parts.searcher, sub, K)
    except Exception as exc:
        return fo.failed_sub(failure(exc, "retrieve"))
    return await _answer(parts, {"sub": sub, "passages": found})


def _fused(parts: Parts, checkpointer: Any) -> Any:
    async def sub(state: Sub) -> dict[str, Any]:
        entry = await _retrieve_and_answer(parts, state["sub"])
        partial(entry)
        return {"answers": [{"index": state["index"], "sub": entry}]}

    async def final(state: State) -> dict[str, Any]:
        return {"result": await fo.final_report(parts.llm, _gathered(state))}

    graph = StateGraph(State, input_schema=Query, output_schema=Out)
    graph.add_node("decompose", _decompose(parts))
    graph.add_node("sub", sub, input_schema=Sub)
    graph.add_node("final", final)
    graph.add_edge(START, "decompose")
    graph.add_conditional_edges("decompose", _to_subs("sub", "final"), ["sub", "final"])
    graph.add_edge("sub", "final")
    graph.add_edge("final", END)
    return graph.compile(checkpointer=checkpointer)


def _functional(parts: Parts, checkpointer: Any) -> Any:
    @task
    async def decompose(question: str) -> list[str]:
        return await fo.sub_questions(parts.llm, question, {})

    @task
    async def retrieve(sub: str) -> list[dict[str, Any]]:
        return await fo.retrieve_for(parts.searcher, sub, K)

    @task
    async def answer_sub(sub: str, found: list[dict[str, Any]]) -> dict[str, Any]:
        return await _answer(parts, {"sub": sub, "passages": found})

    @task
    async def final(gathered: dict[str, Any]) -> dict[str, Any]:
        return await fo.final_report(parts.llm, gathered)

    async def one(sub: str) -> dict[str, Any]:
        try:
            found = await retrieve(sub)
        except Exception as exc:
            entry = fo.failed_sub(failure(exc, "retrieve"))
        else:
            entry = await answer_sub(sub, found)
        partial(entry)
        return entry

    @entrypoint(checkpointer=checkpointer)
    async def fanout(query: Query) -> dict[str, Any]:
        question = query["question"].strip()
        subs = await decompose(question)
        entries = await asyncio.gather(*(one(s) for s in subs))
        gathered = fo.gathered(_query(question), list(entries))
        return {"result": await final(gathered)}

    return fanout


async def direct(parts: Parts, question: str) -> dict[str, Any]:
    """The same steps in plain asyncio, no LangGraph: the baseline of the cost figures."""
    question = question.strip()
    subs = await fo.sub_questions(parts.llm, question, {})
    entries = await asyncio.gather(*(_retrieve_and_answer(parts, s) for s in subs))
    return await fo.final_report(parts.llm, fo.gathered(_query(question), list(entries)))
