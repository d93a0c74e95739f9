"""The batch stage's micro-batches: the size and wait bounds, and no wait when nothing is coming."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from alto_stream import App
from alto_stream.runtime.stages import Batcher


def _stage(size: int, wait: float) -> Any:
    app = App("batcher", input_schema="alto.Text")

    @app.batch(source=app.input, schema="alto.Text", size=size, wait=wait)
    async def echo(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return values

    return app.stages["echo"]


class Calls:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, values: list[int]) -> list[int]:
        self.batches.append(list(values))
        return [v * 10 for v in values]


@contextlib.asynccontextmanager
async def batching(
    size: int, wait: float, settled: Callable[[], bool] | None
) -> AsyncIterator[tuple[Batcher, Calls]]:
    """A batcher of a stage of ``size`` and ``wait`` over recorded calls, stopped after."""
    calls = Calls()
    batcher = Batcher(_stage(size, wait), calls, settled)
    try:
        yield batcher, calls
    finally:
        await batcher.stop()


async def test_a_lone_record_goes_at_once_when_the_worker_holds_no_other() -> None:
    async with batching(32, 30.0, lambda: True) as (batcher, calls):
        # Before, the record waited out the stage's 30 s for others.
        assert await asyncio.wait_for(batcher.submit(1), 5.0) == 10
        assert calls.batches == [[1]]


async def test_records_handed_over_together_still_share_one_batch() -> None:
    async with batching(32, 30.0, lambda: True) as (batcher, calls):
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(i) for i in range(5))), 5.0
        )
        assert results == [0, 10, 20, 30, 40]
        assert calls.batches == [[0, 1, 2, 3, 4]]


async def test_while_records_wait_for_a_runner_the_batch_waits_for_them() -> None:
    pending = [True]  # the worker still holds a record that is on its way
    async with batching(32, 30.0, lambda: not pending[0]) as (batcher, calls):
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
        assert not first.done() and calls.batches == []
        pending[0] = False
        second = batcher.submit(2)
        assert await asyncio.wait_for(asyncio.gather(first, second), 5.0) == [10, 20]
        assert calls.batches == [[1, 2]]


async def test_without_a_settled_signal_the_wait_bound_holds() -> None:
    async with batching(32, 0.2, None) as (batcher, calls):
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
        second = batcher.submit(2)
        assert await asyncio.wait_for(asyncio.gather(first, second), 5.0) == [10, 20]
        assert calls.batches == [[1, 2]]


async def test_a_full_batch_goes_without_waiting() -> None:
    async with batching(3, 30.0, lambda: False) as (batcher, calls):
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(i) for i in range(6))), 5.0
        )
        assert results == [0, 10, 20, 30, 40, 50]
        assert calls.batches == [[0, 1, 2], [3, 4, 5]]


class Picky:
    """A batch handler that raises when any value is negative (one query's bad record)."""

    def __init__(self, error: type[Exception] = ValueError) -> None:
        self.batches: list[list[int]] = []
        self.error = error

    async def __call__(self, values: list[int]) -> list[int]:
        self.batches.append(list(values))
        if any(v < 0 for v in values):
            raise self.error(f"negative in {values}")
        return [v * 10 for v in values]


async def test_a_failing_batch_fails_only_the_records_that_fail_alone() -> None:
    # Found by a new user: a batch handler that raised on one query's word failed the
    # words of every query in its micro-batch (11 queries dead-lettered for 4 bad).
    calls = Picky()
    batcher = Batcher(_stage(8, 30.0), calls, lambda: True)
    try:
        values = [1, 2, -3, 4, 5, 6, -7, 8]
        got = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(v) for v in values), return_exceptions=True), 5.0
        )
    finally:
        await batcher.stop()
    assert [g if not isinstance(g, Exception) else "failed" for g in got] == [
        10, 20, "failed", 40, 50, 60, "failed", 80
    ]  # fmt: skip
    assert str(got[2]) == "negative in [-3]" and str(got[6]) == "negative in [-7]"
    assert calls.batches[0] == values and len(calls.batches) <= 15


async def test_an_error_that_says_nothing_of_the_values_fails_the_batch_once() -> None:
    # A time-out (a server down) would fail every half too, each after its own wait.
    calls = Picky(TimeoutError)
    batcher = Batcher(_stage(4, 30.0), calls, lambda: True)
    try:
        got = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(v) for v in [1, -2, 3, 4]), return_exceptions=True),
            5.0,
        )
    finally:
        await batcher.stop()
    assert all(isinstance(g, TimeoutError) for g in got)
    assert len(calls.batches) == 1
