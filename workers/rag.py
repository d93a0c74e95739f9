"""Retrieval-augmented generation: retrieve, score, keep the best, stream the answer.

A query (``alto.Text``) retrieves its top documents (``retrieve``, a split:
one child per document); the documents are scored in micro-batches
(``score``, a batch stage: one embedding call for every sentence of up to 16
documents of any queries, with their queries) and each keeps its best
sentences; the best are kept per query (``best_per_query``, closing
``retrieve``); ``generate`` writes the answer from them as a stream, one child
per sentence as it is generated, and ``answer`` puts the answer together with
its sources.

A fragment is a document, not a sentence: one model call scores a whole
batch either way, and a record per sentence cost more than it gave. Up to
2026-12-01 the app split each document into sentence records (a ``sentences``
split, and a ``best_per_doc`` aggregate nested inside ``best_per_query``):
for 3 documents of 4 sentences and a 2-sentence answer, end markers
included, 44 records and 27 changelog entries per query where there are now
14 and 9, and three embedding calls of ~5 texts where there is now one of ~13
(docs/sidebyside.md, "rag by documents"). The textflow app keeps the nested
example (``workers/textflow.py``).

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
from workers.common import (
    RETRIEVAL_IN_FLIGHT,
    Embeds,
    Searcher,
    app_models,
    llm_in_flight,
    pack,
    unpack,
)

__all__ = [
    "answer_report",
    "answer_sentences",
    "app",
    "best",
    "best_of_document",
    "best_of_query",
    "build",
    "document_sentences",
    "retrieve_documents",
    "score_documents",
    "score_sentences",
]

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
    in_flight: int | None = None,
) -> App:
    """The app under ``name``; the models default to this process's (from env)."""
    app = App(name, input_schema="alto.Text")
    in_flight = in_flight or llm_in_flight()
    model, retriever = app_models(
        llm, searcher, llm_stages=LLM_STAGES, retrieval_stages=RETRIEVAL_STAGES, app=name
    )

    def embed() -> Embeds:
        return embedder or retriever.embedder  # type: ignore[attr-defined]

    @app.split(source=app.input, schema="alto.Json", max_in_flight=RETRIEVAL_IN_FLIGHT)
    async def retrieve(query: dict[str, Any]) -> list[dict[str, Any]]:
        """One child per retrieved document, best first."""
        found = await retrieve_documents(retriever, query["text"].strip(), documents)
        return [pack(doc) for doc in found]

    @app.batch(source=retrieve, schema="alto.Json", size=16, wait=0.05)
    async def score(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each document's best sentences: the batch's sentences and queries in one call."""
        docs = [unpack(r) for r in records]
        return [pack(v) for v in await score_documents(embed(), docs, per_document)]

    @app.aggregate(source=score, closes=retrieve, schema="alto.Json")
    async def best_per_query(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The query's best sentences over all its documents."""
        query = (context.value or {}).get("text", "").strip()
        docs = [unpack(c.value) for c in children if c.ok]
        return pack(best_of_query(query, docs, per_query))

    # commit_early: in the transactional mode too, sentences go on as they are written.
    @app.split(
        source=best_per_query, schema="alto.Text", max_in_flight=in_flight, commit_early=True
    )
    async def generate(record: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The answer from the best sentences, one child per sentence as it is generated."""
        async for sentence in answer_sentences(model, unpack(record)):
            yield {"text": sentence}

    @app.aggregate(source=generate, closes=generate, schema="alto.Json")
    async def answer(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The answer with the sentences it was written from."""
        value = unpack(context.value) if context.value else {"query": None, "context": []}
        return pack(answer_report(value, [c.value["text"] for c in children if c.ok]))

    return app


# The steps, free of records and stages: the app above and the LangGraph versions
# (benchmarks/langgraph) call the same code.


async def retrieve_documents(searcher: Searcher, query: str, n: int) -> list[dict[str, Any]]:
    """The query's best ``n`` documents, best first, each with the query."""
    found = await searcher.asearch(query, n)
    return [{"query": query, "title": p.title, "text": p.text} for p in found]


def document_sentences(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's sentences, each with its query, title and position."""
    return [
        {"query": doc["query"], "title": doc["title"], "sentence": s, "position": i}
        for i, s in enumerate(cut_sentences(doc["text"]))
    ]


async def score_documents(
    embedder: Embeds, docs: list[dict[str, Any]], n: int
) -> list[dict[str, Any]]:
    """Each document's ``n`` best sentences (:func:`best_of_document`), in one embedding call."""
    cut = [document_sentences(doc) for doc in docs]
    flat = [s for sentences in cut for s in sentences]
    scored = await score_sentences(embedder, flat) if flat else []
    bests, start = [], 0
    for doc, sentences in zip(docs, cut, strict=True):
        bests.append(best_of_document(doc, scored[start : start + len(sentences)], n))
        start += len(sentences)
    return bests


async def score_sentences(embedder: Embeds, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each sentence with its cosine similarity to its query: one embedding call for all."""
    queries = sorted({v["query"] for v in values})
    vectors = await embedder.aembed([v["sentence"] for v in values] + queries)
    query_vector = {q: vectors[len(values) + i] for i, q in enumerate(queries)}
    return [
        {**v, "score": round(_dot(vectors[i], query_vector[v["query"]]), 4)}
        for i, v in enumerate(values)
    ]


def best_of_document(doc: dict[str, Any], scored: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The document's ``n`` best sentences (``doc`` as :func:`retrieve_documents` gives it)."""
    return {"title": doc.get("title"), "query": doc.get("query"), "best": best(scored, n)}


def best_of_query(query: str, docs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The query's ``n`` best sentences over its documents' bests."""
    pooled = [s for doc in docs for s in doc["best"]]
    return {"query": query, "context": best(pooled, n)}


async def answer_sentences(model: LLM, value: dict[str, Any]) -> AsyncIterator[str]:
    """The answer from ``value``'s context (:func:`best_of_query`), sentence by sentence."""
    context = [f"{s['title']}: {s['sentence']}" for s in value["context"]]
    stream = model.stream(prompts.context_answer_prompt(value["query"], context), prompts.ANSWER)
    async for sentence in split_sentences(stream):
        yield sentence


def answer_report(value: dict[str, Any], sentences: list[str]) -> dict[str, Any]:
    """The final report: the answer with the sentences it was written from.

    An answer the model left empty says so in ``error``: it read as a real,
    empty answer (a new user met it on 6 of 34 questions), where the other apps
    call an empty completion a parse error.
    """
    report = {
        "query": value["query"],
        "answer": " ".join(sentences),
        "sources": sorted({s["title"] for s in value["context"]}),
        "context": value["context"],
    }
    if not report["answer"].strip():
        report["error"] = "the model wrote no answer (an empty completion)"
    return report


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
