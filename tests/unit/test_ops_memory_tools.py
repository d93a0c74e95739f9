"""tail/replay/trace logic over the in-memory transport: reads, trees, replays."""

from __future__ import annotations

import itertools
import json

import pytest

from alto_stream.client import Client
from alto_stream.errors import ConfigError
from alto_stream.message import MessageCodec
from alto_stream.ops.records import DecodedRecord, ReadWindow, decode_record, jsonable, read_records
from alto_stream.ops.replay import Rerooter, replay_target
from alto_stream.ops.trace import app_trace_topics, build_trace
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryOps, MemoryTransport
from alto_stream.transport import InRecord, OutRecord
from workers import textflow

pytestmark = pytest.mark.timeout(30)

DOC = "Hello there skip. Bye now.\n\nSecond para."


async def _run(app_name: str, docs: list[str]) -> tuple[MemoryTransport, list[str], dict[str, str]]:
    app = textflow.build(app_name)
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run([{"text": d} for d in docs], timeout=10)
    ids = list(finals)
    return transport, ids, {q: r.value["text"] for q, r in finals.items() if r.value}


async def _read(ops: MemoryOps, topics: list[str], window: ReadWindow) -> list[DecodedRecord]:
    return [item async for item in read_records(ops, topics, window)]


async def test_reader_positions_and_window_bounds() -> None:
    transport = MemoryTransport(2)
    for i in range(10):
        transport.append(OutRecord("t", b"%d" % i, (), None, i % 2))
    ops = MemoryOps(transport)

    async def offsets(**kwargs: object) -> list[tuple[int, int]]:
        items = await _read(ops, ["t"], ReadWindow(**kwargs))  # type: ignore[arg-type]
        return sorted((i.record.partition, i.record.offset) for i in items)

    assert len(await offsets()) == 10
    assert await offsets(offset=3) == [(0, 3), (0, 4), (1, 3), (1, 4)]
    assert await offsets(offset=-1) == [(0, 4), (1, 4)]
    assert await offsets(from_end=True) == []
    assert await offsets(partitions=(1,), to_offset=2) == [(1, 0), (1, 1)]
    assert len(await offsets(limit=3)) == 3
    with pytest.raises(ConfigError, match="choose one start"):
        ReadWindow(from_end=True, offset=1)


def test_undecodable_records_are_kept_with_their_error() -> None:
    record = InRecord("t", 0, 7, b"k", b"junk", (), 1.0)
    item = decode_record(MessageCodec(), record)
    assert item.envelope is None
    assert "alto.ancestry" in (item.error or "")
    assert item.to_dict()["key"] == "base64:aw=="
    assert jsonable({"a": [b"\x00"]}) == {"a": ["base64:AA=="]}


async def test_trace_rebuilds_the_tree_and_critical_path() -> None:
    transport, (query_id,), _ = await _run("trace-mem", [DOC])
    topology = textflow.build("trace-mem").topology()
    ops = MemoryOps(transport)
    topics = list(app_trace_topics(topology))
    items = await _read(ops, topics, ReadWindow(query_id=query_id))
    trace = build_trace(topology, query_id, items)

    assert len(trace.hops) == len(items) > 20
    assert trace.final is not None
    assert trace.final.stage == "document"
    assert trace.latency is not None
    assert trace.latency >= 0
    # the root: two paragraphs and the paragraphs split's end marker
    assert [c.index for c in trace.root.children] == [(0,), (1,), (2,)]
    first = trace.root.children[0]
    assert [h.stage for h in first.hops] == ["paragraphs", "paragraph_text"]
    assert [c.index for c in first.children][:2] == [(0, 0), (0, 1)]
    path = trace.critical_path
    assert path[0].stage == "client"
    assert path[-1] is trace.final
    assert all(a.time <= b.time for a, b in itertools.pairwise(path))
    assert [h.stage for h in path][1:4] == ["paragraphs", "sentences", "words"]
    assert all(h.took is not None for h in trace.hops if h.stage != "client")
    stages = {t.stage: t for t in trace.stages()}
    assert stages["shout"].records == 10
    data = json.loads(json.dumps(trace.to_dict()))
    assert data["critical_path"][-1]["stage"] == "document"
    assert data["tree"]["id"] == query_id


async def test_trace_of_an_unknown_query_is_a_config_error() -> None:
    transport, _, _ = await _run("trace-unknown", ["One."])
    topology = textflow.build("trace-unknown").topology()
    items = await _read(MemoryOps(transport), list(app_trace_topics(topology)), ReadWindow())
    with pytest.raises(ConfigError, match="unknown query 'nope'"):
        build_trace(topology, "nope", items)


