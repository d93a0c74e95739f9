"""Records done above a partition's committed offset: named in the commit, never run twice."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.offsets import MAX_METADATA, CommitPoint, DoneAbove, OffsetBook
from alto_stream.runtime.worker import DeliveryMode, Worker, WorkerOptions
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(60)


@given(
    base=st.integers(min_value=0, max_value=10**12),
    deltas=st.sets(st.integers(min_value=1, max_value=5_000), max_size=50),
    extra=st.integers(min_value=0, max_value=100),
)
def test_metadata_decodes_to_what_was_encoded(base: int, deltas: set[int], extra: int) -> None:
    pending = frozenset({base} | {base + d for d in deltas})
    done = DoneAbove(end=max(pending) + 1 + extra, pending=pending)
    assert DoneAbove.decode(base, done.encode(base)) == done


@pytest.mark.parametrize(
    "text", ["", "x", "alto1", "alto1 -1", "alto1 2 5", "alto1 3 a-b", "alto2 3"]
)
def test_metadata_of_no_commit_of_ours_is_ignored(text: str) -> None:
    assert DoneAbove.decode(100, text) is None


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    size=st.integers(min_value=1, max_value=3_000),
    gaps=st.floats(min_value=0.0, max_value=0.5),
    running=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_commit_names_only_records_done_and_fits_kafkas_limit(
    seed: int, size: int, gaps: float, running: float
) -> None:
    # Offsets not fetched are gaps (transaction markers): they hold no record.
    draw = random.Random(seed)
    book = OffsetBook()
    offsets = [o for o in range(size) if draw.random() >= gaps]
    for offset in offsets:
        book.fetched(offset)
    for offset in offsets:
        if draw.random() >= running:
            book.done(offset)
    point = book.point()
    if not offsets:
        assert point is None
        return
    assert point is not None
    assert len(point.metadata) <= MAX_METADATA
    decoded = DoneAbove.decode(point.offset, point.metadata) if point.metadata else None
    assert decoded == point.done
    for offset in offsets:
        if point.covers(offset):
            assert offset not in book.pending  # never a record still running
    if len(book.pending) <= 100:  # small enough to name them all: every done one is named
        assert all(point.covers(o) for o in offsets if o not in book.pending)


def test_a_commit_point_moves_when_a_record_above_finishes() -> None:
    book = OffsetBook()
    for offset in range(4):
        book.fetched(offset)
    assert book.to_commit() == CommitPoint(0)
    book.committed = book.to_commit()
    book.done(2)  # above the lowest not done: the offset stays, the metadata moves
    point = book.to_commit()
    assert point is not None and point.offset == 0 and point.metadata == "alto1 4 1,3"
    assert [point.covers(o) for o in range(5)] == [False, False, True, False, False]


class _Blocked:
    """A one-partition app whose first query's record waits for ``release``; the rest do not."""

    def __init__(self, delivery: DeliveryMode, queries: int) -> None:
        self.release = asyncio.Event()
        self.runs: list[str] = []
        app = App(f"blocked-{delivery}", input_schema="alto.Text")

        @app.map(source=app.input, schema="alto.Text", max_in_flight=8)
        async def slow(value: dict[str, Any]) -> dict[str, Any]:
            self.runs.append(value["text"])
            if value["text"] == "t0":
                await self.release.wait()
            return value

        topology = app.topology()
        self.app, self.plan, self.input = app, topology.plan("slow"), topology.input_topic
        self.transport = MemoryTransport(1)
        for spec in topology.topic_specs(partitions=1):
            self.transport.create_topic(spec.name, 1)
        self.codec = MessageCodec()
        for i in range(queries):
            envelope = Envelope(Ancestry.root(f"q{i}"), {"text": f"t{i}"}, "alto.Text")
            value, headers = self.codec.encode(envelope)
            self.transport.append(OutRecord(self.input, value, headers, b"k"))
        self.worker = Worker(app, "slow", self.transport, WorkerOptions(delivery=delivery))

    def outputs(self) -> list[str]:
        records = self.transport.records(self.plan.output_topic)
        return [self.codec.decode(r.value, r.headers).value["text"] for r in records]

    async def wait_for(self, check: Any) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("timed out")


async def test_a_running_transactional_record_holds_back_no_output_of_the_records_after_it() -> (
    None
):
    # docs/scheduling.md said: a transaction commits a partition's outputs only up to
    # its lowest record not done, so one long call (a generation) held back the
    # outputs of every record after it, other queries' included.
    setup = _Blocked("transactional", 6)
    run = asyncio.create_task(setup.worker.run(timeout=10))
    await setup.wait_for(lambda: sorted(setup.outputs()) == [f"t{i}" for i in range(1, 6)])
    committed = setup.transport.groups[setup.plan.group]
    assert committed.committed[(setup.input, 0)] == 0  # t0 still runs
    assert DoneAbove.decode(0, committed.metadata[(setup.input, 0)]) == DoneAbove(
        end=6, pending=frozenset({0})
    )
    setup.release.set()
    await setup.wait_for(lambda: len(setup.outputs()) == 6)
    setup.worker.stop()
    await run
    assert sorted(setup.outputs()) == [f"t{i}" for i in range(6)]


