"""Replay: re-feed records into a stage's input topic under new query ids.

Every original query gets one fresh replay id, and each record's ancestry is
re-rooted under it (:meth:`Ancestry.rerooted`): every id in the tree changes,
so the replay's aggregates and results are its own and the original query's
are never touched. ``replay_of`` keeps the link to the original. Records are
keyed as the stage's input topic expects (aggregation-aware routing), so
fragments of one ancestor still meet at one aggregator.

Dead letters (``alto.DeadLetter`` records) are unwrapped: their original
record is what is replayed.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alto_stream.ancestry import Ancestry, Kind, new_query_id
from alto_stream.app import INPUT, StageKind, Topology
from alto_stream.errors import ConfigError, DecodeError
from alto_stream.message import HEADER_ANCESTRY, HEADER_SCHEMA, MessageCodec
from alto_stream.ops.records import DecodedRecord
from alto_stream.runtime.dead_letters import TRUNCATED
from alto_stream.runtime.failures import letter_ancestor
from alto_stream.transport import OutRecord, Transport

__all__ = ["ReplayTarget", "Rerooter", "replay_target", "send_replay", "split_above"]

DEAD_LETTER_SCHEMA = "alto.DeadLetter"


@dataclass(frozen=True)
class ReplayTarget:
    """Where replayed records go: a stage's input topic, its depth, schema and keying."""

    stage: str
    topic: str
    depth: int
    schema: str
    key_depth: int | None
    input_topic: str
    """The app's input topic, where a whole query is replayed from."""
    first_stage: str
    """The stage that reads the app's input topic."""
    readers: Mapping[str, str] = field(default_factory=dict)
    """Each stage of the app and the topic it reads (to name the stage a record fits)."""

    def whole_query(self, query_id: str, app_ref: str | None) -> str:
        """The command that replays query ``query_id`` whole, from the app's input.

        ``app_ref`` is how the command line names the app (``module:attribute``);
        unknown (the web view), the command says ``APP``.
        """
        return (
            f"alto-stream replay {shlex.quote(self.input_topic)} --from-beginning --query "
            f"{shlex.quote(query_id)} --to-stage {self.first_stage} "
            f"--app {shlex.quote(app_ref or 'APP')}"
        )


def replay_target(topology: Topology, stage: str) -> ReplayTarget:
    """The input of ``stage`` (:class:`ConfigError` listing the stages when unknown)."""
    plan = topology.plan(stage)
    source = plan.stage.source
    key_depth = topology.input_key_depth if source == INPUT else topology.stages[source].key_depth
    first = next(p.name for p in topology.stages.values() if p.stage.source == INPUT)
    return ReplayTarget(
        stage,
        plan.input_topic,
        plan.depth_in,
        plan.input_schema,
        key_depth,
        topology.input_topic,
        first,
        {name: p.input_topic for name, p in topology.stages.items()},
    )


def split_above(topology: Topology, stage: str) -> str | None:
    """The nearest split upstream of ``stage``: the one whose children it reads (None: none)."""
    source = topology.plan(stage).stage.source
    while source != INPUT:
        plan = topology.stages[source]
        if plan.stage.kind is StageKind.SPLIT:
            return plan.name
        source = plan.stage.source
    return None