async def test_replay_gets_its_own_ids_and_leaves_the_original_alone() -> None:
    app = textflow.build("replay-mem")
    topology = app.topology()
    transport = MemoryTransport(2)
    ops = MemoryOps(transport)
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = await client.push_many([{"text": DOC}])
        finals = [r async for r in client.follow([query_id], timeout=10, since=0)]
        # replay the words into shout: the deepest level, markers included
        target = replay_target(topology, "shout")
        words = await _read(ops, [target.topic], ReadWindow(query_id=query_id))
        rerooter = Rerooter(target)
        await transport.producer().send_many(rerooter.reroot_all(words))
        (replay_id,) = rerooter.replay_ids
        replayed = [r async for r in client.follow([replay_id], timeout=10, since=0)]
    assert rerooter.unfinishable == []  # the whole query's words, END markers too
    assert replay_id != query_id
    assert replayed[-1].final
    assert replayed[-1].value == finals[-1].value == {"text": textflow.reference(DOC)}
    assert replayed[-1].envelope.ancestry.replay_of == query_id
    documents = await _read(ops, [topology.stages["document"].output_topic], ReadWindow())
    by_query = sorted(str(i.query_id) for i in documents)
    assert by_query == sorted([query_id, replay_id])
    ids = {i.envelope.id for i in documents if i.envelope is not None}
    assert len(ids) == 2


async def test_replay_checks_depth_and_schema() -> None:
    transport, (query_id,), _ = await _run("replay-check", ["A b."])
    topology = textflow.build("replay-check").topology()
    ops = MemoryOps(transport)
    words = await _read(ops, [topology.stages["words"].output_topic], ReadWindow())
    # The words topic also carries the markers of shallower splits (forwarded):
    # replay only the words themselves, whatever order the partitions hold them in.
    words = [w for w in words if w.envelope is not None and w.envelope.ancestry.depth == 3]
    assert words
    with pytest.raises(ConfigError, match="is at depth 3, but stage 'paragraphs' reads records"):
        Rerooter(replay_target(topology, "paragraphs")).reroot_all(words)
    with pytest.raises(ConfigError, match="has no stage 'nope'"):
        replay_target(topology, "nope")
    bad = decode_record(MessageCodec(), InRecord("t", 0, 0, None, b"x", (), 0.0))
    with pytest.raises(ConfigError, match="undecodable"):
        Rerooter(replay_target(topology, "shout")).reroot(bad)
    assert query_id


async def test_a_replay_of_some_of_a_splits_records_is_named_unfinishable() -> None:
    # A new user replayed one dead letter from the middle of a query into its stage:
    # the replay could never finish (its aggregate waits for the rest of the split),
    # and the CLI blamed the time-out and the workers. Now the replay names it.
    transport, (query_id,), _ = await _run("replay-part", [DOC])
    topology = textflow.build("replay-part").topology()
    target = replay_target(topology, "shout")
    words = await _read(MemoryOps(transport), [target.topic], ReadWindow(query_id=query_id))
    deep = [w for w in words if w.envelope is not None and w.envelope.ancestry.depth == 3]
    open_ended = [
        w for w in deep if w.envelope is not None and w.envelope.ancestry.path[-1].count is None
    ]
    assert open_ended and len(open_ended) < len(deep)
    some = Rerooter(target)
    some.reroot(open_ended[0])
    assert some.unfinishable == [query_id]
    whole = Rerooter(target)
    whole.reroot_all(deep)
    assert whole.unfinishable == []


async def test_follow_shows_an_inner_stages_records_as_partials() -> None:
    # A new user's generation stage streamed sentences that `push --follow` never
    # showed: only the output stages' topics were read. partials_from names more.
    app = textflow.build("follow-inner")
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = await client.push_many([{"text": DOC}])
        results = [
            r
            async for r in client.follow(
                [query_id], timeout=10, since=0, partials_from=("paragraphs",)
            )
        ]
        with pytest.raises(ConfigError, match="has no stage 'nope'"):
            async for _ in client.follow([query_id], timeout=1, since=0, partials_from=("nope",)):
                pass
    paragraphs = [r for r in results if r.stage == "paragraphs"]
    by_index = {r.envelope.ancestry.index: r.value for r in paragraphs}
    assert by_index == {(i,): {"text": p} for i, p in enumerate(DOC.split("\n\n"))}
    assert not any(r.final for r in paragraphs)
    assert [r.stage for r in results if r.final] == ["document"]
    assert results[-1].final


async def test_replay_refuses_a_topic_the_stage_does_not_read() -> None:
    # Found by a new user: the split's words replayed straight into the aggregate that
    # reads the map's output (same depth, same schema) skipped the map: a wrong final,
    # exit 0; a changelog replayed there wrote undecodable records downstream.
    transport, (query_id,), _ = await _run("replay-source", ["A b."])
    topology = textflow.build("replay-source").topology()
    ops = MemoryOps(transport)
    words = await _read(ops, [topology.stages["words"].output_topic], ReadWindow())
    deep = [w for w in words if w.envelope is not None and w.envelope.ancestry.depth == 3]
    assert deep
    with pytest.raises(ConfigError) as info:
        Rerooter(replay_target(topology, "sentence_text")).reroot_all(deep)
    said = str(info.value)
    assert f"comes from {topology.stages['words'].output_topic}, but stage 'sentence_text'" in said
    assert "fix: replay" in said and "--to-stage shout" in said
    assert Rerooter(replay_target(topology, "shout")).reroot_all(deep)  # the stage that reads it
    assert query_id
