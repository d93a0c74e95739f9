"""Trace: one query's whole ancestry tree, rebuilt from an app's topics, with timings.

Every record of the query is a *hop*: a fragment (an ancestry id) as one stage
wrote it. Map outputs keep the id of their input, so a fragment collects one
hop per map stage it went through; an aggregate's output has the id of the
ancestor it reassembled. A hop's *input time* is when what it was made from
arrived on the stage's input topic:

- map, batch, forwarded markers, dead letters: the record with the same id;
- a split's child (or end marker): its parent's record;
- an aggregate's output: the latest of the descendants it reassembled.

The *critical path* walks back from the final result, each time to the input
that arrived last: the chain of hops that set the query's latency.

Times are Kafka record timestamps, in whole milliseconds, while the query's own
time (in its ancestry) is exact: the timeline starts at the query's time cut to
its millisecond (:attr:`Trace.start`), so that no hop shows before the query.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from alto_stream.ancestry import Ancestry
from alto_stream.app import INPUT, StageKind, StagePlan, Topology
from alto_stream.errors import ConfigError
from alto_stream.message import HEADER_ADMITTED
from alto_stream.ops.records import DecodedRecord, jsonable

__all__ = ["Fragment", "Hop", "StageTiming", "Trace", "app_trace_topics", "build_trace"]

CLIENT = "client"
"""The producer of an app's input records (the queries)."""


@dataclass
class Hop:
    """One record of the query: a fragment as one stage wrote it."""

    item: DecodedRecord
    stage: str
    input_time: float | None = None
    critical: bool = False
    source: Hop | None = field(default=None, repr=False)
    """The input hop that arrived last (None for the query itself)."""

    @property
    def time(self) -> float:
        """When the record was written (seconds since the epoch)."""
        return self.item.record.timestamp

    @property
    def took(self) -> float | None:
        """Seconds from its input's arrival to this record (None when unknown)."""
        return None if self.input_time is None else self.time - self.input_time

    def to_dict(self, start: float) -> dict[str, Any]:
        """A JSON-ready form; times relative to ``start``."""
        r = self.item.record
        assert self.item.envelope is not None
        return {
            "stage": self.stage,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "kind": self.item.envelope.kind.value,
            "at": max(self.time - start, 0.0),
            "took": self.took,
            "critical": self.critical,
            "value": jsonable(self.item.envelope.value),
            "reason": self.item.envelope.ancestry.reason,
        }


@dataclass
class Fragment:
    """One node of the ancestry tree: an id, its position, its hops and its children."""

    id: str
    parent_id: str | None
    index: tuple[int, ...]
    hops: list[Hop] = field(default_factory=list)
    children: list[Fragment] = field(default_factory=list)
    attempt: str | None = None
    """The attempt of the split that made it (None for the query): a split run again
    after a crash makes its children anew, under another attempt."""

    @property
    def critical(self) -> bool:
        """True when one of its hops is on the critical path."""
        return any(h.critical for h in self.hops)

    def to_dict(self, start: float) -> dict[str, Any]:
        """A JSON-ready form, children included."""
        return {
            "id": self.id,
            "index": list(self.index),
            "attempt": self.attempt,
            "critical": self.critical,
            "hops": [h.to_dict(start) for h in self.hops],
            "children": [c.to_dict(start) for c in self.children],
        }


@dataclass(frozen=True)
class StageTiming:
    """Per stage: how many records it wrote for the query and the time they took."""

    stage: str
    records: int
    total: float
    """Seconds from each input record to the last record the stage wrote for it, summed:
    records handled at the same time count once each (five children run side by side
    for a second make 5 s)."""
    longest: float
    on_critical_path: float
    span: float = 0.0
    """Wall-clock seconds from the first input's arrival to the last record the stage
    wrote for the query (what ``trace`` shows)."""


