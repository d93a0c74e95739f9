"""The recent queries and the dead letters, as the page lists them.

Both boards are fed decoded records (:class:`~alto_stream.ops.records.DecodedRecord`)
from the app's input, output and dead-letter topics, in any order, duplicates
included, and do no I/O. Every entry carries a revision number, so that the
event stream sends only what changed since a client's last revision.

A query's status follows the client's rules (:mod:`alto_stream.client`): it is
*done* once a depth-0 record reaches an output topic (*error*, *skip* or
*timeout* when that record is a marker), *running* before; deeper records on
an output topic are its partial results.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from alto_stream.app import Topology
from alto_stream.errors import DecodeError
from alto_stream.message import MessageCodec
from alto_stream.ops.records import DecodedRecord, jsonable
from alto_stream.runtime.failures import letter_source

__all__ = ["DeadLetterBoard", "QueryBoard", "Revisions"]

PARTIALS_KEPT = 50
"""Partial results kept per query (later ones are not listed)."""


@dataclass
class Revisions:
    """A counter shared by the boards: every change takes the next number."""

    last: int = 0

    def next(self) -> int:
        """A new revision number."""
        self.last += 1
        return self.last


@dataclass
class _Query:
    id: str
    query_time: float
    replay_of: str | None
    rev: int = 0
    input: Any = None
    final: dict[str, Any] | None = None
    partials: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    dead_letters: int = 0

    def to_dict(self) -> dict[str, Any]:
        final = self.final
        status = "running" if final is None else final["kind"].lower()
        return {
            "id": self.id,
            "query_time": self.query_time,
            "replay_of": self.replay_of,
            "rev": self.rev,
            "status": "done" if status == "data" else status,
            "latency": None if final is None else final["latency"],
            "input": self.input,
            "final": final,
            "partials": self.partials,
            "dead_letters": self.dead_letters,
        }


class QueryBoard:
    """The most recent queries of an app (at most ``limit``), with their results."""

    def __init__(self, topology: Topology, revisions: Revisions, limit: int = 300) -> None:
        self.topology = topology
        self.revisions = revisions
        self.limit = limit
        self._queries: OrderedDict[str, _Query] = OrderedDict()
        self._outputs = {topic: stage for stage, topic in topology.output_topics().items()}

    def add(self, item: DecodedRecord) -> None:
        """Take one record of the app's input or output topics (others are ignored)."""
        envelope = item.envelope
        topic = item.record.topic
        if envelope is None or (topic != self.topology.input_topic and topic not in self._outputs):
            return
        a = envelope.ancestry
        query = self._entry(a.query_id, a.query_time, a.replay_of)
        if topic == self.topology.input_topic:
            if a.depth == 0 and query.input is None and envelope.value is not None:
                query.input = jsonable(envelope.value)
                query.rev = self.revisions.next()
            return
        if a.kind.name == "END" or a.id in query.seen:
            return  # end markers carry no result; a redelivered record shows once
        query.seen.add(a.id if a.depth else "")
        result = {
            "stage": self._outputs[topic],
            "kind": a.kind.value,
            "index": list(a.index),
            "value": jsonable(envelope.value),
            "reason": a.reason,
            "latency": max(item.record.timestamp - a.query_time, 0.0),
        }
        if a.depth == 0:
            if query.final is not None:
                return
            query.final = result
        elif len(query.partials) < PARTIALS_KEPT:
            query.partials.append(result)
        query.rev = self.revisions.next()

    def dead_letter(self, query_id: str, query_time: float, replay_of: str | None) -> None:
        """Count a dead letter against its query."""
        query = self._entry(query_id, query_time, replay_of)
        query.dead_letters += 1
        query.rev = self.revisions.next()

    def get(self, query_id: str) -> dict[str, Any] | None:
        """One query's entry (None when not among the recent ones)."""
        query = self._queries.get(query_id)
        return None if query is None else query.to_dict()

    def changed(self, since: int = 0) -> list[dict[str, Any]]:
        """Entries changed after revision ``since``, newest query first."""
        found = [q.to_dict() for q in self._queries.values() if q.rev > since]
        return sorted(found, key=lambda q: q["query_time"], reverse=True)

    def _entry(self, query_id: str, query_time: float, replay_of: str | None) -> _Query:
        query = self._queries.get(query_id)
        if query is None:
            query = _Query(query_id, query_time, replay_of, rev=self.revisions.next())
            self._queries[query_id] = query
            while len(self._queries) > self.limit:
                oldest = min(self._queries.values(), key=lambda q: q.query_time)
                del self._queries[oldest.id]
        return query


