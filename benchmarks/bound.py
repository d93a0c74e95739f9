"""Each app's critical-path bound: its steps' own service times, summed along the critical path.

One question at a time, every step of the app is run directly in this process with the
same backends the systems use (the LLM server, the MiniLM embedder, the index), one step
after the other (nothing else running: service times, not waiting times), each timed.
The bound is the latency the app would have if everything pipelined perfectly: the
longest chain of dependent steps, where parallel branches (claims, sub-questions, checks)
count for their slowest one and a streamed answer's sentences start their own chains as
soon as the stream writes them:

- rag: search (embed the query, top 3) + score (one model call embedding the query's
  sentences and the query: one batch at low load) + the whole answer stream;
- factcheck: max over the answer's sentences of (when the stream wrote it + claims +
  the slowest of its claims' queries + evidence searches + verdict);
- fanout: decompose + the slowest sub-question's (search + answer) + final;
- cove: baseline + plan + the slowest check's (search + answer) + revise.

The first-partial bound is the same with the first chain to end (rag: the answer's first
sentence).

The bound times each branch alone; a query whose branches reach the engine together
finds it slower (a continuous-batching engine decodes n requests more slowly than one;
llama.cpp's server serves them one after the other). So the same steps are also run
*directly*: in this process with asyncio, branches at once and each sentence's chain
started as soon as it is written, with no orchestrator at all. Its wall time
(``direct_s``) is what a perfect orchestrator would take on the same engine; a system's
latency over it is what orchestration costs.

The LLM calls and their tokens (words) are counted: the sweep derives the engine's
capacity in queries/s from them (benchmarks/sweep.py).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from alto_stream.components.llm import LLM
from alto_stream.components.sentences import split_sentences
from workers import prompts, rag
from workers.common import Searcher, passages
from workers.parsing import ParseError, parse_answer, parse_claims, parse_queries, parse_questions

__all__ = ["Bound", "measure", "measure_many"]

T = TypeVar("T")


@dataclass
class Bound:
    """One question's critical path: the bound, the first-partial bound, the steps' times."""

    app: str
    bound_s: float = 0.0
    first_partial_bound_s: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    llm_calls: int = 0
    llm_tokens: int = 0
    llm_seconds: float = 0.0  # the LLM calls' own times, summed (one at a time)


class _Timer:
    """Times steps and counts LLM calls and tokens (words) for one question.

    ``concurrent``: parallel branches run at once and a streamed sentence's chain starts
    as soon as it is written (the direct run); else one step after the other.
    """

    def __init__(self, llm: LLM, search: Searcher, *, concurrent: bool = False) -> None:
        self.llm, self.search = llm, search
        self.concurrent = concurrent
        self.calls = self.tokens = 0
        self.llm_seconds = 0.0

    def start(self, step: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """``step`` running now (concurrent), or when it is awaited."""
        return asyncio.ensure_future(step) if self.concurrent else step

    async def each(self, steps: Sequence[Awaitable[T]]) -> list[T]:
        """The branches' results: all at once (concurrent), or one after the other.

        When one fails, the others are dropped (:meth:`drop`), not left un-awaited.
        """
        results: list[T] = []
        try:
            if self.concurrent:
                return list(await asyncio.gather(*steps))
            for step in steps:
                results.append(await step)
        except BaseException:
            self.drop(steps)
            raise
        return results

    @staticmethod
    def drop(steps: Sequence[Awaitable[Any]]) -> None:
        """Close the steps not yet run and cancel those running."""
        for step in steps:
            if isinstance(step, Coroutine):
                step.close()  # a no-op on one already run
            elif isinstance(step, asyncio.Future):
                step.cancel()

    async def timed(self, call: Awaitable[T]) -> tuple[T, float]:
        began = time.perf_counter()
        value = await call
        return value, time.perf_counter() - began

    async def complete(self, prompt: str, sampling: Any) -> tuple[str, float]:
        text, seconds = await self.timed(self.llm.complete(prompt, sampling))
        self.llm_seconds += seconds
        self.calls += 1
        self.tokens += len(text.split())
        return text, seconds

    async def stream(
        self, prompt: str, sampling: Any, then: Callable[[str, float], None] | None = None
    ) -> list[tuple[str, float]]:
        """Each sentence of a streamed answer with when it was written (from the call);
        ``then`` is called with each as it is written."""
        began = time.perf_counter()
        found = []
        async for sentence in split_sentences(self.llm.stream(prompt, sampling)):
            found.append((sentence, time.perf_counter() - began))
            if then is not None:
                then(*found[-1])
        self.calls += 1
        self.tokens += sum(len(s.split()) for s, _ in found)
        if found:  # the stream ends after its last sentence: the whole answer's time
            found[-1] = (found[-1][0], time.perf_counter() - began)
        self.llm_seconds += time.perf_counter() - began
        return found

    async def found(self, query: str, k: int) -> tuple[list[dict[str, Any]], float]:
        hits, seconds = await self.timed(self.search.asearch(query, k))
        return passages(hits), seconds


async def _rag(t: _Timer, question: str) -> Bound:
    # The app's own steps (workers/rag.py), so that the answer's prompt is the app's.
    docs, search_s = await t.timed(rag.retrieve_documents(t.search, question, 3))
    values = [s for doc in docs for s in rag.document_sentences(doc)]
    embed = t.search.embedder  # type: ignore[attr-defined]
    scored, score_s = await t.timed(rag.score_sentences(embed, values))
    bests = [
        rag.best_of_document(doc, [v for v in scored if v["title"] == doc["title"]], 2)
        for doc in docs
    ]
    context = rag.best_of_query(question, bests, 4)
    prompt_context = [f"{s['title']}: {s['sentence']}" for s in context["context"]]
    answer = await t.stream(prompts.context_answer_prompt(question, prompt_context), prompts.ANSWER)
    first = answer[0][1] if answer else 0.0
    whole = answer[-1][1] if answer else 0.0
    steps = {"search": search_s, "score": score_s, "generate_first": first, "generate": whole}
    return Bound("rag", search_s + score_s + whole, search_s + score_s + first, steps)


async def _claim_chain(t: _Timer, claim: str, steps: dict[str, float]) -> float:
    raw, queries_s = await t.complete(prompts.queries_prompt(claim), prompts.LIST)
    try:
        queries = parse_queries(raw)
    except ParseError:
        queries = []
    evidence_s, texts = 0.0, []
    for query in [claim, *queries]:
        found, seconds = await t.found(query, 2)
        evidence_s += seconds
        texts += [f"{p['title']}: {p['text']}" for p in found]
    _, verify_s = await t.complete(prompts.verdict_prompt(claim, texts[:3]), prompts.VERDICT)
    for name, value in (("queries", queries_s), ("evidence", evidence_s), ("verify", verify_s)):
        steps[name] = max(steps.get(name, 0.0), value)
    return queries_s + evidence_s + verify_s


async def _factcheck(t: _Timer, question: str) -> Bound:
    steps: dict[str, float] = {}

    async def check(sentence: str, written: float) -> float:
        raw, claims_s = await t.complete(prompts.claims_prompt(sentence), prompts.LIST)
        steps["claims"] = max(steps.get("claims", 0.0), claims_s)
        try:
            claims = parse_claims(raw)
        except ParseError:
            claims = []
        chains = await t.each([_claim_chain(t, claim, steps) for claim in claims])
        return written + claims_s + max(chains, default=0.0)

    checks: list[Awaitable[float]] = []
    try:
        answer = await t.stream(
            prompts.answer_prompt(question),
            prompts.ANSWER,
            then=lambda sentence, written: checks.append(t.start(check(sentence, written))),
        )
    except BaseException:
        t.drop(checks)
        raise
    steps["answer"] = answer[-1][1] if answer else 0.0
    ends = await t.each(checks)
    return Bound("factcheck", max(ends, default=0.0), min(ends, default=0.0), steps)


async def _branches(
    t: _Timer, subs: Sequence[str], k: int, steps: dict[str, float]
) -> list[tuple[str, str, float]]:
    """Each sub-question's (question, answer, search + answer seconds)."""

    async def branch(sub: str) -> tuple[str, str, float]:
        found, search_s = await t.found(sub, k)
        context = [f"{p['title']}: {p['text']}" for p in found]
        raw, answer_s = await t.complete(prompts.short_answer_prompt(sub, context), prompts.SHORT)
        steps["search"] = max(steps.get("search", 0.0), search_s)
        steps["answer_sub"] = max(steps.get("answer_sub", 0.0), answer_s)
        return sub, raw.strip(), search_s + answer_s

    return await t.each([branch(sub) for sub in subs])


