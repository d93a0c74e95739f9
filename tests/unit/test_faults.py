"""Bad records and faults in memory: each loses nothing and stalls nothing (issue 9)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.aggregate import Tracker
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.errors import AncestryError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryTransport, _MemoryProducer
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(60)

CODEC = MessageCodec()


def _two_level_app(name: str, *, plain: bool, slow: Callable[[], float] | None = None) -> App:
    """parts (split) -> step (map) -> join (aggregate closing parts); ``plain``: def handlers."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            yield {"text": w}

    @app.map(source=parts, schema="alto.Text")
    async def step(v: dict[str, Any]) -> dict[str, Any]:
        if slow is not None:
            await asyncio.sleep(slow())
        return {"text": v["text"].upper()}

    def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)}

    if plain:

        @app.aggregate(source=step, closes=parts, schema="alto.Text")
        def join(children: list[Child]) -> dict[str, Any]:
            return joined(children)

    else:

        @app.aggregate(source=step, closes=parts, schema="alto.Text")
        async def join(children: list[Child]) -> dict[str, Any]:
            return joined(children)

    return app


def _inject(transport: MemoryTransport, topic: str, envelope: Envelope, value: Any = ...) -> None:
    data, headers = CODEC.encode(envelope)
    transport.append(
        OutRecord(topic, data if value is ... else value, headers, envelope.ancestry.id.encode())
    )


def _letters(transport: MemoryTransport, topic: str) -> list[dict[str, Any]]:
    out = []
    for record in transport.records(topic):
        value = CODEC.decode(record.value, record.headers).value
        assert value is not None
        out.append(value)
    return out


@pytest.mark.parametrize("plain", [False, True], ids=["async-def", "def"])
async def test_a_marker_an_aggregate_rejects_goes_to_dead_letters(plain: bool) -> None:
    # Before: encoding the dead letter raised "a SKIP marker carries no value"; a plain
    # handler's worker died, an async one lost the record (and its runner).
    app = _two_level_app(f"reject-{int(plain)}", plain=plain)
    topology = app.topology()
    transport = MemoryTransport(1)
    too_deep = Ancestry.root("bogus").child("a", 0).child("b", 0).marker(Kind.SKIP, "x")
    conflicting = Ancestry.root("liar").end_marker("a", 2)
    _inject(transport, topology.plan("join").input_topic, Envelope(too_deep))
    _inject(transport, topology.plan("join").input_topic, Envelope(conflicting))
    # A count that contradicts the END marker above: rejected too.
    _inject(
        transport,
        topology.plan("join").input_topic,
        Envelope(Ancestry.root("liar").child("a", 0, count=5).marker(Kind.ERROR, "y")),
    )
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "still works"}], timeout=20)
        assert [r.value for r in results.values()] == [{"text": "STILL WORKS"}]
        join = next(w for w in run.workers if w.plan.name == "join")
        for _ in range(100):
            if join.stats.dead_letters >= 2:
                break
            await asyncio.sleep(0.02)
    letters = _letters(transport, topology.plan("join").dead_letter_topic)
    assert len(letters) == 2, letters
    # The count that contradicts an earlier one: CountConflictError (an AncestryError).
    assert sorted(letter["error"].split(":")[0] for letter in letters) == [
        "AncestryError",
        "CountConflictError",
    ]
    # Nothing of it leaks downstream deeper than the aggregate's output.
    for record in transport.records(topology.plan("join").output_topic):
        assert CODEC.decode(record.value, record.headers).ancestry.depth == 0