@dataclass
class Rerooter:
    """Turns records into records of replay queries: one new id per original query."""

    target: ReplayTarget
    codec: MessageCodec = field(default_factory=MessageCodec)
    app_ref: str | None = None
    """How the command line names the app (``module:attribute``), for the fixes errors give."""
    replays: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Original query id -> (replay id, replay start time)."""
    _splits: dict[tuple[str, str | None, str], bool] = field(default_factory=dict)
    """(query id, parent id, attempt) of each split replayed into -> whether its size is known."""

    @property
    def unfinishable(self) -> list[str]:
        """Original queries with a replayed split whose size no replayed record tells.

        A split's children are counted by an aggregate that learns their number
        from an END marker or the last child's count: without either among the
        replayed records (one dead letter from the middle of a query), the
        replay waits for the rest of the split for ever.
        """
        return sorted({query for (query, _, _), closed in self._splits.items() if not closed})

    @property
    def replay_ids(self) -> list[str]:
        """The new query ids, in the order their originals were first met."""
        return [new for new, _ in self.replays.values()]

    def reroot(self, item: DecodedRecord) -> OutRecord:
        """The record to write for ``item``; :class:`ConfigError` when it cannot fit the stage."""
        if item.envelope is None:
            raise ConfigError(f"cannot replay an undecodable record: {item.error}")
        value, headers = item.record.value, list(item.record.headers)
        if item.envelope.schema == DEAD_LETTER_SCHEMA and self.target.schema != DEAD_LETTER_SCHEMA:
            value, headers = self._unwrap(item)
        ancestry = self.codec.decode_ancestry(headers)
        self._check(item, ancestry, headers)
        if ancestry.depth == self.target.depth > 0:
            split = (ancestry.query_id, ancestry.parent_id, ancestry.path[-1].attempt)
            closed = ancestry.kind is Kind.END or ancestry.path[-1].count is not None
            self._splits[split] = self._splits.get(split, False) or closed
        new_id, started = self.replays.setdefault(ancestry.query_id, (new_query_id(), time.time()))
        fresh = ancestry.rerooted(new_id, query_time=started)
        headers = [(k, v) for k, v in headers if k != HEADER_ANCESTRY]
        headers.insert(0, (HEADER_ANCESTRY, self.codec.encode_ancestry(fresh)))
        depth = self.target.key_depth
        key = fresh.routing_key(depth) if depth is not None else fresh.id.encode()
        return OutRecord(self.target.topic, value, tuple(headers), key)

    def reroot_all(self, items: Iterable[DecodedRecord]) -> list[OutRecord]:
        """:meth:`reroot` for every item (all checked before any is written)."""
        return [self.reroot(item) for item in items]

    def _unwrap(self, item: DecodedRecord) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """The original value and headers a dead letter holds."""
        letter = item.envelope.value if item.envelope is not None else None
        if letter is None:
            raise ConfigError("a dead letter without a value cannot be replayed")
        ancestor = letter_ancestor(letter)
        if ancestor is not None:
            query = item.envelope.ancestry.query_id if item.envelope is not None else ancestor
            raise ConfigError(
                f"this dead letter is the failure of stage {letter.get('stage')!r} on ancestor "
                f"{ancestor!r} as a whole (an aggregate), not on one record: there is no "
                "record to replay; fix: replay its query from the input: "
                + self.target.whole_query(query, self.app_ref)
            )
        if TRUNCATED in str(letter.get("error", "")):
            query = item.envelope.ancestry.query_id if item.envelope is not None else "QUERY"
            raise ConfigError(
                "this dead letter holds a cut copy of its record (it was too large to keep "
                "whole: its error says what was cut), and replaying it would run the cut "
                "bytes; fix: replay its query from the input: "
                + self.target.whole_query(query, self.app_ref)
            )
        headers = [(h["key"], h["value"]) for h in letter.get("headers", []) if h.get("value")]
        if not any(k == HEADER_ANCESTRY for k, _ in headers):
            raise DecodeError(
                "the dead letter's original record has no ancestry: it cannot be replayed",
                topic=item.record.topic,
                partition=item.record.partition,
                offset=item.record.offset,
            )
        return letter.get("value"), headers

    def _check(
        self, item: DecodedRecord, ancestry: Ancestry, headers: Sequence[tuple[str, Any]]
    ) -> None:
        where = f"{item.record.topic}[{item.record.partition}]@{item.record.offset}"
        if ancestry.kind.is_marker:
            if ancestry.depth > self.target.depth:
                self._wrong_depth(where, ancestry)
        else:
            if ancestry.depth != self.target.depth:
                self._wrong_depth(where, ancestry)
            schema = dict(headers).get(HEADER_SCHEMA)
            name = bytes(schema).decode() if schema is not None else None
            if name is not None and name != self.target.schema:
                raise ConfigError(
                    f"record {where} is {name}, but stage {self.target.stage!r} reads "
                    f"{self.target.schema}; fix: replay a topic of {self.target.schema} records"
                )
        self._check_source(item, where)

    def _check_source(self, item: DecodedRecord, where: str) -> None:
        """Refuse a record the stage never reads: from another topic than its input.

        Depth and schema alone let through a stage's records replayed past the
        stages between (an aggregate fed the split's raw children: a wrong final,
        exit 0) and a changelog's state entries (undecodable records downstream).
        A dead letter counts as the topic its record was read from.
        """
        source = item.record.topic
        letter = item.envelope.value if item.envelope is not None else None
        if item.envelope is not None and item.envelope.schema == DEAD_LETTER_SCHEMA and letter:
            source = str(letter.get("topic"))
        if source == self.target.topic:
            return
        readers = [name for name, topic in self.target.readers.items() if topic == source]
        into = f"--to-stage {readers[0]}" if readers else "a stage that reads it"
        raise ConfigError(
            f"record {where} comes from {source}, but stage {self.target.stage!r} reads "
            f"{self.target.topic}: replayed there it would skip the stages between, or be "
            f"state, not a record; fix: replay {self.target.topic} (or the stage's own dead "
            f"letters) into it, or replay {source} into {into}"
        )

    def _wrong_depth(self, where: str, ancestry: Ancestry) -> None:
        raise ConfigError(
            f"record {where} is at depth {ancestry.depth}, but stage {self.target.stage!r} "
            f"reads records of depth {self.target.depth} (from {self.target.topic}); fix: "
            "replay into a stage that reads the topic the records come from"
        )


async def send_replay(
    transport: Transport,
    target: ReplayTarget,
    records: Sequence[DecodedRecord],
    codec: MessageCodec | None = None,
    *,
    app_ref: str | None = None,
) -> Rerooter:
    """Re-root ``records`` for ``target`` and write them; returns the rerooter (ids made).

    Every record is checked before any is written. This is what ``alto-stream
    replay --to-stage`` and the web view's replay button both do. ``app_ref``
    (``module:attribute``) fills in the commands that errors give as fixes.
    """
    if not records:
        raise ConfigError(
            "no record to replay in that range (check the offsets, time, query; a query "
            "made by a replay into a middle stage has no record on the app's input topic: "
            "replay its original there, the query `alto-stream trace ID` names in "
            "'replay of')"
        )
    rerooter = Rerooter(target, codec or MessageCodec(), app_ref)
    outgoing = rerooter.reroot_all(records)
    producer = transport.producer()
    await producer.start()
    try:
        await producer.send_many(outgoing)
    finally:
        await producer.stop()
    return rerooter
