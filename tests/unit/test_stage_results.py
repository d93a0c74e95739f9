"""What a split or batch handler must return, and the errors that say so (found by new users)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry
from alto_stream.errors import StageError
from alto_stream.message import Envelope
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.stages import Batcher, Processor

pytestmark = pytest.mark.timeout(30)


async def _split(handler: Callable[[Any], Any]) -> list[Envelope]:
    """What a split stage running ``handler`` emits for the query "a b"."""
    app = App("results", input_schema="alto.Text")
    app.split(source=app.input, schema="alto.Text", name="parts")(handler)
    app.aggregate(source="parts", closes="parts", schema="alto.Text", name="joined")(
        lambda children: {"text": ""}  # an app ends at the root's depth
    )
    processor = Processor(app.topology().stages["parts"])
    emitted: list[Envelope] = []

    async def emit(envelope: Envelope) -> None:
        emitted.append(envelope)

    query = Envelope(Ancestry.root("q", query_time=0.0), {"text": "a b"}, "alto.Text", "client")
    await processor.process(query, emit)
    return emitted


def _words(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return ({"text": w} for w in doc["text"].split())


async def test_a_split_may_return_a_generator_object() -> None:
    # Before: refused with "return a list or write the handler as an async generator".
    emitted = await _split(_words)
    assert [e.value for e in emitted] == [{"text": "a"}, {"text": "b"}]
    assert emitted[-1].ancestry.path[-1].count == 2


@pytest.mark.parametrize("result", [{"text": "a"}, "a b", 7])
async def test_a_split_returning_no_children_says_what_it_may_return(result: Any) -> None:
    with pytest.raises(StageError, match=r"split 'parts' returned \w+: return a list of child"):
        await _split(lambda doc: result)


async def test_a_split_yielding_none_names_the_stage_and_the_child() -> None:
    # Before: "AncestryError: a DATA record needs a value, got None ...; fix: send a marker".
    def parts(doc: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
        yield {"text": "a"}
        yield None

    with pytest.raises(StageError) as caught:
        await _split(parts)
    assert str(caught.value) == (
        "split 'parts' yielded None as child 1: yield a dict (a value of alto.Text) for each child"
    )
    with pytest.raises(StageError, match=r"split 'parts' returned None as child 0: return a"):
        await _split(lambda doc: [None, {"text": "b"}])


def _batcher(result: Callable[[list[Any]], Any]) -> Batcher:
    app = App("results", input_schema="alto.Text")

    @app.batch(source=app.input, schema="alto.Text", size=2, wait=5.0)
    async def emb(values: list[dict[str, Any]]) -> Any:
        return result(values)

    return Batcher(app.stages["emb"], app.stages["emb"].handler, lambda: True)


@pytest.mark.parametrize("records", [1, 2])
async def test_a_batch_returning_a_dict_says_it_must_return_a_list(records: int) -> None:
    # Before: 'returned 1 results for 2 records' (the keys counted), or for one
    # record its key taken as the result.
    batcher = _batcher(lambda values: {"text": "x"})
    try:
        calls = [batcher.submit({"text": str(i)}) for i in range(records)]
        done = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await batcher.stop()
    for outcome in done:
        assert isinstance(outcome, StageError)
        assert str(outcome) == (
            "batch stage 'emb' must return a list (one result per record, in order), got dict"
        )


async def test_a_batch_may_return_a_generator() -> None:
    # Before: "TypeError: object of type 'generator' has no len()".
    batcher = _batcher(lambda values: ({"text": v["text"] * 2} for v in values))
    try:
        done = await asyncio.gather(*(batcher.submit({"text": str(i)}) for i in range(2)))
    finally:
        await batcher.stop()
    assert done == [{"text": "00"}, {"text": "11"}]


async def test_a_result_that_is_a_call_not_awaited_is_named_so(
    recwarn: pytest.WarningsRecorder,
) -> None:
    # Found by a new user: a map returning a coroutine (an await left out) was
    # dead-lettered as a schema misfit, and Python warned "coroutine ... was never
    # awaited" in the worker's log.
    app = App("t-unawaited", input_schema="alto.Text")

    async def later(v: dict[str, Any]) -> dict[str, Any]:
        return v

    @app.map(source=app.input, schema="alto.Text")
    async def step(v: dict[str, Any]) -> Any:
        return later(v)  # the await left out

    transport = MemoryTransport(1)
    async with LocalRun(app, transport) as run, run.client() as client:
        results = await client.run([{"text": "a"}], timeout=20)
    assert [r.envelope.kind.name for r in results.values()] == ["ERROR"]
    (letter,) = [
        client.codec.decode(r.value, r.headers).value
        for r in transport.records("t-unawaited.step.dlq")
    ]
    assert letter is not None
    assert "returned coroutine" in letter["error"] and "a call not awaited" in letter["error"]
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
