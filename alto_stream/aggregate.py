"""Fan-in: know when the whole sub-tree under an ancestor has arrived (pure, no I/O).

An aggregate stage closes one split level. Its :class:`Tracker` groups the
records it receives by the ancestor they descend from (the path prefix at
``depth``) and fires that ancestor exactly once, when one attempt of it is
complete: every child of a known count is done, where a child is done when it
is a data leaf, a skip/error/timeout marker, or itself a complete split
(completeness is recursive over the splits between ``depth`` and
``leaf_depth``). Counts come from end markers and from frames that carry one.

Children of different attempts (re-runs of a split) are kept apart and never
mixed: each inner node takes the first of its attempts that completes. A fired
ancestor is remembered, so late and redelivered fragments are dropped. A
SKIP, ERROR or TIMEOUT marker about the ancestor itself (its split failed, or
never ran) ends it without a result of the handler: the marker passes on as its
result, once, and its children are dropped. The
value given with the end marker of the closed split (its context) is kept per
attempt, and :attr:`Completed.context` is the one of the attempt that won.

What a tracker hands out (:class:`Outcome`, :class:`AddResult`,
:class:`Completed`, :class:`Child`, :class:`AggregateContext`) is in
:mod:`alto_stream.aggregate_results`; every name stays importable from here.

>>> root = Ancestry.root("q", query_time=0.0)
>>> tracker = Tracker(depth=0, leaf_depth=1)
>>> tracker.add(root.child("a", 1), "world").outcome.name
'ACCEPTED'
>>> tracker.add(root.child("a", 0), "hello").completed is None
True
>>> done = tracker.add(root.end_marker("a", 2)).completed
>>> [child.value for child in done.children], tracker.is_fired("q")
(['hello', 'world'], True)
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

from alto_stream.aggregate_results import AddResult, AggregateContext, Child, Completed, Outcome
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.errors import AncestryError, ConfigError, CountConflictError

__all__ = [
    "DEFAULT_MAX_COUNT",
    "AddResult",
    "AggregateContext",
    "Child",
    "Completed",
    "Outcome",
    "Tracker",
]

DEFAULT_MAX_COUNT = 100_000
"""The most children a split may claim by default (a count, or an index past it)."""


class _Attempt:
    """The children one attempt made of a node, and how many of them are done."""

    __slots__ = ("children", "context", "count", "done", "ended", "top")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.count: int | None = None
        self.done = 0  # children that are complete (all have index < count)
        self.ended = False  # its end marker arrived
        self.top = -1  # highest child index seen (to check a late count)
        self.context: Any = None  # the value given with its end marker (closed level only)


class _Node:
    """A record's place in the tree under an ancestor."""

    __slots__ = ("attempts", "leaf", "result")

    def __init__(self) -> None:
        self.attempts: dict[str, _Attempt] = {}
        self.leaf: Child | None = None  # the record with this node's own path, if any
        self.result: Child | _Attempt | None = None  # what completed it first


class _Group:
    """Partial state of one pending ancestor."""

    __slots__ = ("prefix", "root", "since")

    def __init__(self, prefix: Ancestry, since: float) -> None:
        self.prefix = prefix
        self.root = _Node()
        self.since = since