async def test_an_aggregates_error_marker_for_a_bad_fragment_is_not_emitted_too_deep() -> None:
    # Before: an aggregate that rejected a fragment sent an ERROR marker with the
    # fragment's (deep) path downstream; the next aggregate rejected that marker too,
    # and dead-lettering the marker raised.
    app = App("cascade", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def outer(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": p} for p in q["text"].split("|")]

    @app.split(source=outer, schema="alto.Text")
    def inner(p: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in p["text"].split()]

    @app.aggregate(source=inner, closes=inner, schema="alto.Text")
    def line(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    @app.aggregate(source=line, closes=outer, schema="alto.Text")
    def text(children: list[Child]) -> dict[str, Any]:
        return {"text": "|".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    topology = app.topology()
    transport = MemoryTransport(1)
    bad = Ancestry.root("bogus").child("a", 0).child("b", 0).child("c", 0)  # depth 3, not 2
    _inject(transport, topology.plan("line").input_topic, Envelope(bad, {"text": "x"}, "alto.Text"))
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "a b|c"}], timeout=20)
        assert [r.value for r in results.values()] == [{"text": "a b|c"}]
        await asyncio.sleep(0.3)
        assert all(not w._fatal for w in run.workers)
    assert len(transport.records(topology.plan("line").dead_letter_topic)) == 1
    assert transport.records(topology.plan("text").dead_letter_topic) == []


@pytest.mark.parametrize("where", ["step", "join"])
async def test_an_undecodable_value_with_a_readable_ancestry_completes_its_query(
    where: str,
) -> None:
    # A query's two children arrive by hand at ``where``'s input; the second one's
    # value is truncated Avro. Before: dead letter only, and the query never completed.
    app = _two_level_app(f"undecodable-{where}", plain=False)
    topology = app.topology()
    transport = MemoryTransport(1)
    root = Ancestry.root("q-corrupt")
    good = Envelope(root.child("a", 0), {"text": "fine"}, "alto.Text", "parts")
    bad = Envelope(root.child("a", 1, count=2), {"text": "lost"}, "alto.Text", "parts")
    bad_value, _ = CODEC.encode(bad)
    assert bad_value is not None
    topic = topology.plan(where).input_topic
    _inject(transport, topic, good)
    _inject(transport, topic, bad, value=bad_value[:2])
    async with LocalRun(app, transport) as run, run.client() as client:
        finals = [r async for r in client.follow(["q-corrupt"], timeout=20, since=0)]
        del run
    expected = "FINE <ERROR>" if where == "step" else "fine <ERROR>"
    assert [r.value for r in finals if r.final] == [{"text": expected}]
    (letter,) = _letters(transport, topology.plan(where).dead_letter_topic)
    assert "DecodeError" in letter["error_type"]


async def test_a_stop_commits_only_finished_records_and_the_next_owner_runs_the_rest() -> None:
    # Before: a stop cancelled the slow records after its grace, marked them done,
    # committed past them, and the next owner never ran them.
    delay = {"s": 30.0}
    app = _two_level_app("stop", plain=False, slow=lambda: delay["s"])
    topology = app.topology()
    plan = topology.plan("step")
    transport = MemoryTransport(1)
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    root = Ancestry.root("q-slow")
    for i in range(4):
        count = 4 if i == 3 else None
        _inject(
            transport,
            plan.input_topic,
            Envelope(root.child("a", i, count), {"text": f"w{i}"}, "alto.Text"),
        )
    first = Worker(app, "step", transport, WorkerOptions(shutdown_timeout=0.2))
    running = asyncio.create_task(first.run())
    for _ in range(200):
        if first.stats.in_flight == 4:
            break
        await asyncio.sleep(0.01)
    assert first.stats.in_flight == 4
    first.stop()
    await running
    committed = transport.groups[plan.group].committed.get((plan.input_topic, 0))
    assert committed in (None, 0), "offsets of records cut short were committed"
    assert transport.records(plan.output_topic) == []
    delay["s"] = 0.0
    second = Worker(app, "step", transport)
    running = asyncio.create_task(second.run())
    for _ in range(200):
        if len(transport.records(plan.output_topic)) == 4:
            break
        await asyncio.sleep(0.02)
    second.stop()
    await running
    assert len(transport.records(plan.output_topic)) == 4
    assert transport.groups[plan.group].committed[(plan.input_topic, 0)] == 4


async def test_an_output_larger_than_the_limit_becomes_a_dead_letter_and_an_error_marker() -> None:
    app = _two_level_app("large", plain=True)
    transport = MemoryTransport(1)
    options = WorkerOptions(max_record_bytes=10_000)
    async with LocalRun(app, transport, options=options) as run, run.client() as client:
        results = await client.run([{"text": "small " + "ΐ" * 3000 + " end"}], timeout=20)
        assert all(not w._fatal for w in run.workers)
    assert [r.value for r in results.values()] == [{"text": "SMALL <ERROR> END"}]
    (letter,) = _letters(transport, "large.step.dlq")
    assert "larger than" in letter["error"]


async def test_a_dead_letter_of_a_huge_record_is_truncated_to_the_limit() -> None:
    app = _two_level_app("huge", plain=True)
    topology = app.topology()
    transport = MemoryTransport(1)
    transport.append(OutRecord(topology.input_topic, b"\x01" * 50_000, [], b"k"))
    options = WorkerOptions(max_record_bytes=10_000)
    async with LocalRun(app, transport, options=options) as run, run.client() as client:
        results = await client.run([{"text": "after"}], timeout=20)
        del run
    assert [r.value for r in results.values()] == [{"text": "AFTER"}]
    (record,) = transport.records(topology.plan("parts").dead_letter_topic)
    assert len(record.value or b"") + sum(len(v) for _, v in record.headers) <= 10_000
    letter = CODEC.decode(record.value, record.headers).value
    assert letter is not None and "truncated" in letter["error"]
    assert letter["value"] == b"\x01" * len(letter["value"]) and len(letter["value"]) > 1000


def test_a_claimed_count_above_the_limit_is_refused() -> None:
    tracker = Tracker(0, 1, max_count=1000)
    with pytest.raises(AncestryError, match="limit"):
        tracker.add(Ancestry.root("q").child("a", 0, count=300_000), "x")
    with pytest.raises(AncestryError, match="limit"):
        tracker.add(Ancestry.root("q").child("a", 5_000_000), "x")
    with pytest.raises(AncestryError, match="limit"):
        tracker.add(Ancestry.root("q").end_marker("a", 1_000_000))
    assert len(tracker) == 0


def test_a_time_out_costs_what_arrived_not_what_was_claimed() -> None:
    clock = {"now": 0.0}
    tracker = Tracker(0, 2, clock=lambda: clock["now"])
    root = Ancestry.root("q", query_time=0.0)
    tracker.add(root.child("a", 3, count=90_000).child("b", 0, count=1), "x")
    tracker.add(root.child("a", 80_000).child("c", 7), "y")  # count unknown below
    clock["now"] = 10.0
    started = time.perf_counter()
    (completed,) = tracker.expire(5.0)
    elapsed = time.perf_counter() - started
    kinds = [(c.index, c.kind.name, c.span) for c in completed.children]
    assert kinds == [
        ((0,), "TIMEOUT", 3),
        ((3, 0), "DATA", 1),
        ((4,), "TIMEOUT", 79_996),
        ((80_000, 0), "TIMEOUT", 7),
        ((80_000, 7), "DATA", 1),
        ((80_000, 8), "TIMEOUT", 1),
        ((80_001,), "TIMEOUT", 9_999),
    ]
    assert elapsed < 0.05


async def test_a_transactional_time_out_commits_on_a_partition_that_read_nothing_new() -> None:
    # The ancestor's fragment was read by a first worker; the next owner restores it
    # from the changelog and fires it on time-out without reading any record. Before:
    # that output waited forever for a partition with a record read (found by fuzzing).
    app = App("tx-expire", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=parts, closes=parts, schema="alto.Text", timeout=0.3)
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    topology = app.topology()
    plan = topology.plan("join")
    transport = MemoryTransport(1)
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    orphan = Ancestry.root("orphan").child("a", 1)
    _inject(transport, plan.input_topic, Envelope(orphan, {"text": "x"}, "alto.Text"))
    options = WorkerOptions(delivery="transactional", expire_interval=0.05)
    first = Worker(app, "join", transport, replace(options, expire_interval=3600.0))
    await first.run(count=1)  # accepts the fragment, commits it with its offset, stops
    assert transport.groups[plan.group].committed[(plan.input_topic, 0)] == 1
    second = Worker(app, "join", transport, options)
    await second.run(timeout=1.5)
    outputs = [CODEC.decode(r.value, r.headers) for r in transport.records(plan.output_topic)]
    assert [o.value for o in outputs] == [{"text": "TIMEOUT x TIMEOUT"}]


async def test_an_ancestry_header_larger_than_the_limit_is_a_dead_letter() -> None:
    app = _two_level_app("runaway", plain=True)
    topology = app.topology()
    transport = MemoryTransport(1)
    huge = Ancestry.root("q" * 100_000).child("a", 0, count=1)
    _inject(
        transport, topology.plan("step").input_topic, Envelope(huge, {"text": "x"}, "alto.Text")
    )
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "fine"}], timeout=20)
        assert all(not w._fatal for w in run.workers)
    assert [r.value for r in results.values()] == [{"text": "FINE"}]
    (letter,) = _letters(transport, topology.plan("step").dead_letter_topic)
    assert "ancestry header" in letter["error"] and letter["offset"] == 0


