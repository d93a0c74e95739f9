"""Push queries onto an app's input topic and follow their results.

>>> # async with Client(app, KafkaTransport()) as client:
>>> #     query_id = await client.push({"text": "..."})
>>> #     async for result in client.follow([query_id], timeout=30):
>>> #         print(result.final, result.value)

A result is *final* when it is a depth-0 record (the whole query) on one of the
app's output topics; deeper records there are *partial* results. Finals are
deduplicated by query id, partials by record id: re-deliveries after a crash
never show twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from alto_stream.ancestry import Ancestry
from alto_stream.app import App, Topology
from alto_stream.errors import ConfigError, DecodeError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.query_checks import (
    check_query_id,
    check_size,
    check_text,
    max_record_bytes_from_env,
)
from alto_stream.transport import OutRecord, Producer, Transport, record_size

__all__ = ["Client", "Result"]


@dataclass(frozen=True)
class Result:
    """One result of a query: partial (a fragment) or final (the whole query)."""

    query_id: str
    stage: str
    envelope: Envelope
    final: bool
    latency: float
    """Seconds from the query's arrival to this result."""

    @property
    def value(self) -> dict[str, Any] | None:
        """The payload (None for a marker)."""
        return self.envelope.value

    @property
    def ok(self) -> bool:
        """False when the result is a skip, error or timeout marker."""
        return not self.envelope.kind.is_marker


class Client:
    """Pushes queries for one app and streams their results back."""

    def __init__(
        self,
        app: App | Topology,
        transport: Transport,
        *,
        codec: MessageCodec | None = None,
        max_record_bytes: int | None = None,
    ) -> None:
        self.topology = app.topology() if isinstance(app, App) else app
        self.transport = transport
        self.codec = codec or self.topology.codec()
        self.max_record_bytes = max_record_bytes or max_record_bytes_from_env()
        """The largest query pushed, encoded with its key and headers (as the workers'
        ``max_record_bytes``; default: ``ALTO_MAX_RECORD_BYTES``, else 1,000,000)."""
        self._producer: Producer | None = None

    async def __aenter__(self) -> Client:
        self._producer = self.transport.producer()
        await self._producer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def push(self, value: dict[str, Any], *, query_id: str | None = None) -> str:
        """Push one query; returns its id (``query_id``, or a fresh one when None).

        Refused before anything is sent, as ``push`` refuses it (see
        :mod:`alto_stream.query_checks`): :class:`ConfigError` for an id that is
        empty or longer than 1,000 characters, a value holding text that is not
        UTF-8 or larger than ``max_record_bytes`` encoded; :class:`SchemaError`
        for a value that does not fit the input schema.
        """
        ids = await self.push_many([value], query_ids=None if query_id is None else [query_id])
        return ids[0]

    async def push_many(
        self, values: Iterable[dict[str, Any]], *, query_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Push many queries at once; returns their ids in order.

        Each is checked as :meth:`push` says before any is sent: one bad query
        sends none, and the error names it.
        """
        if self._producer is None:
            raise RuntimeError("use the client as `async with Client(...) as client:`")
        values = list(values)
        if query_ids is not None and len(query_ids) != len(values):
            raise ConfigError(
                f"push_many got {len(values)} values and {len(query_ids)} query ids: "
                "give one id per value, or none (fresh ids)"
            )
        records, ids = [], []
        for i, value in enumerate(values):
            where = "the query" if len(values) == 1 else f"query {i + 1} of {len(values)}"
            query_id = None if query_ids is None else query_ids[i]
            if query_id is not None:
                check_query_id(query_id, where)
            check_text(value, where)
            ancestry = Ancestry.root(query_id)
            envelope = Envelope(ancestry, value, self.topology.input_schema, "client")
            data, headers = self.codec.encode(envelope)
            record = OutRecord(self.topology.input_topic, data, headers, ancestry.id.encode())
            check_size(record_size(record), where, self.max_record_bytes)
            records.append(record)
            ids.append(ancestry.id)
        await self._producer.send_many(records)
        return ids

    async def follow(
        self,
        query_ids: Iterable[str],
        *,
        timeout: float | None = None,
        since: float | None = None,
        partials: bool = True,
        partials_from: Sequence[str] = (),
    ) -> AsyncIterator[Result]:
        """Yield results of ``query_ids`` as they arrive, until each has its final one.

        ``since`` (seconds since the epoch) is where reading starts: by default a
        minute before now, which covers queries pushed just before following.
        ``partials_from`` names stages inside the app whose records are partial
        results too (a generation stage's sentences, as they are written); by
        default only the output stages' deeper records are.
        """
        waiting = set(query_ids)
        seen: set[tuple[str, str, str]] = set()
        outputs = self.topology.output_topics()
        stage_of = {topic: stage for stage, topic in outputs.items()}
        for stage in partials_from:  # an unknown stage: ConfigError naming the stages
            stage_of.setdefault(self.topology.plan(stage).output_topic, stage)
        finals_on = set(outputs.values())
        reader = self.transport.reader(
            list(stage_of), start_time=time.time() - 60.0 if since is None else since
        )
        await reader.start()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while waiting:
                left = 0.2 if deadline is None else min(0.2, deadline - loop.time())
                if left <= 0:
                    raise TimeoutError(
                        f"{len(waiting)} queries did not finish within {timeout}s: "
                        f"{', '.join(sorted(waiting)[:5])}"
                    )
                records = await reader.fetch(left, 500)
                if len(stage_of) > 1:  # in time order across topics: partials before their final
                    records.sort(key=lambda r: r.timestamp)
                for record in records:
                    try:
                        envelope = self.codec.decode(record.value, record.headers)
                    except DecodeError:
                        continue
                    ancestry = envelope.ancestry
                    final = ancestry.depth == 0 and record.topic in finals_on
                    key = (ancestry.query_id, record.topic, ancestry.id if not final else "")
                    if ancestry.query_id not in waiting or key in seen:
                        continue
                    if ancestry.kind.name == "END" or (not final and not partials):
                        continue
                    seen.add(key)
                    if final:
                        waiting.discard(ancestry.query_id)
                    yield Result(
                        ancestry.query_id,
                        stage_of.get(record.topic, record.topic),
                        envelope,
                        final,
                        record.timestamp - ancestry.query_time,
                    )
        finally:
            await reader.stop()

    async def run(
        self, values: list[dict[str, Any]], *, timeout: float | None = None
    ) -> dict[str, Result]:
        """Push queries and wait for their final results: query id -> final result."""
        since = time.time() - 1.0
        ids = await self.push_many(values)
        finals: dict[str, Result] = {}
        async for result in self.follow(ids, timeout=timeout, since=since, partials=False):
            finals[result.query_id] = result
        return finals
