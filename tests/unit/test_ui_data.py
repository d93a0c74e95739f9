"""The web view's data layer: the JSON its endpoints return, over the in-memory runtime."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from alto_stream import App
from alto_stream.client import Client
from alto_stream.errors import ConfigError, TransportError
from alto_stream.ops.records import ReadWindow, read_records
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryOps, MemoryTransport
from alto_stream.ui.graph import topology_graph
from alto_stream.ui.server import create_app
from alto_stream.ui.service import UiService
from alto_stream.ui.stages import ClusterSnapshot, StageBoard, metrics_urls, parse_metrics
from workers import textflow

pytestmark = pytest.mark.timeout(30)


def _app(name: str, broken: dict[str, bool]) -> App:
    """check (fails on "boom" while broken) -> words (split) -> shout (drops "skip") -> joined."""
    app = App(name, input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def check(doc: dict[str, Any]) -> dict[str, Any]:
        if "boom" in doc["text"] and broken["now"]:
            raise ValueError("boom is not allowed")
        return doc

    @app.split(source=check, schema="alto.Text")
    async def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def shout(word: dict[str, Any]) -> dict[str, Any] | None:
        return None if word["text"] == "skip" else {"text": word["text"].upper()}

    @app.aggregate(source=shout, closes=words, schema="alto.Text")
    async def joined(children: list[Any]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def _feed(service: UiService) -> None:
    """What the service's follower does, once: every record of the followed topics."""
    async for item in read_records(service.ops, service.topics(), ReadWindow(), service.codec):
        service.feed(item)


# -- the graph -----------------------------------------------------------------------------------


