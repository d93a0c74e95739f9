"""Retrieval-augmented generation with two nested levels of reassembly.

A query (``alto.Text``) retrieves its top documents (``retrieve``, a split:
one child per document); each document is split into sentences
(``sentences``); the sentences are embedded in micro-batches and scored
against the query (``score``, a batch stage: one model call for up to 32
sentences of any documents and queries). The best sentences are kept per
document (``best_per_doc``, closing ``sentences``), then per query
(``best_per_query``, closing ``retrieve``); ``generate`` writes the answer from
them as a stream, one child per sentence as it is generated, and ``answer``
puts the answer together with its sources.

Run it (the index must exist: ``alto-stream index build``)::

    alto-stream topics apply workers.rag:app
    alto-stream up workers.rag:app --replicas score=2
    alto-stream push workers.rag:app "Where does the Nile flow?" --follow
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from typing import Any

from alto_stream import App, Child
from alto_stream.aggregate import AggregateContext
from alto_stream.components.llm import LLM
from alto_stream.components.sentences import sentences as cut_sentences
from alto_stream.components.sentences import split_sentences
from workers import prompts
from workers.common import Embeds, Searcher, llm_for, pack, searcher_for, unpack

__all__ = ["app", "best", "build"]

RETRIEVAL_STAGES = ("retrieve", "score")
LLM_STAGES = ("generate",)


def build(
    name: str = "rag",
    *,
    llm: LLM | None = None,
    searcher: Searcher | None = None,
    embedder: Embeds | None = None,
    documents: int = 3,
    per_document: int = 2,
    per_query: int = 4,
    in_flight: int = 4,
) -> App:
    """The app under ``name``; the models default to this process's (from env)."""
    app = App(name, input_schema="alto.Text")
    model = llm or llm_for(LLM_STAGES)

    retriever = searcher or searcher_for(RETRIEVAL_STAGES)

    def search() -> Searcher:
        return retriever

    def embed() -> Embeds:
        return embedder or search().embedder  # type: ignore[attr-defined]

    @app.split(source=app.input, schema="alto.Json", max_in_flight=16)
    async def retrieve(query: dict[str, Any]) -> list[dict[str, Any]]:
        """One child per retrieved document, best first."""
        text = query["text"].strip()
        found = await search().asearch(text, documents)
        return [pack({"query": text, "title": p.title, "text": p.text}) for p in found]

    @app.split(source=retrieve, schema="alto.Json")
    def sentences(record: dict[str, Any]) -> list[dict[str, Any]]:
        """One child per sentence of the document."""
        doc = unpack(record)
        return [
            pack({"query": doc["query"], "title": doc["title"], "sentence": s, "position": i})
            for i, s in enumerate(cut_sentences(doc["text"]))
        ]

    @app.batch(source=sentences, schema="alto.Json", size=32, wait=0.05)
    async def score(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each sentence's cosine similarity to its query: sentences and queries in one batch."""
        values = [unpack(r) for r in records]
        queries = sorted({v["query"] for v in values})
        vectors = await embed().aembed([v["sentence"] for v in values] + queries)
        query_vector = {q: vectors[len(values) + i] for i, q in enumerate(queries)}
        return [
            pack({**v, "score": round(_dot(vectors[i], query_vector[v["query"]]), 4)})
            for i, v in enumerate(values)
        ]

    @app.aggregate(source=score, closes=sentences, schema="alto.Json")
    async def best_per_doc(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The document's best sentences, in the document's order."""
        doc = unpack(context.value) if context.value else {}
        scored = [unpack(c.value) for c in children if c.ok]
        return pack(
            {
                "title": doc.get("title"),
                "query": doc.get("query"),
                "best": best(scored, per_document),
            }
        )

    @app.aggregate(source=best_per_doc, closes=retrieve, schema="alto.Json")
    async def best_per_query(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The query's best sentences over all its documents."""
        query = (context.value or {}).get("text", "").strip()
        pooled = [s for c in children if c.ok for s in unpack(c.value)["best"]]
        return pack({"query": query, "context": best(pooled, per_query)})

    @app.split(source=best_per_query, schema="alto.Text", max_in_flight=in_flight)
    async def generate(record: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The answer from the best sentences, one child per sentence as it is generated."""
        value = unpack(record)
        context = [f"{s['title']}: {s['sentence']}" for s in value["context"]]
        stream = model.stream(
            prompts.context_answer_prompt(value["query"], context), prompts.ANSWER
        )
        async for sentence in split_sentences(stream):
            yield {"text": sentence}

    @app.aggregate(source=generate, closes=generate, schema="alto.Json")
    async def answer(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The answer with the sentences it was written from."""
        value = unpack(context.value) if context.value else {"query": None, "context": []}
        return pack(
            {
                "query": value["query"],
                "answer": " ".join(c.value["text"] for c in children if c.ok),
                "sources": sorted({s["title"] for s in value["context"]}),
                "context": value["context"],
            }
        )

    return app


def _dot(a: Any, b: Any) -> float:
    """Cosine similarity of two unit vectors (numpy rows or lists)."""
    return float(sum(map(operator.mul, a, b)))


def best(scored: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` highest-scoring sentences, back in (title, position) order.

    >>> best([{"title": "a", "position": i, "score": s} for i, s in enumerate([.1, .9, .5])], 2)
    [{'title': 'a', 'position': 1, 'score': 0.9}, {'title': 'a', 'position': 2, 'score': 0.5}]
    """
    top = sorted(scored, key=lambda s: -s["score"])[:n]
    return sorted(
        top,
        key=lambda s: (
            -max(t["score"] for t in top if t["title"] == s["title"]),
            s["title"],
            s["position"],
        ),
    )


app = build()
