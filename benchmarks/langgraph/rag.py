"""rag (workers/rag.py) in LangGraph: retrieve, score sentences, keep the best, generate.

- ``graph``: one node per alto stage: ``retrieve`` -> ``Send`` ``score`` per
  document (one embedding call per document; its best sentences) ->
  ``best_per_query`` (``operator.add``) -> ``generate`` (streams; a partial
  result per sentence) -> ``answer``. (Before 2026-12-01, when alto's rag had a
  record per sentence, ``sentences`` and ``best_per_doc`` nodes as well.)
- ``fused``: ``context`` (retrieve; every document's sentences scored in one
  embedding call, as alto's micro-batch does; the best per document and per
  query) -> ``generate`` (streams, and writes the report).
- ``functional``: an ``@entrypoint``: a ``retrieve`` task, a ``score_document``
  task per document concurrently, a ``generate`` task that streams.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from benchmarks.langgraph.system import Parts, partial
from workers import rag

__all__ = ["compile", "direct"]

# As workers.rag.build's defaults.
DOCUMENTS, PER_DOCUMENT, PER_QUERY = 3, 2, 4


class Query(TypedDict):
    question: str


class State(TypedDict, total=False):
    question: str
    docs: list[dict[str, Any]]
    bests: Annotated[list[dict[str, Any]], operator.add]  # {"index", "doc"}
    context: dict[str, Any]  # {"query", "context"}
    sentences: list[str]
    result: dict[str, Any]


class Out(TypedDict):
    result: dict[str, Any]


class Doc(TypedDict):
    index: int
    doc: dict[str, Any]


def compile(variant: str, parts: Parts, checkpointer: Any) -> Any:
    """The ``variant`` of the app over ``parts``, checkpointed by ``checkpointer``."""
    builders = {"graph": _graph, "fused": _fused, "functional": _functional}
    return builders[variant](parts, checkpointer)


async def _generate(parts: Parts, context: dict[str, Any]) -> list[str]:
    """The answer's sentences, each a partial result the moment it is written."""
    sentences = []
    async for sentence in rag.answer_sentences(parts.llm, context):
        sentences.append(sentence)
        partial()
    return sentences


def _graph(parts: Parts, checkpointer: Any) -> Any:
    async def retrieve(state: State) -> dict[str, Any]:
        return {
            "docs": await rag.retrieve_documents(
                parts.searcher, state["question"].strip(), DOCUMENTS
            )
        }

    def to_docs(state: State) -> list[Send] | str:
        sends = [Send("score", {"index": i, "doc": d}) for i, d in enumerate(state["docs"])]
        return sends or "best_per_query"

    async def score(state: Doc) -> dict[str, Any]:
        [best] = await rag.score_documents(parts.embeds, [state["doc"]], PER_DOCUMENT)
        return {"bests": [{"index": state["index"], "doc": best}]}

    def best_per_query(state: State) -> dict[str, Any]:
        bests = sorted(state.get("bests", []), key=operator.itemgetter("index"))
        query = state["question"].strip()
        return {"context": rag.best_of_query(query, [b["doc"] for b in bests], PER_QUERY)}

    async def generate(state: State) -> dict[str, Any]:
        return {"sentences": await _generate(parts, state["context"])}

    def answer(state: State) -> dict[str, Any]:
        return {"result": rag.answer_report(state["context"], state["sentences"])}

    graph = StateGraph(State, input_schema=Query, output_schema=Out)
    graph.add_node("retrieve", retrieve)
    graph.add_node("score", score, input_schema=Doc)
    graph.add_node("best_per_query", best_per_query)
    graph.add_node("generate", generate)
    graph.add_node("answer", answer)
    graph.add_edge(START, "retrieve")
    graph.add_conditional_edges("retrieve", to_docs, ["score", "best_per_query"])
    graph.add_edge("score", "best_per_query")
    graph.add_edge("best_per_query", "generate")
    graph.add_edge("generate", "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)


async def _context(parts: Parts, question: str) -> dict[str, Any]:
    """Retrieve, score every document's sentences in one call, keep the best."""
    query = question.strip()
    docs = await rag.retrieve_documents(parts.searcher, query, DOCUMENTS)
    bests = await rag.score_documents(parts.embeds, docs, PER_DOCUMENT)
    return rag.best_of_query(query, bests, PER_QUERY)


def _fused(parts: Parts, checkpointer: Any) -> Any:
    async def context(state: State) -> dict[str, Any]:
        return {"context": await _context(parts, state["question"])}

    async def generate(state: State) -> dict[str, Any]:
        sentences = await _generate(parts, state["context"])
        return {"result": rag.answer_report(state["context"], sentences)}

    graph = StateGraph(State, input_schema=Query, output_schema=Out)
    graph.add_node("context", context)
    graph.add_node("generate", generate)
    graph.add_edge(START, "context")
    graph.add_edge("context", "generate")
    graph.add_edge("generate", END)
    return graph.compile(checkpointer=checkpointer)


def _functional(parts: Parts, checkpointer: Any) -> Any:
    @task
    async def retrieve(query: str) -> list[dict[str, Any]]:
        return await rag.retrieve_documents(parts.searcher, query, DOCUMENTS)

    @task
    async def score_document(doc: dict[str, Any]) -> dict[str, Any]:
        [best] = await rag.score_documents(parts.embeds, [doc], PER_DOCUMENT)
        return best

    @task
    async def generate(context: dict[str, Any]) -> list[str]:
        return await _generate(parts, context)

    @entrypoint(checkpointer=checkpointer)
    async def answer(query: Query) -> dict[str, Any]:
        text = query["question"].strip()
        docs = await retrieve(text)
        bests = await asyncio.gather(*(score_document(d) for d in docs))
        context = rag.best_of_query(text, list(bests), PER_QUERY)
        return {"result": rag.answer_report(context, await generate(context))}

    return answer


async def direct(parts: Parts, question: str) -> dict[str, Any]:
    """The same steps in plain asyncio, no LangGraph: the baseline of the cost figures."""
    context = await _context(parts, question)
    return rag.answer_report(context, await _generate(parts, context))
