"""Fact-checking a generated answer (FacTool-style), nested two levels deep.

A question comes in; the LLM answers it, and the answer is split into
sentences as the tokens stream (``answer``: each sentence flows on the moment
it is written). Each sentence is split into atomic claims (``claims``); each
claim gets search queries (``queries``), evidence retrieved for them
(``evidence``) and a verdict against that evidence (``verify``). Verdicts are
put back together per sentence (``sentence_report``, closing ``claims``) and
the sentences per answer (``report``, closing ``answer``): a report with the
answer, every claim's verdict and a factuality score (the share of claims the
evidence supports).

A model output the parsers cannot read (claims, queries, a verdict) raises
:class:`~workers.parsing.ParseError`: the record goes to the stage's
dead-letter topic with the raw output, an error marker takes its place, and
the report counts the claim as unchecked.

Run it (the index of the Wikipedia summaries must exist: ``alto-stream index build``)::

    alto-stream topics apply workers.factcheck:app
    alto-stream up workers.factcheck:app
    alto-stream push workers.factcheck:app "Who was Marie Curie?" --follow
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from alto_stream import App, Child
from alto_stream.aggregate import AggregateContext
from alto_stream.components.llm import LLM
from alto_stream.components.sentences import split_sentences
from workers import prompts
from workers.common import (
    RETRIEVAL_IN_FLIGHT,
    Searcher,
    app_models,
    llm_in_flight,
    pack,
    passages,
    unpack,
)
from workers.parsing import parse_claims, parse_queries, parse_verdict

__all__ = [
    "answer_sentences",
    "app",
    "build",
    "claim_entry",
    "claims_of",
    "evidence_for",
    "failed_sentence",
    "queries_for",
    "report_of",
    "score",
    "sentence_entry",
    "verdict_for",
]

RETRIEVAL_STAGES = ("evidence",)
LLM_STAGES = ("answer", "claims", "queries", "verify")


def build(
    name: str = "factcheck",
    *,
    llm: LLM | None = None,
    searcher: Searcher | None = None,
    in_flight: int | None = None,
    evidence_k: int = 2,
) -> App:
    """The app under ``name``; ``llm`` and ``searcher`` default to this process's (from env)."""
    app = App(name, input_schema="alto.Text")
    in_flight = in_flight or llm_in_flight()
    model, retriever = app_models(
        llm, searcher, llm_stages=LLM_STAGES, retrieval_stages=RETRIEVAL_STAGES, app=name
    )

    # commit_early: in the transactional mode too, sentences go on as they are written.
    @app.split(source=app.input, schema="alto.Json", max_in_flight=in_flight, commit_early=True)
    async def answer(query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The LLM's answer, one child per sentence as soon as the stream closes it."""
        question = query["text"].strip()
        async for sentence in answer_sentences(model, question):
            yield pack({"question": question, "sentence": sentence})

    @app.split(source=answer, schema="alto.Json", max_in_flight=in_flight)
    async def claims(record: dict[str, Any]) -> list[dict[str, Any]]:
        """The sentence's atomic claims (none for a sentence that states nothing)."""
        value = unpack(record)
        found = await claims_of(model, value["sentence"])
        return [pack({**value, "claim": claim}) for claim in found]

    @app.map(source=claims, schema="alto.Json", max_in_flight=in_flight)
    async def queries(record: dict[str, Any]) -> dict[str, Any]:
        """Search queries for the claim."""
        value = unpack(record)
        return pack({**value, "queries": await queries_for(model, value["claim"])})

    @app.map(source=queries, schema="alto.Json", max_in_flight=RETRIEVAL_IN_FLIGHT)
    async def evidence(record: dict[str, Any]) -> dict[str, Any]:
        """The best passages for the claim and its queries, deduplicated, best first."""
        value = unpack(record)
        best = await evidence_for(retriever, value["claim"], value["queries"], evidence_k)
        return pack({**value, "evidence": best})

    @app.map(source=evidence, schema="alto.Verdict", max_in_flight=in_flight)
    async def verify(record: dict[str, Any]) -> dict[str, Any]:
        """The claim's verdict against its evidence."""
        value = unpack(record)
        return await verdict_for(model, value["claim"], value["evidence"])

    @app.aggregate(source=verify, closes=claims, schema="alto.Json")
    async def sentence_report(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """One sentence's verdicts (and the claims that could not be checked)."""
        sentence = unpack(context.value)["sentence"] if context.value else None
        entries = [claim_entry(c.value if c.ok else None, c.reason) for c in children]
        return pack(sentence_entry(sentence, entries))

    @app.aggregate(source=sentence_report, closes=answer, schema="alto.Json")
    async def report(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        """The answer's report: its sentences, their claims' verdicts, a factuality score."""
        question = context.value["text"].strip() if context.value else None
        sentences = [unpack(c.value) if c.ok else failed_sentence(c.reason) for c in children]
        return pack(report_of(question, sentences))

    return app


# The steps, free of records and stages: the app above and the LangGraph versions
# (benchmarks/langgraph) call the same code.


async def answer_sentences(model: LLM, question: str) -> AsyncIterator[str]:
    """The LLM's answer to ``question``, sentence by sentence as the tokens stream."""
    stream = model.stream(prompts.answer_prompt(question), prompts.ANSWER)
    async for sentence in split_sentences(stream):
        yield sentence


async def claims_of(model: LLM, sentence: str) -> list[str]:
    """The sentence's atomic claims (raises ParseError on an unreadable output)."""
    raw = await model.complete(prompts.claims_prompt(sentence), prompts.LIST)
    return parse_claims(raw)


async def queries_for(model: LLM, claim: str) -> list[str]:
    """Search queries for ``claim``."""
    raw = await model.complete(prompts.queries_prompt(claim), prompts.LIST)
    return parse_queries(raw)


async def evidence_for(
    searcher: Searcher, claim: str, queries: list[str], k: int
) -> list[dict[str, Any]]:
    """The best passages for the claim and its queries, deduplicated, best first."""
    found: dict[str, dict[str, Any]] = {}
    for query in [claim, *queries]:
        for passage in passages(await searcher.asearch(query, k)):
            key = passage["title"] + passage["text"][:80]
            if key not in found or found[key]["score"] < passage["score"]:
                found[key] = passage
    return sorted(found.values(), key=lambda p: -p["score"])[: k + 1]


async def verdict_for(model: LLM, claim: str, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    """The claim's verdict against ``evidence`` (an ``alto.Verdict`` record)."""
    texts = [f"{p['title']}: {p['text']}" for p in evidence]
    raw = await model.complete(prompts.verdict_prompt(claim, texts), prompts.VERDICT)
    verdict = parse_verdict(raw)
    return {
        "claim": claim,
        "label": verdict.label,
        "evidence": [p["title"] for p in evidence],
        "score": 1.0 if verdict.supported else 0.0,
    }


def claim_entry(verdict: dict[str, Any] | None, reason: str | None) -> dict[str, Any]:
    """A claim's line in the report: its verdict, or unchecked with why (``verdict`` None)."""
    if verdict is not None:
        return {k: verdict[k] for k in ("claim", "label", "evidence")}
    return {"claim": None, "label": "unchecked", "error": reason}


def sentence_entry(sentence: str | None, claims: list[dict[str, Any]]) -> dict[str, Any]:
    """A sentence's part of the report: the sentence and its claims' lines."""
    return {"sentence": sentence, "claims": claims}


def failed_sentence(reason: str | None) -> dict[str, Any]:
    """The part of a sentence that failed as a whole (e.g. its claims could not be read)."""
    return {"sentence": None, "claims": [], "error": reason}


def report_of(question: str | None, sentences: list[dict[str, Any]]) -> dict[str, Any]:
    """The final report of ``question`` from its sentences' parts, in answer order."""
    return {"question": question, **score(sentences)}


def score(sentences: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's body: the answer, its sentences, counts and the factuality score.

    Factuality is the share of checked claims (those with a verdict) that are
    supported; None when no claim could be checked.

    >>> score([{"sentence": "A.", "claims": [{"claim": "A.", "label": "supported"}]},
    ...        {"sentence": "B.", "claims": [{"claim": None, "label": "unchecked"}]}])["factuality"]
    1.0
    """
    labels = [c["label"] for s in sentences for c in s["claims"]]
    checked = [label for label in labels if label != "unchecked"]
    supported = checked.count("supported")
    return {
        "answer": " ".join(s["sentence"] for s in sentences if s.get("sentence")),
        "sentences": sentences,
        "claims": len(labels),
        "checked": len(checked),
        "supported": supported,
        "refuted": checked.count("refuted"),
        "unchecked": len(labels) - len(checked),
        "factuality": round(supported / len(checked), 3) if checked else None,
    }


app = build()