async def test_a_timed_out_result_and_marker_both_too_large_make_a_dead_letter() -> None:
    # Before: the error marker raised too, out of the time-out loop: the worker died
    # (found by the long fuzz run, with an ancestry of 600 KB).
    app = App("too-large-twice", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=parts, closes=parts, schema="alto.Text", timeout=0.2)
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    topology = app.topology()
    plan = topology.plan("join")
    transport = MemoryTransport(1)
    orphan = Ancestry.root("q" * 30_000).child("a", 1)
    _inject(transport, plan.input_topic, Envelope(orphan, {"text": "x"}, "alto.Text"))
    options = WorkerOptions(max_record_bytes=20_000, expire_interval=0.05)
    worker = Worker(app, "join", transport, options)
    running = asyncio.create_task(worker.run(timeout=1.5))
    for _ in range(100):
        if transport.records(plan.dead_letter_topic):
            break
        await asyncio.sleep(0.02)
    assert not running.done(), "the worker stopped"
    await running
    (letter,) = _letters(transport, plan.dead_letter_topic)
    assert letter["error_type"] == "OutputTooLargeError" and letter["offset"] == -1
    assert transport.records(plan.output_topic) == []


class _SlowAcks(MemoryTransport):
    """Acknowledgements come 50 ms after a write, as from a busy broker."""

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        class Slow(_MemoryProducer):
            async def send_many(self, records: Sequence[OutRecord]) -> None:
                await asyncio.sleep(0.05)
                await super().send_many(records)

            def enqueue_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
                super().enqueue_now(records)
                acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_later(0.05, acked.set_result, None)
                return [acked]

        return Slow(self)


