"""Side by side: one app's queries on one System, open-loop Poisson arrivals, per-query rows.

``alto-stream bench APP --system S --rate R --queries N`` (alto_stream/cli/bench_apps.py)
and the sweep (benchmarks/sweep.py) use this module:

- :func:`questions`: the same questions, in the same order, for every system: FanOutQA's
  dev questions for fanout (what ``alto-stream eval fanout`` sends), :data:`QUESTIONS`
  for the other apps (general questions about popular Wikipedia subjects: the index's);
- :func:`arrivals`: open-loop Poisson arrival times (exponential gaps, seeded): a query is
  sent at its time whether or not earlier ones finished;
- :func:`drive`: sends each query at its arrival time (``System.run``), timing from that
  moment the first partial result and the final one;
- :func:`summarize`: p50/p99 latency, first partial p50, throughput, SLO attainment.

Every summary names the engine (``"emulated"`` for benchmarks/engine).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from benchmarks.harness import percentile
from benchmarks.systems.base import System

__all__ = [
    "APPS",
    "QUESTIONS",
    "Row",
    "arrivals",
    "drive",
    "questions",
    "summarize",
    "warm_up",
    "write_csv",
]

WARM_UP = "What is water?"
"""The query every system answers once before it is measured (not one of the measured)."""

log = logging.getLogger(__name__)

APPS = ("factcheck", "fanout", "rag", "cove")

QUESTIONS = (
    "What is a volcano?",
    "Who was Albert Einstein?",
    "Who was Marie Curie?",
    "Where does the Nile flow?",
    "What is photosynthesis?",
    "Who painted the Mona Lisa?",
    "What is the Great Wall of China?",
    "Who was Napoleon Bonaparte?",
    "What is the speed of light?",
    "Who wrote Hamlet?",
    "What causes earthquakes?",
    "What is the Amazon rainforest?",
    "Who was Cleopatra?",
    "What is DNA?",
    "Who invented the telephone?",
    "What is the Eiffel Tower?",
    "Who was Isaac Newton?",
    "What is the Moon made of?",
    "Who was Leonardo da Vinci?",
    "What is the Roman Empire?",
    "Who was Charles Darwin?",
    "What is a black hole?",
    "Who was Mahatma Gandhi?",
    "What is the Pacific Ocean?",
    "Who was William Shakespeare?",
    "What is the Sahara?",
    "Who was Abraham Lincoln?",
    "What is the Statue of Liberty?",
    "Who was Wolfgang Amadeus Mozart?",
    "What is Mount Everest?",
    "Who was Galileo Galilei?",
    "What is the Internet?",
)
"""The questions of factcheck, rag and cove, in order (cycled past the last)."""


def questions(app: str, count: int) -> list[str]:
    """``count`` questions for ``app``: the same list, in the same order, for every system."""
    if app == "fanout":
        from alto_stream.ops.evaluate import fanoutqa_questions

        pool = [q.question for q in fanoutqa_questions("dev")]
    else:
        pool = list(QUESTIONS)
    return [pool[i % len(pool)] for i in range(count)]


def arrivals(rate: float, count: int, seed: int = 0) -> list[float]:
    """Seconds from the start at which each of ``count`` queries arrives (Poisson, ``rate``/s).

    The first arrives at 0; the gaps are exponential with mean ``1 / rate``, drawn from a
    generator seeded with ``seed`` (the same arrivals for every system).
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0 queries/s, got {rate}")
    rng = random.Random(seed)
    times, now = [], 0.0
    for i in range(count):
        if i:
            now += rng.expovariate(rate)
        times.append(now)
    return times


@dataclass
class Row:
    """One query of a run: when it arrived, when its first partial and final results came."""

    query_id: str
    question: str
    arrival_s: float
    """When it was sent, seconds from the run's start (the scheduled arrival)."""
    first_partial_s: float | None = None
    """Seconds from its arrival to its first partial result (None: none came)."""
    latency_s: float | None = None
    """Seconds from its arrival to its final result (None: it did not complete)."""
    partials: int = 0
    error: str | None = None
    admission_wait_s: float | None = None
    """Seconds from its arrival to its admission (systems with an admission limit only)."""


