"""Run every stage of an app as tasks in this process (tests, demos, notebooks).

In production each stage runs as its own worker processes (``alto-stream worker``
and ``alto-stream up``); here the same :class:`~alto_stream.runtime.worker.Worker`
objects run side by side on one event loop, over Kafka or in memory.

>>> # results = asyncio.run(run_in_memory(app, [{"text": "a b"}]))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from alto_stream.app import App
from alto_stream.client import Client, Result
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import Transport

__all__ = ["LocalRun", "run_in_memory"]


class LocalRun:
    """Starts ``replicas`` workers per stage as tasks; stops them on exit."""

    def __init__(
        self,
        app: App,
        transport: Transport,
        *,
        replicas: int | Mapping[str, int] = 1,
        options: WorkerOptions | None = None,
    ) -> None:
        self.app = app
        self.transport = transport
        self.options = options
        topology = app.topology()
        counts = (
            dict.fromkeys(topology.stages, replicas)
            if isinstance(replicas, int)
            else {name: replicas.get(name, 1) for name in topology.stages}
        )
        self.workers = [
            Worker(app, name, transport, options) for name, n in counts.items() for _ in range(n)
        ]
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> LocalRun:
        self._tasks = [
            asyncio.create_task(worker.run(), name=f"worker-{worker.plan.name}-{i}")
            for i, worker in enumerate(self.workers)
        ]
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for worker in self.workers:
            worker.stop()
        done, pending = await asyncio.wait(self._tasks, timeout=15.0)
        for task in pending:
            task.cancel()
        for task in done:
            with contextlib.suppress(asyncio.CancelledError):
                failure = task.exception()
                if failure is not None and exc is None:
                    raise failure

    def client(self) -> Client:
        """A client for this app over the same transport."""
        return Client(self.app, self.transport)


async def run_in_memory(
    app: App,
    queries: list[dict[str, Any]],
    *,
    timeout: float = 30.0,
    partitions: int = 4,
    replicas: int | Mapping[str, int] = 1,
) -> list[Result]:
    """Run ``app`` in memory on ``queries``; returns the final results in query order."""
    transport = MemoryTransport(partitions)
    async with LocalRun(app, transport, replicas=replicas), Client(app, transport) as client:
        since = 0.0
        ids = await client.push_many(queries)
        finals: dict[str, Result] = {}
        async for result in client.follow(ids, timeout=timeout, since=since, partials=False):
            finals[result.query_id] = result
    return [finals[query_id] for query_id in ids]
