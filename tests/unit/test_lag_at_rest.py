"""At rest a worker commits past the transaction markers, whoever handled the records.

A topic written in transactions holds a commit marker after each transaction's
records (and a zombie's aborted records stay in it): the consumer skips them,
and a group committed one past the last record shows them as lag for ever.
This double models Kafka's markers in memory: a marker takes an offset and is
never handed out, and the consumer's position moves past it when it fetches.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport, _MemoryConsumer
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import InRecord, OutRecord, Partition, RebalanceCallback

pytestmark = pytest.mark.timeout(60)

MARKER = b"marker"
"""The key of a record that stands for a transaction marker (never handed out)."""


class _Markers(MemoryTransport):
    """One partition per topic; records keyed :data:`MARKER` are skipped as Kafka skips markers."""

    def __init__(self) -> None:
        super().__init__(1)

    def consumer(
        self,
        topics: Any,
        group: str,
        *,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        read_committed: bool = False,
    ) -> _MemoryConsumer:
        class Skipping(_MemoryConsumer):
            def _take(self, max_records: int) -> list[InRecord]:
                return [r for r in super()._take(max_records) if r.key != MARKER]

        return Skipping(self, list(topics), group, on_assigned, on_revoked)

    def marker(self, topic: str) -> None:
        self.append(OutRecord(topic, b"", [], MARKER, partition=0))


def _echo_app() -> App:
    app = App("rest", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    return app


def _setup(count: int) -> tuple[App, _Markers, Partition, str]:
    """``count`` queries on the input, each in a transaction of its own: a marker after each."""
    app = _echo_app()
    topology = app.topology()
    transport = _Markers()
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    codec = MessageCodec()
    for i in range(count):
        ancestry = Ancestry.root(f"q{i}")
        value, headers = codec.encode(Envelope(ancestry, {"text": f"t{i}"}, "alto.Text"))
        transport.append(OutRecord(topology.input_topic, value, headers, ancestry.id.encode()))
        transport.marker(topology.input_topic)
    plan = topology.plan("echo")
    return app, transport, (plan.input_topic, 0), plan.group


async def _committed_becomes(transport: _Markers, group: str, tp: Partition, offset: int) -> int:
    """The group's committed offset once it is ``offset``, or after 3 s."""
    for _ in range(150):
        if transport.groups[group].committed.get(tp) == offset:
            break
        await asyncio.sleep(0.02)
    return transport.groups[group].committed.get(tp, -1)


DELIVERIES = ["at-least-once", "transactional"]


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_a_partition_taken_over_with_nothing_to_do_commits_past_its_markers(
    delivery: str,
) -> None:
    # Found by a new user (cut.sh: LLM workers added, SIGTERMed and SIGKILLed): the
    # previous owner committed one past the last record (168) and stopped; the next
    # owner had no record to handle on that partition, so no offset book, and
    # committed nothing: lag 1 for ever, and after a graceful stop.
    app, transport, tp, group = _setup(3)
    transport.groups[group].committed[tp] = 5  # q0..q2 handled: one past q2, before its marker
    options = WorkerOptions(delivery=delivery, commit_interval=0.05)  # type: ignore[arg-type]
    worker = Worker(app, "echo", transport, options)
    run = asyncio.create_task(worker.run(timeout=10))
    try:
        assert await _committed_becomes(transport, group, tp, 6) == 6
    finally:
        worker.stop()
        await run
    assert worker.stats.consumed == 0


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_markers_written_after_the_worker_came_to_rest_are_committed_past(
    delivery: str,
) -> None:
    # A zombie's aborted records, or a marker fetched apart from its records: the
    # position moves after the worker checked it at rest.
    app, transport, tp, group = _setup(3)
    options = WorkerOptions(delivery=delivery, commit_interval=0.05)  # type: ignore[arg-type]
    worker = Worker(app, "echo", transport, options)
    run = asyncio.create_task(worker.run(timeout=15))
    try:
        assert await _committed_becomes(transport, group, tp, 6) == 6
        await asyncio.sleep(0.3)  # at rest, its position checked
        transport.marker(tp[0])
        transport.marker(tp[0])
        await transport.notify()
        assert await _committed_becomes(transport, group, tp, 8) == 8
    finally:
        worker.stop()
        await run


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_a_stop_commits_past_the_markers(delivery: str) -> None:
    app, transport, tp, group = _setup(3)
    options = WorkerOptions(delivery=delivery, commit_interval=3600.0)  # type: ignore[arg-type]
    worker = Worker(app, "echo", transport, options)
    await worker.run(count=3, timeout=10)  # stops once the 3 records are handled
    assert transport.groups[group].committed.get(tp) == 6