async def _fanout(t: _Timer, question: str) -> Bound:
    raw, decompose_s = await t.complete(prompts.decompose_prompt(question), prompts.LIST)
    subs = _questions(raw)
    steps = {"decompose": decompose_s}
    branches = await _branches(t, subs, 3, steps)
    facts = [(sub, answer) for sub, answer, _ in branches]
    _, final_s = await t.complete(prompts.combine_prompt(question, facts), prompts.SHORT)
    steps["final"] = final_s
    slowest = max((s for *_, s in branches), default=0.0)
    fastest = min((s for *_, s in branches), default=0.0)
    return Bound("fanout", decompose_s + slowest + final_s, decompose_s + fastest, steps)


async def _cove(t: _Timer, question: str) -> Bound:
    raw, baseline_s = await t.complete(prompts.answer_prompt(question), prompts.ANSWER)
    try:
        baseline = parse_answer(raw)
    except ParseError:
        baseline = raw.strip()
    raw, plan_s = await t.complete(prompts.plan_prompt(question, baseline), prompts.LIST)
    steps = {"baseline": baseline_s, "plan": plan_s}
    branches = await _branches(t, _questions(raw, limit=3), 2, steps)
    checks = [(sub, answer) for sub, answer, _ in branches]
    _, revise_s = await t.complete(
        prompts.revise_prompt(question, baseline, checks), prompts.ANSWER
    )
    steps["revise"] = revise_s
    head = baseline_s + plan_s
    slowest = max((s for *_, s in branches), default=0.0)
    fastest = min((s for *_, s in branches), default=0.0)
    return Bound("cove", head + slowest + revise_s, head + fastest, steps)


