"""Run every stage of an app as tasks in this process (tests, demos, notebooks).

In production each stage runs as its own worker processes (``alto-stream worker``
and ``alto-stream up``); here the same :class:`~alto_stream.runtime.worker.Worker`
objects run side by side on one event loop, over Kafka or in memory.

>>> # results = asyncio.run(run_in_memory(app, [{"text": "a b"}]))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from alto_stream.app import App
from alto_stream.app_checks import seconds, whole
from alto_stream.client import Client, Result
from alto_stream.errors import ConfigError
from alto_stream.query_checks import query_values
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import Transport

__all__ = ["LocalRun", "run_in_memory"]


class LocalRun:
    """Starts ``replicas`` workers per stage as tasks; stops them on exit.

    Leaving the ``async with`` normally lets records in flight finish (up to the
    workers' ``shutdown_timeout``); leaving it with an exception (a time-out, a
    failed assertion) cuts them short at once, as a second stop signal does: never
    done, so never committed, and run again by the next run over the same topics.
    """

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
        counts = _replica_counts(list(topology.stages), replicas)
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
            worker.stop(now=exc is not None)
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


def _replica_counts(stages: list[str], replicas: int | Mapping[str, int]) -> dict[str, int]:
    """Workers per stage: ``replicas`` for each, or by name (1 for those not named)."""
    if not isinstance(replicas, Mapping):
        return dict.fromkeys(stages, whole("replicas", replicas, 1))
    unknown = sorted(set(replicas) - set(stages))
    if unknown:
        raise ConfigError(
            f"replicas names {', '.join(map(repr, unknown))}, not a stage of the app "
            f"(its stages: {', '.join(stages)})"
        )
    # 0 for a stage: none here (its workers run elsewhere, as processes, say)
    return {name: whole(f"replicas[{name!r}]", replicas.get(name, 1), 0) for name in stages}


async def run_in_memory(
    app: App,
    queries: Sequence[Mapping[str, Any]],
    *,
    timeout: float = 30.0,
    partitions: int = 4,
    replicas: int | Mapping[str, int] = 1,
) -> list[Result]:
    """Run ``app`` in memory on ``queries``; returns the final results in query order.

    ``timeout``: seconds to wait for every final (pushing included), else
    :class:`TimeoutError` naming the queries that did not finish; the records still
    running are then cut short at once (see :class:`LocalRun`).
    """
    queries = query_values(queries, "run_in_memory")
    seconds("run_in_memory: timeout", timeout, positive=True)
    transport = MemoryTransport(whole("run_in_memory: partitions", partitions, 1))
    async with LocalRun(app, transport, replicas=replicas), Client(app, transport) as client:
        try:  # reading from the start (since=0), the results of every query pushed are seen
            finals = await client.run(queries, timeout=timeout)
        except TimeoutError as exc:
            raise TimeoutError(
                f"{exc}; fix: give slow stages longer with run_in_memory(..., timeout=SECONDS) "
                f"({timeout:g} s now), or see the stages' logs for records that never end"
            ) from None
    return list(finals.values())
