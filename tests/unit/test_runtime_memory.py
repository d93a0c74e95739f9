"""The runtime over the in-memory transport: every stage kind, nesting, failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.app import Topology
from alto_stream.errors import ConfigError, RetriableError, TopologyError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun, run_in_memory
from alto_stream.runtime.memory import MemoryTransport, _MemoryProducer
from alto_stream.runtime.worker import DeliveryMode, Worker, WorkerOptions
from alto_stream.transport import OutRecord, Partition
from workers import textflow

pytestmark = pytest.mark.timeout(60)

DOCS = list(textflow.SAMPLES)


async def test_textflow_matches_sequential_reference() -> None:
    results = await run_in_memory(textflow.app, [{"text": d} for d in DOCS], timeout=30)
    assert [r.value for r in results] == [{"text": textflow.reference(d)} for d in DOCS]
    assert all(r.final and r.ok for r in results)


async def test_textflow_with_replicas_matches_reference() -> None:
    results = await run_in_memory(
        textflow.app, [{"text": d} for d in DOCS * 3], replicas=2, partitions=3
    )
    assert [r.value["text"] for r in results if r.value] == [
        textflow.reference(d) for d in DOCS * 3
    ]


def _app_with(handler_kind: str, **options: Any) -> App:
    app = App(f"t-{handler_kind}", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            yield {"text": w}

    if handler_kind == "batch":
        calls: list[int] = []

        @app.batch(source=parts, schema="alto.Text", size=4, wait=0.05)
        async def step(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
            calls.append(len(values))
            return [{"text": v["text"][::-1]} for v in values]

        app.calls = calls  # type: ignore[attr-defined]
    else:
        failures = {"n": 0}

        @app.map(source=parts, schema="alto.Text", **options)
        async def step(v: dict[str, Any]) -> dict[str, Any]:
            if v["text"] == "boom":
                raise ValueError("boom is not a word")
            if v["text"] == "flaky" and failures["n"] < 2:
                failures["n"] += 1
                raise RetriableError("try again")
            return {"text": v["text"][::-1]}

    @app.aggregate(source=step, closes=parts, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)}

    return app


async def test_batch_stage_gets_micro_batches() -> None:
    app = _app_with("batch")
    results = await run_in_memory(app, [{"text": "ab cd ef gh ij kl mn"}])
    assert results[0].value == {"text": "ba dc fe hg ji lk nm"}
    assert max(app.calls) <= 4 and sum(app.calls) == 7  # type: ignore[attr-defined]


async def test_failure_goes_to_dead_letters_and_error_marker_completes_query() -> None:
    app = _app_with("map", retries=3, retry_backoff=0.01)
    transport = MemoryTransport(2)
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "ok boom flaky"}], timeout=20)
    (result,) = results.values()
    assert result.value == {"text": "ko <ERROR> ykalf"}
    letters = transport.records("t-map.step.dlq")
    assert len(letters) == 1
    letter = client.codec.decode(letters[0].value, letters[0].headers)
    assert letter.value is not None and "boom is not a word" in letter.value["error"]
    assert letter.value["stage"] == "step"
    # The same text as the error marker's reason (before: the dead letter had a repr).
    assert letter.value["error"] == f"{letter.value['error_type']}: boom is not a word"


async def test_zero_child_split_and_filter() -> None:
    results = await run_in_memory(textflow.app, [{"text": ""}, {"text": "skip"}])
    assert [r.value for r in results] == [{"text": ""}, {"text": ""}]


async def test_query_aware_scheduling_finishes_queries_in_arrival_order() -> None:
    app = App("sched", input_schema="alto.Text")
    running = {"n": 0}

    @app.split(source=app.input, schema="alto.Text")
    async def fan(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": f"{q['text']}-{i}"} for i in range(8)]

    @app.map(source=fan, schema="alto.Text", max_in_flight=4)
    async def slow(v: dict[str, Any]) -> dict[str, Any]:
        running["n"] += 1
        await asyncio.sleep(0.02)
        return v

    @app.aggregate(source=slow, closes=fan, schema="alto.Text")
    async def done(children: list[Child]) -> dict[str, Any]:
        return {"text": str(len(children))}

    transport = MemoryTransport(1)
    async with LocalRun(app, transport) as run, run.client() as client:
        ids = await client.push_many([{"text": f"q{i}"} for i in range(6)])
        order = [r.query_id async for r in client.follow(ids, timeout=20, since=0, partials=False)]
    assert order == ids  # oldest query first: they finish one after another


def test_topology_infers_depths_keys_and_topics() -> None:
    topology = textflow.app.topology()
    plan = topology.plan("sentence_text")
    assert (plan.depth_in, plan.aggregate_depth, plan.depth_out) == (3, 2, 2)
    assert topology.plan("shout").key_depth == 2  # keyed for the aggregate that reads it
    assert topology.plan("words").key_depth is None
    assert topology.plan("document").aggregate_depth == 0
    assert topology.outputs == ("document",)
    assert plan.changelog_topic == "textflow.sentence_text.changelog"
    assert "textflow.input" in topology.topic_names()


def test_topology_errors_are_clear() -> None:
    app = App("bad", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def first(v: dict[str, Any]) -> dict[str, Any]:
        return v

    @app.split(source=app.input, schema="alto.Text")
    async def other(v: dict[str, Any]) -> list[dict[str, Any]]:
        return [v]

    @app.aggregate(source=first, closes=other, schema="alto.Text")
    async def agg(children: list[Child]) -> dict[str, Any]:
        return {}

    with pytest.raises(TopologyError, match="not upstream"):
        app.topology()


def test_an_app_ending_on_a_split_it_never_closes_is_refused_at_load_time() -> None:
    # Found by a new user: the aggregate forgotten, the app loaded and every query
    # timed out with no word why (a final is a record at the root's depth).
    app = App("open-leaf", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def outer(v: dict[str, Any]) -> list[dict[str, Any]]:
        return [v, v]

    @app.split(source=outer, schema="alto.Text")
    async def inner(v: dict[str, Any]) -> list[dict[str, Any]]:
        return [v]

    @app.aggregate(source=inner, closes=inner, schema="alto.Text")
    async def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": ""}

    with pytest.raises(TopologyError, match=r"ends on stage 'joined'.* depth 1.*'outer'"):
        app.topology()


def test_two_output_stages_at_the_root_depth_are_refused_at_load_time() -> None:
    # Found by a new user: each query showed one final, stage b's result never.
    app = App("two-finals", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def a(v: dict[str, Any]) -> dict[str, Any]:
        return v

    @app.map(source=app.input, schema="alto.Text")
    async def b(v: dict[str, Any]) -> dict[str, Any]:
        return v

    with pytest.raises(TopologyError, match=r"2 output stages at the root's depth.*: a, b"):
        app.topology()


async def test_an_output_inside_a_split_beside_the_final_one_gives_partials() -> None:
    app = App("side-output", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(v: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in v["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def echo(word: dict[str, Any]) -> dict[str, Any]:
        return {"text": word["text"].upper()}

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def counted(children: list[Child]) -> dict[str, Any]:
        return {"text": str(len(children))}

    assert app.topology().outputs == ("echo", "counted")
    (result,) = await run_in_memory(app, [{"text": "a b c"}], timeout=10)
    assert (result.stage, result.value) == ("counted", {"text": "3"})


async def test_abandoned_ancestor_closes_after_timeout_with_explicit_marker() -> None:
    app = App("abandon", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.map(source=parts, schema="alto.Text")
    async def hang(v: dict[str, Any]) -> dict[str, Any]:
        if v["text"] == "never":
            await asyncio.sleep(3600)  # this fragment never arrives
        return v

    @app.aggregate(source=hang, closes=parts, schema="alto.Text", timeout=0.5)
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    transport = MemoryTransport(1)
    options = WorkerOptions(expire_interval=0.1, shutdown_timeout=0.5)
    async with LocalRun(app, transport, options=options) as run, run.client() as client:
        results = await client.run([{"text": "a never b"}], timeout=10)
    (result,) = results.values()
    assert result.value == {"text": "a TIMEOUT b"}


async def test_duplicate_query_delivery_gives_one_final_result() -> None:
    transport = MemoryTransport(2)
    app = textflow.build("dupes")
    async with LocalRun(app, transport) as run, run.client() as client:
        await client.push({"text": "Twice. Over."}, query_id="same-id")
        # The same record delivered three times (a client does not push an id twice).
        [pushed] = transport.records("dupes.input")
        for _ in range(2):
            transport.append(OutRecord(pushed.topic, pushed.value, pushed.headers, pushed.key))
        await transport.notify()
        finals = [r async for r in client.follow(["same-id"], timeout=10, since=0)]
        await asyncio.sleep(0.5)  # let the duplicates run through every stage
    assert [r.value for r in finals if r.final] == [{"text": "TWICE. OVER."}]
    output = transport.records("dupes.document")
    assert len(output) == 1, "the duplicates fired the query's aggregate twice"


async def test_backpressure_pauses_partitions_and_loses_nothing() -> None:
    app = textflow.build("pressure", word_delay=0.002, word_in_flight=2)
    transport = MemoryTransport(2)
    options = WorkerOptions(max_buffered=8, fetch_max=4)
    docs = [f"Doc {i} has a few words. And more words here." for i in range(10)]
    async with LocalRun(app, transport, options=options) as run, run.client() as client:
        results = await client.run([{"text": d} for d in docs], timeout=30)
        shout = next(w for w in run.workers if w.plan.name == "shout")
        assert shout.stats.pauses > 0
    assert sorted(r.value["text"] for r in results.values() if r.value) == sorted(
        textflow.reference(d) for d in docs
    )


async def test_plain_function_stages_match_the_async_app() -> None:
    # Plain ``def`` handlers (generators, a list split, a filter, aggregates) run
    # inline in the worker's loop; nested three levels deep, with replicas.
    app = textflow.build("textflow-plain", plain=True)
    assert all(stage.inline for stage in app.stages.values())
    results = await run_in_memory(app, [{"text": d} for d in DOCS * 2], replicas=2, partitions=3)
    assert [r.value for r in results] == [{"text": textflow.reference(d)} for d in DOCS * 2]


async def test_plain_function_failure_goes_to_dead_letters() -> None:
    app = App("plain-fail", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.map(source=parts, schema="alto.Text")
    def step(v: dict[str, Any]) -> dict[str, Any]:
        if v["text"] == "boom":
            raise ValueError("boom is not a word")
        return {"text": v["text"][::-1]}

    @app.aggregate(source=step, closes=parts, schema="alto.Text")
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)}

    transport = MemoryTransport(2)
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "ok boom yes"}], timeout=20)
    (result,) = results.values()
    assert result.value == {"text": "ko <ERROR> sey"}
    assert len(transport.records("plain-fail.step.dlq")) == 1


async def test_plain_retrying_and_batch_stages_still_run_as_tasks() -> None:
    app = App("plain-kinds", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text", retries=2)
    def retried(v: dict[str, Any]) -> dict[str, Any]:
        return v

    @app.batch(source=retried, schema="alto.Text")
    def batched(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return values

    assert not app.stages["retried"].inline and not app.stages["retried"].is_async
    assert not app.stages["batched"].inline
    results = await run_in_memory(app, [{"text": "a"}, {"text": "b"}])
    assert [r.value for r in results] == [{"text": "a"}, {"text": "b"}]


def test_a_generator_that_is_not_a_split_is_refused() -> None:
    app = App("gen", input_schema="alto.Text")
    with pytest.raises(ConfigError, match="only a split may be a generator"):

        @app.map(source=app.input, schema="alto.Text")
        def step(v: dict[str, Any]) -> Iterator[dict[str, Any]]:
            yield v


@pytest.mark.parametrize("delivery", ["transactional", "at-least-once"])
async def test_revocation_mid_batch_commits_no_output_of_a_record_run_again(
    delivery: DeliveryMode,
) -> None:
    # Oldest query first: later offsets (older queries) run before earlier ones, so
    # at the revocation finished records sit above unfinished ones. Their outputs
    # must not be committed with the lower offset, or the next owner runs them
    # again and a transactional reader sees them twice (found by the zombie test).
    app = App("revoked", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text", max_in_flight=1)
    async def slow(value: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return value

    topology = app.topology()
    plan = topology.plan("slow")
    now = time.time()
    transport = _one_partition(
        topology, [Ancestry.root(f"q{i}", query_time=now - i) for i in range(6)]
    )
    codec = MessageCodec()
    worker = Worker(app, "slow", transport, WorkerOptions(delivery=delivery))
    run = asyncio.create_task(worker.run(timeout=3))
    await asyncio.sleep(0.125)  # q5 and q4 done, q3 running, q0..q2 waiting
    await transport.rebalance(plan.group)
    for _ in range(100):  # until every offset is committed (at most 2 s)
        if transport.groups[plan.group].committed.get((topology.input_topic, 0)) == 6:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await run
    outputs = Counter(
        codec.decode(r.value, r.headers).ancestry.query_id
        for r in transport.records(plan.output_topic)
    )
    assert set(outputs) == {f"q{i}" for i in range(6)}
    # In both modes: the commit names the records done above its offset (at-least-once
    # ran them again before 2026-12-02).
    assert all(n == 1 for n in outputs.values()), outputs


async def test_a_revoked_partition_commits_what_was_done_before_it_goes() -> None:
    # Without that last commit, its next owner would run everything since the
    # previous periodic commit again (harmless downstream, but wasted work).
    app = App("handover", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    topology = app.topology()
    plan = topology.plan("echo")
    transport = _one_partition(topology, [Ancestry.root(f"q{i}") for i in range(20)])
    options = WorkerOptions(commit_interval=3600.0)  # no periodic commit in this test
    worker = Worker(app, "echo", transport, options)
    run = asyncio.create_task(worker.run(timeout=5))
    for _ in range(100):
        if len(transport.records(plan.output_topic)) == 20:
            break
        await asyncio.sleep(0.02)
    assert transport.groups[plan.group].committed.get((topology.input_topic, 0)) is None
    await transport.rebalance(plan.group)
    assert transport.groups[plan.group].committed[(topology.input_topic, 0)] == 20
    await asyncio.sleep(0.2)
    worker.stop()
    await run
    assert len(transport.records(plan.output_topic)) == 20  # nothing ran twice


@pytest.mark.parametrize("delivery", ["transactional", "at-least-once"])
async def test_a_revocation_cuts_records_still_running_after_the_grace(
    delivery: DeliveryMode,
) -> None:
    # docs/faults.md: a revocation, as a stop, cancels the records still running after
    # shutdown_timeout. It only waited: a 30 s LLM call went on at the old owner while
    # the next owner ran the record again.
    app = App("cut", input_schema="alto.Text")
    calls: list[str] = []

    @app.map(source=app.input, schema="alto.Text")
    async def generate(value: dict[str, Any]) -> dict[str, Any]:
        calls.append("start")
        try:
            if len(calls) == 1:
                await asyncio.sleep(30)  # the first run hangs
        except asyncio.CancelledError:
            calls.append("cut")
            raise
        return value

    topology = app.topology()
    plan = topology.plan("generate")
    transport = _one_partition(topology, [Ancestry.root("q0")])
    options = WorkerOptions(delivery=delivery, shutdown_timeout=0.2)
    worker = Worker(app, "generate", transport, options)
    run = asyncio.create_task(worker.run(timeout=10))
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    await transport.rebalance(plan.group)  # the partition comes back: the record runs again
    for _ in range(100):
        if transport.records(plan.output_topic):
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await run
    assert calls == ["start", "cut", "start"]
    assert len(transport.records(plan.output_topic)) == 1


def _one_partition(topology: Topology, queries: list[Ancestry]) -> MemoryTransport:
    """A one-partition in-memory transport with ``queries`` on the app's input, in order."""
    transport = MemoryTransport(1)
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    codec = MessageCodec()
    for i, ancestry in enumerate(queries):
        value, headers = codec.encode(Envelope(ancestry, {"text": f"t{i}"}, "alto.Text"))
        transport.append(OutRecord(topology.input_topic, value, headers, ancestry.id.encode()))
    return transport