def _questions(raw: str, limit: int = 4) -> list[str]:
    try:
        return parse_questions(raw, limit=limit)
    except ParseError:
        return []


_APPS: dict[str, Callable[[_Timer, str], Awaitable[Bound]]] = {
    "rag": _rag,
    "factcheck": _factcheck,
    "fanout": _fanout,
    "cove": _cove,
}


async def measure(
    app: str, llm: LLM, search: Searcher, question: str, *, concurrent: bool = False
) -> Bound:
    """One question's :class:`Bound` for ``app``, its steps run one after the other.

    ``concurrent``: the direct run instead (branches at once, a sentence's chain from
    when it is written): its ``bound_s`` is the run's wall time.
    """
    timer = _Timer(llm, search, concurrent=concurrent)
    began = time.perf_counter()
    bound = await _APPS[app](timer, question)
    if concurrent:
        bound.bound_s = time.perf_counter() - began
    bound.llm_calls, bound.llm_tokens = timer.calls, timer.tokens
    bound.llm_seconds = timer.llm_seconds
    return bound


async def measure_many(
    app: str, llm: LLM, search: Searcher, questions: Sequence[str]
) -> dict[str, Any]:
    """The median bound over ``questions`` (after a warm-up of each backend), and each one's.

    The warm-up is one untimed question: every step's backend (the index, the
    embedding model of a score step, the LLM server's connection and first prompt
    of each kind) loads then, not in the first timed step (a cold score step took
    0.71 s instead of 0.21 s, and the bound came out above the direct run).
    """
    await search.asearch(questions[0], 3)  # the index and the query model load
    await llm.complete("Warm up.", prompts.SHORT)  # the server's connection
    await measure(app, llm, search, questions[0])  # every step once, untimed
    found = [await measure(app, llm, search, q) for q in questions]
    direct = [await measure(app, llm, search, q, concurrent=True) for q in questions]
    return {
        "app": app,
        "bound_s": statistics.median(b.bound_s for b in found),
        "direct_s": statistics.median(b.bound_s for b in direct),
        "first_partial_bound_s": statistics.median(b.first_partial_bound_s for b in found),
        "llm_calls_per_query": statistics.mean(b.llm_calls for b in found),
        "llm_tokens_per_query": statistics.mean(b.llm_tokens for b in found),
        "llm_seconds_per_query": statistics.mean(b.llm_seconds for b in found),
        "per_question": [vars(b) for b in found],
    }
