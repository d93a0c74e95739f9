"""Push queries onto an app's input topic and follow their results.

>>> # from alto_stream.runtime.kafka import KafkaTransport
>>> # async with Client(app, KafkaTransport()) as client:  # ALTO_BOOTSTRAP_SERVERS
>>> #     query_id = await client.push({"text": "..."})
>>> #     async for result in client.follow([query_id], timeout=30):
>>> #         print(result.final, result.value)

A result is *final* when it is a depth-0 record (the whole query) on one of the
app's output topics; deeper records there are *partial* results. A query shows
one final, after every partial written before it, and each place in its tree
(topic and index path) once: re-deliveries, and a split's children made again
by a re-run after a crash, never show twice (:mod:`alto_stream.following`).
A guide: docs/client.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from alto_stream.ancestry import Ancestry
from alto_stream.app import App, Topology
from alto_stream.errors import ConfigError, SchemaError, TransportError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.ops.logs import limit_repeats, unlimit_repeats
from alto_stream.query_checks import (
    check_depth,
    check_query_id,
    check_size,
    check_text,
    max_record_bytes_from_env,
    query_values,
)
from alto_stream.results import Result, follow_results
from alto_stream.transport import OutRecord, Producer, Transport, record_size

__all__ = ["DEFAULT_PUSH_TIMEOUT", "Client", "Result"]

DEFAULT_PUSH_TIMEOUT = 30.0
"""Seconds a push waits for the broker's acknowledgement: leader elections after a
node's failure take a few (aiokafka alone would wait as long as the broker is down)."""

_REMEMBERED = 100_000
"""How many query ids a client remembers to refuse them again (about 10 MB)."""

_NEW_ID_FIX = "fix: give each query a new id, or none (a fresh one)"