class Tracker:
    """Completeness tracker for the ancestors at ``depth`` of records at ``leaf_depth``.

    ``depth`` is the path length of the ancestors reassembled (0 = the root
    query); ``leaf_depth`` (> ``depth``) is the path length of the data records
    arriving. ``add`` costs O(leaf_depth - depth); memory follows the pending
    records plus one entry per fired ancestor, kept ``fired_retention`` seconds.
    A record claiming a split of more than ``max_count`` children (a count or an
    index above it) is refused: time-outs cost what arrived, never what a
    record claims, and an absurd claim is an error, not a wait.
    """

    def __init__(
        self,
        depth: int,
        leaf_depth: int,
        *,
        fired_retention: float = 7 * 24 * 3600.0,
        max_count: int = DEFAULT_MAX_COUNT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= depth < leaf_depth:
            raise ConfigError(
                f"a tracker needs 0 <= depth < leaf_depth, got depth={depth}, "
                f"leaf_depth={leaf_depth}: aggregate at a level above the records it receives"
            )
        self.depth = depth
        self.leaf_depth = leaf_depth
        self.fired_retention = fired_retention
        self.max_count = max_count
        self._clock = clock
        self._groups: dict[str, _Group] = {}
        self._fired: dict[str, float] = {}
        self._fired_heap: list[tuple[float, str]] = []

    # -- records ------------------------------------------------------------

    def add(self, ancestry: Ancestry, value: Any = None, *, at: float | None = None) -> AddResult:
        """Take one record (``value`` is kept opaque) and say what it did.

        ``at`` is when it first arrived (default: now), for records restored from
        a changelog. For the end marker of the closed split, ``value`` is kept
        as that attempt's context. Raises :class:`AncestryError` for a record that cannot belong
        here (a data record not at ``leaf_depth``, anything deeper, a bad count).
        """
        if ancestry.depth < self.depth:
            return AddResult(Outcome.FORWARD)
        if ancestry.depth == self.depth and ancestry.kind.is_marker:
            if ancestry.kind is Kind.END:  # the end of the split a level up: not ours
                return AddResult(Outcome.FORWARD)
            return self._ended(ancestry.id)
        self._check_shape(ancestry)
        aid = ancestry.ancestor_id(self.depth)
        if aid in self._fired:
            return AddResult(Outcome.STALE, ancestor_id=aid)
        group = self._groups.get(aid)
        if group is None:
            group = _Group(ancestry.prefix(self.depth), self._clock() if at is None else at)
            self._groups[aid] = group
        else:
            self._check_counts(group.root, ancestry)
        if not self._apply(group.root, ancestry, value):
            return AddResult(Outcome.DUPLICATE, ancestor_id=aid)
        completed = None
        if group.root.result is not None:
            out: list[Child] = []
            _collect(group.root, out)
            name, attempt = _winner(group.root)
            completed = Completed(group.prefix, tuple(out), False, name, attempt.context)
            self.mark_fired(aid)
        return AddResult(Outcome.ACCEPTED, completed, aid)

    def _ended(self, ancestor_id: str) -> AddResult:
        """A marker about the ancestor itself (its split failed, or never ran): it ends it.

        The marker is the ancestor's result, passed on once; the children its split
        made before it failed are dropped with it, and so is whatever comes later
        (a copy of the marker, a child): one result per ancestor. Before, the
        children stayed pending, and with a time-out the ancestor got a second result.
        """
        if ancestor_id in self._fired:
            return AddResult(Outcome.STALE, ancestor_id=ancestor_id)
        self.mark_fired(ancestor_id)
        return AddResult(Outcome.FORWARD, ancestor_id=ancestor_id)

    def _check_shape(self, ancestry: Ancestry) -> None:
        kind, path = ancestry.kind, ancestry.path
        if ancestry.depth > self.leaf_depth:
            raise AncestryError(
                f"expected records of path length <= {self.leaf_depth} for the aggregate of "
                f"depth {self.depth}, got a {kind.name} record of length {ancestry.depth} "
                f"({ancestry.id}): route deeper splits to the aggregate that closes them"
            )
        if kind is Kind.DATA and ancestry.depth != self.leaf_depth:
            raise AncestryError(
                f"expected data records of path length {self.leaf_depth}, got length "
                f"{ancestry.depth} ({ancestry.id}): check which level this aggregate closes"
            )
        for i in range(self.depth, len(path)):
            frame = path[i]
            if frame.index > self.max_count or (frame.count or 0) > self.max_count:
                raise AncestryError(
                    f"frame {i} of {ancestry.id} claims a split of more than the limit of "
                    f"{self.max_count} children (index {frame.index}, count {frame.count}): "
                    "a corrupt or lying record; raise the limit with WorkerOptions.max_children "
                    "(a worker process: ALTO_MAX_CHILDREN) if a split really makes that many"
                )
            if kind is Kind.END and i == len(path) - 1:
                if frame.count is None or frame.index != frame.count:
                    raise AncestryError(
                        f"expected an end marker's last frame to have index == count, got "
                        f"index={frame.index} count={frame.count} ({ancestry.id}): "
                        "build it with Ancestry.end_marker()"
                    )
            elif frame.count is not None and frame.index >= frame.count:
                raise AncestryError(
                    f"frame {i} of {ancestry.id} has index {frame.index} but count "
                    f"{frame.count}: a child's index must be below its split's count"
                )

    def _check_counts(self, node: _Node, ancestry: Ancestry) -> None:
        """Refuse, before any change, a record whose counts or indices contradict the state."""
        path, last = ancestry.path, ancestry.depth - 1
        for i in range(self.depth, len(path)):
            frame = path[i]
            attempt = node.attempts.get(frame.attempt)
            if attempt is None:
                return
            known = attempt.count
            if frame.count is not None and known is not None and frame.count != known:
                raise _conflict(ancestry, i, f"count {frame.count}", f"count {known}")
            if frame.count is not None and known is None and attempt.top >= frame.count:
                raise _conflict(ancestry, i, f"count {frame.count}", f"index {attempt.top}")
            if ancestry.kind is Kind.END and i == last:
                return
            if known is not None and frame.index >= known:
                raise _conflict(ancestry, i, f"index {frame.index}", f"count {known}")
            child = attempt.children.get(frame.index)
            if child is None:
                return
            node = child

    def _apply(self, root: _Node, ancestry: Ancestry, value: Any) -> bool:
        """Record ``ancestry`` under ``root``, propagate completion up; False if nothing changed."""
        path, end = ancestry.path, ancestry.kind is Kind.END
        trail: list[_Attempt] = []
        nodes: list[_Node] = []
        node, changed = root, False
        for i in range(self.depth, len(path)):
            frame = path[i]
            attempt = node.attempts.get(frame.attempt)
            if attempt is None:
                attempt = node.attempts[frame.attempt] = _Attempt()
            if frame.count is not None and attempt.count is None:
                attempt.count, changed = frame.count, True
            trail.append(attempt)
            nodes.append(node)
            if end and i == len(path) - 1:
                changed = changed or not attempt.ended
                attempt.ended = True
                if i == self.depth and attempt.context is None:
                    attempt.context = value
                break
            child = attempt.children.get(frame.index)
            if child is None:
                child = attempt.children[frame.index] = _Node()
                attempt.top = max(attempt.top, frame.index)
            node = child
        newly_done = False
        if not end and node.leaf is None:
            value = None if ancestry.kind.is_marker else value
            node.leaf = Child(ancestry.index[self.depth :], ancestry.kind, value, ancestry)
            changed = True
            if node.result is None:
                node.result, newly_done = node.leaf, True
        for parent, attempt in zip(reversed(nodes), reversed(trail), strict=True):
            if newly_done:
                attempt.done += 1
            newly_done = parent.result is None and attempt.done == attempt.count
            if newly_done:
                parent.result = attempt
        return changed

    # -- fired memory -------------------------------------------------------

    def mark_fired(self, ancestor_id: str, at: float | None = None) -> None:
        """Remember ``ancestor_id`` as fired (at ``at``, default now); drop its partial state."""
        when = self._clock() if at is None else at
        self._groups.pop(ancestor_id, None)
        self._fired[ancestor_id] = when
        heapq.heappush(self._fired_heap, (when, ancestor_id))

    def is_fired(self, ancestor_id: str) -> bool:
        """True once ``ancestor_id`` has fired (until its memory is forgotten)."""
        return ancestor_id in self._fired

    def forget_fired(self) -> list[str]:
        """Forget ancestors that fired more than ``fired_retention`` seconds ago; their ids."""
        cutoff = self._clock() - self.fired_retention
        heap, forgotten = self._fired_heap, []
        while heap and heap[0][0] < cutoff:
            when, aid = heapq.heappop(heap)
            if self._fired.get(aid) == when:  # else re-marked later: a newer entry stands
                del self._fired[aid]
                forgotten.append(aid)
        return forgotten

    # -- time-outs ----------------------------------------------------------

    def expire(self, timeout: float) -> list[Completed]:
        """Fire, as timed out, every ancestor whose first fragment is older than ``timeout``.

        Each gets its best attempt's children (recursively: the attempt with the
        most children done), with a TIMEOUT child for each missing index of a
        known count, or one after the last index seen when the count is unknown.
        A run of missing siblings gets one TIMEOUT child (its ``span`` says how
        many), so the cost follows what arrived, not the count a record claimed.
        """
        now = self._clock()
        reason = f"timed out after {timeout:g} s"
        fired: list[Completed] = []
        for aid, group in list(self._groups.items()):
            if now - group.since > timeout:
                out: list[Child] = []
                self._salvage(group.root, group.prefix, out, reason)
                name, attempt = _winner(group.root)
                fired.append(Completed(group.prefix, tuple(out), True, name, attempt.context))
                self.mark_fired(aid, now)
        return fired

    def _salvage(self, node: _Node, ancestry: Ancestry, out: list[Child], reason: str) -> None:
        if node.result is not None:
            _collect(node, out)
            return
        name, attempt = _best(node)
        size = attempt.top + 2 if attempt.count is None else attempt.count
        expected = 0  # the first index not accounted for yet
        for i in sorted(attempt.children):
            if i >= size:
                break
            if i > expected:
                out.append(self._gap(ancestry.child(name, expected), i - expected, reason))
            self._salvage(attempt.children[i], ancestry.child(name, i), out, reason)
            expected = i + 1
        if size > expected:
            out.append(self._gap(ancestry.child(name, expected), size - expected, reason))

    def _gap(self, first: Ancestry, span: int, reason: str) -> Child:
        """One TIMEOUT child for ``span`` missing siblings from ``first`` on."""
        marker = first.marker(Kind.TIMEOUT, reason)
        return Child(marker.index[self.depth :], Kind.TIMEOUT, None, marker, span)

    # -- introspection ------------------------------------------------------

    def pending(self) -> list[str]:
        """The ids of the ancestors with partial state, oldest first."""
        return list(self._groups)

    def __len__(self) -> int:
        """The number of pending ancestors."""
        return len(self._groups)


def _best(node: _Node) -> tuple[str, _Attempt]:
    """The attempt of an incomplete node that got furthest (most children done, count known)."""
    return max(node.attempts.items(), key=lambda item: (item[1].done, item[1].count is not None))


def _winner(root: _Node) -> tuple[str | None, _Attempt]:
    """The attempt of the closed split that completed ``root`` (else the one that got furthest)."""
    for name, attempt in root.attempts.items():
        if attempt is root.result:
            return name, attempt
    if not root.attempts:
        return None, _Attempt()
    name, best = _best(root)
    if best.context is None:  # the same ancestor whichever attempt: any end marker will do
        best = next((a for a in root.attempts.values() if a.context is not None), best)
    return name, best


def _collect(node: _Node, out: list[Child]) -> None:
    """Append the leaves of a complete node, following each winning attempt, in index order."""
    result = node.result
    if isinstance(result, Child):
        out.append(result)
        return
    assert result is not None, "only complete nodes are collected"
    assert result.count is not None, "a complete attempt knows its count"
    for i in range(result.count):
        _collect(result.children[i], out)


def _conflict(ancestry: Ancestry, level: int, got: str, known: str) -> CountConflictError:
    frame = ancestry.path[level]
    return CountConflictError(
        f"conflicting split sizes for attempt {frame.attempt!r} at level {level} under "
        f"{ancestry.ids[level]}: this record says {got}, an earlier one said {known}; "
        "a split must report one count per attempt (use a new attempt id for a re-run)"
    )
