"""In the transactional mode a time-out's result and its fired entry go into one round.

Found by a new user's fuzz round (transactional, repeated fencings): a time-out's
final was on the output topic twice. ``expire`` wrote every expired ancestor's
result, then every fired entry; a round of transactions committing while a
handler awaited between them made results durable without their fired entries,
and the fenced worker's successor fired those ancestors again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.aggregating import Aggregating
from alto_stream.runtime.stages import Processor
from alto_stream.transport import OutRecord, Partition


def _app() -> App:
    app = App("expire-tx", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text", timeout=0.01)
    async def join(children: list[Child]) -> dict[str, Any]:
        await asyncio.sleep(0)  # a handler that awaits: the loop (and a round) runs on
        return {"text": str(len(children))}

    return app


@pytest.mark.parametrize("transactional", [True, False])
async def test_each_results_fired_entry_follows_it_in_the_transactional_mode(
    transactional: bool,
) -> None:
    plan = _app().topology().plan("join")
    codec = MessageCodec()
    writes: list[str] = []

    async def emit(tp: Partition, envelope: Envelope) -> None:
        writes.append(f"result {envelope.ancestry.query_id}")

    async def write(tp: Partition, records: Sequence[OutRecord]) -> None:
        writes.extend(f"changelog {r.key.decode()}" for r in records if r.key and r.value == b"")

    @contextlib.asynccontextmanager
    async def no_record() -> AsyncIterator[None]:
        yield

    async def settled() -> bool:
        return True

    async def unused(*args: Any) -> Any:
        raise AssertionError("not expected here")

    aggregating = Aggregating(
        plan,
        Processor(plan, codec),
        codec,
        SimpleNamespace(errors=0, fired=0),
        max_children=100,
        write=write,
        emit=emit,
        forward=unused,
        failed=unused,
        letter=unused,
        no_record=no_record,
        settle=settled,
        transactional=transactional,
    )
    for query in ("q1", "q2"):
        root = Ancestry.root(query)
        child = Envelope(root.child("a", 0), {"text": "x"}, "alto.Text", "words")
        aggregating.state.tracker(0).add(root.end_marker("a", 2), None)
        aggregating.state.tracker(0).add(child.ancestry, child)
    await asyncio.sleep(0.05)
    await aggregating.expire()
    kinds = [w.split()[0] + (" fired" if w.endswith("|fired") else "") for w in writes]
    if transactional:
        assert kinds == ["result", "changelog fired", "result", "changelog fired"], writes
    else:  # at-least-once: results first, acknowledged together, then the fired entries
        assert kinds == ["result", "result", "changelog fired", "changelog fired"], writes
