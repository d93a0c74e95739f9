"""factcheck (workers/factcheck.py) in LangGraph: answer, claims per sentence, checks per claim.

- ``graph``: one node per alto stage. ``answer`` writes the whole answer, then
  ``Send`` starts a ``sentence`` subgraph per sentence (``claims``, then a
  ``claim`` subgraph per claim: ``queries`` -> ``evidence`` -> ``verify``, then
  ``sentence_report``); ``report`` joins the sentences (``operator.add``).
- ``fused``: ``answer`` -> ``check_sentence`` per sentence (claims, then every
  claim's queries, evidence and verdict concurrently) -> ``report``.
- ``functional``: an ``@entrypoint`` that streams the answer and starts a
  ``check_sentence`` task for each sentence the moment it is written, each
  claim a ``check_claim`` task.

A step that fails marks its item as the alto app's error markers do: an
unreadable claims output fails its sentence, a failed claim is unchecked.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from benchmarks.langgraph.system import Parts, at, failure, partial
from workers import factcheck as fc

__all__ = ["compile", "direct"]

EVIDENCE_K = 2  # as workers.factcheck.build's default


class Query(TypedDict):
    question: str


class State(TypedDict, total=False):
    question: str
    sentences: list[str]
    parts: Annotated[list[dict[str, Any]], operator.add]  # {"index", "part"}
    result: dict[str, Any]


class Out(TypedDict):
    result: dict[str, Any]


class SentenceIn(TypedDict):
    index: int
    sentence: str


class SentenceState(TypedDict, total=False):
    index: int
    sentence: str
    claims: list[str]
    error: str | None
    verdicts: Annotated[list[dict[str, Any]], operator.add]  # {"index", "entry"}
    parts: Annotated[list[dict[str, Any]], operator.add]


class SentenceOut(TypedDict):
    parts: Annotated[list[dict[str, Any]], operator.add]


class ClaimIn(TypedDict):
    index: int
    claim: str


class ClaimState(TypedDict, total=False):
    index: int
    claim: str
    queries: list[str]
    evidence: list[dict[str, Any]]
    error: str | None
    verdicts: Annotated[list[dict[str, Any]], operator.add]


class ClaimOut(TypedDict):
    verdicts: Annotated[list[dict[str, Any]], operator.add]


def compile(variant: str, parts: Parts, checkpointer: Any) -> Any:
    """The ``variant`` of the app over ``parts``, checkpointed by ``checkpointer``."""
    builders = {"graph": _graph, "fused": _fused, "functional": _functional}
    return builders[variant](parts, checkpointer)


def _ordered(items: list[dict[str, Any]], key: str) -> list[Any]:
    return [item[key] for item in sorted(items, key=operator.itemgetter("index"))]


def _report(state: State) -> dict[str, Any]:
    return {"result": fc.report_of(state["question"], _ordered(state.get("parts", []), "part"))}


def _to_sentences(state: State) -> list[Send] | str:
    sends = [
        Send("sentence", {"index": i, "sentence": s}) for i, s in enumerate(state["sentences"])
    ]
    return sends or "report"


def _graph(parts: Parts, checkpointer: Any) -> Any:
    llm = parts.llm

    async def queries(state: ClaimState) -> dict[str, Any]:
        try:
            return {"queries": await fc.queries_for(llm, state["claim"])}
        except Exception as exc:
            return {"error": failure(exc, "queries")}

    async def evidence(state: ClaimState) -> dict[str, Any]:
        if state.get("error"):
            return {}
        try:
            found = await fc.evidence_for(
                parts.searcher, state["claim"], state["queries"], EVIDENCE_K
            )
            return {"evidence": found}
        except Exception as exc:
            return {"error": failure(exc, "evidence")}

    async def verify(state: ClaimState) -> dict[str, Any]:
        verdict, error = None, state.get("error")
        if not error:
            try:
                verdict = await fc.verdict_for(llm, state["claim"], state["evidence"])
            except Exception as exc:
                error = failure(exc, "verify")
        entry = fc.claim_entry(verdict, error)
        return {"verdicts": [{"index": state["index"], "entry": entry}]}

    claim = StateGraph(ClaimState, input_schema=ClaimIn, output_schema=ClaimOut)
    claim.add_node("queries", queries)
    claim.add_node("evidence", evidence)
    claim.add_node("verify", verify)
    claim.add_edge(START, "queries")
    claim.add_edge("queries", "evidence")
    claim.add_edge("evidence", "verify")
    claim.add_edge("verify", END)

    async def claims(state: SentenceState) -> dict[str, Any]:
        try:
            return {"claims": await fc.claims_of(llm, state["sentence"]), "error": None}
        except Exception as exc:
            return {"claims": [], "error": failure(exc, "claims")}

    def to_claims(state: SentenceState) -> list[Send] | str:
        sends = [Send("claim", {"index": i, "claim": c}) for i, c in enumerate(state["claims"])]
        return sends or "sentence_report"

    def sentence_report(state: SentenceState) -> dict[str, Any]:
        if state.get("error"):
            part = fc.failed_sentence(state["error"])
        else:
            part = fc.sentence_entry(
                state["sentence"], _ordered(state.get("verdicts", []), "entry")
            )
        partial(part)
        return {"parts": [{"index": state["index"], "part": part}]}

    sentence = StateGraph(SentenceState, input_schema=SentenceIn, output_schema=SentenceOut)
    sentence.add_node("claims", claims)
    sentence.add_node("claim", claim.compile())
    sentence.add_node("sentence_report", sentence_report)
    sentence.add_edge(START, "claims")
    sentence.add_conditional_edges("claims", to_claims, ["claim", "sentence_report"])
    sentence.add_edge("claim", "sentence_report")
    sentence.add_edge("sentence_report", END)

    async def answer(state: State) -> dict[str, Any]:
        return {"sentences": [s async for s in fc.answer_sentences(llm, state["question"])]}

    top = StateGraph(State, input_schema=Query, output_schema=Out)
    top.add_node("answer", answer)
    top.add_node("sentence", sentence.compile())
    top.add_node("report", _report)
    top.add_edge(START, "answer")
    top.add_conditional_edges("answer", _to_sentences, ["sentence", "report"])
    top.add_edge("sentence", "report")
    top.add_edge("report", END)
    return top.compile(checkpointer=checkpointer)


async def _check_claim(parts: Parts, claim: str) -> dict[str, Any]:
    """One claim's queries, evidence and verdict, as its report line."""
    try:
        queries = await at("queries", fc.queries_for(parts.llm, claim))
        found = await at("evidence", fc.evidence_for(parts.searcher, claim, queries, EVIDENCE_K))
        return fc.claim_entry(await at("verify", fc.verdict_for(parts.llm, claim, found)), None)
    except Exception as exc:
        return fc.claim_entry(None, failure(exc))


