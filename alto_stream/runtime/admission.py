"""Admission: at most N queries of an app in flight; the others wait in the input topic.

The first stage of an app (the one reading its input topic) admits a query
when it starts the query's root record, and only while fewer than its share
of the limit are in flight; otherwise the record stays queued, the worker
pauses its input partitions, and the queries behind it stay in the topic,
where they cost nothing. The waiting queries are admitted oldest first (by
their arrival time) as slots free up.

A query leaves "in flight" when its final result, or final marker, is written
to the app's output topic(s): :class:`CompletionWatch` reads those topics
(outside any consumer group) and tells the :class:`Admission`. For an output
whose records are at the root's depth one record finishes the query; for an
output inside a split (a stage beside the final one whose records are partial
results) the query finishes once its whole subtree there is complete (an
:class:`~alto_stream.aggregate.Tracker` at depth 0).
With several output topics, the query finishes once each has finished it.

Several replicas of the first stage split the limit by the input partitions
they own (``limit * owned // total``, at least 1 for a replica that owns any).
The app-wide bound is exact when the limit is at least the input topic's
partition count; below that, each replica owning partitions still admits one
query, so the app may hold up to that many. Nothing is shared between
replicas: no extra topic, no coordination, and a rebalance just moves shares.

With a latency ``target`` (seconds) the limit is a ceiling: each replica
starts by admitting one query and doubles its cap while the admitted queries
finish within 80% of the target (the 90th percentile of the last
completions, from admission to final result) and the cap was reached
(queries were waiting); once past the target it lowers the cap by a quarter,
and from then on raises it by one at a time. A fixed limit must be chosen
from the capacity of whatever binds (the model server, the CPU); the target
needs only the latency wanted for admitted queries (docs/scheduling.md).

Slots never leak: a worker that stops takes its slots with it (its successor
starts from zero, and learns from the output topics which re-delivered queries
have already finished, so those pass without a slot), and a query whose
completion never shows releases its slot after ``timeout`` seconds.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alto_stream.aggregate import Outcome, Tracker
from alto_stream.app import Topology
from alto_stream.errors import AncestryError, DecodeError
from alto_stream.message import MessageCodec
from alto_stream.transport import InRecord, Transport

__all__ = ["Admission", "AdmissionStats", "CompletionWatch"]

log = logging.getLogger(__name__)

_DONE_KEPT = 100_000
"""How many finished query ids an admission remembers (to pass re-deliveries)."""
_MIN_SAMPLES = 4
"""Completions between two moves of the cap, at least."""


@dataclass
class AdmissionStats:
    """What an admission did (served as metrics)."""

    limit: int = 0
    share: int = 0
    cap: int = 0
    """The queries this replica admits now: its share, or with a latency target from 1 up."""
    admitted: int = 0
    in_flight: int = 0
    finished: int = 0
    timed_out: int = 0
    wait_seconds: list[float] = field(default_factory=list, repr=False)

    def take_waits(self) -> list[float]:
        """The admission-wait samples since the last call (and forget them)."""
        samples, self.wait_seconds = self.wait_seconds, []
        return samples


class Admission:
    """The queries this worker admitted and not yet seen finish, against its share of ``limit``.

    ``timeout``: seconds after which an admitted query whose completion never
    showed gives its slot back. ``on_free`` is called when a slot frees up.
    ``target``: the latency (s) wanted for admitted queries; the limit is then
    a ceiling, and the cap below it adapts (see the module doc).
    """

    def __init__(
        self,
        limit: int,
        *,
        timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        target: float | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be >= 1, got {limit}")
        if target is not None and target <= 0:
            raise ValueError(f"admission target must be > 0 seconds, got {target}")
        self.limit = limit
        self.share = limit
        self.timeout = timeout
        self.target = target
        self.on_free: Callable[[], None] | None = None
        self._cap = limit if target is None else 1  # how many this replica admits now
        self.stats = AdmissionStats(limit=limit, share=limit, cap=self._cap)
        self._clock = clock
        self._doubling = target is not None  # until the target is first passed
        self._latencies: list[float] = []  # of the completions since the cap last moved
        self._reached = False  # the cap was reached since it last moved
        # query id -> when admitted (the clock's time, epoch ms); oldest first
        self._admitted: dict[str, tuple[float, int]] = {}
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()

    def set_share(self, owned: int, total: int) -> None:
        """This replica's share of the limit, owning ``owned`` of ``total`` input partitions."""
        share = 0 if owned <= 0 or total <= 0 else max(1, self.limit * min(owned, total) // total)
        grew = share > self.share
        self.share = self.stats.share = share
        if self.target is None:
            self._cap = share
        else:  # from 1 (or where it had come to), never past the share
            self._cap = min(max(self._cap, 1), share)
        self.stats.cap = self._cap
        if grew:
            self._freed()

    def needs_slot(self, query_id: str) -> bool:
        """True for a query neither in flight here nor known to have finished."""
        return query_id not in self._admitted and query_id not in self._done

    def free(self) -> int:
        """Slots free now (admitted queries past the time-out give theirs back first)."""
        self._expire()
        return min(self.share, self._cap) - len(self._admitted)

    def admit(self, query_id: str, query_time: float) -> None:
        """Count ``query_id`` in flight; ``query_time`` (epoch seconds) dates its arrival."""
        self._admitted[query_id] = (self._clock(), int(time.time() * 1000))
        if len(self._admitted) >= self._cap:
            self._reached = True
        stats = self.stats
        stats.admitted += 1
        stats.in_flight = len(self._admitted)
        stats.wait_seconds.append(max(0.0, time.time() - query_time))
        if len(stats.wait_seconds) > 10_000:
            del stats.wait_seconds[:5_000]

    def finished(self, query_id: str) -> None:
        """``query_id``'s final result was written: its slot (if it held one here) is free."""
        self._done[query_id] = None
        if len(self._done) > _DONE_KEPT:
            self._done.popitem(last=False)
        admitted = self._admitted.pop(query_id, None)
        if admitted is not None:
            self.stats.finished += 1
            self.stats.in_flight = len(self._admitted)
            if self.target is not None:
                self._adapt(self._clock() - admitted[0])
            self._freed()

    def _adapt(self, latency: float) -> None:
        """Move the cap after every ``cap`` completions (at least 4), as the module doc says."""
        assert self.target is not None
        self._latencies.append(latency)
        if len(self._latencies) < max(_MIN_SAMPLES, self._cap):
            return
        recent = sorted(self._latencies)
        p90 = recent[int(0.9 * len(recent))]
        cap = self._cap
        if p90 > self.target:
            cap = max(1, cap - max(1, cap // 4))
            self._doubling = False
        elif p90 < 0.8 * self.target and self._reached:
            cap = min(max(1, self.share), cap * 2 if self._doubling else cap + 1)
        if cap != self._cap:
            log.info(
                "admission: %d queries in flight at most (was %d): p90 %.2f s, target %.2f s",
                cap,
                self._cap,
                p90,
                self.target,
            )
        self._cap = self.stats.cap = cap
        self._latencies = []
        self._reached = False

    def admitted_ms(self, query_id: str) -> int | None:
        """When ``query_id`` was admitted here (epoch ms), while it is in flight."""
        admitted = self._admitted.get(query_id)
        return None if admitted is None else admitted[1]

    @property
    def in_flight(self) -> list[str]:
        """The ids of the queries admitted here and not yet finished, oldest first."""
        return list(self._admitted)

    def _expire(self) -> None:
        if not self._admitted:
            return
        cutoff = self._clock() - self.timeout
        while self._admitted:
            query_id, (since, _) = next(iter(self._admitted.items()))
            if since > cutoff:
                break
            del self._admitted[query_id]
            self.stats.timed_out += 1
            self.stats.in_flight = len(self._admitted)
            log.warning(
                "admission: query %s shows no final result after %.0f s; its slot is given back",
                query_id,
                self.timeout,
            )

    def _freed(self) -> None:
        if self.on_free is not None:
            self.on_free()


class CompletionWatch:
    """Reads an app's output topics and tells ``admission`` which queries finished.

    It starts ``lookback`` seconds in the past, so that a restarted first stage
    knows which re-delivered queries have already finished.
    """

    def __init__(
        self,
        transport: Transport,
        topology: Topology,
        admission: Admission,
        codec: MessageCodec,
        *,
        lookback: float,
    ) -> None:
        self.transport = transport
        self.admission = admission
        self.codec = codec
        self.lookback = lookback
        self._depths = {
            topology.stages[name].output_topic: topology.stages[name].depth_out
            for name in topology.outputs
        }
        self._trackers = {
            topic: Tracker(0, depth, fired_retention=lookback + admission.timeout)
            for topic, depth in self._depths.items()
            if depth > 0
        }
        self._seen: dict[str, set[str]] = {}  # query id -> output topics that finished it

    async def run(self) -> None:
        """Read the outputs until cancelled."""
        reader = self.transport.reader(sorted(self._depths), start_time=time.time() - self.lookback)
        await reader.start()
        try:
            while True:
                for record in await reader.fetch(0.1, 1000):
                    self.seen(record)
        finally:
            await reader.stop()

    def seen(self, record: InRecord) -> None:
        """Take one output record: does it finish its query?"""
        depth = self._depths.get(record.topic)
        if depth is None:
            return
        try:
            ancestry = self.codec.decode_ancestry(record.headers)
        except DecodeError:
            return  # not ours to judge: the reader of the output reports it
        if ancestry.depth == 0:
            done = True
        else:
            tracker = self._trackers.get(record.topic)
            if tracker is None:
                return
            try:
                result = tracker.add(ancestry)
            except AncestryError:
                return
            done = result.completed is not None or result.outcome is Outcome.FORWARD
        if done:
            self._topic_done(ancestry.query_id, record.topic)

    def _topic_done(self, query_id: str, topic: str) -> None:
        if len(self._depths) == 1:
            self.admission.finished(query_id)
            return
        seen = self._seen.setdefault(query_id, set())
        seen.add(topic)
        if len(seen) == len(self._depths):
            del self._seen[query_id]
            self.admission.finished(query_id)
