"""A priority gate in front of an in-process model: the oldest query's call goes next.

An in-process model (llama.cpp) generates one text at a time. With a plain
lock its waiting calls would go in order of arrival, so a young query's
calls, made while an old query's fragments were still on their way, would
delay the old query. Every stage of a process that calls the same model
shares one instance and so one gate: the waiting call of the oldest query
(the lowest priority value, the query's arrival time) goes next, whichever
stage made it; calls without a priority go after those with one, and ties in
order of arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
from collections.abc import AsyncIterator

__all__ = ["PriorityGate"]


class PriorityGate:
    """Lets ``slots`` holders in at once; the others wait, lowest priority value first.

    >>> gate = PriorityGate()
    >>> async def call(priority: int) -> None:
    ...     async with gate.turn(priority):
    ...         ...  # the model's work
    """

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, got {slots}")
        self.slots = slots
        self._holders = 0
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return sum(1 for _, _, future in self._waiting if not future.done())

    @contextlib.asynccontextmanager
    async def turn(self, priority: float | None) -> AsyncIterator[None]:
        """Wait for a slot (lowest ``priority`` first; None: after every prioritised call)."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    @property
    def holders(self) -> int:
        """Calls holding a slot now."""
        return self._holders

    async def acquire(self, priority: float | None) -> None:
        """Wait for a slot (as :meth:`turn`); the caller must :meth:`release` it once."""
        rank = math.inf if priority is None else float(priority)
        if self._holders < self.slots and not self.waiting:
            self._holders += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as it was cancelled: hand the slot on
            else:
                future.cancel()
            raise

    def release(self) -> None:
        """Give a slot back: the waiting call with the lowest priority value gets it."""
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next holder
                return
        self._holders -= 1
