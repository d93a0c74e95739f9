"""Client.follow on hand-written topics: what it shows, in which order, and how it gives up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.client import Client, Result
from alto_stream.errors import TransportError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.kafka.common import stop_consumer
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(30)

CODEC = MessageCodec()


def _app() -> App:
    """pieces (split) -> work (map) -> answer (aggregate closing pieces), as a user's app."""
    app = App("follow", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def pieces(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": p} for p in q["text"].split("|")]

    @app.map(source=pieces, schema="alto.Text")
    async def work(p: dict[str, Any]) -> dict[str, Any]:
        return {"text": p["text"].upper()}

    @app.aggregate(source=work, closes=pieces, schema="alto.Text")
    async def answer(children: list[Child]) -> dict[str, Any]:
        return {"text": " / ".join(c.value["text"] for c in children if c.ok)}

    return app


def _write(transport: MemoryTransport, topic: str, ancestry: Ancestry, text: str) -> None:
    value, headers = CODEC.encode(Envelope(ancestry, {"text": text}, "alto.Text", "test"))
    # Keyed by the query, as records bound for its aggregate and its final are.
    transport.append(OutRecord(topic, value, headers, ancestry.query_id.encode()))


async def _follow(client: Client, ids: list[str], **options: Any) -> list[Result]:
    return [r async for r in client.follow(ids, timeout=10, since=0, **options)]


async def test_every_partial_comes_before_its_final_when_the_reader_is_far_behind() -> None:
    # Found by a new user: following 300 finished queries again, 256 showed no
    # partial at all. Records are ordered only within one partition: a fetch
    # brought the finals (topic follow.answer, read first) with only some of the
    # work records, and each final ended its query before its partials came.
    app = _app()
    topology = app.topology()
    transport = MemoryTransport(4)
    work, answer = topology.plan("work").output_topic, topology.output_topics()["answer"]
    ids = []
    for i in range(200):
        root = Ancestry.root(f"q{i}")
        for j in range(4):
            _write(transport, work, root.child("a", j, count=4 if j == 3 else None), f"P{j}")
        _write(transport, answer, root, "P0 / P1 / P2 / P3")
        ids.append(root.id)
    async with Client(app, transport) as client:
        results = await _follow(client, ids, partials_from=["work"])
    shown: dict[str, list[str]] = {q: [] for q in ids}
    for result in results:
        shown[result.query_id].append("final" if result.final else result.stage)
    missing = [q for q, kinds in shown.items() if kinds != ["work"] * 4 + ["final"]]
    assert missing == [], f"{len(missing)} of 200 queries lost partials, e.g. {shown[missing[0]]}"


async def test_a_split_re_run_after_a_crash_shows_each_child_once() -> None:
    # Found by a new user: after a worker crash a query showed 'KILL176A' twice,
    # once from the split's abandoned attempt and once from its re-run.
    app = _app()
    topology = app.topology()
    transport = MemoryTransport(1)
    work, answer = topology.plan("work").output_topic, topology.output_topics()["answer"]
    root = Ancestry.root("crashed")
    _write(transport, work, root.child("first", 0), "KILL176A")  # then the worker died
    for j, text in enumerate(["KILL176A", "KILL176B", "KILL176C"]):  # the re-run, whole
        _write(transport, work, root.child("second", j, count=3 if j == 2 else None), text)
    _write(transport, work, root.child("first", 1), "LATE")  # a zombie of the first attempt
    _write(transport, answer, root, "KILL176A / KILL176B / KILL176C")
    async with Client(app, transport) as client:
        results = await _follow(client, [root.id], partials_from=["work"])
    partials = [(r.envelope.ancestry.path[0].attempt, r.value) for r in results if not r.final]
    assert partials == [
        ("first", {"text": "KILL176A"}),
        ("second", {"text": "KILL176B"}),
        ("second", {"text": "KILL176C"}),
    ]
    assert [r.value for r in results if r.final] == [{"text": "KILL176A / KILL176B / KILL176C"}]


def test_partials_follow_the_newest_attempt_at_every_split_level() -> None:
    from alto_stream.following import Following  # (here: the tests above run without it)

    root = Ancestry.root("q")
    following = Following(["q"], finals_on={"out"}, partials=True)
    old, new = root.child("a1", 0), root.child("a2", 0)
    assert following.sort(old.child("b", 0), "claims") == "partial"
    assert following.sort(new.child("c", 1), "claims") == "partial"  # a re-run above
    assert following.sort(old.child("b", 2), "claims") is None  # under the abandoned one
    assert following.sort(new.child("c", 0), "claims") is None  # its place was shown
    assert following.sort(new.child("c", 2), "claims") == "partial"
    assert following.sort(root, "out") == "final"
    assert following.sort(root, "out") is None  # a re-delivered final


async def test_following_queries_found_nowhere_says_so_and_how_to_look_further_back() -> None:
    # Found by a new user: a query followed more than 60 s after it finished (the
    # default since) timed out with "1 queries did not finish within 10s", as if
    # it were still running.
    app = _app()
    transport = MemoryTransport(1)
    root = Ancestry.root("long-done")
    _write(transport, app.topology().output_topics()["answer"], root, "DONE")
    async with Client(app, transport) as client:
        with pytest.raises(TimeoutError) as raised:
            async for _ in client.follow([root.id], timeout=0.5, since=time.time() + 1):
                pass
    message = str(raised.value)
    assert "1 queries did not finish within 0.5s: long-done" in message
    assert "nothing of it was found on follow.answer since" in message
    assert "earlier since=" in message


async def test_one_query_id_as_a_str_is_refused() -> None:
    # Found by a new user: follow("someid") followed the queries "s", "o", "m", ...
    async with Client(_app(), MemoryTransport(1)) as client:
        with pytest.raises(TypeError, match=r"list of query ids, got one str .*pass \[query_id\]"):
            async for _ in client.follow("someid", timeout=1):  # type: ignore[arg-type]
                pass


async def test_a_follow_that_cannot_reach_the_broker_closes_its_consumer() -> None:
    # Found by a new user: after the clear TransportError, aiokafka warned
    # "Unclosed AIOKafkaConsumer": the reader that failed to start was never stopped.
    transport = KafkaTransport("127.0.0.1:9")
    made = []
    reader_of = transport.reader

    def reader(*args: Any, **kwargs: Any) -> Any:
        made.append(reader_of(*args, **kwargs))
        return made[-1]

    transport.reader = reader  # type: ignore[method-assign]
    client = Client(_app(), transport)
    with pytest.raises(TransportError):
        async for _ in client.follow(["q"], timeout=5):
            pass
    (made_reader,) = made
    assert made_reader._consumer._closed


class _BrokerGone:
    """A consumer whose stop() meets the broker gone: aiokafka's own CancelledError."""

    def __init__(self) -> None:
        self.closed = False
        self._client = self

    async def close(self) -> None:
        self.closed = True  # (its client's connections)

    async def stop(self) -> None:
        task = asyncio.ensure_future(asyncio.sleep(10))  # a fetch in its retry back-off
        await asyncio.sleep(0)
        task.cancel()
        await task  # as aiokafka's Fetcher.close() does


async def test_a_reader_stopped_after_its_broker_went_away_raises_no_cancelled_error() -> None:
    # Found by a new user: follow(timeout=15) raised CancelledError when the broker
    # stopped mid-follow. aiokafka's consumer.stop() awaits the fetch request it
    # cancelled, cut in its retry back-off, and its CancelledError came out.
    reader = KafkaTransport("127.0.0.1:9").reader(["t"])
    reader._consumer = consumer = _BrokerGone()  # type: ignore[assignment]
    await reader.stop()
    assert consumer.closed  # the connections closed all the same

    # A cancellation of the caller itself still propagates.
    task = asyncio.ensure_future(stop_consumer(_Slow()))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class _Slow:
    async def stop(self) -> None:
        await asyncio.sleep(10)


async def test_a_worker_leaving_its_group_after_the_broker_went_away_is_not_cancelled() -> None:
    # The group consumer of a worker stops through the same aiokafka call as follow's
    # reader (whose CancelledError a new user met): a worker stopping while its broker
    # is gone got a CancelledError nothing had asked for, and left connections open.
    async def nothing(partitions: object) -> None:
        return None

    member = KafkaTransport("127.0.0.1:9").consumer(
        ["t"], "g", on_assigned=nothing, on_revoked=nothing
    )
    member._consumer = consumer = _BrokerGone()  # type: ignore[assignment]
    await member.stop()
    assert consumer.closed


async def test_a_retry_that_writes_other_text_shows_it_as_a_rerun() -> None:
    # Found by a new user: a generation that failed after two sentences and was retried
    # showed the two abandoned sentences as partials and never the retry's, which the
    # final was built from.
    app = _app()
    topology = app.topology()
    transport = MemoryTransport(1)
    work, answer = topology.plan("work").output_topic, topology.output_topics()["answer"]
    root = Ancestry.root("retried")
    _write(transport, work, root.child("first", 0), "FIRST ATTEMPT ONE")
    _write(transport, work, root.child("first", 1), "FIRST ATTEMPT TWO")  # then it failed
    _write(transport, work, root.child("second", 0), "FIRST ATTEMPT ONE")  # the same: not again
    _write(transport, work, root.child("second", 1, count=2), "SECOND ATTEMPT, WHOLE")
    _write(transport, answer, root, "FIRST ATTEMPT ONE / SECOND ATTEMPT, WHOLE")
    async with Client(app, transport) as client:
        results = await _follow(client, [root.id], partials_from=["work"])
    shown = [(r.value, r.rerun) for r in results if not r.final]
    assert shown == [
        ({"text": "FIRST ATTEMPT ONE"}, False),
        ({"text": "FIRST ATTEMPT TWO"}, False),
        ({"text": "SECOND ATTEMPT, WHOLE"}, True),
    ]
