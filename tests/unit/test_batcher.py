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