async def test_a_record_enqueued_without_waiting_wakes_a_waiting_reader() -> None:
    transport = MemoryTransport(partitions=1)
    transport.create_topic("t")
    consumer = transport.consumer(["t"], "g", on_assigned=_nothing, on_revoked=_nothing)
    await consumer.start()
    producer = transport.producer()
    waiting = asyncio.create_task(consumer.fetch(5.0, 10))
    await asyncio.sleep(0.01)  # the reader is waiting for a write
    acks = producer.enqueue_now([OutRecord("t", b"v", [], b"k")])
    assert acks is not None and all(a.done() for a in acks)
    got = await asyncio.wait_for(waiting, 1.0)  # woken, not after its 5 s
    assert [r.value for r in got] == [b"v"]


async def _nothing(partitions: object) -> None:
    return None


class _SlowCommits(MemoryTransport):
    """Transactions that take 0.2 s to commit, each noted with the records it holds."""

    def __init__(self) -> None:
        super().__init__(1)
        self.rounds: list[tuple[float, float, int]] = []  # start, end, records

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        if transactional_id is None:
            return _MemoryProducer(self)
        transport = self

        class Slow(_MemoryProducer):
            async def commit_transaction(
                self,
                records: Sequence[OutRecord],
                offsets: Mapping[Partition, int],
                group: str,
                *,
                metadata: Mapping[Partition, str] | None = None,
            ) -> None:
                start = time.monotonic()
                await asyncio.sleep(0.2)
                await super().commit_transaction(records, offsets, group, metadata=metadata)
                transport.rounds.append((start, time.monotonic(), len(records)))

        return Slow(self)


