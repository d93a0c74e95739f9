"""An aggregate's context: the ancestor it reassembles and the value its split received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alto_stream import AggregateContext, App, Child
from alto_stream.aggregate import Tracker
from alto_stream.ancestry import Ancestry
from alto_stream.errors import ConfigError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import run_in_memory
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.state import AggregateState
from alto_stream.transport import InRecord

pytestmark = pytest.mark.timeout(60)

ROOT = Ancestry.root("q", query_time=0.0)


def _words_app(name: str, *, generator: bool, keyword: bool = False) -> tuple[App, list[Any]]:
    app = App(name, input_schema="alto.Text")
    seen: list[Any] = []

    if generator:

        @app.split(source=app.input, schema="alto.Text")
        async def words(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
            for w in q["text"].split():
                yield {"text": w}

    else:

        @app.split(source=app.input, schema="alto.Text")
        def words(q: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"text": w} for w in q["text"].split()]

    def text(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        seen.append((context, [c.attempt for c in children]))
        assert context.value is not None
        return {"text": f"{context.value['text']!r} -> {len(children)} words"}

    if keyword:

        @app.aggregate(source=words, closes=words, schema="alto.Text")
        async def join(children: list[Child], *, context: AggregateContext) -> dict[str, Any]:
            return text(children, context)

    else:

        @app.aggregate(source=words, closes=words, schema="alto.Text")
        async def join(children: list[Child], context: AggregateContext) -> dict[str, Any]:
            return text(children, context)

    return app, seen


@pytest.mark.parametrize(("generator", "keyword"), [(True, False), (False, False), (False, True)])
async def test_context_reaches_the_aggregate_even_for_zero_children(
    generator: bool, keyword: bool
) -> None:
    app, seen = _words_app(f"ctx-{generator}-{keyword}", generator=generator, keyword=keyword)
    assert app.topology().stages["words"].sends_context
    results = await run_in_memory(app, [{"text": "a b c"}, {"text": "   "}])
    assert [r.value for r in results] == [
        {"text": "'a b c' -> 3 words"},
        {"text": "'   ' -> 0 words"},
    ]
    by_query = {context.ancestor_id: (context, attempts) for context, attempts in seen}
    assert set(by_query) == {r.query_id for r in results}
    for context, attempts in by_query.values():
        assert context.schema == "alto.Text" and context.query_id == context.ancestor_id
        assert context.attempt is not None and not context.timed_out
        assert all(a == context.attempt for a in attempts)  # Child.attempt: the same split run


async def test_one_argument_handlers_get_no_context_and_splits_send_none() -> None:
    app = App("ctx-none", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def join(children: list[Child], sep: str = "+") -> dict[str, Any]:
        return {"text": sep.join(c.value["text"] for c in children)}

    assert app.stages["join"].context_param is None
    assert not app.topology().stages["words"].sends_context
    [result] = await run_in_memory(app, [{"text": "x y"}])
    assert result.value == {"text": "x+y"}


@pytest.mark.parametrize("shape", ["nested", "two-levels-at-once"])
async def test_nested_closes_each_get_the_value_of_their_own_split(shape: str) -> None:
    app = App(f"ctx-{shape}", input_schema="alto.Text")
    got: dict[str, list[str]] = {"para": [], "doc": []}

    @app.split(source=app.input, schema="alto.Text")
    def paragraphs(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": p} for p in doc["text"].split("|")]

    @app.split(source=paragraphs, schema="alto.Text")
    async def sentences(p: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for s in p["text"].split("."):
            if s.strip():
                yield {"text": s.strip()}

    async def doc(children: list[Child], context: AggregateContext) -> dict[str, Any]:
        assert context.value is not None
        got["doc"].append(context.value["text"])
        return {"text": ",".join(c.value["text"] if c.ok else "-" for c in children)}

    if shape == "nested":

        @app.aggregate(source=sentences, closes=sentences, schema="alto.Text")
        async def para(children: list[Child], context: AggregateContext) -> dict[str, Any]:
            assert context.value is not None
            got["para"].append(context.value["text"])
            return {"text": str(len(children))}

        app.aggregate(source=para, closes=paragraphs, schema="alto.Text")(doc)
        expected = "2,1,0"
    else:  # closes paragraphs over the sentences level too (recursive completeness)
        app.aggregate(source=sentences, closes=app.input, schema="alto.Text")(doc)
        expected = "A,B,C"  # the empty paragraph has no leaf
    plans = app.topology().stages
    assert plans["doc"].closes_split == "paragraphs" and plans["paragraphs"].sends_context
    assert plans["sentences"].sends_context is (shape == "nested")
    [result] = await run_in_memory(app, [{"text": "A. B.|C.|"}])
    assert got["doc"] == ["A. B.|C.|"]
    if shape == "nested":
        assert result.value == {"text": expected}
        assert sorted(got["para"]) == ["", "A. B.", "C."]
    else:
        assert result.value == {"text": expected}


def test_the_tracker_keeps_the_context_of_the_attempt_that_wins() -> None:
    tracker = Tracker(0, 1)
    tracker.add(ROOT.child("a1", 0), "a-child")
    tracker.add(ROOT.end_marker("b1", 1), "ctx-of-b1")  # a re-run: its end first
    tracker.add(ROOT.end_marker("a1", 2), "ctx-of-a1")
    done = tracker.add(ROOT.child("b1", 0), "b-child").completed
    assert done is not None
    assert (done.attempt, done.context) == ("b1", "ctx-of-b1")
    assert [c.attempt for c in done.children] == ["b1"]


def test_a_timed_out_ancestor_keeps_the_context_it_got() -> None:
    now = [0.0]
    tracker = Tracker(0, 2, clock=lambda: now[0])
    tracker.add(ROOT.end_marker("a", 2), "ctx")
    tracker.add(ROOT.child("a", 0).child("s", 0), "x")
    now[0] = 10.0
    [done] = tracker.expire(5.0)
    assert done.timed_out and done.context == "ctx" and done.attempt == "a"


async def test_the_context_is_restored_from_the_changelog() -> None:
    codec = MessageCodec()
    transport = MemoryTransport(1)
    transport.create_topic("cl", 1)
    state = AggregateState("cl", lambda: Tracker(0, 1), codec)
    context = codec.encode_context("alto.Text", {"text": "the parent"})
    end = Envelope(ROOT.end_marker("a", 1), None, None, "split", context)
    value, headers = codec.encode(end)
    source = InRecord("in", 0, 5, None, value, headers, 0.0)
    transport.append(state.fragment_record(0, "q", source, end.ancestry))
    child = Envelope(ROOT.child("a", 0), {"text": "c"}, "alto.Text", "split")
    state.tracker(0).add(child.ancestry, child)  # nothing in the changelog yet: restored below
    child_value, child_headers = codec.encode(child)
    transport.append(
        state.fragment_record(
            0, "q", InRecord("in", 0, 6, None, child_value, child_headers, 0.0), child.ancestry
        )
    )
    restored = AggregateState("cl", lambda: Tracker(0, 1), codec)
    [done] = await restored.restore(transport, 0)
    assert isinstance(done.context, Envelope) and done.context.context == context
    assert codec.decode_context(context) == ("alto.Text", {"text": "the parent"})


def test_a_handler_that_takes_too_much_is_refused() -> None:
    app = App("ctx-bad", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [q]

    with pytest.raises(ConfigError, match="expected f\\(children\\) or f\\(children, context\\)"):

        @app.aggregate(source=words, closes=words, schema="alto.Text")
        async def join(children: list[Child], context: Any, more: Any) -> dict[str, Any]:
            return {}


def _kwonly_not_context(children: list[Child], *, ctx: Any) -> dict[str, Any]:
    return {}


def _third_required(children: list[Child], context: Any, /, more: Any) -> dict[str, Any]:
    return {}


def _context_and_kwonly(children: list[Child], *, context: Any, more: Any) -> dict[str, Any]:
    return {}


def _no_argument() -> dict[str, Any]:
    return {}


def _keyword_only_children(*, children: list[Child]) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize(
    "handler",
    [_kwonly_not_context, _third_required, _context_and_kwonly, _no_argument,
     _keyword_only_children],
)  # fmt: skip
def test_a_handler_the_aggregate_cannot_call_is_refused_where_it_is_written(
    handler: Any,
) -> None:
    app = App("ctx-sig", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [q]

    with pytest.raises(ConfigError, match=r"aggregate 'g': .* cannot be called as"):
        app.aggregate(source=words, closes=words, schema="alto.Text", name="g")(handler)


@pytest.mark.parametrize(
    "handler",
    [
        lambda children: {},
        lambda children, context: {},
        lambda children, *, context: {},
        lambda children, context=None: {},
        lambda children, extra=None, *, context: {},
        lambda *args: {},
        lambda children, **options: {},
    ],
)
def test_every_documented_aggregate_signature_is_accepted(handler: Any) -> None:
    app = App("ctx-ok", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [q]

    app.aggregate(source=words, closes=words, schema="alto.Text", name="g")(handler)
    app.topology()


async def test_a_query_whose_id_holds_the_key_separator_is_restored() -> None:
    # Found by a new user: Client.push(query_id="x|y") ran, but the aggregate's fired
    # entry "x|y|fired" was read back as a fragment of "x" and the stage exited at
    # every restore ("missing alto.ancestry header"), for ever.
    codec = MessageCodec()
    transport = MemoryTransport(1)
    transport.create_topic("cl", 1)
    root = Ancestry.root("x|y", query_time=0.0)
    state = AggregateState("cl", lambda: Tracker(0, 1), codec)
    pending = Ancestry.root("p|q|data", query_time=0.0).child("a", 0)  # one child of two
    for ancestry in (root.child("a", 0, 1), pending):
        envelope = Envelope(ancestry, {"text": "c"}, "alto.Text", "split")
        value, headers = codec.encode(envelope)
        source = InRecord("in", 0, 1, None, value, headers, 0.0)
        aid = ancestry.ancestor_id(0)
        state.tracker(0).add(ancestry, envelope)
        transport.append(state.fragment_record(0, aid, source, ancestry))
    for record in state.fired_records(0, "x|y"):
        transport.append(record)
    restored = AggregateState("cl", lambda: Tracker(0, 1), codec)
    assert await restored.restore(transport, 0) == []
    tracker = restored.tracker(0)
    assert tracker.is_fired("x|y") and not tracker.is_fired("x")
    assert tracker.pending() == ["p|q|data"]


async def test_fired_entries_get_tombstones_once_forgotten() -> None:
    # Found by a new user: fired entries were never tombstoned, so compaction kept one
    # per ancestor that ever fired (166,110 records after 8,000 queries) and every
    # restore read them all.
    from alto_stream.runner import LocalRun
    from alto_stream.runtime.worker import WorkerOptions

    app = App("t-forget", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    transport = MemoryTransport(2)
    options = WorkerOptions(fired_retention=0.3, expire_interval=0.05)
    async with LocalRun(app, transport, options=options) as run, run.client() as client:
        results = await client.run([{"text": f"a b {i}"} for i in range(6)], timeout=20)
        await asyncio.sleep(1.0)
    latest: dict[bytes, bytes | None] = {}
    for record in transport.records("t-forget.join.changelog"):
        assert record.key is not None
        latest[record.key] = record.value
    fired = {key for key in latest if key.endswith(b"|fired")}
    assert {key.split(b"|")[0].decode() for key in fired} == set(results)
    assert [latest[key] for key in fired] == [None] * len(fired)  # all tombstoned
    assert set(latest.values()) == {None}  # fragments too


async def test_a_restore_tombstones_fragments_of_ancestors_that_fired() -> None:
    # The previous owner died after an ancestor's fired entry, before its tombstones.
    codec = MessageCodec()
    transport = MemoryTransport(1)
    transport.create_topic("cl", 1)
    state = AggregateState("cl", lambda: Tracker(0, 1), codec)
    child = Envelope(ROOT.child("a", 0), {"text": "c"}, "alto.Text", "split")
    value, headers = codec.encode(child)
    source = InRecord("in", 0, 1, None, value, headers, 0.0)
    transport.append(state.fragment_record(0, "q", source, child.ancestry))
    fired, *_tombstones = state.fired_records(0, "q")
    transport.append(fired)  # and then the worker died
    restored = AggregateState("cl", lambda: Tracker(0, 1), codec)
    assert await restored.restore(transport, 0) == []
    orphans = restored.orphan_records(0)
    assert [(r.key, r.value) for r in orphans] == [(f"q|{child.ancestry.id}|DATA".encode(), None)]
    assert restored.orphan_records(0) == []


async def test_an_end_marker_too_large_for_its_context_says_so() -> None:
    # Found by a new user: a query of 999,900 bytes passed push, then the split
    # failed with "made an output of 1000032 bytes ... emit smaller records",
    # blaming its small children: the end marker carries the query as the context.
    from alto_stream.client import Client
    from alto_stream.runtime.worker import Worker, WorkerOptions

    app, _ = _words_app("ctx-too-large", generator=False)
    plan = app.topology().plan("words")
    transport = MemoryTransport(1)
    async with Client(app, transport) as client:
        await client.push({"text": "a b" + " " * 1_500})
    worker = Worker(app, "words", transport, WorkerOptions(max_record_bytes=1_200))
    running = asyncio.create_task(worker.run(timeout=5.0))
    for _ in range(200):
        if transport.records(plan.dead_letter_topic):
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await running
    [record] = transport.records(plan.dead_letter_topic)
    letter = MessageCodec().decode(record.value, record.headers).value
    assert letter is not None and letter["error_type"] == "OutputTooLargeError"
    assert "the split's end marker, carrying the split's input" in letter["error"]
    assert "make the aggregate take no context" in letter["error"]
