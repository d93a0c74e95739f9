"""Stages, and replicas of one stage, in different delivery modes (docs/faults.md, "Mixing").

These pin what the docs say of each mix: a transactional stage writes each
input record's outputs once, so copies an at-least-once stage upstream wrote
are passed on by a map (same id), and absorbed by an aggregate; and a
partition moves between replicas of the two modes without losing or repeating
a record (same commits, same metadata).
"""

from __future__ import annotations

from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.offsets import CommitPoint, DoneAbove
from alto_stream.runtime.options import DeliveryMode
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(60)

CODEC = MessageCodec()


def _app(name: str) -> App:
    """parts (split) -> step (map) -> join (aggregate closing parts)."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @app.map(source=parts, schema="alto.Text")
    def step(v: dict[str, Any]) -> dict[str, Any]:
        return {"text": v["text"].upper()}

    @app.aggregate(source=step, closes=parts, schema="alto.Text")
    def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children)}

    return app


def _transport(app: App) -> MemoryTransport:
    transport = MemoryTransport(1)
    for spec in app.topology().topic_specs(partitions=1):
        transport.create_topic(spec.name, 1)
    return transport


def _write(transport: MemoryTransport, topic: str, ancestry: Ancestry, text: str) -> None:
    data, headers = CODEC.encode(Envelope(ancestry, {"text": text}, "alto.Text"))
    transport.append(OutRecord(topic, data, headers, ancestry.id.encode()))


def _outputs(transport: MemoryTransport, topic: str) -> list[tuple[str, Any]]:
    decoded = [CODEC.decode(r.value, r.headers) for r in transport.records(topic)]
    return [(e.ancestry.id, e.value) for e in decoded]


TX = WorkerOptions(delivery="transactional")


async def test_a_transactional_aggregate_writes_one_final_from_an_upstreams_copies() -> None:
    # An at-least-once `step` that crashed wrote some of its outputs twice, one
    # after the ancestor fired: the transactional aggregate fires it once.
    app = _app("mix-agg")
    plan = app.topology().plan("join")
    transport = _transport(app)
    root = Ancestry.root("q")
    children = [root.child("a", i, 3 if i == 2 else None) for i in range(3)]
    for ancestry, text in [*zip(children, "ABC", strict=True), (children[0], "A")]:
        _write(transport, plan.input_topic, ancestry, text)
    _write(transport, plan.input_topic, children[1], "B")  # after the fire
    await Worker(app, "join", transport, TX).run(count=5)
    assert _outputs(transport, plan.output_topic) == [(root.id, {"text": "A B C"})]


async def test_a_transactional_map_passes_an_upstreams_copies_on_under_one_id() -> None:
    # It writes each input record's output once, and cannot tell two copies of a
    # record apart: its readers deduplicate on the id, as in at-least-once.
    app = _app("mix-map")
    plan = app.topology().plan("step")
    transport = _transport(app)
    child = Ancestry.root("q").child("a", 0, 1)
    _write(transport, plan.input_topic, child, "a")
    _write(transport, plan.input_topic, child, "a")
    await Worker(app, "step", transport, TX).run(count=2)
    assert _outputs(transport, plan.output_topic) == [(child.id, {"text": "A"})] * 2


@pytest.mark.parametrize(
    "modes",
    [("at-least-once", "transactional"), ("transactional", "at-least-once")],
    ids=["alo-then-tx", "tx-then-alo"],
)
async def test_a_partition_moves_between_replicas_of_both_modes(
    modes: tuple[DeliveryMode, DeliveryMode],
) -> None:
    # Both modes commit the same offsets with the same metadata: the next owner
    # resumes where the last one stopped, whatever the mode of either.
    app = _app(f"mix-{modes[0]}")
    plan = app.topology().plan("step")
    transport = _transport(app)
    root = Ancestry.root("q")
    first, second = (WorkerOptions(delivery=mode) for mode in modes)
    for i in range(3):
        _write(transport, plan.input_topic, root.child("a", i), f"w{i}")
    await Worker(app, "step", transport, first).run(count=3)
    assert transport.groups[plan.group].committed[(plan.input_topic, 0)] == 3
    for i in range(3, 6):
        _write(transport, plan.input_topic, root.child("a", i, 6 if i == 5 else None), f"w{i}")
    await Worker(app, "step", transport, second).run(count=3)
    assert transport.groups[plan.group].committed[(plan.input_topic, 0)] == 6
    assert [v["text"] for _, v in _outputs(transport, plan.output_topic)] == [
        f"W{i}" for i in range(6)
    ]


@pytest.mark.parametrize("mode", ["at-least-once", "transactional"])
async def test_either_mode_skips_what_a_commit_names_done_above_its_offset(
    mode: DeliveryMode,
) -> None:
    # The records done above the offset (DoneAbove, in the commit's metadata) are
    # written the same by both modes, and skipped the same by a next owner of either.
    app = _app(f"mix-done-{mode}")
    plan = app.topology().plan("step")
    transport = _transport(app)
    root = Ancestry.root("q")
    for i in range(3):
        _write(transport, plan.input_topic, root.child("a", i, 3 if i == 2 else None), f"w{i}")
    tp = (plan.input_topic, 0)
    done = CommitPoint(0, DoneAbove(end=3, pending=frozenset({0})))
    transport.groups[plan.group].commit({tp: done.offset}, {tp: done.metadata})
    await Worker(app, "step", transport, WorkerOptions(delivery=mode)).run(count=1)
    assert [v["text"] for _, v in _outputs(transport, plan.output_topic)] == ["W0"]
    assert transport.groups[plan.group].committed[tp] == 3