class _GroupCommit:
    """A transactional echo worker over :class:`_SlowCommits`; queries pushed one by one."""

    def __init__(self) -> None:
        self.handled: list[float] = []
        app = App("group-commit", input_schema="alto.Text")

        @app.map(source=app.input, schema="alto.Text")
        def echo(value: dict[str, Any]) -> dict[str, Any]:
            self.handled.append(time.monotonic())
            return value

        topology = app.topology()
        self.input = topology.input_topic
        self.plan = topology.plan("echo")
        self.transport = _SlowCommits()
        for spec in topology.topic_specs(partitions=1):
            self.transport.create_topic(spec.name, 1)
        self.worker = Worker(app, "echo", self.transport, WorkerOptions(delivery="transactional"))
        self.codec = MessageCodec()

    async def push(self, i: int) -> None:
        envelope = Envelope(Ancestry.root(f"q{i}"), {"text": f"t{i}"}, "alto.Text")
        value, headers = self.codec.encode(envelope)
        self.transport.append(OutRecord(self.input, value, headers, b"k"))
        await self.transport.notify()

    def committed(self) -> int | None:
        return self.transport.groups[self.plan.group].committed.get((self.input, 0))

    def outputs(self) -> list[Any]:
        records = self.transport.records(self.plan.output_topic)
        return [self.codec.decode(r.value, r.headers).value for r in records]


