"""Which offsets may be committed while many records are in flight."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["OffsetBook"]


@dataclass
class OffsetBook:
    """Offsets of one partition: those fetched and not yet done, and what is safe to commit.

    A worker commits an offset only when every record below it is done, so a
    crash re-delivers exactly the unfinished records (and perhaps some finished
    ones above them, which the ancestry makes harmless).
    """

    pending: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None
    highest_handled: int = -1
    """The highest offset whose record was handled to its end (see ``ReadyQueue.take_holes``)."""
    position_checked: bool = False
    """Whether the consumer's position was compared (see :meth:`skip_to`) since the last
    record was fetched."""

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
        if self.pending or self.next_offset is None or position <= self.next_offset:
            return False
        self.next_offset = position
        return True

    def safe(self) -> int | None:
        """The offset to commit now: the lowest unfinished one, or one past the last fetched."""
        if self.pending:
            return min(self.pending)
        return self.next_offset

    def to_commit(self) -> int | None:
        """The offset to commit if it moved since the last commit, else None."""
        safe = self.safe()
        if safe is None or safe == self.committed:
            return None
        return safe

    def __len__(self) -> int:
        return len(self.pending)
