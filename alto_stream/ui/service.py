"""The running view of one app: follows its topics, polls its cluster, traces, replays.

:class:`UiService` owns the boards and the background tasks that feed them;
the server (:mod:`alto_stream.ui.server`) only turns its methods into HTTP.
It runs over any transport: Kafka (``KafkaTransport`` + ``KafkaOps``) or, in
tests, the in-memory one (``MemoryTransport`` + ``MemoryOps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from alto_stream.app import Topology
from alto_stream.client import Client
from alto_stream.errors import AltoError, ConfigError
from alto_stream.ops.records import OpsReader, ReadWindow, read_records
from alto_stream.ops.replay import replay_target, send_replay
from alto_stream.ops.trace import app_trace_topics, build_trace
from alto_stream.transport import Transport
from alto_stream.ui.cluster import ClusterSource, scrape
from alto_stream.ui.graph import topology_graph
from alto_stream.ui.queries import DeadLetterBoard, QueryBoard, Revisions
from alto_stream.ui.stages import StageBoard
from alto_stream.ui.waterfall import waterfall

__all__ = ["UiService"]

log = logging.getLogger(__name__)

_RETRY = 2.0
"""Seconds between tries to follow the app's topics while Kafka is away."""


class UiService:
    """Everything the page shows about one app, kept up to date while :meth:`run` runs."""

    def __init__(
        self,
        topology: Topology,
        transport: Transport,
        ops: OpsReader,
        *,
        cluster: ClusterSource | None = None,
        metrics_urls: Sequence[str] = (),
        history: float = 900.0,
        poll_interval: float = 2.0,
        bootstrap: str | None = None,
        missing_topics: Callable[[list[str]], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.topology = topology
        self.transport = transport
        self.ops = ops
        self.cluster = cluster
        self.metrics_urls = list(metrics_urls)
        self.history = history
        self.poll_interval = poll_interval
        self.bootstrap = bootstrap
        self.missing_topics = missing_topics
        """Which of the given topics do not exist yet (None: assume they all do)."""
        self.codec = topology.codec()
        self.revisions = Revisions()
        self.queries = QueryBoard(topology, self.revisions)
        self.letters = DeadLetterBoard(topology, self.revisions, self.queries)
        self.stages = StageBoard(topology, stale_after=max(10.0, 5 * poll_interval))
        self.stopping = False
        """Set when the server stops: the event streams end."""
        self.followed = False
        """True once the topics were read up to their end at start (the lists are complete)."""

    def graph(self) -> dict[str, Any]:
        """The topology graph, with the app's name and the cluster it runs on."""
        return {**topology_graph(self.topology), "bootstrap": self.bootstrap}

    def topics(self) -> list[str]:
        """What the view follows: the input, output and dead-letter topics."""
        return [
            self.topology.input_topic,
            *self.topology.output_topics().values(),
            *self.letters.topics,
        ]

    async def run(self) -> None:
        """Follow the topics and poll the cluster until cancelled."""
        tasks = [asyncio.create_task(self._follow())]
        if self.cluster is not None:
            tasks.append(asyncio.create_task(self._poll_cluster()))
        if self.metrics_urls:
            tasks.append(asyncio.create_task(self._poll_metrics()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def feed(self, item: Any) -> None:
        """Give one decoded record of the followed topics to the boards."""
        if item.record.topic in self.letters.topics:
            self.letters.add(item)
        else:
            self.queries.add(item)

    async def _follow(self) -> None:
        start = time.time() - self.history
        await self._wait_for_topics()
        failing_since: float | None = None  # said once per outage, not every retry
        while True:
            try:
                if not self.followed:
                    began = time.time()
                    await self._catch_up(start)
                    start = began - 1.0  # what came in while catching up is read again
                window = ReadWindow(start_time=start, follow=True)
                async for item in read_records(self.ops, self.topics(), window, self.codec):
                    if failing_since is not None:
                        log.warning(
                            "following the app's topics again, after %.0f s",
                            time.monotonic() - failing_since,
                        )
                        failing_since = None
                    start = max(start, item.record.timestamp - 1.0)
                    self.feed(item)
            except AltoError as exc:  # Kafka went away for a while: read on from where we were
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "following the app's topics failed: %s; retrying every %g s "
                        "(said again when it works)",
                        exc,
                        _RETRY,
                    )
                else:
                    log.debug("following the app's topics failed again: %s", exc)
                await asyncio.sleep(_RETRY)

    async def _wait_for_topics(self) -> None:
        """Wait until the followed topics exist (an app not started yet), saying so once."""
        said = False
        while self.missing_topics is not None:
            try:
                missing = await self.missing_topics(self.topics())
            except AltoError as exc:
                missing = [f"? ({exc})"]
            if not missing:
                return
            if not said:
                log.warning(
                    "waiting for topics %s (`alto-stream topics apply` or `up` creates them)",
                    ", ".join(missing),
                )
                said = True
            await asyncio.sleep(2.0)

    async def _catch_up(self, start: float) -> None:
        """Read what is there now, then say so (the lists are complete from here on)."""
        window = ReadWindow(start_time=start)
        async for item in read_records(self.ops, self.topics(), window, self.codec):
            self.feed(item)
        self.followed = True

    async def _poll_cluster(self) -> None:
        assert self.cluster is not None
        while True:
            asked_at = time.time()
            try:
                self.stages.update(await self.cluster.snapshot(self.topology))
            except AltoError as exc:
                log.warning("could not read the cluster's offsets: %s", exc)
                self.stages.failed(str(exc), asked_at)
            await asyncio.sleep(self.poll_interval)

    async def _poll_metrics(self) -> None:
        while True:
            self.stages.update_metrics(await scrape(self.metrics_urls))
            await asyncio.sleep(self.poll_interval)

    async def trace(self, query_id: str) -> dict[str, Any]:
        """The waterfall of one query (:class:`ConfigError` when none of its records is found)."""
        known = self.queries.get(query_id)
        start = None if known is None else known["query_time"] - 1.0
        topics = list(app_trace_topics(self.topology))
        window = ReadWindow(start_time=start, query_id=query_id)
        items = [item async for item in read_records(self.ops, topics, window, self.codec)]
        return waterfall(build_trace(self.topology, query_id, items))

    async def replay(self, topic: str, partition: int, offset: int) -> dict[str, Any]:
        """Replay one dead letter into the stage that failed on it, under a new query id.

        The same code path as ``alto-stream replay TOPIC --to-stage STAGE``.
        """
        stage = next(
            (p.name for p in self.topology.stages.values() if p.dead_letter_topic == topic), None
        )
        if stage is None:
            raise ConfigError(
                f"{topic} is not a dead-letter topic of app {self.topology.app}; "
                f"they are: {', '.join(self.letters.topics)}"
            )
        window = ReadWindow(offset=offset, partitions=(partition,), to_offset=offset + 1, limit=1)
        items = [item async for item in read_records(self.ops, [topic], window, self.codec)]
        if not items:
            raise ConfigError(f"no record at {topic}[{partition}]@{offset}")
        target = replay_target(self.topology, stage)
        rerooter = await send_replay(self.transport, target, items)
        self.letters.replayed((topic, partition, offset), rerooter.replay_ids)
        answer: dict[str, Any] = {
            "stage": stage,
            "topic": target.topic,
            "replays": [
                {"replay_of": original, "query_id": new}
                for original, (new, _) in rerooter.replays.items()
            ],
        }
        if rerooter.unfinishable:  # what `alto-stream replay` warns of too
            answer["warning"] = (
                "this record is one of a split's children, without the split's END marker or "
                "count: its replay runs through this stage, but the aggregate that closes the "
                "split waits for the rest for ever; to see the whole query again, replay its "
                f"record on {self.topology.input_topic}"
            )
        return answer

    async def push(self, value: dict[str, Any]) -> str:
        """Push one query onto the app's input topic; returns its id."""
        async with Client(self.topology, self.transport, codec=self.codec) as client:
            return await client.push(value)

    def changes(self, since: int) -> dict[str, Any]:
        """What changed after revision ``since``, and the revision it brings the client to."""
        return {
            "rev": self.revisions.last,
            "followed": self.followed,
            "queries": self.queries.changed(since),
            "letters": self.letters.changed(since),
            "letters_total": self.letters.total,
        }
