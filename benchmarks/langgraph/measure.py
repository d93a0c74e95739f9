"""What LangGraph's orchestration costs, with scripted components (benchmarks/langgraph/doubles).

``cost``: CPU ms per query for each app x variant x checkpointer, queries one
at a time with an instant model, retriever and embedder, minus the CPU of the
same steps called directly (plain asyncio, no LangGraph: each module's
``direct``). Process CPU time: the SQLite checkpointer's thread counts.

``latency``: a factcheck-shaped query at low load (one at a time) with step
delays (an answer of 3 sentences streamed at ``--sentence`` s each, claims,
queries, evidence searches, verdicts), against the critical-path bound: the
latest sentence's (time it can be cut off + its chain of steps), i.e.
everything pipelined and every claim in parallel.

    python -m benchmarks.langgraph.measure cost --queries 200
    python -m benchmarks.langgraph.measure latency --queries 5

Figures depend on the machine and its load: indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from alto_stream.components.sentences import sentences
from benchmarks.langgraph import APPS, VARIANTS, Parts, make_system
from benchmarks.langgraph.doubles import (
    SCRIPTS,
    Delays,
    ScriptedEmbedder,
    ScriptedLLM,
    ScriptedSearch,
)
from benchmarks.systems.base import BenchConfig
from workers.parsing import parse_claims, parse_queries

__all__ = ["cost", "latency", "main"]

QUESTION = {
    "factcheck": "What is Paris?",
    "fanout": "Which is older, Rome or Paris?",
    "rag": "Where does the Nile flow in Egypt?",
    "cove": "What is the capital of Australia?",
}
CHECKPOINTERS = ("memory", "sqlite")

Query = Callable[[str, str], Awaitable[Any]]


async def _cpu_per_query(query: Query, question: str, n: int, warmup: int = 10) -> float:
    """CPU seconds per query of ``n`` queries one after the other (after ``warmup``)."""
    for i in range(warmup):
        await query(f"warm-{i}", question)
    began = time.process_time()
    for i in range(n):
        await query(f"q-{i}", question)
    return (time.process_time() - began) / n


def _systems(app: str, parts: Parts, workdir: str) -> list[tuple[str, Any]]:
    return [
        (v, make_system(BenchConfig(app=app, checkpointer=c, workdir=workdir), v, parts=parts))
        for v in VARIANTS
        for c in CHECKPOINTERS
    ]


async def cost(apps: list[str], n: int) -> list[dict[str, Any]]:
    """Rows: app, system, cpu_ms (per query), orchestration_ms (minus the direct steps)."""
    rows = []
    for app in apps:
        parts = Parts(ScriptedLLM(app), ScriptedSearch(), ScriptedEmbedder())
        module = importlib.import_module(f"benchmarks.langgraph.{app}")

        async def direct(
            query_id: str, question: str, module: Any = module, parts: Parts = parts
        ) -> Any:
            return await module.direct(parts, question)

        base = await _cpu_per_query(direct, QUESTION[app], n)
        rows.append(_row(app, "direct (no LangGraph)", base, base))
        with tempfile.TemporaryDirectory() as workdir:
            for _, system in _systems(app, parts, workdir):
                await system.start()
                try:

                    async def run(query_id: str, question: str, system: Any = system) -> Any:
                        return await system.run(query_id, question, lambda: None)

                    cpu = await _cpu_per_query(run, QUESTION[app], n)
                finally:
                    await system.close()
                rows.append(_row(app, system.name, cpu, base))
    return rows


def _row(app: str, system: str, cpu: float, base: float) -> dict[str, Any]:
    return {
        "app": app,
        "system": system,
        "cpu_ms": round(cpu * 1000, 2),
        "orchestration_ms": round((cpu - base) * 1000, 2),
    }


def factcheck_bound(delays: Delays) -> float:
    """The critical-path bound of the scripted factcheck query under ``delays`` (seconds).

    Sentence i is written at (i + 1) x ``per_sentence`` and can be cut off when
    the next word comes (a sentence splitter must see it); its chain is claims,
    then (when it has claims, all in parallel) queries, the evidence searches
    (the claim and each query, one after the other) and the verdict.
    """
    script = SCRIPTS["factcheck"]
    cut = sentences(str(script["Answer:"]))
    bound = 0.0
    for i, sentence in enumerate(cut):
        written = (i + 1) * delays.per_sentence
        if i + 1 < len(cut):  # the doubles stream a sentence's words evenly
            written += delays.per_sentence / len(cut[i + 1].split())
        chain = delays.llm.get("Claims:", 0.0)
        claims = parse_claims(script["Claims:"](f"Sentence: {sentence}"))  # type: ignore[operator]
        if claims:
            searches = 1 + len(parse_queries(str(script["Queries:"])))
            chain += delays.llm.get("Queries:", 0.0) + delays.search * searches
            chain += delays.llm.get("Verdict:", 0.0)
        bound = max(bound, written + chain)
    return bound


async def latency(n: int, per_sentence: float) -> list[dict[str, Any]]:
    """Rows: system, p50_s, bound_s, ratio (low load: one query at a time)."""
    delays = Delays(
        llm={"Claims:": 0.2, "Queries:": 0.2, "Verdict:": 0.3},
        per_sentence=per_sentence,
        search=0.05,
    )
    parts = Parts(ScriptedLLM("factcheck", delays), ScriptedSearch(delays.search))
    bound = factcheck_bound(delays)
    module = importlib.import_module("benchmarks.langgraph.factcheck")
    rows = [_latency_row("direct (no LangGraph)", await _times(module, parts, None, n), bound)]
    with tempfile.TemporaryDirectory() as workdir:
        for _, system in _systems("factcheck", parts, workdir):
            await system.start()
            try:
                rows.append(
                    _latency_row(system.name, await _times(module, parts, system, n), bound)
                )
            finally:
                await system.close()
    return rows


async def _times(module: Any, parts: Parts, system: Any, n: int) -> list[float]:
    times = []
    for i in range(n + 1):  # the first is a warm-up
        began = time.perf_counter()
        if system is None:
            await module.direct(parts, QUESTION["factcheck"])
        else:
            await system.run(f"q-{i}", QUESTION["factcheck"], lambda: None)
        times.append(time.perf_counter() - began)
    return times[1:]


def _latency_row(system: str, times: list[float], bound: float) -> dict[str, Any]:
    p50 = statistics.median(times)
    return {
        "system": system,
        "p50_s": round(p50, 3),
        "bound_s": round(bound, 3),
        "ratio": round(p50 / bound, 3),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.langgraph.measure cost|latency``: print a table (or JSON)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.langgraph.measure")
    parser.add_argument("what", choices=["cost", "latency"])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--apps", default=",".join(APPS), help="cost: comma-separated apps")
    parser.add_argument("--sentence", type=float, default=0.3, help="latency: s per sentence")
    parser.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    args = parser.parse_args(argv)
    if args.what == "cost":
        rows = asyncio.run(cost(args.apps.split(","), args.queries))
    else:
        rows = asyncio.run(latency(args.queries, args.sentence))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
