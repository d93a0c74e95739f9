"""Nested ancestry: the lineage every record carries (pure data, no I/O).

A record's ancestry is the path from the root query to it. The root is a query
with a unique id and an empty path. A split gives its i-th child the parent's
path plus one :class:`Frame` ``(attempt, index)``; a map keeps the path as it is.

Ids are derived, never stored: the root's id is the query id and a child's id is
a hash of its parent's id, the attempt and the index. So a frame's parent is the
record named by the path before it, any replica computes the same id for the
same child (duplicates are recognisable), and re-rooting a path under a new
query id (a replay) gives every descendant a fresh id at once.

>>> root = Ancestry.root("q1", query_time=0.0)
>>> child = root.child(attempt="a", index=0)
>>> child.depth, child.parent_id == root.id
(1, True)
>>> child.ancestor_id(0) == "q1"
True
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from alto_stream.errors import AncestryError

__all__ = [
    "Ancestry",
    "Frame",
    "Kind",
    "child_id",
    "new_attempt",
    "new_query_id",
]


class Kind(enum.Enum):
    """What a record is: data, or one of the payload-less markers."""

    DATA = "DATA"
    END = "END"  # a split finished: the last frame carries the count
    SKIP = "SKIP"  # a filter dropped the record
    ERROR = "ERROR"  # a stage failed on the record (it went to the dead-letter topic)
    TIMEOUT = "TIMEOUT"  # an aggregate gave up waiting for this part of the tree

    @property
    def is_marker(self) -> bool:
        """True for every kind but :attr:`DATA`."""
        return self is not Kind.DATA


_KINDS = {kind.value: kind for kind in Kind}
"""Kinds by their wire name (a dict lookup is cheaper than calling the enum)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One split level: which attempt of the parent made this child, and its index.

    ``count`` is the number of children that attempt made, when the record knows
    it (the last child of a split that knew its size, or an end marker).
    """

    attempt: str
    index: int
    count: int | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise AncestryError(f"frame index must be >= 0, got {self.index}")
        if self.count is not None and self.count < 0:
            raise AncestryError(f"frame count must be >= 0, got {self.count}")

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the frame: the attempt and the index (not the count)."""
        return (self.attempt, self.index)


@functools.lru_cache(maxsize=16384)  # siblings and descendants share their ancestors' ids
def child_id(parent_id: str, attempt: str, index: int) -> str:
    """The deterministic id of the ``index``-th child of ``parent_id`` in ``attempt``."""
    return hashlib.blake2b(
        f"{parent_id}\x1f{attempt}\x1f{index}".encode(), digest_size=10
    ).hexdigest()


def _ids_of(query_id: str, path: tuple[Frame, ...]) -> tuple[str, ...]:
    """The ids along a path: the query id, then each child's (see :func:`child_id`)."""
    if not query_id:
        raise AncestryError("an ancestry needs a non-empty query id")
    ids = [query_id]
    for frame in path:
        ids.append(child_id(ids[-1], frame.attempt, frame.index))
    return tuple(ids)


def new_attempt() -> str:
    """A fresh attempt id, unique per processing of a parent."""
    return os.urandom(6).hex()


def new_query_id() -> str:
    """A fresh query id."""
    return os.urandom(10).hex()


