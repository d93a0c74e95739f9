"""A record's offset is done once every output it produced is acknowledged.

Not waiting for acknowledgements while a record is handled lets the producer
batch many records' outputs per request; the offset still moves only past
records whose outputs are durable. Records share their batch's
acknowledgement, so each acknowledgement gets one callback that settles all of
its records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alto_stream.runtime.offsets import OffsetBook

__all__ = ["Acknowledgements"]


@dataclass(slots=True)
class _Waiting:
    """A record whose offset is done once ``left`` more acknowledgements arrive."""

    book: OffsetBook
    offset: int
    left: int


class Acknowledgements:
    """Marks offsets done as their outputs' acknowledgements arrive.

    ``on_failure`` gets an acknowledgement that failed or was cancelled: the
    record's output was not written, so its offset must never move.
    """

    def __init__(self, on_failure: Callable[[asyncio.Future[Any]], None]) -> None:
        self._on_failure = on_failure
        # Acknowledgements awaited, each with the records that wait for it.
        self._waiting: dict[asyncio.Future[Any], list[_Waiting]] = {}

    def done_when_acked(
        self, offset: int, book: OffsetBook, acks: list[asyncio.Future[Any]]
    ) -> None:
        """Mark ``offset`` done in ``book`` once every one of ``acks`` succeeded."""
        if len(acks) == 1:  # the common case: one output (a map)
            ack = acks[0]
            if ack.done():
                if ack.cancelled() or ack.exception() is not None:
                    self._on_failure(ack)
                else:
                    book.done(offset)
                return
            self._wait_for(ack, _Waiting(book, offset, 1))
            return
        pending = set()
        for ack in acks:
            if not ack.done():
                pending.add(ack)
            elif ack.cancelled() or ack.exception() is not None:
                self._on_failure(ack)
                return
        if not pending:
            book.done(offset)
            return
        entry = _Waiting(book, offset, len(pending))
        for ack in pending:
            self._wait_for(ack, entry)

    def _wait_for(self, ack: asyncio.Future[Any], entry: _Waiting) -> None:
        waiting = self._waiting.get(ack)
        if waiting is None:
            waiting = self._waiting[ack] = []
            ack.add_done_callback(self._acked)
        waiting.append(entry)

    def _acked(self, ack: asyncio.Future[Any]) -> None:
        waiting = self._waiting.pop(ack, [])
        if ack.cancelled() or ack.exception() is not None:
            self._on_failure(ack)
            return
        for entry in waiting:
            entry.left -= 1
            if entry.left == 0:
                entry.book.done(entry.offset)
