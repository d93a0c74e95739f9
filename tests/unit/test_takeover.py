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
from alto_stream.runtime.memory import MemoryTransport, _MemoryProducer
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import OutRecord, Partition


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


async def test_a_new_owner_starts_after_the_previous_owners_last_transaction() -> None:
    app = App("takeover", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    topology = app.topology()
    plan = topology.plan("echo")
    transport = _CompletingTransaction()
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    codec = MessageCodec()
    for i in range(10):
        ancestry = Ancestry.root(f"q{i}")
        value, headers = codec.encode(Envelope(ancestry, {"text": f"t{i}"}, "alto.Text"))
        transport.append(OutRecord(topology.input_topic, value, headers, ancestry.id.encode()))
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
