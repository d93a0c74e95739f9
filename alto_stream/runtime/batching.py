"""How a batch stage's records become micro-batches, and a failing batch its failing records.

A :class:`Batcher` gathers the records a worker runs of a batch stage into
calls of its handler on lists of values, bounded by the stage's ``batch_size``
and ``batch_wait``, and hands each record its own result. When the handler
raises over some of the values, it finds which by running halves again, so that
one query's bad record does not fail the other queries' records. The
:class:`~alto_stream.runtime.stages.Processor` of a batch stage owns one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from alto_stream.app import Stage
from alto_stream.errors import StageError

__all__ = ["Batcher"]


class Batcher:
    """Gathers records of a batch stage into micro-batches (size and wait bounds).

    ``settled``, when given, says whether the worker holds no other record that
    could still join the batch: then the batch goes at once rather than waiting
    out ``batch_wait`` for records that are not coming (a lone query at low load).
    """

    def __init__(
        self,
        stage: Stage,
        call: Callable[[list[Any]], Awaitable[list[Any]]],
        settled: Callable[[], bool] | None = None,
    ) -> None:
        self._stage = stage
        self._call = call
        self._settled = settled
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, value: Any) -> Any:
        """Queue ``value`` for the next batch and wait for its result."""
        if self._task is None:
            # A context of its own: one call serves many records, none of them current.
            self._task = asyncio.create_task(
                self._loop(), name=f"batcher-{self._stage.name}", context=contextvars.Context()
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((value, future))
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        size = self._stage.batch_size
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            deadline = loop.time() + self._stage.batch_wait
            settled = self._settled
            while len(self._queue) < size and (left := deadline - loop.time()) > 0:
                if settled is not None:
                    await asyncio.sleep(0)  # records just handed to runners reach submit() first
                    if len(self._queue) >= size or settled():
                        break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            batch, self._queue = self._queue[:size], self._queue[size:]
            await self._run(batch)

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        """Call the handler on ``batch``; when it raises over one record's value, find it.

        A handler that raises fails every record it was given: one query's bad
        record failed the other queries' records of its micro-batch (11 queries
        dead-lettered for 4 bad ones). So a batch of several that raises is run
        again in halves, down to the records that fail alone, which fail; the
        others get their results. Not for an error that says nothing of the values
        (a time-out, a retriable error, a wrong number of results): a server that
        is down fails every half too, each after its own wait.
        """
        values = [value for value, _ in batch]
        try:
            results = _batch_results(self._stage.name, await self._call(values))
            if len(results) != len(values):
                raise StageError(
                    f"batch stage {self._stage.name!r} returned {len(results)} results for "
                    f"{len(values)} records: return exactly one result per record, in order",
                    stage=self._stage.name,
                )
        except Exception as exc:
            if len(batch) > 1 and _about_the_values(exc):
                half = len(batch) // 2
                await self._run(batch[:half])
                await self._run(batch[half:])
            else:  # every record of the batch fails with the batch
                self._fail(batch, exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    @staticmethod
    def _fail(batch: list[tuple[Any, asyncio.Future[Any]]], exc: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def stop(self) -> None:
        """Cancel the batching loop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _about_the_values(exc: Exception) -> bool:
    """Whether a batch's error may come from some of its values (worth finding which)."""
    if isinstance(exc, StageError | TimeoutError):  # ours (RetriableError too), or time
        return False
    return not getattr(exc, "retriable", False)


def _batch_results(stage: str, results: Any) -> list[Any] | tuple[Any, ...]:
    """A batch handler's results as a list: a list or tuple as is, an iterator listed.

    Anything else (a dict, whose keys would be counted) is a :class:`StageError`.
    """
    if isinstance(results, list | tuple):
        return results
    if isinstance(results, Iterator):
        return list(results)
    raise StageError(
        f"batch stage {stage!r} must return a list (one result per record, in order), "
        f"got {type(results).__name__}",
        stage=stage,
    )