def test_graph_has_every_stage_its_levels_and_the_splits_aggregates_close() -> None:
    graph = topology_graph(textflow.app.topology())
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"input", "out:document", *textflow.app.topology().stages}
    assert nodes["words"]["kind"] == "split" and nodes["words"]["depth"] == 3
    # columns follow the data flow, rows the depth of the records a stage writes
    assert [nodes[s]["x"] for s in ("input", "paragraphs", "sentences", "words", "shout")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert [nodes[s]["y"] for s in ("paragraphs", "words", "sentence_text", "document")] == [
        1,
        3,
        2,
        0,
    ]
    closes = {(e["from"], e["to"]) for e in graph["edges"] if e["kind"] == "closes"}
    assert closes == {
        ("sentence_text", "words"),
        ("paragraph_text", "sentences"),
        ("document", "paragraphs"),
    }
    flows = [e for e in graph["edges"] if e["kind"] == "flow"]
    assert {"from": "words", "to": "shout", "kind": "flow", "topic": "textflow.words"} in flows
    assert graph["depths"] == 4
    json.dumps(graph)


def test_graph_puts_branches_sharing_a_cell_on_their_own_rows() -> None:
    app = App("branches", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def left(doc: dict[str, Any]) -> dict[str, Any]:
        return doc

    @app.split(source=app.input, schema="alto.Text")  # an output inside a split: partials
    async def right(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [doc]

    graph = topology_graph(app.topology())
    spots = {(n["x"], n["y"]) for n in graph["nodes"]}
    assert len(spots) == len(graph["nodes"]) == 5  # input, two stages, two outputs
    assert graph["rows"] == 2


# -- stage figures -------------------------------------------------------------------------------


def test_stage_board_rates_lag_dead_letters_and_metrics() -> None:
    topology = _app("fig", {"now": False}).topology()
    board = StageBoard(topology)
    assert board.to_dict()["stages"]["check"]["lag"] is None  # nothing known yet
    shout = topology.stages["shout"]
    board.update(ClusterSnapshot(100.0, {shout.input_topic: 50, shout.output_topic: 10}, {}, {}))
    board.update(
        ClusterSnapshot(
            102.0,
            {shout.input_topic: 70, shout.output_topic: 30},
            {shout.dead_letter_topic: 2},
            {shout.group: 60},
        )
    )
    figures = board.to_dict()["stages"]["shout"]
    assert figures["out_per_s"] == 10.0  # (30 - 10) / 2 s
    assert figures["in_per_s"] is None  # committed offsets known once only
    assert figures["lag"] == 10
    assert figures["dead_letters"] == 2
    assert figures["replicas"] is None  # no metrics scraped: unknown, not zero
    page = "\n".join(
        f'{name}{{app="fig",stage="shout",replica="{r}"}} {v}'
        for name, r, v in [
            ("alto_in_flight", "0", 3),
            ("alto_in_flight", "1", 1),
            ("alto_buffered", "1", 2),
            ("alto_errors_total", "0", 4),
        ]
    )
    board.update_metrics(parse_metrics(page + "\n"), at=103.0)
    figures = board.to_dict()["stages"]["shout"]
    assert (figures["replicas"], figures["in_flight"], figures["errors"]) == (2, 6, 4)
    assert board.to_dict()["stages"]["check"]["replicas"] == 0  # scraped, and none answered


def test_metrics_addresses() -> None:
    assert metrics_urls(["h:1-2", "http://x:9/metrics"]) == [
        "http://h:1/metrics",
        "http://h:2/metrics",
        "http://x:9/metrics",
    ]
    for bad in ("nohost", "h:x", "h:5-1"):
        with pytest.raises(ConfigError, match="bad"):
            metrics_urls([bad])


# -- queries, dead letters, waterfalls and replays over the in-memory runtime --------------------


async def test_queries_letters_waterfall_and_replay() -> None:
    broken = {"now": True}
    app = _app("uimem", broken)
    topology = app.topology()
    transport = MemoryTransport(2)
    service = UiService(topology, transport, MemoryOps(transport))
    async with LocalRun(app, transport), Client(app, transport) as client:
        good, bad = await client.push_many([{"text": "hello skip world"}, {"text": "boom goes it"}])
        async for _ in client.follow([good, bad], timeout=10, since=0, partials=False):
            pass
        await _feed(service)
        queries = {q["id"]: q for q in service.changes(0)["queries"]}
        assert queries[good]["status"] == "done"
        assert queries[good]["input"] == {"text": "hello skip world"}
        assert queries[good]["final"]["value"] == {"text": "HELLO WORLD"}
        assert queries[good]["latency"] >= 0
        assert queries[bad]["status"] == "error"
        assert "boom is not allowed" in queries[bad]["final"]["reason"]
        assert queries[bad]["dead_letters"] == 1

        (letter,) = service.changes(0)["letters"]
        assert (letter["stage"], letter["error_type"], letter["query_id"]) == (
            "check",
            "ValueError",
            bad,
        )
        assert "boom is not allowed" in letter["error"]
        assert letter["record"] == {
            "kind": "DATA",
            "schema": "alto.Text",
            "value": {"text": "boom goes it"},
        }

        # the waterfall: every fragment a row, the critical path from the query to its result
        wf = await service.trace(good)
        assert wf["finished"] and wf["latency"] is not None
        assert [r["index"] for r in wf["rows"]] == [[], [0], [1], [2]]
        root = wf["rows"][0]
        assert [b["stage"] for b in root["bars"]] == ["client", "check", "joined"]
        assert wf["critical_path"][0]["stage"] == "client"
        assert wf["critical_path"][-1]["stage"] == "joined"
        skip = [b for r in wf["rows"] for b in r["bars"] if b["kind"] == "SKIP"]
        assert [(b["stage"], b["value"]) for b in skip] == [("shout", None)]
        assert all(0 <= b["start"] <= b["end"] <= wf["span"] for r in wf["rows"] for b in r["bars"])
        bad_wf = await service.trace(bad)
        assert any(b["kind"] == "ERROR" and b["reason"] for r in bad_wf["rows"] for b in r["bars"])
        with pytest.raises(ConfigError, match="unknown query"):
            await service.trace("nope")

        # fix the bug, replay the dead letter: a new query that completes
        broken["now"] = False
        rev = service.revisions.last
        done = await service.replay(letter["topic"], letter["partition"], letter["offset"])
        ((replay,),) = [done["replays"]]
        assert replay["replay_of"] == bad and replay["query_id"] != bad
        assert done["stage"] == "check"
        results = [r async for r in client.follow([replay["query_id"]], timeout=10, since=0)]
        assert results[-1].value == {"text": "BOOM GOES IT"}
        await _feed(service)
        changes = service.changes(rev)
        replayed = {q["id"]: q for q in changes["queries"]}[replay["query_id"]]
        assert (replayed["status"], replayed["replay_of"]) == ("done", bad)
        (letter,) = changes["letters"]
        assert letter["replays"] == [{"query_id": replay["query_id"], "status": "done"}]
        assert service.changes(service.revisions.last) == {
            "rev": service.revisions.last,
            "followed": False,
            "queries": [],
            "letters": [],
            "letters_total": 1,
        }
        with pytest.raises(ConfigError, match="not a dead-letter topic"):
            await service.replay(topology.input_topic, 0, 0)


async def test_boards_ignore_duplicates_and_keep_partials() -> None:
    app = textflow.build("uidup")
    topology = app.topology()
    transport = MemoryTransport(2)
    service = UiService(topology, transport, MemoryOps(transport))
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = (await client.run([{"text": "One. Two."}], timeout=10)).keys()
    await _feed(service)
    await _feed(service)  # every record again (a redelivery): nothing shows twice
    (query,) = service.changes(0)["queries"]
    assert query["id"] == query_id
    assert query["final"]["value"] == {"text": textflow.reference("One. Two.")}
    assert query["partials"] == []  # textflow writes only whole documents to its output


# -- the HTTP endpoints ---------------------------------------------------------------------------


async def test_endpoints_return_the_json_of_the_service() -> None:
    broken = {"now": True}
    app = _app("uihttp", broken)
    transport = MemoryTransport(2)
    service = UiService(app.topology(), transport, MemoryOps(transport))
    web = create_app(service, run_service=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://ui")
    async with LocalRun(app, transport), http:
        page = await http.get("/")
        assert page.status_code == 200 and "<svg" not in page.text and "app.js" in page.text
        assert (await http.get("/static/app.js")).status_code == 200
        graph = (await http.get("/api/graph")).json()
        assert graph["app"] == "uihttp" and len(graph["nodes"]) == 6

        pushed = await http.post("/api/push", json={"text": "boom here"})
        query_id = pushed.json()["query_id"]
        wrong = await http.post("/api/push", json={"value": {"txt": "x"}})
        assert wrong.status_code == 400 and "unknown field 'txt'" in wrong.json()["error"]
        assert "--value" not in wrong.json()["error"]  # before: the CLI's words
        for body in ({"text": 5}, {}, {"text": "x", "value": {"text": "y"}}, {"value": [1]}):
            odd = (await http.post("/api/push", json=body)).json()["error"]
            assert odd.startswith('expected {"text": "a non-empty string"} or {"value"'), odd
        for _ in range(100):
            await _feed(service)
            state = (await http.get("/api/state")).json()
            if state["letters"] and any(q["status"] == "error" for q in state["queries"]):
                break
            await asyncio.sleep(0.05)
        assert [q["id"] for q in state["queries"]] == [query_id]
        assert set(state["stages"]["stages"]) == {"check", "words", "shout", "joined"}
        assert (await http.get(f"/api/state?since={state['rev']}")).json()["queries"] == []

        wf = (await http.get(f"/api/queries/{query_id}/waterfall")).json()
        assert wf["query_id"] == query_id and wf["rows"]
        missing = await http.get("/api/queries/nope/waterfall")
        assert missing.status_code == 400 and "unknown query" in missing.json()["error"]

        (letter,) = state["letters"]
        broken["now"] = False
        where = {k: letter[k] for k in ("topic", "partition", "offset")}
        replay = (await http.post("/api/replay", json=where)).json()
        assert replay["replays"][0]["replay_of"] == query_id
        assert "warning" not in replay  # a query's own record: its replay finishes
        bad = await http.post("/api/replay", json={"topic": letter["topic"]})
        assert bad.status_code == 400
        # a form post (what another site could make a browser send) is refused
        form = await http.post(
            "/api/push", content=b'{"text": "x"}', headers={"Content-Type": "text/plain"}
        )
        assert form.status_code == 400 and "application/json" in form.json()["error"]
        # nested past what JSON's parser takes: a clear 400, not a RecursionError's 500
        deep = b'{"value": {"text": ' + b"[" * 3000 + b"]" * 3000 + b"}}"
        for body in (deep, b'{"value": {"text": ' + b"[" * 150 + b"]" * 150 + b"}}"):
            too = await http.post(
                "/api/push", content=body, headers={"Content-Type": "application/json"}
            )
            assert too.status_code == 400 and "nested too deeply" in too.json()["error"], too.text


async def test_another_sites_page_and_oversized_bodies_are_refused() -> None:
    """A new user's probe: a rebinding name was served, any Origin could POST, 200 MB was read."""
    app = _app("uiguard", {"now": False})
    transport = MemoryTransport(2)
    service = UiService(app.topology(), transport, MemoryOps(transport))
    web = create_app(service, run_service=False, loopback=True)
    json_type = {"Content-Type": "application/json"}
    async with LocalRun(app, transport):
        for base in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=web), base_url=base
            ) as http:
                assert (await http.get("/api/graph")).status_code == 200, base
                mine = await http.post("/api/push", json={"text": "a b"}, headers={"Origin": base})
                assert mine.status_code == 200, mine.text
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://127.0.0.1:8765"
        ) as http:
            other = await http.post(
                "/api/push", json={"text": "a b"}, headers={"Origin": "http://evil.example"}
            )
            assert other.status_code == 403 and "evil.example" in other.json()["error"]
            big = b'{"text": "' + b"x" * (5 * 1024 * 1024) + b'"}'
            huge = await http.post("/api/push", content=big, headers=json_type)
            assert huge.status_code == 413 and "4,194,304 bytes" in huge.json()["error"]
            # the CLI's words: "text 1 is 1,536,004 bytes", "text 1: ... lone surrogate"
            too_long = b'{"text": "' + b"x" * 1_500_000 + b'"}'
            for body in (too_long, b'{"text": "a\\udc80b"}'):
                answer = await http.post("/api/push", content=body, headers=json_type)
                said = answer.json()["error"]
                assert said.startswith('"text"') and "text 1" not in said, said
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://evil.example:8765"
        ) as http:
            for answer in (await http.get("/api/state"), await http.get("/")):
                assert answer.status_code == 400
                assert "not for 'evil.example:8765'" in answer.json()["error"]
    # served on another address (--host 0.0.0.0), any Host is answered
    anywhere = create_app(service, run_service=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=anywhere), base_url="http://box.lan:8765"
    ) as http:
        assert (await http.get("/api/graph")).status_code == 200