@dataclass
class _Letter:
    where: tuple[str, int, int]
    data: dict[str, Any]
    rev: int
    replays: list[str] = field(default_factory=list)


class DeadLetterBoard:
    """The dead letters of an app's stages: where, why, the record, and its replays.

    The newest ``limit`` are kept; :attr:`total` counts them all, so that the page
    can say "500 of 1234".
    """

    def __init__(
        self, topology: Topology, revisions: Revisions, queries: QueryBoard, limit: int = 500
    ) -> None:
        self.topology = topology
        self.revisions = revisions
        self.queries = queries
        self.limit = limit
        self.total = 0
        """How many letters were taken in all, those dropped beyond ``limit`` included."""
        self.codec: MessageCodec = topology.codec()
        self._stage_of = {p.dead_letter_topic: p.name for p in topology.stages.values()}
        self._letters: OrderedDict[tuple[str, int, int], _Letter] = OrderedDict()

    @property
    def topics(self) -> list[str]:
        """The app's dead-letter topics."""
        return list(self._stage_of)

    def add(self, item: DecodedRecord) -> None:
        """Take one record of a dead-letter topic (others are ignored)."""
        r = item.record
        stage = self._stage_of.get(r.topic)
        where = (r.topic, r.partition, r.offset)
        if stage is None or where in self._letters:
            return
        data: dict[str, Any] = {"topic": r.topic, "partition": r.partition, "offset": r.offset}
        data["stage"] = stage
        data["time"] = r.timestamp
        envelope = item.envelope
        if envelope is None or not isinstance(envelope.value, dict):
            data.update(error=f"undecodable dead letter: {item.error}", error_type="DecodeError")
        else:
            letter = envelope.value
            a = envelope.ancestry
            data.update(
                stage=letter.get("stage") or stage,
                error=letter.get("error"),
                error_type=letter.get("error_type"),
                time=letter.get("time") or r.timestamp,
                source=letter_source(letter),
                query_id=a.query_id,
                id=a.id,
                depth=a.depth,
                index=list(a.index),
                replay_of=a.replay_of,
                record=self._original(letter),
            )
            self.queries.dead_letter(a.query_id, a.query_time, a.replay_of)
        self._letters[where] = _Letter(where, data, self.revisions.next())
        self.total += 1
        while len(self._letters) > self.limit:
            self._letters.popitem(last=False)

    def replayed(self, where: tuple[str, int, int], replay_ids: list[str]) -> None:
        """Note that the letter at ``where`` was replayed as ``replay_ids``."""
        letter = self._letters.get(where)
        if letter is not None:
            letter.replays += replay_ids
            letter.rev = self.revisions.next()

    def changed(self, since: int = 0) -> list[dict[str, Any]]:
        """Letters changed after revision ``since`` (newest first), with their replays' status."""
        found = []
        for letter in reversed(self._letters.values()):
            replays, newest = [], letter.rev
            for query_id in letter.replays:
                query = self.queries.get(query_id) or {}
                replays.append({"query_id": query_id, "status": query.get("status", "sent")})
                newest = max(newest, query.get("rev", 0))  # a replay moved on: send it again
            if newest > since:
                found.append({**letter.data, "rev": letter.rev, "replays": replays})
        return found

    def _original(self, letter: dict[str, Any]) -> dict[str, Any]:
        """The failed record as it was consumed: its kind and value, decoded when possible."""
        headers = [(h["key"], h["value"]) for h in letter.get("headers", []) if h.get("value")]
        try:
            envelope = self.codec.decode(letter.get("value"), headers)
        except DecodeError as exc:
            return {"error": str(exc)}
        return {
            "kind": envelope.kind.value,
            "schema": envelope.schema,
            "value": jsonable(envelope.value),
        }
