"""Bad records and faults on a real broker: each loses nothing and stalls nothing (issue 9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.client import Client
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.options import DeliveryMode
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import InRecord

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

CODEC = MessageCodec()


def _app(name: str, *, delay: Callable[[], float] | None = None) -> App:
    """parts (split) -> step (map, upper-case) -> join (aggregate closing parts)."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            yield {"text": w}

    @app.map(source=parts, schema="alto.Text")
    async def step(v: dict[str, Any]) -> dict[str, Any]:
        if delay is not None:
            await asyncio.sleep(delay())
        return {"text": v["text"].upper()}

    @app.aggregate(source=step, closes=parts, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)}

    return app


async def _produce_raw(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, list[tuple[str, bytes]]]]
) -> None:
    """Write records as they are, with aiokafka alone (no alto-stream on the way)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value, key=b"raw", headers=headers)
    finally:
        await producer.stop()


async def _read(transport: KafkaTransport, topic: str, at_least: int) -> list[InRecord]:
    reader = transport.reader([topic])
    await reader.start()
    out: list[InRecord] = []
    try:
        for _ in range(150):
            out += await reader.fetch(0.2, 500)
            if len(out) >= at_least:
                break
    finally:
        await reader.stop()
    return out


async def test_an_undecodable_value_with_a_readable_ancestry_completes_its_query(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    app = _app(unique_name("undecodable"))
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    root = Ancestry.root(unique_name("q"))
    good_value, good_headers = CODEC.encode(
        Envelope(root.child("a", 0), {"text": "fine"}, "alto.Text", "parts")
    )
    bad_value, bad_headers = CODEC.encode(
        Envelope(root.child("a", 1, count=2), {"text": "cut short"}, "alto.Text", "parts")
    )
    assert bad_value is not None
    await _produce_raw(
        kafka_bootstrap,
        topology.plan("step").input_topic,
        [(good_value, good_headers), (bad_value[:3], bad_headers)],
    )
    async with LocalRun(app, transport) as run, Client(app, transport) as client:
        finals = [r async for r in client.follow([root.id], timeout=60, since=0) if r.final]
        assert all(not w._fatal for w in run.workers)
    assert [r.value for r in finals] == [{"text": "FINE <ERROR>"}]
    (letter,) = await _read(transport, topology.plan("step").dead_letter_topic, 1)
    decoded = CODEC.decode(letter.value, letter.headers)
    assert decoded.ancestry.query_id == root.id
    assert decoded.value is not None and decoded.value["error_type"] == "DecodeError"


async def test_a_stop_with_slow_records_in_flight_loses_none_of_them(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # A handler slower than the stop's grace (an LLM call): the records cut short
    # stay uncommitted and the partition's next owner runs them.
    delay = {"s": 60.0}
    app = _app(unique_name("stop"), delay=lambda: delay["s"])
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    fast = WorkerOptions(commit_interval=0.05)
    workers = [Worker(app, name, transport, fast) for name in ("parts", "join")]
    first = Worker(app, "step", transport, replace(fast, shutdown_timeout=0.5))
    workers.append(first)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        async with Client(app, transport) as client:
            (query,) = await client.push_many([{"text": "one two three four"}])
            for _ in range(600):
                if first.stats.in_flight == 4:
                    break
                await asyncio.sleep(0.05)
            assert first.stats.in_flight == 4
            first.stop()  # what SIGTERM does
            await tasks[-1]
            delay["s"] = 0.0
            workers.append(Worker(app, "step", transport, fast))
            tasks.append(asyncio.create_task(workers[-1].run()))
            finals = [r async for r in client.follow([query], timeout=60, since=0) if r.final]
        assert [r.value for r in finals] == [{"text": "ONE TWO THREE FOUR"}]
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)


async def test_an_output_its_topic_refuses_becomes_a_dead_letter_and_the_worker_goes_on(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Before: MessageSizeTooLargeError stopped the worker, again at every restart.
    app = _app(unique_name("refused"))
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    small = topology.plan("step").output_topic
    specs = [
        replace(s, configs={"max.message.bytes": "20000"}) if s.name == small else s
        for s in topology.topic_specs(partitions=1)
    ]
    await transport.ensure_topics(specs)
    async with LocalRun(app, transport) as run, Client(app, transport) as client:
        # "ΐ" (2 bytes) upper-cases to 3 characters of 6 bytes: 12 KB in, 36 KB out.
        first = await client.run([{"text": "big " + "ΐ" * 6000 + " end"}], timeout=60)
        then = await client.run([{"text": "small after"}], timeout=60)
        assert all(not w._fatal for w in run.workers)
    assert [r.value for r in first.values()] == [{"text": "BIG <ERROR> END"}]
    assert [r.value for r in then.values()] == [{"text": "SMALL AFTER"}]
    (letter,) = await _read(transport, topology.plan("step").dead_letter_topic, 1)
    decoded = CODEC.decode(letter.value, letter.headers).value
    assert decoded is not None and decoded["error_type"] == "RecordRejectedError"


async def test_a_huge_undecodable_input_gets_a_truncated_dead_letter(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Before: its dead letter was larger than the dead-letter topic takes, and the
    # worker stopped on it at every restart.
    app = _app(unique_name("huge"))
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    specs = [
        replace(s, configs={"max.message.bytes": "3000000"})
        if s.name == topology.input_topic
        else s
        for s in topology.topic_specs(partitions=1)
    ]
    await transport.ensure_topics(specs)
    await _produce_raw(kafka_bootstrap, topology.input_topic, [(b"\x07" * 1_500_000, [])])
    async with LocalRun(app, transport) as run, Client(app, transport) as client:
        results = await client.run([{"text": "goes on"}], timeout=60)
        assert all(not w._fatal for w in run.workers)
    assert [r.value for r in results.values()] == [{"text": "GOES ON"}]
    (letter,) = await _read(transport, topology.plan("parts").dead_letter_topic, 1)
    decoded = CODEC.decode(letter.value, letter.headers).value
    assert decoded is not None and "truncated" in decoded["error"]
    assert 900_000 < len(decoded["value"]) < 1_000_000


async def test_a_reader_of_an_output_topic_deduplicates_finals_by_their_id(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # At-least-once: an aggregate that dies after writing a final but before its
    # "fired" changelog entry is durable fires again at the partition's next owner
    # (restored from the changelog). Made here by a first worker that never writes
    # fired entries (as if killed each time right after the output), then a second.
    # docs/faults.md: a reader of the topic deduplicates on the record's id (the
    # ancestry's id; on an output topic also the record key, the query id).
    app = _app(unique_name("dupes"))
    topology = app.topology()
    plan = topology.plan("join")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    options = WorkerOptions(commit_interval=0.05)
    texts = [f"query {i} words" for i in range(6)]
    workers = [Worker(app, name, transport, options) for name in ("parts", "step")]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        dying = Worker(app, "join", transport, options)
        assert dying._aggregating is not None
        state = dying._aggregating.state
        state.fired_records = lambda partition, ancestor: []  # type: ignore[method-assign]
        dying_run = asyncio.create_task(dying.run())
        async with Client(app, transport) as client:
            first = await client.run([{"text": t} for t in texts], timeout=60)
        dying.stop()
        await dying_run
        workers.append(Worker(app, "join", transport, options))
        tasks.append(asyncio.create_task(workers[-1].run()))
        records = await _read(transport, plan.output_topic, 2 * len(texts))
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
    assert len(records) == 2 * len(texts), "every final was written twice"
    # The documented rule: the first record of each id wins.
    deduplicated: dict[str, InRecord] = {}
    for record in records:
        record_id = CODEC.decode_ancestry(record.headers).id
        assert record.key == record_id.encode()  # on an output topic, the key says it too
        deduplicated.setdefault(record_id, record)
    assert sorted(deduplicated) == sorted(first)
    for query_id, record in deduplicated.items():
        copies = [r.value for r in records if r.key == query_id.encode()]
        assert copies == [record.value, record.value]  # the same final, twice
        assert CODEC.decode(record.value, record.headers).value == first[query_id].value


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_an_llm_split_broken_mid_stream_is_retried_as_a_new_attempt(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: DeliveryMode
) -> None:
    # A generation that breaks after its first sentence reached Kafka (the server
    # killed mid-stream: a retriable LLMError), on a split with retries=1: the
    # query completes with the re-run's sentences only; no dead letter.
    from alto_stream.components.llm import LLMError

    app = App(unique_name("llm-retry"), input_schema="alto.Text")
    runs = {"n": 0}

    @app.split(source=app.input, schema="alto.Text", retries=1, retry_on=(LLMError,))
    async def answer(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        runs["n"] += 1
        yield {"text": f"run {runs['n']}, first."}
        await asyncio.sleep(0.3)  # the first sentence is on its way downstream
        if runs["n"] == 1:
            raise LLMError("the stream broke after text was sent", retriable=True)
        yield {"text": f"run {runs['n']}, second."}

    @app.aggregate(source=answer, closes=answer, schema="alto.Text")
    async def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"<{c.kind.name}>" for c in children)}

    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=1))
    options = WorkerOptions(delivery=delivery)
    async with LocalRun(app, transport, options=options) as run, Client(app, transport) as client:
        results = await client.run([{"text": "why?"}], timeout=60)
        assert all(not w._fatal and not w.stats.dead_letters for w in run.workers)
    assert [r.value for r in results.values()] == [{"text": "run 2, first. run 2, second."}]
    children = await _read(transport, topology.plan("answer").output_topic, 4)
    assert len(children) == 4  # run 1's orphan sentence, run 2's two and its end marker


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_a_split_that_fails_after_some_children_gives_its_query_one_final(
    kafka_bootstrap: str, unique_name: Callable[[str], str], delivery: DeliveryMode
) -> None:
    # Found by a new user: a split raising after 3 children gave the query its ERROR
    # final, and the aggregate's time-out gave it a second one, of DATA, from the 3
    # children left pending (without a time-out they stayed in the changelog for ever).
    app = App(unique_name("failsplit"), input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            if w == "boom":
                raise RuntimeError("boom after some children")
            yield {"text": w}

    @app.map(source=parts, schema="alto.Text")
    async def step(v: dict[str, Any]) -> dict[str, Any]:
        return {"text": v["text"].upper()}

    @app.aggregate(source=step, closes=parts, schema="alto.Text", timeout=1.0)
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    options = WorkerOptions(delivery=delivery, commit_interval=0.05, expire_interval=0.2)
    texts = ["a b c boom d", "x y", "boom"]
    async with LocalRun(app, transport, options=options) as run:
        async with Client(app, transport) as client:
            finals = await client.run([{"text": t} for t in texts], timeout=60)
        await asyncio.sleep(3.0)  # well past the aggregate's time-out
        # A new owner of the aggregate's partitions restores what the changelog holds.
        join_worker = next(w for w in run.workers if w.plan.name == "join")
        join_worker.stop()
        again = Worker(app, "join", transport, options)
        restarted = asyncio.create_task(again.run())
        try:
            await asyncio.sleep(6.0)
            assert again._aggregating is not None
            pending = sum(len(p.tracker) for p in again._aggregating.state.partitions.values())
        finally:
            again.stop()
            await restarted
    records = await _read(transport, topology.plan("join").output_topic, len(texts) + 1)
    kinds = sorted(CODEC.decode_ancestry(r.headers).kind.name for r in records)
    assert kinds == ["DATA", "ERROR", "ERROR"], kinds  # one final per query, no more
    assert sorted(f.envelope.kind.name for f in finals.values()) == ["DATA", "ERROR", "ERROR"]
    assert pending == 0, "the failed split's children were restored as pending"


async def test_fragments_on_the_input_and_a_split_past_its_limit_end_in_errors(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: neither query ever finished (tests/unit/test_input_fragments.py,
    # tests/unit/test_split_limits.py).
    app = _app(unique_name("limits"))
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    fragment = Ancestry.root(unique_name("frag")).child("a", 0).child("b", 1, count=2)
    value, headers = CODEC.encode(Envelope(fragment, {"text": "by hand"}, "alto.Text"))
    await _produce_raw(kafka_bootstrap, topology.input_topic, [(value, headers)])
    options = WorkerOptions(max_children=4)
    async with (
        LocalRun(app, transport, options=options) as run,
        Client(app, transport) as client,
    ):
        ok, over = await client.push_many([{"text": "a b c d"}, {"text": "a b c d e"}])
        ids = [fragment.query_id, ok, over]
        finals = {
            r.query_id: r async for r in client.follow(ids, timeout=60, since=0, partials=False)
        }
        assert all(not w._fatal for w in run.workers)
    assert finals[ok].value == {"text": "A B C D"}
    assert not finals[over].ok and "past the limit of 4" in str(finals[over].reason)
    assert not finals[fragment.query_id].ok
    assert "on the app's input topic" in str(finals[fragment.query_id].reason)
    letters = await _read(transport, topology.plan("parts").dead_letter_topic, 2)
    assert len(letters) == 2
