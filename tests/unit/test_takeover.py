"""A transactional take-over reads on from the previous owner's last committed transaction.

Kafka answers a committed-offset read without KIP-447's ``require_stable`` (all
aiokafka 0.14 can send) with the last *completed* commit: while the previous
owner's last transaction is still completing, the offsets read as an
assignment arrives are older than what it committed. Starting the partition's
transactional producer waits for that transaction to complete (and fences its
producer). This double models exactly that, so the worker must start its
producers first and read the committed offsets after (see
``test_a_fencing_producer_start_makes_committed_offsets_current`` for the real
broker's behaviour).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport, _MemoryConsumer, _MemoryProducer
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import InRecord, OutRecord, Partition, RebalanceCallback


class _CompletingTransaction(MemoryTransport):
    """A group whose last offset commit completes only when a transactional producer starts."""

    def __init__(self) -> None:
        super().__init__(1)
        self.completing: dict[str, dict[Partition, int]] = {}

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        if transactional_id is None:
            return _MemoryProducer(self)
        transport = self

        class Fencing(_MemoryProducer):
            async def start(self) -> None:
                await super().start()
                for group, offsets in transport.completing.items():
                    transport.groups[group].committed.update(offsets)
                transport.completing.clear()

        return Fencing(self)


def _echo_app() -> App:
    app = App("takeover", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    return app


def _queries(transport: MemoryTransport, app: App, count: int) -> None:
    topology = app.topology()
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    codec = MessageCodec()
    for i in range(count):
        ancestry = Ancestry.root(f"q{i}")
        value, headers = codec.encode(Envelope(ancestry, {"text": f"t{i}"}, "alto.Text"))
        transport.append(OutRecord(topology.input_topic, value, headers, ancestry.id.encode()))


async def test_a_new_owner_starts_after_the_previous_owners_last_transaction() -> None:
    app = _echo_app()
    topology = app.topology()
    plan = topology.plan("echo")
    codec = MessageCodec()
    transport = _CompletingTransaction()
    _queries(transport, app, 10)
    # The previous owner handled q0..q5 and committed offset 6 in a transaction that
    # is still completing: the committed offset read now is still 0.
    transport.completing[plan.group] = {(topology.input_topic, 0): 6}

    worker = Worker(app, "echo", transport, WorkerOptions(delivery="transactional"))
    run = asyncio.create_task(worker.run(timeout=5))
    for _ in range(200):
        if transport.groups[plan.group].committed.get((topology.input_topic, 0)) == 10:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await run
    outputs = Counter(
        codec.decode(r.value, r.headers).ancestry.query_id
        for r in transport.records(plan.output_topic)
    )
    assert outputs == Counter({f"q{i}": 1 for i in range(6, 10)})


class _FetchingDuringTakeOver(MemoryTransport):
    """A group that hands out records while the assignment callback still runs (as aiokafka).

    The transactional producers start only once records were fetched, so the
    take-over's seek drops those and they are fetched again.
    """

    def __init__(self) -> None:
        super().__init__(1)
        self.fetched = asyncio.Event()
        self.callbacks: list[asyncio.Task[None]] = []

    def consumer(
        self,
        topics: Any,
        group: str,
        *,
        on_assigned: RebalanceCallback,
        on_revoked: RebalanceCallback,
        read_committed: bool = False,
    ) -> _MemoryConsumer:
        transport = self

        async def in_background(partitions: set[Partition]) -> None:
            transport.callbacks.append(asyncio.create_task(on_assigned(partitions)))
            await asyncio.sleep(0)  # it takes the partitions, then waits for its producers

        class Early(_MemoryConsumer):
            async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
                records = await super().fetch(timeout, max_records)
                if records:
                    transport.fetched.set()
                return records

        return Early(self, list(topics), group, in_background, on_revoked)

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        if transactional_id is None:
            return _MemoryProducer(self)
        transport = self

        class Slow(_MemoryProducer):
            async def start(self) -> None:
                await asyncio.wait_for(transport.fetched.wait(), 5)

        return Slow(self)


async def test_records_dropped_by_a_take_over_are_not_counted_as_consumed() -> None:
    # Worker.run(count=3) must return once 3 records were handled, not once 3 were
    # fetched: the first fetch is dropped by the take-over (before the fix, run returned
    # having handled none of them, and the count included records fetched twice).
    app = _echo_app()
    plan = app.topology().plan("echo")
    transport = _FetchingDuringTakeOver()
    _queries(transport, app, 3)
    worker = Worker(app, "echo", transport, WorkerOptions(delivery="transactional"))
    stats = await asyncio.wait_for(worker.run(count=3, timeout=10), 30)
    await asyncio.gather(*transport.callbacks)
    codec = MessageCodec()
    outputs = Counter(
        codec.decode(r.value, r.headers).ancestry.query_id
        for r in transport.records(plan.output_topic)
    )
    assert outputs == Counter({f"q{i}": 1 for i in range(3)})
    assert transport.groups[plan.group].committed == {(plan.input_topic, 0): 3}
    assert stats.consumed == 3