async def test_the_view_waits_for_the_apps_topics_then_follows_them() -> None:
    app = _app("uiwait", {"now": False})
    transport = MemoryTransport(2)
    asked: list[list[str]] = []

    async def missing(names: list[str]) -> list[str]:
        asked.append(names)
        return names[:1] if len(asked) == 1 else []  # the input is missing at first

    service = UiService(app.topology(), transport, MemoryOps(transport), missing_topics=missing)
    task = asyncio.create_task(service.run())
    try:
        async with LocalRun(app, transport), Client(app, transport) as client:
            query_id = await client.push({"text": "late but seen"})
            for _ in range(200):
                if (service.queries.get(query_id) or {}).get("status") == "done":
                    break
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(asked) == 2 and asked[0][0] == "uiwait.input"
    assert service.followed
    assert (service.queries.get(query_id) or {})["final"]["value"] == {"text": "LATE BUT SEEN"}


async def test_records_deeper_than_the_query_on_an_output_topic_are_partial_results() -> None:
    app = App("uipart", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def echo(word: dict[str, Any]) -> dict[str, Any]:  # an output at depth 1: partials
        return {"text": word["text"].upper()}

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def counted(children: list[Any]) -> dict[str, Any]:  # the final result
        return {"text": str(len(children))}

    transport = MemoryTransport(2)
    service = UiService(app.topology(), transport, MemoryOps(transport))
    async with LocalRun(app, transport), Client(app, transport) as client:
        query_id = await client.push({"text": "a b c"})
        async for _ in client.follow([query_id], timeout=10, since=0, partials=False):
            pass
        for _ in range(200):  # echo's words may come after the final result
            if len(transport.records("uipart.echo")) >= 3:
                break
            await asyncio.sleep(0.05)
    await _feed(service)
    query = service.queries.get(query_id)
    assert query is not None
    assert query["status"] == "done" and query["final"]["value"] == {"text": "3"}
    partials = sorted((p["index"], p["stage"], p["value"]["text"]) for p in query["partials"])
    assert partials == [([0], "echo", "A"), ([1], "echo", "B"), ([2], "echo", "C")]


async def test_a_replay_of_a_fragments_letter_says_it_cannot_finish() -> None:
    # Found by a new user: a dead letter from below a split, replayed from the page,
    # showed "running" for ever, with no word why (the CLI's replay warns of it).
    app = App("uideep", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def shout(word: dict[str, Any]) -> dict[str, Any]:
        if word["text"] == "boom":
            raise ValueError("no booms")
        return {"text": word["text"].upper()}

    @app.aggregate(source=shout, closes=words, schema="alto.Text")
    async def joined(children: list[Any]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    transport = MemoryTransport(1)
    service = UiService(app.topology(), transport, MemoryOps(transport))
    async with LocalRun(app, transport), Client(app, transport) as client:
        await client.run([{"text": "boom goes it"}], timeout=10)
        await _feed(service)
        (letter,) = service.changes(0)["letters"]
        where = (letter["topic"], letter["partition"], letter["offset"])
        answer = await service.replay(*where)
    assert "waits for the rest for ever" in answer["warning"]
    assert "uideep.input" in answer["warning"]


async def test_queries_finished_before_the_view_started_show_with_the_apps_own_schemas() -> None:
    # Found by a new user: the catch-up read decoded without the app's codec, so the
    # records of an app-schema input or output were dropped as undecodable: queries
    # that finished before `alto-stream ui` started showed "running" with no input.
    note = {
        "type": "record",
        "name": "Note",
        "namespace": "my",
        "fields": [{"name": "body", "type": "string"}],
    }
    app = App("uiown", input_schema="my.Note", schemas=[note])

    @app.map(source=app.input, schema="my.Note")
    async def loud(doc: dict[str, Any]) -> dict[str, Any]:
        return {"body": doc["body"].upper()}

    transport = MemoryTransport(1)
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query_id,) = (await client.run([{"body": "before"}], timeout=10)).keys()
    service = UiService(app.topology(), transport, MemoryOps(transport))
    await service._catch_up(0.0)
    query = service.queries.get(query_id)
    assert query is not None
    assert (query["status"], query["input"]) == ("done", {"body": "before"})
    assert query["final"]["value"] == {"body": "BEFORE"}


async def test_the_dead_letter_list_keeps_the_newest_and_says_how_many_there_were() -> None:
    # Found by a new user: the list stopped at 500 without saying so.
    app = _app("uicap", {"now": True})
    transport = MemoryTransport(1)
    service = UiService(app.topology(), transport, MemoryOps(transport))
    service.letters.limit = 2
    async with LocalRun(app, transport), Client(app, transport) as client:
        await client.run([{"text": f"boom {i}"} for i in range(3)], timeout=10)
    await _feed(service)
    changes = service.changes(0)
    assert [letter["record"]["value"] for letter in changes["letters"]] == [
        {"text": "boom 2"},
        {"text": "boom 1"},
    ]
    assert changes["letters_total"] == 3


def test_consumed_is_the_groups_committed_offsets_as_lag_and_written_are_kafkas() -> None:
    # Found in a soak: after a SIGKILL and restart, sentence_text showed consumed 0 (the new
    # worker's counter) with lag 0, though its group had committed 60,370.
    topology = _app("consumed", {"now": False}).topology()
    board = StageBoard(topology)
    shout = topology.stages["shout"]
    ends = {shout.input_topic: 60_370, shout.output_topic: 60_370}
    board.update(ClusterSnapshot(100.0, ends, {}, {shout.group: 60_370}))
    restarted = 'alto_records_in_total{app="consumed",stage="shout",replica="0"} 0.0\n'
    board.update_metrics(parse_metrics(restarted), at=100.0)
    figures = board.to_dict()["stages"]["shout"]
    assert (figures["consumed"], figures["lag"], figures["written"]) == (60_370, 0, 60_370)


class _Cluster:
    """A cluster source that answers, or fails as an unreachable Kafka does."""

    def __init__(self) -> None:
        self.down = False

    async def snapshot(self, topology: Any) -> ClusterSnapshot:
        if self.down:
            raise TransportError("Kafka failed to describe topics: KafkaConnectionError")
        return ClusterSnapshot(time.time(), {topology.input_topic: 5}, {}, {})


async def test_the_state_says_when_kafka_stops_answering_and_when_it_is_back() -> None:
    # Found in a soak: for 40 s of a broker outage every /api/state returned the figures of
    # before it (rates, lag 0) as if live, and the page's "live" badge stayed green.
    app = _app("uistale", {"now": False})
    transport = MemoryTransport(2)
    cluster = _Cluster()
    service = UiService(
        app.topology(), transport, MemoryOps(transport), cluster=cluster, poll_interval=0.01
    )
    web = create_app(service, run_service=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://ui")

    async def board_when(stale: bool) -> dict[str, Any]:
        for _ in range(200):
            board: dict[str, Any] = (await http.get("/api/state")).json()["stages"]
            if board["time"] is not None and board["stale"] is stale:
                return board
            await asyncio.sleep(0.01)
        raise AssertionError(f"never stale={stale}: {board}")

    poll = asyncio.create_task(service._poll_cluster())
    try:
        async with http:
            live = await board_when(False)
            assert live["unreachable_since"] is None and live["error"] is None
            went = time.time()
            cluster.down = True
            stale = await board_when(True)
            assert stale["unreachable_since"] >= went and "KafkaConnectionError" in stale["error"]
            assert stale["time"] <= stale["unreachable_since"]  # the figures of before
            cluster.down = False
            back = await board_when(False)
            assert back["unreachable_since"] is None and back["time"] > stale["time"]
    finally:
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)


def test_figures_not_renewed_for_a_while_are_stale_too() -> None:
    # A snapshot that hangs (aiokafka retries for 20 s before it fails) says nothing new.
    topology = _app("aging", {"now": False}).topology()
    board = StageBoard(topology, stale_after=10.0)
    board.update(ClusterSnapshot(100.0, {}, {}, {}))
    assert board.to_dict(now=105.0)["stale"] is False
    assert board.to_dict(now=111.0)["stale"] is True


async def test_an_outage_is_said_once_and_its_end_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by a new user's soak: while the broker was down the view logged
    # "following the app's topics failed ...; retrying in 2 s" every 2 s.
    from alto_stream.ui import service as service_module

    app = _app("uioutage", {"now": False})
    transport = MemoryTransport(2)
    ui = UiService(app.topology(), transport, MemoryOps(transport))
    ui.followed = True  # no catching up: straight to following
    calls = {"n": 0}
    real = service_module.read_records

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 5:
            raise TransportError("Kafka does not answer")
        return real(*args, **kwargs)

    monkeypatch.setattr(service_module, "read_records", flaky)
    monkeypatch.setattr(service_module, "_RETRY", 0.01)
    task = asyncio.create_task(ui.run())
    try:
        with caplog.at_level("WARNING", logger="alto_stream.ui.service"):
            async with LocalRun(app, transport), Client(app, transport) as client:
                query_id = await client.push({"text": "after the outage"})
                for _ in range(200):
                    if (ui.queries.get(query_id) or {}).get("status") == "done":
                        break
                    await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert calls["n"] >= 6
    lines = [r.getMessage() for r in caplog.records if r.name == "alto_stream.ui.service"]
    assert len([line for line in lines if "failed" in line]) == 1, lines
    assert len([line for line in lines if "again, after" in line]) == 1, lines