@dataclass
class Trace:
    """A query's ancestry tree with timings."""

    query_id: str
    query_time: float
    replay_of: str | None
    root: Fragment
    hops: list[Hop]
    final: Hop | None
    critical_path: list[Hop]
    finals: list[Hop] = field(default_factory=list)
    """Every final record of the query, the one shown (:attr:`final`) first: more than
    one is a duplicate (an app changed under its queries, a record written twice)."""

    @property
    def final_values(self) -> int:
        """How many different values the query's finals hold (1 when they agree)."""
        return len({repr(hop.item.envelope.value) for hop in self.finals if hop.item.envelope})

    @property
    def start(self) -> float:
        """Where the timeline starts: the query's time, at the timestamps' resolution (ms).

        Kafka keeps whole milliseconds, so the query's own record may be
        stamped up to a millisecond before its exact ``query_time``. A query
        time that is no time (NaN, infinite: written by hand) gives way to the
        first record's timestamp.
        """
        if not math.isfinite(self.query_time):
            return min((hop.time for hop in self.hops), default=0.0)
        return math.floor(self.query_time * 1000) / 1000

    def at(self, hop: Hop) -> float:
        """Seconds from :attr:`start` to ``hop`` (never below zero, whatever the clocks say)."""
        return max(hop.time - self.start, 0.0)

    @property
    def latency(self) -> float | None:
        """Seconds from the query's arrival to its final result (None if unfinished)."""
        return None if self.final is None else self.at(self.final)

    @property
    def admission_wait(self) -> float | None:
        """Seconds the query waited in the input topic for admission (None: no admission).

        From the ``alto.admitted`` header the first stage puts on its outputs.
        """
        stamps = []
        for hop in self.hops:
            raw = dict(hop.item.record.headers or []).get(HEADER_ADMITTED)
            if raw and raw.isdigit():
                stamps.append(int(raw) / 1000)
        return max(min(stamps) - self.start, 0.0) if stamps else None

    def stages(self) -> list[StageTiming]:
        """Time per stage, in the order stages first wrote a record of the query."""
        by_stage: dict[str, list[Hop]] = defaultdict(list)
        for hop in sorted(self.hops, key=lambda h: h.time):
            by_stage[hop.stage].append(hop)
        return [
            StageTiming(
                stage,
                len(hops),
                _per_input(hops),
                max((h.took or 0.0 for h in hops), default=0.0),
                sum(h.took or 0.0 for h in hops if h.critical),
                _span(hops),
            )
            for stage, hops in by_stage.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: summary, per-stage times, critical path and tree (``at``: from
        :attr:`start`)."""
        start = self.start
        return {
            "query_id": self.query_id,
            "replay_of": self.replay_of,
            "query_time": self.query_time,
            "latency": self.latency,
            "finals": len(self.finals),
            "final_values": self.final_values,
            "admission_wait": self.admission_wait,
            "records": len(self.hops),
            "stages": [t.__dict__ for t in self.stages()],
            "critical_path": [h.to_dict(start) | {"id": _id(h)} for h in self.critical_path],
            "tree": self.root.to_dict(start),
        }


def app_trace_topics(topology: Topology) -> dict[str, str]:
    """Topic -> the stage that writes it (input: ``client``); changelogs are left out."""
    topics = {topology.input_topic: CLIENT}
    for plan in topology.stages.values():
        topics[plan.output_topic] = plan.name
        topics[plan.dead_letter_topic] = plan.name
    return topics


def build_trace(topology: Topology, query_id: str, items: Iterable[DecodedRecord]) -> Trace:
    """The trace of ``query_id`` from decoded records of the app's topics.

    :class:`ConfigError` when no record of the query is among them.
    """
    writers = app_trace_topics(topology)
    hops = [
        Hop(item, writers.get(item.record.topic) or item.envelope.stage or "?")
        for item in items
        if item.envelope is not None and item.envelope.ancestry.query_id == query_id
    ]
    if not hops:
        raise ConfigError(
            f"unknown query {query_id!r}: no record of it in the topics of app "
            f"{topology.app!r}; fix: check the id (`alto-stream tail {topology.input_topic} "
            "--from-beginning` lists queries) or the app"
        )
    # Kafka stamps whole milliseconds: hops written in one are ordered upstream first.
    order = _stage_order(topology)
    hops.sort(key=lambda h: (h.time, order.get(h.stage, len(order)), h.item.record.offset))
    _link_inputs(topology, hops)
    root = _tree(query_id, hops)
    first = _ancestry(hops[0])
    finals = [
        h
        for h in hops
        if _ancestry(h).depth == 0
        and h.stage in topology.outputs
        and h.item.record.topic == topology.stages[h.stage].output_topic
    ]
    final = finals[0] if finals else None
    path = _critical_path(final or hops[-1])
    return Trace(query_id, first.query_time, first.replay_of, root, hops, final, path, finals)


def _stage_order(topology: Topology) -> dict[str, int]:
    """Each stage's distance from the input (the client 0): upstream stages come first."""
    order = {CLIENT: 0}

    def rank(name: str) -> int:
        if name not in order:
            source = topology.stages[name].stage.source
            order[name] = 1 + (0 if source == INPUT else rank(source))
        return order[name]

    for name in topology.stages:
        rank(name)
    return order


def _link_inputs(topology: Topology, hops: list[Hop]) -> None:
    """Set each hop's input time and source (see the module docstring)."""
    same_id: dict[tuple[str, str], list[Hop]] = defaultdict(list)
    under: dict[tuple[str, int, str], list[Hop]] = defaultdict(list)
    for hop in hops:
        a = _ancestry(hop)
        same_id[(hop.item.record.topic, a.id)].append(hop)
        for depth in range(a.depth):
            under[(hop.item.record.topic, depth, a.ids[depth])].append(hop)
    for hop in hops:
        plan = topology.stages.get(hop.stage)
        if plan is None:
            continue
        candidates = _inputs(plan, hop, same_id, under)
        earlier = [c for c in candidates if c.time <= hop.time] or candidates
        if earlier:
            hop.source = max(earlier, key=lambda c: c.time)
            hop.input_time = hop.source.time


def _inputs(
    plan: StagePlan,
    hop: Hop,
    same_id: dict[tuple[str, str], list[Hop]],
    under: dict[tuple[str, int, str], list[Hop]],
) -> list[Hop]:
    a = _ancestry(hop)
    topic = plan.input_topic
    kind = plan.stage.kind
    if hop.item.record.topic == plan.output_topic and a.depth == plan.depth_out:
        if kind is StageKind.SPLIT and a.parent_id is not None:
            return same_id.get((topic, a.parent_id), [])
        if kind is StageKind.AGGREGATE:  # a marker it only forwarded has no descendants
            return under.get((topic, a.depth, a.id)) or same_id.get((topic, a.id), [])
    return same_id.get((topic, a.id), [])


def _tree(query_id: str, hops: list[Hop]) -> Fragment:
    fragments: dict[str, Fragment] = {}
    for hop in hops:
        a = _ancestry(hop)
        attempt = a.path[-1].attempt if a.path else None
        fragment = fragments.setdefault(a.id, Fragment(a.id, a.parent_id, a.index, attempt=attempt))
        fragment.hops.append(hop)
    root = fragments.get(query_id) or Fragment(query_id, None, ())
    fragments[query_id] = root
    for fragment in fragments.values():
        if fragment is root:
            continue
        parent = fragments.get(fragment.parent_id or "")
        if parent is None:  # its parent's records are gone (retention): hang it on the root
            parent = root
        parent.children.append(fragment)
    # Children by attempt (in the order the attempts began), then by index.
    began: dict[str | None, float] = {}
    for fragment in fragments.values():
        first = min((hop.time for hop in fragment.hops), default=0.0)
        began[fragment.attempt] = min(began.get(fragment.attempt, first), first)
    for fragment in fragments.values():
        fragment.children.sort(key=lambda f: (began[f.attempt], f.attempt or "", f.index))
    return root


def _critical_path(last: Hop) -> list[Hop]:
    path = []
    hop: Hop | None = last
    seen: set[int] = set()
    while hop is not None and id(hop) not in seen:
        seen.add(id(hop))
        hop.critical = True
        path.append(hop)
        hop = hop.source
    return list(reversed(path))


def _ancestry(hop: Hop) -> Ancestry:
    assert hop.item.envelope is not None
    return hop.item.envelope.ancestry


def _id(hop: Hop) -> str:
    return str(_ancestry(hop).id)


def _per_input(hops: list[Hop]) -> float:
    """A stage's time: per input record, until the last record it wrote for it, summed.

    Records written for one input (a split's children; a failed record's dead
    letter and its error marker) share that input's time: summing each record's
    own would count it once per record.
    """
    longest: dict[int, float] = {}
    for hop in hops:
        key = id(hop.source) if hop.source is not None else id(hop)
        longest[key] = max(longest.get(key, 0.0), hop.took or 0.0)
    return sum(longest.values())


def _span(hops: list[Hop]) -> float:
    """Wall-clock seconds from the first input's arrival to the last record written."""
    first = min(h.time if h.input_time is None else min(h.input_time, h.time) for h in hops)
    return max(h.time for h in hops) - first
