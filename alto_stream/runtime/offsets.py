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

    def fetched(self, offset: int) -> None:
        """Record ``offset`` as fetched and in progress."""
        self.pending.add(offset)
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def done(self, offset: int) -> None:
        """Record ``offset`` as done."""
        self.pending.discard(offset)

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
