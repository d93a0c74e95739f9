"""A split past the aggregate's child limit fails at once; a large split lets the loop run.

Found by a new user: a 100,001-word sentence through workers.textflow never
finished. The split wrote every word; the aggregate refused those past its
limit of 100,000 as "corrupt or lying" records (a dead letter each, 233,000 for
a 333,000-word query) and the query waited for ever. And writing a split's
100,000 children held the event loop for 30 s (no heartbeat: the partitions
moved).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.client import Client
from alto_stream.errors import StageError
from alto_stream.message import Envelope
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.stages import Processor
from alto_stream.runtime.worker import WorkerOptions

pytestmark = pytest.mark.timeout(60)


def _app(name: str, how: str) -> App:
    app = App(name, input_schema="alto.Text")

    if how == "async generator":

        @app.split(source=app.input, schema="alto.Text")
        async def words(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
            for w in q["text"].split():
                yield {"text": w}

    elif how == "generator":

        @app.split(source=app.input, schema="alto.Text")
        def words(q: dict[str, Any]) -> Iterator[dict[str, Any]]:
            for w in q["text"].split():
                yield {"text": w}

    else:

        @app.split(source=app.input, schema="alto.Text")
        def words(q: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


@pytest.mark.parametrize("how", ["async generator", "generator", "list"])
async def test_a_split_past_the_child_limit_ends_its_query_with_an_error(how: str) -> None:
    app = _app(f"limit-{how.replace(' ', '-')}", how)
    transport = MemoryTransport(2)
    options = WorkerOptions(max_children=5)
    async with LocalRun(app, transport, options=options), Client(app, transport) as client:
        ok, over = await client.push_many([{"text": "a b c d e"}, {"text": "a b c d e f"}])
        finals = {
            r.query_id: r async for r in client.follow([ok, over], timeout=10, partials=False)
        }
    assert finals[ok].value == {"text": "a b c d e"}
    failed = finals[over]
    assert failed.envelope.kind is Kind.ERROR, failed
    assert "past the limit of 5 an aggregate takes" in str(failed.reason)
    assert "ALTO_MAX_CHILDREN" in str(failed.reason)
    topology = app.topology()
    dead = transport.records(topology.plan("words").dead_letter_topic)
    assert len(dead) == 1  # one dead letter, the split's: none per child past the limit
    assert transport.records(topology.plan("join").dead_letter_topic) == []


@pytest.mark.parametrize("how", ["generator", "list"])
async def test_a_large_split_gives_the_event_loop_turns(how: str) -> None:
    # A split whose handler never awaits: its writes must still let heartbeats and
    # sends run (before: no turn at all until the last child was written).
    app = _app(f"turns-{how}", how)
    processor = Processor(app.topology().plan("words"))
    written: list[Envelope] = []

    async def emit(envelope: Envelope) -> None:
        written.append(envelope)  # as the worker's writes: no wait

    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    query = Envelope(Ancestry.root("q"), {"text": " ".join(["w"] * 3000)}, "alto.Text")
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = turns
    await processor.process(query, emit)
    during = turns - before
    ticking.cancel()
    assert len(written) == 3001 if how == "generator" else len(written) in (3000, 3001)
    assert during >= 3000 // 256 - 1, f"the loop turned {during} times while 3,000 were written"


def test_the_limit_error_says_what_to_do() -> None:
    app = _app("limit-message", "list")
    processor = Processor(app.topology().plan("words"), max_children=2)
    error = processor._too_many(3, "returned")
    assert isinstance(error, StageError)
    assert "returned 3 children, past the limit of 2" in str(error)
    assert "a split of splits" in str(error)


async def test_a_result_says_where_it_sits_in_its_query() -> None:
    app = _app("result-index", "list")
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query,) = await client.push_many([{"text": "a b c"}])
        results = [r async for r in client.follow([query], timeout=10, partials_from=["words"])]
    partials = sorted(r.index for r in results if not r.final)
    assert partials == [(0,), (1,), (2,)]
    assert [r.index for r in results if r.final] == [()]


def test_children_committed_together_are_shown_in_index_order() -> None:
    # A transaction makes a split's children readable at once; the reader reads them
    # partition by partition: child 1 (partition 0) came before child 0 (partition 1).
    from alto_stream.following import Following
    from alto_stream.message import MessageCodec
    from alto_stream.results import _results
    from alto_stream.transport import InRecord

    codec = MessageCodec()
    root = Ancestry.root("q")
    records = []
    for partition, index in ((0, 1), (1, 0), (2, 2)):
        envelope = Envelope(root.child("a", index), {"text": f"s{index}"}, "alto.Text")
        value, headers = codec.encode(envelope)
        records.append(InRecord("app.answer", partition, 7, b"k", value, tuple(headers), 5.0))
    state = Following(["q"], finals_on={"app.out"}, partials=True)
    shown = list(_results(codec, records, state, {"app.answer": "answer", "app.out": "out"}))
    assert [r.index for r in shown] == [(0,), (1,), (2,)]