async def warm_up(system: System, *, timeout: float = 600.0) -> None:
    """One query through ``system`` before it is measured, its answer dropped.

    A first query pays what no later one does (a model's first forward pass, the
    server's connections, a worker's first fetch): every system gets one, so that
    the first measured query of neither carries it. A failure is logged, not raised.
    """
    try:
        await asyncio.wait_for(system.run("warm-up", WARM_UP, lambda: None), timeout)
    except Exception as exc:  # the measured queries say whether the system works
        log.warning("%s: the warm-up query failed: %r", system.name, exc)


async def drive(
    system: System,
    texts: Sequence[str],
    times: Sequence[float],
    *,
    run_id: str = "q",
    timeout: float = 600.0,
) -> tuple[list[Row], float]:
    """Send ``texts[i]`` at ``times[i]`` (open loop); the rows and the run's wall seconds.

    A query that takes longer than ``timeout`` seconds is left incomplete (``error``).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    rows = [
        Row(f"{run_id}-{i}", text, at)
        for i, (text, at) in enumerate(zip(texts, times, strict=True))
    ]

    async def one(row: Row) -> None:
        await asyncio.sleep(max(0.0, start + row.arrival_s - loop.time()))
        sent, sent_wall = loop.time(), time.time()

        def on_partial() -> None:
            if row.first_partial_s is None:
                row.first_partial_s = loop.time() - sent
            row.partials += 1

        try:
            await asyncio.wait_for(system.run(row.query_id, row.question, on_partial), timeout)
            row.latency_s = loop.time() - sent
        except TimeoutError:
            row.error = f"no result within {timeout} s"
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"
        admitted = system.admitted.get(row.query_id)
        if admitted is not None:
            row.admission_wait_s = max(0.0, admitted - sent_wall)

    await asyncio.gather(*(one(row) for row in rows))
    return rows, loop.time() - start


def summarize(
    rows: Sequence[Row],
    *,
    system: str,
    app: str,
    rate: float,
    slo_s: float | None,
    engine: str,
) -> dict[str, Any]:
    """The summary object of one run (``--json``).

    ``throughput_qps``: completed queries over the seconds from the first arrival to the
    last completion. ``slo_attainment``: the share of ALL queries sent (incomplete ones
    count as misses) whose latency is at most ``slo_s``; None without an SLO. With an
    admission limit, ``admitted_p50_s``/``admitted_p99_s``: latency from admission (the
    wait in the input topic left out) and ``admission_wait_p50_s``. ``failed``: the
    queries that did not complete; ``first_error``: the first one's error.
    """
    done = [r for r in rows if r.latency_s is not None]
    latencies = [r.latency_s for r in done if r.latency_s is not None]
    firsts = [r.first_partial_s for r in rows if r.first_partial_s is not None]
    ends = [r.arrival_s + r.latency_s for r in done if r.latency_s is not None]
    span = max(ends) - min(r.arrival_s for r in rows) if ends else 0.0
    attainment = None
    if slo_s is not None and rows:
        attainment = sum(1 for x in latencies if x <= slo_s) / len(rows)
    return {
        "system": system,
        "app": app,
        "rate": rate,
        "queries": len(rows),
        "completed": len(done),
        "failed": len(rows) - len(done),
        "first_error": next((r.error for r in rows if r.latency_s is None and r.error), None),
        "p50_s": _finite(percentile(latencies, 50)),
        "p99_s": _finite(percentile(latencies, 99)),
        "first_partial_p50_s": _finite(percentile(firsts, 50)),
        "throughput_qps": len(done) / span if span > 0 else None,
        "slo_s": slo_s,
        "slo_attainment": attainment,
        "engine": engine,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        **_admitted(done),
    }


def _admitted(done: Sequence[Row]) -> dict[str, Any]:
    """Latency from admission, when the system said when each query was admitted."""
    waits = [r.admission_wait_s for r in done if r.admission_wait_s is not None]
    if not waits:
        return {}
    served = [
        r.latency_s - r.admission_wait_s
        for r in done
        if r.latency_s is not None and r.admission_wait_s is not None
    ]
    return {
        "admitted_p50_s": _finite(percentile(served, 50)),
        "admitted_p99_s": _finite(percentile(served, 99)),
        "admission_wait_p50_s": _finite(percentile(waits, 50)),
        "admission_wait_p99_s": _finite(percentile(waits, 99)),
    }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def write_csv(rows: Sequence[Row], path: Path, **columns: Any) -> None:
    """The per-query rows as CSV, each with ``columns`` (system, app, rate, engine...) first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [*columns, *(f.name for f in fields(Row))]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({**columns, **asdict(row)})