async def test_many_time_outs_at_once_do_not_hold_the_worker_for_a_write_each() -> None:
    # Before: each expired ancestor's result and fired entry waited for its own
    # acknowledgement, one after the other: 40 bogus partial trees held the loop
    # 40 x 2 x 50 ms, and valid queries behind them timed out (the long fuzz run).
    app = App("expire-many", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=parts, closes=parts, schema="alto.Text", timeout=0.1)
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    topology = app.topology()
    plan = topology.plan("join")
    transport = _SlowAcks(1)
    for i in range(40):
        orphan = Ancestry.root(f"orphan{i}").child("a", 1)
        _inject(transport, plan.input_topic, Envelope(orphan, {"text": "x"}, "alto.Text"))
    worker = Worker(app, "join", transport, WorkerOptions(expire_interval=3600.0))
    running = asyncio.create_task(worker.run(timeout=10))
    for _ in range(200):
        if worker.stats.consumed == 40 and not worker.stats.in_flight:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # past the time-out
    started = time.perf_counter()
    assert worker._aggregating is not None
    await worker._aggregating.expire()
    elapsed = time.perf_counter() - started
    worker.stop()
    await running
    assert len(transport.records(plan.output_topic)) == 40
    assert elapsed < 1.0, f"40 time-outs took {elapsed:.2f} s"


class _OutputStuck(MemoryTransport):
    """The output topic's writes are retried, then fail 0.3 s later (as a producer's
    delivery time-out): never written."""

    def __init__(self, partitions: int, output_topic: str) -> None:
        super().__init__(partitions)
        self.output_topic = output_topic
        self.stuck: list[OutRecord] = []

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        transport = self

        class Stuck(_MemoryProducer):
            def enqueue_now(self, records: Sequence[OutRecord]) -> list[asyncio.Future[Any]]:
                if any(r.topic == transport.output_topic for r in records):
                    transport.stuck.extend(records)
                    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    error = ConnectionError("the write timed out")
                    asyncio.get_running_loop().call_later(0.3, failed.set_exception, error)
                    return [failed]
                return super().enqueue_now(records)

        return Stuck(self)


