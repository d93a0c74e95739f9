"""A record's offset is done once every output it produced is acknowledged.

Not waiting for acknowledgements while a record is handled lets the producer
batch many records' outputs per request; the offset still moves only past
records whose outputs are durable. Records share their batch's
acknowledgement, so each acknowledgement gets one callback that settles all of
its records.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from alto_stream.ancestry import Ancestry
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.transport import InRecord

__all__ = ["SOURCE", "Acknowledgements", "Source", "Waiting"]


@dataclass(slots=True)
class Source:
    """The input record a task handles: its offset and its outputs' acknowledgements."""

    offset: int | None  # None: writes of no one record (time-outs)
    acks: list[asyncio.Future[Any]] = field(default_factory=list)
    admitted_ms: int | None = None  # when admission let its query in (the first stage)


SOURCE: contextvars.ContextVar[Source | None] = contextvars.ContextVar("alto_record", default=None)
"""The input record being handled (each task has its own context; inline ones reset it)."""


@dataclass(slots=True)
class Waiting:
    """A record whose offset is done once ``left`` more acknowledgements arrive.

    ``record`` and ``ancestry`` say which record it is, so that an output the
    broker refuses can fail its record (dead letter + marker) instead.
    """

    book: OffsetBook
    offset: int
    left: int
    record: InRecord | None = None
    ancestry: Ancestry | None = None
    failed: bool = False


class Acknowledgements:
    """Marks offsets done as their outputs' acknowledgements arrive.

    ``on_failure`` gets an acknowledgement that failed or was cancelled, with
    the records that waited for it, and returns those whose outputs were not
    written (their offsets must not move on this account; it decides what
    happens to them); the others count as acknowledged.
    """

    def __init__(
        self, on_failure: Callable[[asyncio.Future[Any], list[Waiting]], list[Waiting]]
    ) -> None:
        self._on_failure = on_failure
        # Acknowledgements awaited, each with the records that wait for it.
        self._waiting: dict[asyncio.Future[Any], list[Waiting]] = {}

    def done_when_acked(
        self,
        offset: int,
        book: OffsetBook,
        acks: list[asyncio.Future[Any]],
        record: InRecord | None = None,
        ancestry: Ancestry | None = None,
    ) -> None:
        """Mark ``offset`` done in ``book`` once every one of ``acks`` succeeded."""
        if len(acks) == 1:  # the common case: one output (a map)
            ack = acks[0]
            if ack.done():
                if not self._failed_now(ack, Waiting(book, offset, 1, record, ancestry)):
                    book.done(offset)
                return
            self._wait_for(ack, Waiting(book, offset, 1, record, ancestry))
            return
        pending = set()
        for ack in acks:
            if not ack.done():
                pending.add(ack)
            elif self._failed_now(ack, Waiting(book, offset, 1, record, ancestry)):
                return
        if not pending:
            book.done(offset)
            return
        entry = Waiting(book, offset, len(pending), record, ancestry)
        for ack in pending:
            self._wait_for(ack, entry)

    async def settle(self, books: Iterable[OffsetBook], timeout: float) -> None:
        """Wait (``timeout`` seconds at most) for what the records of ``books`` wait for."""
        wanted = {id(book) for book in books}
        acks = [
            ack
            for ack, entries in self._waiting.items()
            if any(id(entry.book) in wanted for entry in entries)
        ]
        if acks:
            await asyncio.wait(acks, timeout=timeout)

    def _failed_now(self, ack: asyncio.Future[Any], entry: Waiting) -> bool:
        """For an acknowledgement already settled: True if it failed ``entry``'s record."""
        if not ack.cancelled() and ack.exception() is None:
            return False
        return bool(self._on_failure(ack, [entry]))

    def _wait_for(self, ack: asyncio.Future[Any], entry: Waiting) -> None:
        waiting = self._waiting.get(ack)
        if waiting is None:
            waiting = self._waiting[ack] = []
            ack.add_done_callback(self._acked)
        waiting.append(entry)

    def _acked(self, ack: asyncio.Future[Any]) -> None:
        waiting = self._waiting.pop(ack, [])
        if ack.cancelled() or ack.exception() is not None:
            live = [entry for entry in waiting if not entry.failed]
            for entry in self._on_failure(ack, live) if live else []:
                entry.failed = True  # its other acknowledgements no longer count
            waiting = [entry for entry in live if not entry.failed]
        for entry in waiting:
            entry.left -= 1
            if entry.left == 0 and not entry.failed:
                entry.book.done(entry.offset)