async def test_records_run_while_a_transaction_commits_and_go_into_the_next() -> None:
    setup = _GroupCommit()
    run = asyncio.create_task(setup.worker.run(timeout=5))
    arrived = []
    for i in range(10):  # a query every 40 ms, for 0.4 s
        arrived.append(time.monotonic())
        await setup.push(i)
        await asyncio.sleep(0.04)
    for _ in range(100):
        if setup.committed() == 10:
            break
        await asyncio.sleep(0.05)
    setup.worker.stop()
    await run
    assert setup.outputs() == [{"text": f"t{i}"} for i in range(10)]  # each once, in order
    # Records ran as they came, while a transaction was committing (not after it),
    # and went into the next one: a few rounds, not one per record.
    rounds, handled = setup.transport.rounds, setup.handled
    assert max(t - a for a, t in zip(arrived, handled, strict=True)) < 0.1
    assert any(start < t < end for start, end, _ in rounds for t in handled)
    assert len(rounds) <= 4, rounds
    assert sum(n for _, _, n in rounds) == 10


async def test_a_stopping_transactional_worker_commits_what_ran_during_the_last_round() -> None:
    setup = _GroupCommit()
    # Rounds take 0.2 s: q0 commits alone, q1 and q2 in the next round (from 0.2 s),
    # q3 runs during that one and is still waiting for a round when the time is up.
    run = asyncio.create_task(setup.worker.run(timeout=0.32))
    started = time.monotonic()
    for i, at in enumerate([0.0, 0.05, 0.1, 0.25]):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        await setup.push(i)
    await run
    assert setup.committed() == 4
    assert setup.outputs() == [{"text": f"t{i}"} for i in range(4)]


