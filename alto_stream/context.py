"""The record a stage handler is working on, for code that needs it (LLM request ids, priority).

The worker binds each input record's ancestry around its handler call (a
context variable: each record's task sees its own), so that a handler, or a
component it calls, can ask for the query's arrival time or the record's id
without threading them through every call::

    from alto_stream.context import current_record

    record = current_record()
    if record is not None:
        priority = record.query_time  # the oldest query first

Outside a handler, and inside a batch stage's handler (one call serves many
records), :func:`current_record` returns None.

``priority`` says whether the app asked that calls to serving engines carry
the query's priority (``App(priority=True)``): a backend that can send one but
does not by default (the openai backend) sends it then.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from alto_stream.ancestry import Ancestry

__all__ = ["RecordContext", "bind_record", "current_record", "unbind_record"]

_CURRENT: contextvars.ContextVar[tuple[Ancestry, bool] | None] = contextvars.ContextVar(
    "alto_current_record", default=None
)


@dataclass(frozen=True, slots=True)
class RecordContext:
    """What a handler may know about its input record."""

    ancestry: Ancestry
    priority: bool = False
    """True when the app asks that model calls carry the query's priority."""

    @property
    def query_id(self) -> str:
        """The id of the query the record belongs to."""
        return self.ancestry.query_id

    @property
    def query_time(self) -> float:
        """The query's arrival time, seconds since the epoch."""
        return self.ancestry.query_time

    @property
    def record_id(self) -> str:
        """The record's id: unique per record, the same for a redelivered duplicate."""
        return self.ancestry.id


def current_record() -> RecordContext | None:
    """The record the running handler works on, or None outside a per-record handler."""
    current = _CURRENT.get()
    return None if current is None else RecordContext(*current)


def bind_record(
    ancestry: Ancestry | None, *, priority: bool = False
) -> contextvars.Token[tuple[Ancestry, bool] | None]:
    """Make ``ancestry`` the current record (the runtime calls it around each handler call).

    ``priority``: the app asks that model calls carry the query's priority.
    """
    return _CURRENT.set(None if ancestry is None else (ancestry, priority))


def unbind_record(token: contextvars.Token[tuple[Ancestry, bool] | None]) -> None:
    """Undo :func:`bind_record`."""
    _CURRENT.reset(token)
