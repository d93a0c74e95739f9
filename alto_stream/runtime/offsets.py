"""Which offsets may be committed while many records are in flight, and what is done above."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["MAX_METADATA", "CommitPoint", "DoneAbove", "OffsetBook"]

MAX_METADATA = 2_000
"""Characters of commit metadata at most (Kafka's ``offset.metadata.max.bytes``: 4,096)."""

_TAG = "alto1"


@dataclass(frozen=True)
class DoneAbove:
    """What a commit says of the offsets above it: below ``end``, all but ``pending`` are done.

    Records run out of offset order (the oldest query first), so a partition's
    committed offset, its lowest record not done, can have finished records
    above it. The commit's metadata names them (as the records *not* done
    below ``end``, usually few), so that whoever reads on from the offset runs
    only the records not done: none twice after a rebalance, and in the
    transactional mode their outputs commit at once instead of waiting for
    every record below them.
    """

    end: int
    pending: frozenset[int] = frozenset()

    def covers(self, offset: int) -> bool:
        """Whether the record at ``offset`` (at or above the committed one) is done."""
        return offset < self.end and offset not in self.pending

    def encode(self, base: int) -> str:
        """The commit metadata, offsets relative to the committed ``base``."""
        runs = _runs(sorted(o - base for o in self.pending if o > base))
        return f"{_TAG} {self.end - base} {','.join(runs)}".rstrip()

    @classmethod
    def decode(cls, base: int, text: str) -> DoneAbove | None:
        """The inverse of :meth:`encode`; None for metadata of no commit of ours (or garbled)."""
        parts = text.split(" ")
        if len(parts) not in (2, 3) or parts[0] != _TAG:
            return None
        try:
            end = int(parts[1])
            deltas: set[int] = {0}  # the committed offset itself is never done
            for run in parts[2].split(",") if len(parts) == 3 else ():
                first, _, last = run.partition("-")
                deltas.update(range(int(first), int(last or first) + 1))
        except ValueError:
            return None
        if end < 1 or max(deltas) >= end or min(deltas) < 0:
            return None
        return cls(end=base + end, pending=frozenset(base + d for d in deltas))


class CommitPoint(NamedTuple):
    """An offset to commit and what it says of the records above it."""

    offset: int
    done: DoneAbove | None = None

    @property
    def metadata(self) -> str:
        """The commit metadata ("" when nothing above the offset is done)."""
        return self.done.encode(self.offset) if self.done is not None else ""

    def covers(self, offset: int) -> bool:
        """Whether the record at ``offset`` is done by this commit (below it, or named done)."""
        return offset < self.offset or (self.done is not None and self.done.covers(offset))


@dataclass
class OffsetBook:
    """Offsets of one partition: those fetched and not yet done, and what is safe to commit.

    A worker commits an offset only when every record below it is done, with
    the records done above it in the commit's metadata (:class:`DoneAbove`), so
    a crash re-delivers exactly the unfinished records (and, should the
    metadata not hold them all, some finished ones above them, which the
    ancestry makes harmless).
    """

    pending: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: CommitPoint | None = None
    highest_handled: int = -1
    """The highest offset whose record was handled to its end (see ``ReadyQueue.take_holes``)."""
    position_checked: bool = False
    """Whether the consumer's position was compared (see :meth:`skip_to`) since the last
    record was fetched."""
    done_before: DoneAbove | None = None
    """What the partition's last commit (its previous owner's) said was done above it."""

    @classmethod
    def resuming(cls, offset: int | None, metadata: str) -> OffsetBook:
        """The book of a partition taken over at its committed ``offset`` and ``metadata``.

        Reading on from ``offset``: a record below it (fetched from an earlier
        read, handed out late) is not run (see :meth:`fetched_before`).
        """
        if offset is None:
            return cls()
        done = DoneAbove.decode(offset, metadata) if metadata else None
        return cls(next_offset=offset, done_before=done, committed=CommitPoint(offset, done))

    def fetched_before(self, offset: int) -> bool:
        """Whether the record at ``offset`` is below what this book read on from or fetched.

        A consumer hands each record of an assignment out once, in offset order;
        one below is from a read before a seek (a take-over's), handed out late.
        """
        return self.next_offset is not None and offset < self.next_offset

    def skips(self, offset: int) -> bool:
        """Whether the record at ``offset`` was done before this book (by a previous owner)."""
        return self.done_before is not None and self.done_before.covers(offset)

    def fetched(self, offset: int) -> None:
        """Record ``offset`` as fetched and in progress."""
        self.pending.add(offset)
        self.position_checked = False
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def done(self, offset: int) -> None:
        """Record ``offset`` as done."""
        self.pending.discard(offset)

    def skip_to(self, position: int) -> bool:
        """With nothing in progress, move past offsets the consumer skipped (True if it did).

        A topic written in transactions holds a commit marker after each
        transaction's records (one per producer that wrote to the partition):
        the consumer's ``position`` is past them, one past the last record is
        not, and a group committed there shows a lag of the markers for ever.
        """
        if self.pending or (self.next_offset is not None and position <= self.next_offset):
            return False
        self.next_offset = position  # (nothing fetched yet: the position is committed)
        return True

    def safe(self) -> int | None:
        """The offset to commit now (that of :meth:`point`)."""
        point = self.point()
        return None if point is None else point.offset

    def point(self) -> CommitPoint | None:
        """The offset to commit now, with the records done above it (as many as fit).

        The lowest record not done, or one past the last fetched; what the
        previous owner did counts too, so a commit never forgets it.
        """
        not_done, end = self.pending, self.next_offset
        if (before := self.done_before) is not None:
            not_done = {o for o in not_done if not before.covers(o)}
            not_done |= {o for o in before.pending if end is None or o >= end}
            end = before.end if end is None else max(end, before.end)
        if not not_done:
            return CommitPoint(end) if end is not None else None
        assert end is not None
        pending = sorted(not_done)
        base = pending[0]
        if end - base == len(pending):
            return CommitPoint(base)  # nothing done above it
        done = DoneAbove(end=end, pending=frozenset(pending))
        if len(done.encode(base)) > MAX_METADATA:
            done = _fitting(base, pending)
        return CommitPoint(base, done if done.end > base + 1 else None)

    def to_commit(self) -> CommitPoint | None:
        """The commit point if it moved since the last commit, else None."""
        point = self.point()
        if point is None or point == self.committed:
            return None
        return point

    def __len__(self) -> int:
        return len(self.pending)


def _runs(deltas: Iterable[int]) -> list[str]:
    """``[1, 2, 3, 7]`` as ``["1-3", "7"]``."""
    runs: list[list[int]] = []
    for delta in deltas:
        if runs and delta == runs[-1][1] + 1:
            runs[-1][1] = delta
        else:
            runs.append([delta, delta])
    return [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]


def _fitting(base: int, pending: list[int]) -> DoneAbove:
    """The longest prefix of ``pending`` whose metadata fits: the rest count as not done."""

    def cut(n: int) -> DoneAbove:  # the first n records not done; pending[n] and up re-run
        return DoneAbove(end=pending[n], pending=frozenset(pending[:n]))

    low, high = 1, len(pending) - 1  # cut(1) always fits: the tag and one number
    while low < high:
        middle = (low + high + 1) // 2
        if len(cut(middle).encode(base)) <= MAX_METADATA:
            low = middle
        else:
            high = middle - 1
    return cut(low)