async def test_an_aggregate_writes_its_fired_entry_only_once_its_result_is_acknowledged() -> None:
    # Before: the result and the fired entry were handed to the producer together. A
    # kill while the result's write was being retried left the fired entry in the
    # changelog and no result: the restored aggregate never fired again, and the
    # query never finished (test_kill_kafka, at-least-once, 1 in ~10 CI runs).
    app = App("fired-after-ack", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=parts, closes=parts, schema="alto.Text")
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children)}

    plan = app.topology().plan("join")
    assert plan.changelog_topic is not None
    transport = _OutputStuck(1, plan.output_topic)
    root = Ancestry.root("q1")
    for index, word in enumerate(["a", "b"]):
        child = root.child("a", index) if index == 0 else root.child("a", index, count=2)
        _inject(transport, plan.input_topic, Envelope(child, {"text": word}, "alto.Text"))
    worker = Worker(app, "join", transport, WorkerOptions())
    running = asyncio.create_task(worker.run(timeout=1.0))
    for _ in range(100):
        if transport.stuck:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # past the write's failure
    changelog = transport.records(plan.changelog_topic)
    worker.stop()
    with contextlib.suppress(Exception):  # the worker stops on the failed write
        await running
    assert transport.stuck, "the aggregate did not fire"
    keys = [record.key for record in changelog]
    assert len(keys) == 2  # the two fragments
    assert not [k for k in keys if k is not None and k.endswith(b"|fired")], keys


@pytest.mark.parametrize(
    ("label", "ancestry"),
    [
        ("nan-time", Ancestry("q-nan", float("nan"))),
        ("inf-time", Ancestry("q-inf", float("inf"))),
        ("root-end", Ancestry("q-end", 0.0, (), Kind.END)),
    ],
)
async def test_an_impossible_ancestry_on_the_input_is_a_dead_letter_and_an_error_final(
    label: str, ancestry: Ancestry
) -> None:
    # Found by a new user's raw producer. Before: a NaN or infinite query_time was
    # accepted (the query finished, and `alto-stream trace` crashed converting it to
    # an int); a root END marker (an END closes a split, so it needs a frame) flowed
    # through every stage and became the query's final, of kind END, with no reason.
    app = _two_level_app(f"impossible-{label}", plain=True)
    topology = app.topology()
    transport = MemoryTransport(1)
    value = None if ancestry.kind is Kind.END else {"text": "bad"}
    schema = None if value is None else "alto.Text"
    _inject(transport, topology.input_topic, Envelope(ancestry, value, schema))
    async with LocalRun(app, transport) as run, run.client() as client:
        finals = [r async for r in client.follow([ancestry.query_id], timeout=20, since=0)]
        results = await client.run([{"text": "still works"}], timeout=20)
        assert all(not w._fatal for w in run.workers)
    assert [r.value for r in results.values()] == [{"text": "STILL WORKS"}]
    (final,) = [r for r in finals if r.final]
    assert final.envelope.kind is Kind.ERROR and final.envelope.ancestry.reason
    assert math.isfinite(final.envelope.ancestry.query_time)
    (letter,) = _letters(transport, topology.plan("parts").dead_letter_topic)
    expected = "query_time" if ancestry.kind is Kind.DATA else "END marker"
    assert "DecodeError" in letter["error_type"] and expected in letter["error"], letter


async def test_a_transactional_worker_at_rest_counts_nothing_in_flight() -> None:
    # Found by a new user: after every final, `up` showed a transactional stage with
    # "in flight 1", and its worker stopped saying in_flight=1: the counts (in flight,
    # buffered) were taken before the round's last records ended, and not again while
    # the worker idled (here: buffered 2 for ever).
    app = _two_level_app("tx-rest", plain=False)
    topology = app.topology()
    transport = MemoryTransport(1)
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    root = Ancestry.root("q-rest")
    for index, word in enumerate(["a", "b"]):
        child = root.child("a", index, count=2 if index else None)
        _inject(
            transport,
            topology.plan("step").input_topic,
            Envelope(child, {"text": word}, "alto.Text"),
        )
    worker = Worker(app, "step", transport, WorkerOptions(delivery="transactional"))
    running = asyncio.create_task(worker.run(timeout=1.5))
    for _ in range(100):
        if len(transport.records(topology.plan("step").output_topic)) == 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # at rest
    assert (worker.stats.in_flight, worker.stats.buffered) == (0, 0)
    await running