async def _check_sentence(parts: Parts, sentence: str) -> dict[str, Any]:
    """One sentence's part of the report: its claims checked concurrently."""
    try:
        claims = await fc.claims_of(parts.llm, sentence)
    except Exception as exc:
        return fc.failed_sentence(failure(exc, "claims"))
    entries = await asyncio.gather(*(_check_claim(parts, c) for c in claims))
    return fc.sentence_entry(sentence, list(entries))


def _fused(parts: Parts, checkpointer: Any) -> Any:
    async def answer(state: State) -> dict[str, Any]:
        return {"sentences": [s async for s in fc.answer_sentences(parts.llm, state["question"])]}

    async def sentence(state: SentenceIn) -> dict[str, Any]:
        part = await _check_sentence(parts, state["sentence"])
        partial(part)
        return {"parts": [{"index": state["index"], "part": part}]}

    top = StateGraph(State, input_schema=Query, output_schema=Out)
    top.add_node("answer", answer)
    top.add_node("sentence", sentence)
    top.add_node("report", _report)
    top.add_edge(START, "answer")
    top.add_conditional_edges("answer", _to_sentences, ["sentence", "report"])
    top.add_edge("sentence", "report")
    top.add_edge("report", END)
    return top.compile(checkpointer=checkpointer)


def _functional(parts: Parts, checkpointer: Any) -> Any:
    @task
    async def check_claim(claim: str) -> dict[str, Any]:
        return await _check_claim(parts, claim)

    @task
    async def check_sentence(sentence: str) -> dict[str, Any]:
        try:
            claims = await fc.claims_of(parts.llm, sentence)
        except Exception as exc:
            part = fc.failed_sentence(failure(exc, "claims"))
        else:
            entries = await asyncio.gather(*(check_claim(c) for c in claims))
            part = fc.sentence_entry(sentence, list(entries))
        partial(part)
        return part

    @entrypoint(checkpointer=checkpointer)
    async def factcheck(query: Query) -> dict[str, Any]:
        checks = []  # each sentence is checked while the answer goes on streaming
        async for sentence in fc.answer_sentences(parts.llm, query["question"]):
            checks.append(check_sentence(sentence))
        sentences = await asyncio.gather(*checks)
        return {"result": fc.report_of(query["question"], list(sentences))}

    return factcheck


async def direct(parts: Parts, question: str) -> dict[str, Any]:
    """The same steps in plain asyncio, no LangGraph: the baseline of the cost figures."""
    checks = []
    async for sentence in fc.answer_sentences(parts.llm, question):
        checks.append(asyncio.ensure_future(_check_sentence(parts, sentence)))
    return fc.report_of(question, list(await asyncio.gather(*checks)))