@pytest.mark.parametrize("retry_on", [KeyError, (KeyError,), (ValueError, KeyError)])
async def test_retry_on_retries_the_types_it_names(retry_on: Any) -> None:
    # `retry_on=(LLMError,)`, as docs/components.md suggests: a failure of a named
    # type is retried, not turned into a TypeError from `RetriableError | (KeyError,)`.
    app = App("t-retry-on", input_schema="alto.Text")
    calls = {"n": 0}

    @app.map(source=app.input, schema="alto.Text", retries=2, retry_backoff=0.01, retry_on=retry_on)
    async def flaky(value: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("flaky")
        return value

    (result,) = await run_in_memory(app, [{"text": "x"}], timeout=20)
    assert result.ok and result.value == {"text": "x"} and calls["n"] == 2


@pytest.mark.parametrize("generator", ["async", "plain"])
async def test_a_generator_split_retries_a_retriable_failure_as_a_new_attempt(
    generator: str,
) -> None:
    # A streamed generation that breaks mid-answer (LLMError, retriable) after
    # its first sentence: `retries=` re-runs the whole split, as documented, and
    # the aggregate takes the re-run's children only.
    app = App(f"t-split-retry-{generator}", input_schema="alto.Text")
    runs = {"n": 0}

    def sentences(query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        runs["n"] += 1
        yield {"text": f"run{runs['n']}-a"}
        if runs["n"] == 1:
            raise RetriableError("the stream broke after text was sent")
        yield {"text": f"run{runs['n']}-b"}

    async def async_sentences(query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for child in sentences(query):
            yield child

    handler = async_sentences if generator == "async" else sentences
    split = app.split(source=app.input, schema="alto.Text", retries=1, retry_backoff=0.01)
    answer = split(handler)

    @app.aggregate(source=answer, closes=answer, schema="alto.Text")
    async def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    (result,) = await run_in_memory(app, [{"text": "q"}], timeout=20)
    assert result.ok and result.value == {"text": "run2-a run2-b"}
    assert runs["n"] == 2


async def test_a_handler_that_raises_cancelled_error_or_calls_sys_exit_fails_its_record() -> None:
    # Found by a new user: a map raising asyncio.CancelledError swallowed its record
    # (no marker, no dead letter, no log line; the query never finished and the
    # partition's commit stuck behind it), and sys.exit() in a handler wedged the
    # worker. Both are now the record's failure; the worker goes on.
    import sys

    app = App("t-escape", input_schema="alto.Text")

    def escape(text: str) -> None:
        if text == "cancel":
            raise asyncio.CancelledError("the handler's own")
        if text == "exit":
            sys.exit("handler called sys.exit")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def step(v: dict[str, Any]) -> dict[str, Any]:
        escape(v["text"])
        return {"text": v["text"].upper()}

    @app.batch(source=step, schema="alto.Text", size=4, wait=0.01)
    async def batch(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(v["text"] == "BATCHY" for v in values):
            raise asyncio.CancelledError("in a batch")
        return values

    @app.aggregate(source=batch, closes=words, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        text = " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)
        escape("exit" if "AGG" in text else "")
        return {"text": text}

    transport = MemoryTransport(2)
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run(
            [{"text": "a cancel b"}, {"text": "exit c"}, {"text": "agg"}, {"text": "d"}],
            timeout=20,
        )
        batched = await client.run([{"text": "batchy"}], timeout=20)  # alone in its batch
    by_text = sorted(
        (r.value["text"] if r.value is not None else r.envelope.kind.name) for r in results.values()
    )
    assert by_text == ["<ERROR> C", "A <ERROR> B", "D", "ERROR"]
    assert [r.value for r in batched.values()] == [{"text": "<ERROR>"}]
    errors = sorted(
        letter.value["error"]
        for topic in ("t-escape.step.dlq", "t-escape.batch.dlq")
        for r in transport.records(topic)
        if (letter := client.codec.decode(r.value, r.headers)).value is not None
    )
    assert len(errors) == 3, errors
    for raised in (
        "CancelledError('in a batch')",
        'CancelledError("the handler\'s own")',
        "SystemExit('handler called sys.exit')",
    ):
        assert any(f"the handler raised {raised}" in e for e in errors), (raised, errors)


async def test_a_graceful_stop_runs_the_records_below_those_done_so_the_commit_reaches_them() -> (
    None
):
    # Found by a new user: records start oldest query first, so at a stop some records
    # above a partition's lowest unfinished one had finished; the commit stopped below
    # them and the next owner ran them again (622 duplicates over 3 graceful stops).
    app = App("t-holes", input_schema="alto.Text")
    ran: Counter[str] = Counter()
    started = asyncio.Event()

    @app.map(source=app.input, schema="alto.Text", max_in_flight=2)
    async def slow(v: dict[str, Any]) -> dict[str, Any]:
        ran[v["text"]] += 1
        started.set()
        await asyncio.sleep(0.05)
        return v

    topology = app.topology()
    transport = MemoryTransport(1)
    codec = MessageCodec()
    for spec in topology.topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    # Offset 0 is the youngest query, offset 9 the oldest: the oldest run first.
    for i in range(10):
        root = Ancestry.root(f"q{i}", query_time=1000.0 - i)
        value, headers = codec.encode(Envelope(root, {"text": f"t{i}"}, "alto.Text"))
        transport.append(OutRecord(topology.input_topic, value, headers, b"k", partition=0))
    worker = Worker(app, "slow", transport, WorkerOptions(commit_interval=0.01))
    task = asyncio.create_task(worker.run())
    await started.wait()
    await asyncio.sleep(0.08)  # the two oldest are done, or nearly
    worker.stop()
    await task
    group = transport.groups[worker.plan.group]
    assert group.committed[(topology.input_topic, 0)] == 10  # before: 0 (offset 0 not done)
    assert all(n == 1 for n in ran.values()) and len(ran) == 10
    assert worker.stats.in_flight == 0


async def test_a_failing_aggregate_writes_a_dead_letter_and_logs_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Found by new users: an aggregate that raised wrote no dead letter (the docs say
    # every handler failure does) and logged a traceback of library frames; a map's
    # failure named neither the file nor the line of the handler, even with -v.
    app = App("t-aggfail", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.map(source=words, schema="alto.Text")
    def step(v: dict[str, Any]) -> dict[str, Any]:
        return {"text": v["txt"]} if v["text"] == "typo" else v

    @app.aggregate(source=step, closes=words, schema="alto.Text")
    def join(children: list[Child]) -> dict[str, Any]:
        if any(c.ok and c.value["text"] == "boom" for c in children):
            raise ValueError("boom in the aggregate")
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    transport = MemoryTransport(2)
    with caplog.at_level(logging.WARNING):
        async with LocalRun(app, transport) as run, run.client() as client:
            results = await client.run([{"text": "x boom y"}, {"text": "typo z"}], timeout=20)
    kinds = sorted(r.envelope.kind.name if not r.ok else r.value["text"] for r in results.values())
    assert kinds == ["ERROR", "z"]
    (boom,) = [q for q, r in results.items() if not r.ok]
    letters = transport.records("t-aggfail.join.dlq")
    assert len(letters) == 1
    letter = client.codec.decode(letters[0].value, letters[0].headers)
    assert letter.value is not None
    assert letter.value["error"] == "ValueError: boom in the aggregate"
    assert letter.value["key"] == boom.encode() and letter.value["offset"] == -1
    assert letter.ancestry.query_id == boom
    # Replaying it says why it cannot be, and what to replay instead.
    from alto_stream.ops.records import DecodedRecord
    from alto_stream.ops.replay import Rerooter, replay_target

    rerooter = Rerooter(replay_target(app.topology(), "join"))
    with pytest.raises(ConfigError, match=f"replay its query from the input: .*--query {boom}"):
        rerooter.reroot(DecodedRecord(letters[0], letter))
    here = __file__
    assert f"boom in the aggregate (at {here}:" in caplog.text and "in join)" in caplog.text
    assert f"KeyError: 'txt' (at {here}:" in caplog.text and "in step)" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_handler_past_its_timeout_fails_its_record_and_the_worker_goes_on() -> None:
    # Found by a new user: a handler that never returned held its query for ever, with
    # no option to bound it (timeout= was an aggregate's only).
    app = App("t-callto", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text", timeout=0.5)
    async def words(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            if w == "stall":
                await asyncio.Event().wait()
            yield {"text": w}

    @app.map(source=words, schema="alto.Text", timeout=0.3)
    async def step(v: dict[str, Any]) -> dict[str, Any]:
        if v["text"] == "hang":
            await asyncio.Event().wait()
        return {"text": v["text"].upper()}

    @app.aggregate(source=step, closes=words, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else c.kind.name for c in children)}

    transport = MemoryTransport(2)
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "a hang b"}, {"text": "c stall"}], timeout=20)
    texts = sorted(r.value["text"] if r.ok else r.envelope.kind.name for r in results.values())
    assert texts == ["A ERROR B", "ERROR"]
    letters = [
        client.codec.decode(r.value, r.headers).value
        for topic in ("t-callto.step.dlq", "t-callto.words.dlq")
        for r in transport.records(topic)
    ]
    errors = sorted(letter["error"] for letter in letters if letter is not None)
    assert errors == [
        "TimeoutError: stage 'step': the handler took longer than its timeout of 0.3 s (cancelled)",
        "TimeoutError: stage 'words': the handler took longer than its timeout of 0.5 s "
        "(cancelled)",
    ]


def test_a_call_timeout_needs_an_async_handler() -> None:
    app = App("t-callto-plain", input_schema="alto.Text")
    with pytest.raises(ConfigError, match="timeout= needs an async handler"):

        @app.map(source=app.input, schema="alto.Text", timeout=1.0)
        def step(v: dict[str, Any]) -> dict[str, Any]:
            return v


async def test_a_handlers_own_timeout_is_not_called_the_stages() -> None:
    # Found in review: any TimeoutError in the call was reported as the stage's timeout.
    app = App("t-owntimeout", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text", timeout=30)
    async def step(v: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait_for(asyncio.sleep(1), 0.01)  # the handler's own time-out
        return v

    transport = MemoryTransport(1)
    async with LocalRun(app, transport) as run, run.client() as client:
        await client.run([{"text": "a"}], timeout=20)
    (letter,) = [
        client.codec.decode(r.value, r.headers).value
        for r in transport.records("t-owntimeout.step.dlq")
    ]
    assert letter is not None
    assert letter["error"] == "TimeoutError" and "took longer" not in letter["error"]


@pytest.mark.parametrize("delivery", ["transactional", "at-least-once"])
async def test_a_second_stop_cuts_records_in_flight_at_once(delivery: DeliveryMode) -> None:
    # A second stop signal (`worker`'s, or `up`'s passed on) used to cancel the worker's
    # task: a traceback, exit 1, and nothing committed. It now cuts the records in flight
    # short at once and the stop goes on: what is done is committed, the rest runs again.
    app = App("hurry", input_schema="alto.Text")
    started: list[str] = []

    @app.map(source=app.input, schema="alto.Text")
    async def generate(value: dict[str, Any]) -> dict[str, Any]:
        started.append(value["text"])
        if value["text"] == "t1":
            await asyncio.sleep(60)  # a long LLM call
        return value

    topology = app.topology()
    plan = topology.plan("generate")
    transport = _one_partition(topology, [Ancestry.root("q0"), Ancestry.root("q1")])
    options = WorkerOptions(delivery=delivery, shutdown_timeout=30)
    worker = Worker(app, "generate", transport, options)
    run = asyncio.create_task(worker.run(timeout=50))
    for _ in range(200):
        if len(started) == 2 and transport.records(plan.output_topic):
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.sleep(0.2)
    assert not run.done()  # the graceful stop waits for t1's call (30 s grace)
    began = time.monotonic()
    worker.stop(now=True)
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - began < 2
    assert worker.stats.in_flight == 0
    assert len(transport.records(plan.output_topic)) == 1  # q0's; q1's runs again
    assert transport.groups[plan.group].committed[(topology.input_topic, 0)] == 1