class Client:
    """Pushes queries for one app and streams their results back.

    Open it with ``async with`` on one event loop and use it there: :meth:`push`
    and :meth:`push_many` from another loop raise :class:`RuntimeError` (the
    producer's connections belong to the loop that opened them). Each
    :meth:`follow` opens a reader of its own.

    On Kafka, opening checks what ``alto-stream push`` checks: that a broker
    answers within ``ALTO_CONNECT_TIMEOUT`` seconds (:class:`BrokerError`) and
    that the app's input topic exists (:class:`ConfigError` saying how to create
    it). While it is open, aiokafka's repeated log lines (a broker down) show
    once per 10 s with a count (:func:`alto_stream.ops.logs.limit_repeats`).
    """

    def __init__(
        self,
        app: App | Topology,
        transport: Transport,
        *,
        codec: MessageCodec | None = None,
        max_record_bytes: int | None = None,
        push_timeout: float = DEFAULT_PUSH_TIMEOUT,
    ) -> None:
        self.topology = app.topology() if isinstance(app, App) else app
        self.transport = transport
        self.codec = codec or self.topology.codec()
        self.max_record_bytes = max_record_bytes or max_record_bytes_from_env()
        """The largest query pushed, encoded with its key and headers (as the workers'
        ``max_record_bytes``; default: ``ALTO_MAX_RECORD_BYTES``, else 1,000,000)."""
        if not push_timeout > 0:
            raise ConfigError(f"push_timeout must be > 0 seconds, got {push_timeout!r}")
        self.push_timeout = push_timeout
        """Seconds a push waits for the broker's acknowledgement (and closing for the
        last ones) before it raises :class:`TransportError`."""
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entered = False  # from the start of __aenter__ (a second one is refused)
        self._unacknowledged = False  # a push timed out: its records may still wait
        self._pushed: dict[str, None] = {}  # the ids pushed lately, oldest first

    async def __aenter__(self) -> Client:
        if self._entered:
            raise RuntimeError(
                "this Client is open already (entered twice): enter it once, "
                "`async with client:`, and use it inside"
            )
        from alto_stream.ops.connect import check_kafka  # it loads the broker tools

        loop = asyncio.get_running_loop()
        self._entered = True
        limit_repeats()
        try:
            await check_kafka(self.transport, [self.topology.input_topic])
            producer = self.transport.producer()
            await producer.start()
        except BaseException:
            self._entered = False
            unlimit_repeats()
            raise
        self._producer, self._loop, self._unacknowledged = producer, loop, False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._producer is None:
            return
        if self._loop is not None and self._loop.is_closed():
            self._producer, self._loop, self._entered = None, None, False  # (gone with it)
            unlimit_repeats()
            raise RuntimeError(
                "this Client was entered on an event loop that has closed since (an "
                "asyncio.run that returned): open, use and close a client on one loop"
            )
        producer = self._check_loop()
        self._producer, self._loop, self._entered = None, None, False
        try:
            await self._close(producer, failing=exc is not None)
        finally:
            unlimit_repeats()

    async def _close(self, producer: Producer, *, failing: bool) -> None:
        """Stop ``producer``, waiting at most ``push_timeout`` for its last records.

        Records of a push that timed out were reported then: they are dropped at once.
        """
        stopping = asyncio.ensure_future(producer.stop())
        if not self._unacknowledged:
            await asyncio.wait({stopping}, timeout=self.push_timeout)
        if stopping.done():
            await stopping
            return
        producer.abort(TransportError(f"the client closed before {self._broker()} acknowledged"))
        with contextlib.suppress(TransportError):
            await stopping
        if not (self._unacknowledged or failing):
            raise TransportError(
                f"{self._broker()} did not acknowledge the last queries within "
                f"{self.push_timeout:g}s of closing the client: they may be lost"
            )

    def _check_loop(self) -> Producer:
        """The open producer; RuntimeError when closed or used from another event loop."""
        if self._producer is None:
            raise RuntimeError("use the client as `async with Client(...) as client:`")
        if asyncio.get_running_loop() is not self._loop:
            closed = self._loop is not None and self._loop.is_closed()
            where = "an event loop closed since" if closed else "another event loop"
            raise RuntimeError(
                f"this Client was opened on {where}: a Client is bound to the "
                "loop it was entered on (its connections belong to it); fix: open one "
                "Client per event loop, or run the call on the client's loop "
                "(asyncio.run_coroutine_threadsafe(client.push(...), loop))"
            )
        return self._producer

    def _broker(self) -> str:
        bootstrap = getattr(self.transport, "bootstrap", None)
        return f"Kafka at {bootstrap}" if bootstrap else "the transport"

    async def push(self, value: Mapping[str, Any], *, query_id: str | None = None) -> str:
        """Push one query; returns its id (``query_id``, or a fresh one when None).

        A query id must be new: the aggregates remember the queries they finished,
        so a re-used id of a finished query is dropped and never gets a final
        (one still running mixes both queries' records). The client refuses an
        id it pushed itself lately (:class:`ConfigError`).

        Refused before anything is sent, as ``push`` refuses it (see
        :mod:`alto_stream.query_checks`): :class:`ConfigError` for an id that is
        empty or longer than 1,000 characters, a value holding text that is not
        UTF-8, nesting dicts and lists more than 100 deep or larger than
        ``max_record_bytes`` encoded; :class:`SchemaError`
        for a value that is not a dict (or another mapping) fitting the input schema.
        :class:`TransportError` when the broker has not acknowledged the query
        within ``push_timeout`` seconds (it may still arrive later).
        """
        ids = await self.push_many([value], query_ids=None if query_id is None else [query_id])
        return ids[0]

    async def push_many(
        self, values: Iterable[Mapping[str, Any]], *, query_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Push many queries at once; returns their ids in order.

        Each is checked as :meth:`push` says before any is sent: one bad query
        sends none, and the error names it; so do two queries with the same id.
        """
        producer = self._check_loop()
        values = query_values(values, "push_many")
        if query_ids is not None and len(query_ids) != len(values):
            raise ConfigError(
                f"push_many got {len(values)} values and {len(query_ids)} query ids: "
                "give one id per value, or none (fresh ids)"
            )
        records, ids = [], []
        given: dict[str, int] = {}  # query id -> its query's number
        for i, value in enumerate(values):
            where = "the query" if len(values) == 1 else f"query {i + 1} of {len(values)}"
            query_id = None if query_ids is None else query_ids[i]
            if query_id is not None:
                check_query_id(query_id, where)
                self._check_new(query_id, where, given)
                given[query_id] = i + 1
            ancestry = Ancestry.root(query_id)
            records.append(self._record(value, ancestry, where))
            ids.append(ancestry.id)
        try:
            await asyncio.wait_for(producer.send_many(records), self.push_timeout)
        except TimeoutError:
            self._unacknowledged = True
            raise TransportError(
                f"{self._broker()} did not acknowledge {len(records)} queries within "
                f"{self.push_timeout:g}s (the client's push_timeout): is the broker down? "
                "They may still arrive once it is back",
                retriable=True,
            ) from None
        self._remember(ids)
        return ids

    def _record(self, value: Any, ancestry: Ancestry, where: str) -> OutRecord:
        """The record of one query, checked as :meth:`push` says."""
        schema = self.topology.input_schema
        if isinstance(value, Mapping) and not isinstance(value, dict):
            value = dict(value)
        if not isinstance(value, dict):
            raise SchemaError(
                f"{where}: push needs a dict fitting {schema}, got "
                + ("None" if value is None else f"a {type(value).__name__}")
            )
        check_depth(value, where)
        check_text(value, where)
        envelope = Envelope(ancestry, value, schema, "client")
        try:
            data, headers = self.codec.encode(envelope)
        except SchemaError as exc:
            raise SchemaError(f"{where}: {exc}") from exc
        record = OutRecord(self.topology.input_topic, data, headers, ancestry.id.encode())
        check_size(record_size(record), where, self.max_record_bytes)
        return record

    def _check_new(self, query_id: str, where: str, given: Mapping[str, int]) -> None:
        """ConfigError for an id ``given`` to an earlier query of this call, or pushed lately."""
        if query_id in given:
            raise ConfigError(
                f"{where} has the query id {query_id!r} of query {given[query_id]}: "
                f"a query id must be new (two queries of one id mix their results); {_NEW_ID_FIX}"
            )
        if query_id in self._pushed:
            raise ConfigError(
                f"{where} has the query id {query_id!r}, pushed by this client before: a "
                "query id must be new (the aggregates drop a finished query's id, so it "
                f"would never get a final); {_NEW_ID_FIX}"
            )

    def _remember(self, ids: list[str]) -> None:
        for query_id in ids:
            self._pushed[query_id] = None
        for old in list(itertools.islice(self._pushed, max(len(self._pushed) - _REMEMBERED, 0))):
            del self._pushed[old]

    def follow(
        self,
        query_ids: Iterable[str],
        *,
        timeout: float | None = None,
        since: float | None = None,
        partials: bool = True,
        partials_from: Sequence[str] = (),
        pushed_at: float | None = None,
    ) -> AsyncIterator[Result]:
        """Yield results of ``query_ids`` (a list of ids) as they arrive, until each has its final.

        ``since`` (seconds since the epoch) is where reading starts: by default a
        minute before now, which covers queries pushed just before following.
        ``partials_from`` names stages inside the app whose records are partial
        results too (a generation stage's sentences, as they are written); by
        default only the output stages' deeper records are. Every partial written
        before its query's final is yielded before it, even when the reader is
        behind (following queries that finished long ago); what is shown once is
        never shown again (see :mod:`alto_stream.following` for the partials of a
        split re-run after a crash). Raises :class:`TimeoutError` when ``timeout``
        seconds pass first, naming the queries and those of which nothing was found:
        with ``pushed_at`` (when the queries were pushed, seconds since the epoch)
        at or after ``since``, it says that nothing of them came within the time,
        rather than that they may have finished before ``since``.
        """
        return follow_results(
            self.transport,
            self.topology,
            self.codec,
            query_ids,
            timeout=timeout,
            since=since,
            partials=partials,
            partials_from=partials_from,
            pushed_at=pushed_at,
        )

    async def run(
        self,
        values: Sequence[Mapping[str, Any]],
        *,
        timeout: float | None = None,
        query_ids: Sequence[str] | None = None,
    ) -> dict[str, Result]:
        """Push queries and wait for their final results: query id -> final result.

        The dict is in the order of ``values`` (the push order), whatever order the
        queries finish in: ``zip(values, finals.values())`` pairs each value with its
        final, and ``list(finals)`` are the ids. ``query_ids`` gives the ids
        (one per value, each new, as :meth:`push_many` says); by default fresh ones.
        :class:`TimeoutError` (from :meth:`follow`) when ``timeout`` seconds pass first.
        """
        since, pushed_at = time.time() - 1.0, time.time()
        ids = await self.push_many(query_values(values, "run"), query_ids=query_ids)
        finals: dict[str, Result] = {}
        results = self.follow(
            ids, timeout=timeout, since=since, partials=False, pushed_at=pushed_at
        )
        async for result in results:
            finals[result.query_id] = result
        return {query_id: finals[query_id] for query_id in ids}
