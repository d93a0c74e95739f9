"""What fan-in hands out: a tracker's answer to one record, and the ancestors it completes.

:meth:`~alto_stream.aggregate.Tracker.add` answers an :class:`AddResult` (its
:class:`Outcome`, and the :class:`Completed` ancestor it fired, if any); a
completed ancestor holds its leaves as :class:`Child` objects, in index order,
which an aggregate handler receives, with an :class:`AggregateContext` beside
them if it asks. Pure data; the tracker is in :mod:`alto_stream.aggregate`,
and every name here is importable from there too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from alto_stream.ancestry import Ancestry, Kind

__all__ = ["AddResult", "AggregateContext", "Child", "Completed", "Outcome"]


class Outcome(enum.Enum):
    """What :meth:`Tracker.add` did with a record."""

    ACCEPTED = "accepted"  # it changed its ancestor's state (and may have completed it)
    DUPLICATE = "duplicate"  # seen before (redelivery, or a marker racing data): no effect
    STALE = "stale"  # its ancestor has fired already: drop it
    FORWARD = "forward"  # above the ancestor, or the ancestor's own marker (ends it): pass on


@dataclass(frozen=True)
class Child:
    """One leaf of a reassembled ancestor: a data record or a marker standing for one.

    ``index`` is the position under the ancestor, one int per split level below
    it; it is shorter when a whole sub-tree was skipped, failed or timed out.
    """

    index: tuple[int, ...]
    kind: Kind
    value: Any
    ancestry: Ancestry
    span: int = 1
    """How many consecutive indices it stands for: more than 1 only for a TIMEOUT
    marker in place of a run of missing siblings (``index`` is the run's first)."""

    @property
    def ok(self) -> bool:
        """True for a data record, False for a skip, error or timeout marker."""
        return self.kind is Kind.DATA

    @property
    def reason(self) -> str | None:
        """Why a marker stands here (None for data)."""
        return self.ancestry.reason

    @property
    def attempts(self) -> tuple[str, ...]:
        """The attempt of each split level below the ancestor (one per ``index`` entry)."""
        path = self.ancestry.path
        return tuple(frame.attempt for frame in path[len(path) - len(self.index) :])

    @property
    def attempt(self) -> str:
        """The attempt of the closed split that made this child (the same for all siblings)."""
        return self.attempts[0]


@dataclass(frozen=True)
class AggregateContext:
    """What an aggregate handler may get beside its children: which ancestor, what was split.

    ``value`` is the value the closed split received (its schema in
    ``schema``), carried by the split's end marker; None when the ancestor
    timed out before that end marker came, or when the split did not send it
    (records written before its aggregate asked for a context).
    """

    ancestor: Ancestry
    value: dict[str, Any] | None
    schema: str | None
    attempt: str | None
    timed_out: bool = False

    @property
    def ancestor_id(self) -> str:
        """The id of the ancestor reassembled (the record that was split)."""
        return self.ancestor.id

    @property
    def query_id(self) -> str:
        """The id of the query (the root) this ancestor belongs to."""
        return self.ancestor.query_id


@dataclass(frozen=True)
class Completed:
    """An ancestor whose sub-tree is accounted for, with its leaves in index order.

    ``attempt`` is the closed split's attempt whose children these are, and
    ``context`` the value given with that attempt's end marker (None if none).
    """

    ancestor: Ancestry
    children: tuple[Child, ...]
    timed_out: bool = False
    attempt: str | None = field(default=None, compare=False)
    context: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class AddResult:
    """The outcome of one :meth:`Tracker.add`.

    ``completed``: the ancestor it fired, if any. ``ancestor_id``: the ancestor the
    record counts at (for FORWARD: set only when the record was the ancestor's own
    marker, which ended it; None for records above the ancestor).
    """

    outcome: Outcome
    completed: Completed | None = None
    ancestor_id: str | None = None
