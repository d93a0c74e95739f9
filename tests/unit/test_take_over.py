"""A transactional take-over reads on from the committed offsets: nothing lost, nothing twice.

The worker's loop fetches while the rebalance callback waits on the network
(starting producers, reading the committed offsets). Found in the clean-clone
CI's kill test: 3 of 40 queries never finished, their records fetched from the
new offsets during the callback's last wait and then dropped as read before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import InRecord, OutRecord, Partition

pytestmark = pytest.mark.timeout(30)


class _Echo:
    """A one-partition transactional echo app on a memory transport of ``transport``'s kind."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.runs: list[str] = []
        app = App("take-over", input_schema="alto.Text")

        @app.map(source=app.input, schema="alto.Text")
        async def echo(value: dict[str, Any]) -> dict[str, Any]:
            self.runs.append(value["text"])
            return value

        topology = app.topology()
        self.plan, self.input = topology.plan("echo"), topology.input_topic
        self.transport = transport
        for spec in topology.topic_specs(partitions=1):
            transport.create_topic(spec.name, 1)
        self.codec = MessageCodec()
        self.worker = Worker(app, "echo", transport, WorkerOptions(delivery="transactional"))
        self.pushed = 0

    def push(self, count: int) -> None:
        for _ in range(count):
            i, self.pushed = self.pushed, self.pushed + 1
            envelope = Envelope(Ancestry.root(f"q{i}"), {"text": f"t{i}"}, "alto.Text")
            value, headers = self.codec.encode(envelope)
            self.transport.append(OutRecord(self.input, value, headers, b"k"))

    def outputs(self) -> list[str]:
        records = self.transport.records(self.plan.output_topic)
        return [self.codec.decode(r.value, r.headers).value["text"] for r in records]

    async def wait_for(self, check: Any, seconds: float = 3.0) -> bool:
        for _ in range(int(seconds / 0.02)):
            if check():
                return True
            await asyncio.sleep(0.02)
        return False


class _SlowOffsetReads(MemoryTransport):
    """Committed offsets come ``delay`` seconds after they are asked for (a round trip)."""

    def __init__(self, delay: float) -> None:
        super().__init__(1)
        self.delay = delay

    def consumer(self, *args: Any, **kwargs: Any) -> Any:
        consumer = super().consumer(*args, **kwargs)
        plain, delay = consumer.committed, self.delay

        async def committed(partitions: set[Partition]) -> dict[Partition, tuple[int, str]]:
            await asyncio.sleep(delay)
            return await plain(partitions)

        consumer.committed = committed  # type: ignore[method-assign]
        return consumer


async def test_records_fetched_while_a_take_over_reads_offsets_are_run() -> None:
    # The records arrive while the take-over waits for the committed offsets: the
    # loop fetches them meanwhile. Before the fix the seek came before that wait,
    # the records fetched from the new offsets were dropped as read before it, and
    # nothing read them again (the consumer was past them): lost.
    setup = _Echo(_SlowOffsetReads(delay=0.2))
    run = asyncio.create_task(setup.worker.run(timeout=15))
    setup.push(2)
    assert await setup.wait_for(lambda: sorted(setup.outputs()) == ["t0", "t1"])
    rebalance = asyncio.create_task(setup.transport.rebalance(setup.plan.group))
    await asyncio.sleep(0.05)  # inside the take-over's wait
    setup.push(4)
    await rebalance
    finished = await setup.wait_for(lambda: len(setup.outputs()) == 6)
    setup.worker.stop()
    await run
    assert finished, f"outputs {sorted(setup.outputs())}: records lost at the take-over"
    assert sorted(setup.outputs()) == [f"t{i}" for i in range(6)]
    assert sorted(setup.runs) == [f"t{i}" for i in range(6)]


class _LateBatch(MemoryTransport):
    """A fetch that completed before a take-over's seek is handed to the worker after it.

    (aiokafka's getmany returns, the rebalance callback seeks and resets the
    worker's books, then the loop resumes with the records of the earlier read.)
    """

    def __init__(self) -> None:
        super().__init__(1)
        self.late: list[InRecord] = []

    def consumer(self, *args: Any, **kwargs: Any) -> Any:
        consumer = super().consumer(*args, **kwargs)
        plain_seek, plain_fetch, transport = consumer.seek_to_committed, consumer.fetch, self

        async def seek_to_committed(partitions: set[Partition]) -> Any:
            targets = await plain_seek(partitions)
            for (topic, partition), (offset, _) in targets.items():
                log = transport.topics[topic][partition]
                # An earlier read, from two records below the committed offset.
                transport.late = list(log[max(0, offset - 2) :])
            return targets

        async def fetch(timeout: float, max_records: int) -> list[InRecord]:
            if transport.late:
                late, transport.late = transport.late, []
                return late
            return await plain_fetch(timeout, max_records)

        consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
        consumer.fetch = fetch  # type: ignore[method-assign]
        return consumer


async def test_records_of_a_read_before_the_take_over_run_once() -> None:
    # Records below the committed offset are done (their outputs committed by the
    # previous owner); those from it on are fetched again after the seek. Before
    # the fix both ran again: a duplicate on a read_committed topic.
    setup = _Echo(_LateBatch())
    run = asyncio.create_task(setup.worker.run(timeout=15))
    setup.push(3)
    assert await setup.wait_for(lambda: len(setup.outputs()) == 3)
    assert await setup.wait_for(
        lambda: setup.transport.groups[setup.plan.group].committed.get((setup.input, 0)) == 3
    )
    setup.push(2)  # not fetched yet when the take-over comes? They may be: both are fine
    await setup.transport.rebalance(setup.plan.group)
    await setup.wait_for(lambda: len(setup.outputs()) >= 5)
    await asyncio.sleep(0.3)  # time for a duplicate to show
    setup.worker.stop()
    await run
    assert sorted(setup.outputs()) == [f"t{i}" for i in range(5)]


def test_a_taken_over_book_reads_on_from_the_committed_offset() -> None:
    book = OffsetBook.resuming(5, "")
    assert [o for o in range(3, 8) if book.fetched_before(o)] == [3, 4]
    assert book.to_commit() is None  # nothing new to commit
    book.fetched(5)
    assert book.fetched_before(5)  # handed out again: not run twice
    assert not OffsetBook().fetched_before(0)