@dataclass(frozen=True)
class Ancestry:
    """Where a record comes from: its root query and the split frames since.

    ``query_time`` is the root's arrival time (seconds since the epoch): it
    travels so that stages can start the oldest query's records first.
    ``replay_of`` names the original query when this tree is a replay.
    ``reason`` explains a skip, error or timeout marker.
    """

    query_id: str
    query_time: float
    path: tuple[Frame, ...] = ()
    kind: Kind = Kind.DATA
    reason: str | None = None
    replay_of: str | None = None
    _ids: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    """The header bytes this ancestry was read from, if it was (see :meth:`read_from`).

    A map's output carries its input's very ancestry, so writing it costs nothing.
    Derived ancestries (children, markers, prefixes) start without it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", _ids_of(self.query_id, self.path))

    # -- construction -------------------------------------------------------

    @classmethod
    def root(cls, query_id: str | None = None, *, query_time: float | None = None) -> Ancestry:
        """The ancestry of a new query (a fresh id and the current time by default)."""
        return cls(
            query_id=query_id or new_query_id(),
            query_time=time.time() if query_time is None else query_time,
        )

    def child(self, attempt: str, index: int, count: int | None = None) -> Ancestry:
        """The ancestry of this record's ``index``-th child in ``attempt`` (a data record)."""
        self._require_data("split")
        return replace(
            self, path=(*self.path, Frame(attempt, index, count)), kind=Kind.DATA, reason=None
        )

    def end_marker(self, attempt: str, count: int) -> Ancestry:
        """The end marker of a split of this record into ``count`` children.

        Its last frame has ``index == count`` (one past the last child) and the count.
        """
        self._require_data("end a split of")
        return replace(
            self, path=(*self.path, Frame(attempt, count, count)), kind=Kind.END, reason=None
        )

    def marker(self, kind: Kind, reason: str) -> Ancestry:
        """This record turned into a skip, error or timeout marker (same path)."""
        if kind not in (Kind.SKIP, Kind.ERROR, Kind.TIMEOUT):
            raise AncestryError(f"marker() takes SKIP, ERROR or TIMEOUT, not {kind.name}")
        return replace(self, kind=kind, reason=reason)

    def with_last_count(self, count: int) -> Ancestry:
        """The same record, telling on its last frame that its split made ``count`` children."""
        if not self.path:
            raise AncestryError("a root query has no frame to carry a count")
        last = self.path[-1]
        return replace(self, path=(*self.path[:-1], replace(last, count=count)))

    def rerooted(self, query_id: str, *, query_time: float | None = None) -> Ancestry:
        """The same path under another root (a replay): every id changes."""
        return replace(
            self,
            query_id=query_id,
            query_time=time.time() if query_time is None else query_time,
            replay_of=self.replay_of or self.query_id,
        )

    def prefix(self, depth: int) -> Ancestry:
        """The ancestry of this record's ancestor at ``depth`` (a data record)."""
        self._check_depth(depth)
        return replace(self, path=self.path[:depth], kind=Kind.DATA, reason=None)

    # -- identity -----------------------------------------------------------

    @property
    def depth(self) -> int:
        """How many splits lie between the root and this record."""
        return len(self.path)

    @property
    def id(self) -> str:
        """This record's id (the query id for the root)."""
        return self._ids[-1]

    @property
    def parent_id(self) -> str | None:
        """The id of the record this one was split from, or None for the root."""
        return self._ids[-2] if len(self._ids) > 1 else None

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids along the path: the query id first, this record's id last."""
        return self._ids

    def ancestor_id(self, depth: int) -> str:
        """The id of this record's ancestor at ``depth`` (0 is the query)."""
        self._check_depth(depth)
        return self._ids[depth]

    def routing_key(self, depth: int) -> bytes:
        """The Kafka key that sends this record to the aggregator of its ``depth`` ancestor.

        Records shallower than ``depth`` (markers about an ancestor itself) use
        their own id: they only pass through that aggregator.
        """
        return self._ids[min(depth, self.depth)].encode()

    @property
    def index(self) -> tuple[int, ...]:
        """The record's position: one index per split level."""
        return tuple(frame.index for frame in self.path)

    # -- wire form ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The Avro form (schema ``alto.Ancestry``)."""
        return {
            "query_id": self.query_id,
            "query_time": self.query_time,
            "path": [{"attempt": f.attempt, "index": f.index, "count": f.count} for f in self.path],
            "kind": self.kind.value,
            "reason": self.reason,
            "replay_of": self.replay_of,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ancestry:
        """Build an ancestry from its Avro form; raises :class:`AncestryError` if malformed."""
        try:
            frames: Iterable[dict[str, Any]] = data["path"]
            return cls.from_fields(
                str(data["query_id"]),
                float(data["query_time"]),
                tuple(Frame(f["attempt"], int(f["index"]), f.get("count")) for f in frames),
                _KINDS.get(data.get("kind", "DATA")) or Kind(data["kind"]),
                data.get("reason"),
                data.get("replay_of"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AncestryError(f"malformed ancestry {data!r}: {exc}") from exc

    @classmethod
    def from_fields(
        cls,
        query_id: str,
        query_time: float,
        path: tuple[Frame, ...],
        kind: Kind,
        reason: str | None,
        replay_of: str | None,
        wire: bytes | None = None,
    ) -> Ancestry:
        """The same as the constructor, faster: for decoders, which run for every record.

        It sets what ``__init__`` and ``__post_init__`` would, without a frozen
        ``__setattr__`` per field; ``wire`` as :meth:`read_from` does.
        """
        ancestry = object.__new__(cls)
        ancestry.__dict__.update(
            query_id=query_id,
            query_time=query_time,
            path=path,
            kind=kind,
            reason=reason,
            replay_of=replay_of,
            _ids=_ids_of(query_id, path),
            wire=wire,
        )
        return ancestry

    def read_from(self, wire: bytes) -> Ancestry:
        """Note that this ancestry was decoded from ``wire`` (its encoding); returns self."""
        object.__setattr__(self, "wire", wire)
        return self

    # -- helpers ------------------------------------------------------------

    def _require_data(self, action: str) -> None:
        if self.kind is not Kind.DATA:
            raise AncestryError(f"cannot {action} a {self.kind.name} marker ({self.id})")

    def _check_depth(self, depth: int) -> None:
        if not 0 <= depth <= self.depth:
            raise AncestryError(
                f"depth {depth} is outside this record's path (0..{self.depth}) for {self.id}"
            )
