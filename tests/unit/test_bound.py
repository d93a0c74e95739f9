"""The critical-path bound and the direct run (benchmarks/bound.py), with a timed fake model.

The bound runs one step after the other and sums the critical path; the direct run
runs the same steps at once where the app would (branches, a streamed sentence's
chain) and takes the wall time. With a model that serves calls side by side at the
same speed, both agree; with one that serves a call at a time (llama.cpp's server),
the direct run pays the queue, which the bound cannot see.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alto_stream.components.llm import Prompt, Request, Sampling
from benchmarks.bound import measure, measure_many

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ai_apps import ScriptedLLM

pytestmark = pytest.mark.timeout(60)

DELAY = 0.2


class TimedLLM(ScriptedLLM):
    """Answers after ``DELAY`` s; ``serial``: one call at a time, like llama.cpp's server."""

    def __init__(self, *, serial: bool = False) -> None:
        super().__init__({})
        self.lock = asyncio.Lock() if serial else None
        self.running = self.most = 0
        self.started: list[tuple[float, str]] = []

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        assert isinstance(prompt, str)
        last = prompt.rsplit("\n###\n", 1)[-1]
        if self.lock is not None:
            await self.lock.acquire()
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append((asyncio.get_running_loop().time(), last[-12:]))
        try:
            if last.endswith("Sub-questions:\n-"):
                text = " Who is A?\n- Who is B?\n- Who is C?"
            elif last.endswith("Claims:\n-"):
                text = " A is a claim."
            elif last.endswith("Queries:\n-"):
                text = " a query"
            elif "Context:" in last or "Facts:" in last or "Claim:" in last:
                text = " True. A."
            else:  # factcheck's answer: three sentences, streamed over DELAY each
                for sentence in ("One is here.", " Two is here.", " Three is here."):
                    await asyncio.sleep(DELAY)
                    yield sentence
                yield " End"
                return
            await asyncio.sleep(DELAY)
            yield text
        finally:
            self.running -= 1
            if self.lock is not None:
                self.lock.release()


@dataclass(frozen=True)
class Hit:
    title: str
    text: str
    score: float = 1.0


class Search:
    async def asearch(self, query: str, k: int | None = None) -> list[Hit]:
        return [Hit(f"T{i}", f"{query} text {i}.") for i in range(k or 3)]


async def test_the_bound_runs_steps_alone_and_the_direct_run_runs_branches_at_once() -> None:
    llm = TimedLLM()
    bound = await measure("fanout", llm, Search(), "Which is older?")
    assert llm.most == 1  # each step alone
    assert bound.bound_s == pytest.approx(3 * DELAY, abs=0.1)  # decompose + a branch + final
    direct = await measure("fanout", llm, Search(), "Which is older?", concurrent=True)
    assert llm.most == 3  # the three sub-questions' answers at once
    assert direct.bound_s == pytest.approx(bound.bound_s, abs=0.1)


async def test_on_a_serial_model_the_direct_run_pays_the_queue_the_bound_leaves_out() -> None:
    llm = TimedLLM(serial=True)
    found: dict[str, Any] = await measure_many("fanout", llm, Search(), ["Which is older?"])
    assert found["bound_s"] == pytest.approx(3 * DELAY, abs=0.1)
    assert found["direct_s"] == pytest.approx(5 * DELAY, abs=0.15)  # three answers in a row


async def test_the_direct_factcheck_checks_a_sentence_while_the_answer_streams() -> None:
    llm = TimedLLM()
    direct = await measure("factcheck", llm, Search(), "What is A?", concurrent=True)
    answer_end = 3 * DELAY
    first_claims = min(t for t, line in llm.started if "Claims:" in line)
    first_call = llm.started[0][0]
    assert first_claims - first_call < answer_end - 0.05  # before the stream ended
    # the last sentence's chain (claims, queries, verdict) after the stream's end
    assert direct.bound_s == pytest.approx(answer_end + 3 * DELAY, abs=0.15)
    bound = await measure("factcheck", llm, Search(), "What is A?")
    assert bound.bound_s == pytest.approx(direct.bound_s, abs=0.15)


@pytest.mark.parametrize("concurrent", [False, True], ids=["bound", "direct"])
async def test_a_failed_branch_leaves_no_other_branch_unawaited_or_running(
    concurrent: bool,
) -> None:
    import inspect

    from benchmarks.bound import _Timer

    async def fails() -> float:
        raise RuntimeError("the model went away")

    async def slow() -> float:
        await asyncio.sleep(30)
        return 1.0

    timer = _Timer(None, None, concurrent=concurrent)  # type: ignore[arg-type]
    rest = slow()
    steps = [timer.start(fails()), timer.start(rest)]
    with pytest.raises(RuntimeError, match="went away"):
        await timer.each(steps)
    if concurrent:
        await asyncio.sleep(0)  # the cancellation lands
        assert isinstance(steps[1], asyncio.Future) and steps[1].cancelled()
    else:
        assert inspect.getcoroutinestate(rest) == inspect.CORO_CLOSED


class ColdLLM(TimedLLM):
    """The first call of each kind of prompt takes ``COLD`` s more (a model or cache loads)."""

    COLD = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        assert isinstance(prompt, str)
        kind = prompt.rsplit("\n###\n", 1)[-1][-12:]
        if kind not in self.seen:
            self.seen.add(kind)
            await asyncio.sleep(self.COLD)
        async for token in super()._generate(prompt, sampling, request):
            yield token


async def test_the_bound_is_timed_warm_not_on_the_first_cold_question() -> None:
    found: dict[str, Any] = await measure_many("fanout", ColdLLM(), Search(), ["Which is older?"])
    assert found["bound_s"] == pytest.approx(3 * DELAY, abs=0.1)  # no cold step counted
    assert found["bound_s"] <= found["direct_s"] + 0.1
