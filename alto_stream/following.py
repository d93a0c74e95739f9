"""What a follower of queries shows of the records it reads (pure logic, no I/O).

:class:`Following` is the state of one ``Client.follow``: which queries still
wait for their final, which records were shown, and which attempt of each split
the partial results follow. It decides, record by record, whether a record is a
final, a partial to show, or nothing to show:

- a final (a depth-0 record on an output topic) once per query;
- a partial once per place in the query's tree (topic and index path): a
  re-delivery, or the same child made again by a re-run of its split (a new
  attempt after a crash), is not shown twice; a re-run's child with another
  value than the one shown there (a generation retried after it failed
  half-way) is shown again, as a ``"rerun"``;
- per split parent, the partials follow the newest attempt seen: once a re-run
  has shown up, the records of the attempt it replaced are dropped (it was
  abandoned: the aggregate takes one attempt and never mixes them).

A re-run's children at places already shown with the same value are not shown
again, so a deterministic split re-run after a crash shows the first attempt's
children up to the crash and the new attempt's after them: exactly what the
final is made of. Before 2026-12-03 that held for any value: a generation that
failed after two sentences and was retried showed those two sentences and
never the retry's, which the final was built from.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from alto_stream.ancestry import Ancestry, Kind

__all__ = ["Following"]

Verdict = Literal["final", "partial", "rerun"] | None
"""What a record is to a follower: its query's final, a partial to show, a partial
that replaces one shown before at its place (another attempt, another value), or nothing."""


class Following:
    """The state of following ``query_ids``: what was shown, what still waits.

    ``finals_on`` are the topics whose depth-0 records are finals (the app's
    output topics); ``partials`` False shows finals only.
    """

    def __init__(self, query_ids: Iterable[str], *, finals_on: set[str], partials: bool) -> None:
        if isinstance(query_ids, str | bytes):
            raise TypeError(
                f"follow() takes a list of query ids, got one {type(query_ids).__name__} "
                f"({query_ids!r}): pass [query_id]"
            )
        self.waiting = set(query_ids)
        """The queries whose final was not shown yet."""
        self.found: set[str] = set()
        """The queries of which some record was read."""
        self._finals_on = finals_on
        self._partials = partials
        self._final_seen: set[str] = set()
        self._shown: dict[tuple[str, str, tuple[int, ...]], tuple[Kind, Any]] = {}
        """Per place shown: the kind and value shown there."""
        self._attempts: dict[str, list[str]] = {}  # parent id -> its attempts seen, newest last

    def sort(self, ancestry: Ancestry, topic: str, value: Any = None) -> Verdict:
        """What a record read on ``topic`` (its ``ancestry`` and ``value``) is to this follower."""
        query_id = ancestry.query_id
        if query_id not in self.waiting:
            return None
        self.found.add(query_id)
        if ancestry.depth == 0 and topic in self._finals_on:
            if query_id in self._final_seen:
                return None
            self._final_seen.add(query_id)
            return "final"
        if not self._partials or not self._followed(ancestry) or ancestry.kind is Kind.END:
            return None
        place = (query_id, topic, ancestry.index)
        shown = (ancestry.kind, value)
        before = self._shown.get(place)
        self._shown[place] = shown
        if before is None:
            return "partial"
        # Only a newer attempt gets here (_followed drops the older ones' records).
        return None if before == shown else "rerun"

    def ended(self, query_id: str) -> None:
        """The final of ``query_id`` was shown: nothing more of it is."""
        self.waiting.discard(query_id)

    def _followed(self, ancestry: Ancestry) -> bool:
        """False for a record of an attempt a newer one replaced (at any split level)."""
        ids = ancestry.ids
        for level, frame in enumerate(ancestry.path):
            attempts = self._attempts.setdefault(ids[level], [])
            if attempts and attempts[-1] == frame.attempt:
                continue
            if frame.attempt in attempts:
                return False
            attempts.append(frame.attempt)
        return True

    def unfinished(
        self,
        timeout: float | None,
        since: float,
        topics: Sequence[str],
        pushed_at: float | None = None,
    ) -> str:
        """Why following timed out: which queries did not finish, and those never seen.

        ``pushed_at``: when the queries were pushed, if known. Pushed at or after
        ``since``, a query of which nothing was found has not reached the topics
        yet; pushed before (or unknown), it may have finished before ``since``.
        """
        waiting = sorted(self.waiting)
        message = f"{len(waiting)} queries did not finish within {timeout}s: {_some(waiting)}"
        unseen = [q for q in waiting if q not in self.found]
        if not unseen:
            return message
        them = "it" if len(unseen) == 1 else f"{len(unseen)} of them"
        where = ", ".join(topics)
        if pushed_at is not None and pushed_at >= since:
            pushed = time.strftime("%H:%M:%S", time.localtime(pushed_at))
            were = "it was" if len(unseen) == 1 else "they were"
            return message + (
                f"; nothing of {them} reached {where} since {were} pushed at {pushed}: "
                "no result was written within the time"
            )
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        return message + (
            f"; nothing of {them} was found on {where} since {when} "
            "(follow's since=, by default a minute before it began): a query that "
            "finished before then is followed with an earlier since= "
            "(since=0 reads the topics from their start)"
        )


def _some(ids: Sequence[str]) -> str:
    """The first few of ``ids``, and how many more."""
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return ", ".join(ids[:5]) + more