@pytest.mark.parametrize("delivery", ["transactional", "at-least-once"])
async def test_a_new_owner_runs_only_the_records_not_done(delivery: DeliveryMode) -> None:
    # A rebalance while t0 runs: the records above it, done, are named in the commit
    # and not run again (at-least-once ran them again: duplicates downstream).
    setup = _Blocked(delivery, 6)
    setup.worker.options = WorkerOptions(delivery=delivery, shutdown_timeout=0.1)
    run = asyncio.create_task(setup.worker.run(timeout=10))
    await setup.wait_for(lambda: len(setup.runs) == 6 and len(setup.outputs()) == 5)
    await setup.transport.rebalance(setup.plan.group)  # t0 is cut short, and runs again
    await setup.wait_for(lambda: setup.runs.count("t0") == 2)
    setup.release.set()
    await setup.wait_for(lambda: len(setup.outputs()) == 6)
    await asyncio.sleep(0.1)
    setup.worker.stop()
    await run
    assert sorted(setup.runs) == ["t0", "t0", "t1", "t2", "t3", "t4", "t5"]
    assert sorted(setup.outputs()) == [f"t{i}" for i in range(6)]


def test_the_example_of_docs_wire_format() -> None:
    done = DoneAbove.decode(1_000, "alto1 6 3")
    assert done == DoneAbove(end=1_006, pending=frozenset({1_000, 1_003}))
    assert [o for o in range(999, 1_008) if CommitPoint(1_000, done).covers(o)] == [
        999,
        1_001,
        1_002,
        1_004,
        1_005,
    ]


def test_a_new_owner_s_commit_keeps_what_the_previous_owner_did() -> None:
    # Committed 100 with 101, 102, 104, 105 done. The new owner runs 100 and commits
    # before it has fetched the rest: its commit must still name 104 and 105 done, or
    # a third owner would run them again (in the transactional mode, outputs twice).
    book = OffsetBook.resuming(100, "alto1 6 3")
    assert book.to_commit() is None  # nothing new to say
    assert [o for o in range(100, 107) if book.skips(o)] == [101, 102, 104, 105]
    book.fetched(100)
    book.done(100)
    point = book.to_commit()
    assert point == CommitPoint(103, DoneAbove(end=106, pending=frozenset({103})))
    assert point.metadata == "alto1 3"
    assert OffsetBook.resuming(100, "").done_before is None
    assert OffsetBook.resuming(100, "not ours").done_before is None


class _SlowAcks(MemoryTransport):
    """Producers whose acknowledgements come ``delay`` seconds after the records are written."""

    def __init__(self, delay: float) -> None:
        super().__init__(1)
        self.delay = delay

    def producer(self, *, transactional_id: str | None = None) -> Any:
        producer = super().producer(transactional_id=transactional_id)
        delay = self.delay
        plain = producer.enqueue_now

        def enqueue_now(records: Any) -> list[asyncio.Future[Any]]:
            plain(records)
            late: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(delay, late.set_result, None)
            return [late]

        producer.enqueue_now = enqueue_now  # type: ignore[method-assign]
        return producer


async def test_a_revocation_waits_for_the_acknowledgements_of_finished_records() -> None:
    # Found by a new user (at-least-once): a record finished just before a rebalance,
    # its outputs not yet acknowledged, was not done at the revocation's commit, and
    # its next owner ran the whole generation again.
    handled: list[str] = []
    app = App("slow-acks", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        handled.append(value["text"])
        return value

    topology = app.topology()
    plan = topology.plan("echo")
    transport = _SlowAcks(delay=0.5)
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    codec = MessageCodec()
    for i in range(3):
        envelope = Envelope(Ancestry.root(f"q{i}"), {"text": f"t{i}"}, "alto.Text")
        value, headers = codec.encode(envelope)
        transport.append(OutRecord(topology.input_topic, value, headers, b"k"))
    options = WorkerOptions(commit_interval=3600.0)  # no periodic commit in this test
    worker = Worker(app, "echo", transport, options)
    run = asyncio.create_task(worker.run(timeout=10))
    for _ in range(100):
        if len(handled) == 3:
            break
        await asyncio.sleep(0.01)
    await transport.rebalance(plan.group)  # the acknowledgements are still on their way
    assert transport.groups[plan.group].committed[(topology.input_topic, 0)] == 3
    await asyncio.sleep(0.8)
    worker.stop()
    await run
    assert sorted(handled) == ["t0", "t1", "t2"]  # none ran again
