"""Query-aware scheduling and admission: the queue's order, the admission's slots, and a
worker over the in-memory transport that holds an app to N queries in flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.client import Client
from alto_stream.context import current_record
from alto_stream.errors import ConfigError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.admission import Admission, CompletionWatch
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.scheduling import ReadyQueue
from alto_stream.runtime.worker import WorkerOptions
from alto_stream.transport import InRecord

pytestmark = pytest.mark.timeout(60)

CODEC = MessageCodec()


def _record(ancestry: Ancestry, partition: int, offset: int, topic: str = "in") -> InRecord:
    value = None if ancestry.kind.is_marker else {"text": "x"}
    schema = None if value is None else "alto.Text"
    _, headers = CODEC.encode(Envelope(ancestry, value, schema, "t"))
    return InRecord(topic, partition, offset, None, None, headers, ancestry.query_time)


def _push(queue: ReadyQueue, ancestry: Ancestry, partition: int, offset: int) -> None:
    envelope = Envelope(ancestry, {"text": "x"}, "alto.Text", "t")
    queue.push(_record(ancestry, partition, offset), envelope, OffsetBook())


def _order(queue: ReadyQueue) -> list[str]:
    out = []
    while (entry := queue.pop()) is not None:
        out.append(entry.envelope.ancestry.id)
    return out


def test_the_oldest_query_starts_first_whatever_the_partition_and_offset() -> None:
    queue = ReadyQueue()
    young, old = Ancestry.root("young", query_time=20.0), Ancestry.root("old", query_time=10.0)
    # The young query's fragments were fetched first, from a lower partition and offset.
    _push(queue, young.child("a", 0), 0, 0)
    _push(queue, young.child("a", 1), 0, 1)
    _push(queue, old.child("b", 0), 1, 5)
    _push(queue, old.child("b", 1), 1, 6)
    assert _order(queue) == [
        old.child("b", 0).id,
        old.child("b", 1).id,  # one query's fragments keep their fetch order
        young.child("a", 0).id,
        young.child("a", 1).id,
    ]
    assert queue.stats.started == 4 and queue.stats.depth == 0
    assert len(queue.stats.take_waits()) == 4 and queue.stats.take_waits() == []


def test_in_offset_order_a_partitions_records_start_in_offset_order() -> None:
    # The transactional mode: an old query's fragment fetched behind a younger one's in
    # its partition waits for it (else its outputs are held until that one is done).
    queue = ReadyQueue(in_offset_order=True)
    young, old = Ancestry.root("young", query_time=20.0), Ancestry.root("old", query_time=10.0)
    older = Ancestry.root("older", query_time=15.0)
    _push(queue, young.child("a", 0), 0, 0)
    _push(queue, old.child("b", 0), 0, 1)  # behind the young one in partition 0
    _push(queue, older.child("c", 0), 1, 0)
    _push(queue, old.child("b", 1), 1, 1)  # behind "older" in partition 1
    assert _order(queue) == [
        older.child("c", 0).id,  # the oldest head of a partition first
        old.child("b", 1).id,
        young.child("a", 0).id,
        old.child("b", 0).id,
    ]
    # A dropped partition (taken over: read again from its committed offset) starts afresh.
    _push(queue, young.child("a", 1), 0, 0)
    queue.drop({("in", 0)})
    _push(queue, old.child("b", 2), 0, 1)
    _push(queue, older.child("c", 1), 1, 2)
    assert _order(queue) == [old.child("b", 2).id, older.child("c", 1).id]


def test_dropping_revoked_partitions_keeps_the_order_of_the_rest() -> None:
    queue = ReadyQueue()
    for i, t in enumerate([5.0, 1.0, 3.0, 2.0]):
        _push(queue, Ancestry.root(f"q{t:.0f}", query_time=t), i % 2, i)
    queue.drop({("in", 1)})
    assert _order(queue) == ["q3", "q5"]


def test_admission_holds_new_queries_back_and_admits_the_oldest_when_a_slot_frees() -> None:
    admission = Admission(2)
    freed: list[int] = []
    admission.on_free = lambda: freed.append(1)
    queue = ReadyQueue(admission)
    for t in [4.0, 2.0, 5.0, 1.0, 3.0]:
        _push(queue, Ancestry.root(f"q{t:.0f}", query_time=t), int(t) % 3, int(t))
    assert queue.startable() == 2
    assert _order(queue) == ["q1", "q2"]  # then held back: no slot
    assert queue.waiting_for_admission() and queue.startable() == 0
    assert admission.in_flight == ["q1", "q2"] and admission.stats.admitted == 2
    admission.finished("q2")
    assert freed == [1] and not queue.waiting_for_admission()
    assert _order(queue) == ["q3"]
    admission.finished("nobody")  # a query admitted elsewhere: frees nothing here
    assert freed == [1] and queue.pop() is None
    admission.finished("q1")
    admission.finished("q3")
    assert _order(queue) == ["q4", "q5"]
    assert admission.stats.in_flight == 2 and admission.stats.finished == 3


def test_a_query_already_in_flight_or_finished_needs_no_new_slot() -> None:
    admission = Admission(1)
    queue = ReadyQueue(admission)
    old = Ancestry.root("old", query_time=1.0)
    _push(queue, old, 0, 0)
    assert _order(queue) == ["old"]
    admission.finished("old")
    _push(queue, Ancestry.root("busy", query_time=3.0), 0, 2)
    assert _order(queue) == ["busy"]
    # A re-delivery of a query that finished, and one of the query in flight, pass.
    _push(queue, old, 0, 0)
    _push(queue, Ancestry.root("busy", query_time=3.0), 0, 2)
    _push(queue, Ancestry.root("new", query_time=4.0), 0, 3)
    assert _order(queue) == ["old", "busy"]
    assert queue.waiting_for_admission()


def test_an_admitted_query_that_never_finishes_gives_its_slot_back_after_the_timeout() -> None:
    now = [0.0]
    admission = Admission(1, timeout=30.0, clock=lambda: now[0])
    admission.admit("lost", 0.0)
    assert admission.free() == 0
    now[0] = 29.0
    assert admission.free() == 0
    now[0] = 31.0
    assert admission.free() == 1 and admission.stats.timed_out == 1


@pytest.mark.parametrize(
    ("limit", "owned", "total", "share"),
    [(8, 4, 4, 8), (8, 2, 4, 4), (8, 1, 3, 2), (2, 1, 4, 1), (2, 0, 4, 0), (5, 3, 6, 2)],
)
def test_replicas_split_the_limit_by_the_input_partitions_they_own(
    limit: int, owned: int, total: int, share: int
) -> None:
    admission = Admission(limit)
    admission.set_share(owned, total)
    assert admission.share == share


def test_an_app_rejects_an_admission_below_one() -> None:
    with pytest.raises(
        ConfigError, match=r"admission \(queries in flight, or None\) must be a whole number >= 1"
    ):
        App("bad-admission", admission=0)


def _app(name: str, admission: int | None, delay: float, log: dict[str, Any]) -> App:
    app = App(name, input_schema="alto.Text", admission=admission)

    @app.map(source=app.input, schema="alto.Text")
    async def first(q: dict[str, Any]) -> dict[str, Any]:
        record = current_record()
        assert record is not None
        log["started"].append(record.query_id)
        log["now"] += 1
        log["peak"] = max(log["peak"], log["now"])
        log.setdefault("at_start", []).append(log["now"])
        return q

    @app.split(source=first, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        await asyncio.sleep(delay)
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=parts, closes=app.input, schema="alto.Text")
    async def joined(children: list[Any]) -> dict[str, Any]:
        log["now"] -= 1  # left the handlers; its final result is written after this
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def _run_ten(admission: int | None) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    log: dict[str, Any] = {"started": [], "now": 0, "peak": 0}
    app = _app(f"adm-{admission}", admission, 0.05, log)
    transport = MemoryTransport(3)
    async with Client(app, transport) as client:
        ids = []
        for i in range(10):  # pushed before the app runs: all waiting at once
            ids.append(await client.push({"text": f"query {i}"}))
        finals = {}
        async with LocalRun(app, transport):
            async for r in client.follow(ids, timeout=30, since=0.0, partials=False):
                finals[r.query_id] = r.value["text"]
    return log, ids, finals


async def test_an_app_with_admission_two_never_holds_more_than_two_queries() -> None:
    log, ids, finals = await _run_ten(2)
    assert finals == {q: f"query {i}" for i, q in enumerate(ids)}
    assert log["peak"] == 2  # never more than two in flight, and two at once were allowed
    assert log["started"] == ids  # admitted in the order they arrived


async def test_without_admission_all_ten_queries_run_at_once() -> None:
    # The reference for the test above: the same app holds ten when nothing limits it.
    log, _, finals = await _run_ten(None)
    assert len(finals) == 10 and log["peak"] > 2


async def _run_with(
    name: str, admission: int, delay: float, queries: int, options: WorkerOptions
) -> dict[str, Any]:
    """``queries`` pushed before the app runs under ``options``; the log (all must finish)."""
    log: dict[str, Any] = {"started": [], "now": 0, "peak": 0}
    app = _app(name, admission, delay, log)
    transport = MemoryTransport(2)
    async with Client(app, transport) as client:
        ids = [await client.push({"text": f"q {i}"}) for i in range(queries)]
        async with LocalRun(app, transport, options=options):
            got = [r.query_id async for r in client.follow(ids, timeout=60, since=0.0)]
    assert sorted(got) == sorted(ids)
    return log


async def test_a_worker_option_overrides_the_apps_admission() -> None:
    log = await _run_with("adm-override", 5, 0.05, 6, WorkerOptions(admission=1))
    assert log["peak"] == 1


def test_the_completion_watch_finishes_a_query_on_its_root_result_and_whole_subtrees() -> None:
    side = App("watch-side", input_schema="alto.Text")

    @side.split(source=side.input, schema="alto.Text")
    async def words(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in q["text"].split()]

    @side.map(source=words, schema="alto.Text")  # an output inside the split: partials
    async def echo(word: dict[str, Any]) -> dict[str, Any]:
        return word

    @side.aggregate(source=words, closes=words, schema="alto.Text")
    async def counted(children: list[Any]) -> dict[str, Any]:
        return {"text": str(len(children))}

    topology = side.topology()
    deep, final = topology.plan("echo").output_topic, topology.plan("counted").output_topic
    admission = Admission(2)
    watch = CompletionWatch(MemoryTransport(1), topology, admission, CODEC, lookback=1.0)
    root = Ancestry.root("q", query_time=time.time())
    admission.admit("q", root.query_time)
    watch.seen(_record(root, 0, 0, final))
    assert admission.in_flight == ["q"]  # its partials are not all out yet
    watch.seen(_record(root.child("s", 0), 0, 0, deep))
    assert admission.in_flight == ["q"]  # one of two children: not done
    watch.seen(_record(root.child("s", 1, count=2), 0, 1, deep))
    assert admission.in_flight == [] and admission.stats.finished == 1
    # A root error marker on every output finishes a query too.
    admission.admit("r", root.query_time)
    failed = Ancestry.root("r", query_time=1.0).marker(Kind.ERROR, "boom")
    watch.seen(_record(failed, 0, 2, deep))
    watch.seen(_record(failed, 0, 1, final))
    assert admission.in_flight == []


def test_the_scheduler_and_admission_series_follow_the_worker() -> None:
    from alto_stream.ops.metrics import WorkerMetrics
    from alto_stream.runtime.worker import WorkerStats

    admission = Admission(3)
    queue = ReadyQueue(admission)
    stats = WorkerStats(scheduler=queue.stats, admission=admission.stats)
    for t in [1.0, 2.0, 3.0, 4.0]:
        _push(queue, Ancestry.root(f"q{t:.0f}", query_time=time.time() - 10 * t), 0, int(t))
    while queue.pop() is not None:
        pass
    admission.finished("q4")
    metrics = WorkerMetrics("app", "first", "0")
    metrics.update(stats, {("in", 0): 5, ("in", 1): 2})
    labels = {"app": "app", "stage": "first", "replica": "0"}

    def value(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("alto_admission_limit") == 3
    assert value("alto_admission_cap") == 3  # no target: the share
    assert value("alto_admission_in_flight") == 2  # q4, q3, q2 admitted; q4 finished
    assert value("alto_admission_admitted_total") == 3
    assert value("alto_admission_waiting") == 7  # the input lag
    assert value("alto_admission_wait_seconds_count") == 3
    assert (value("alto_admission_wait_seconds_sum") or 0) >= 20 + 30 + 40 - 1
    assert value("alto_scheduler_queue_wait_seconds_count") == 3
    metrics.update(stats)  # samples are taken once: not counted again
    assert value("alto_admission_admitted_total") == 3
    assert value("alto_scheduler_queue_wait_seconds_count") == 3


async def test_model_calls_carry_priority_as_the_stage_or_else_the_app_says() -> None:
    seen: dict[str, bool] = {}
    app = App("prio", input_schema="alto.Text", priority=True)

    def note(stage: str) -> None:
        record = current_record()
        assert record is not None
        seen[stage] = record.priority

    @app.map(source=app.input, schema="alto.Text")
    async def asks(q: dict[str, Any]) -> dict[str, Any]:
        note("asks")
        return q

    @app.split(source=asks, schema="alto.Text", priority=False)
    async def declines(q: dict[str, Any]) -> list[dict[str, Any]]:
        note("declines")
        return [q]

    @app.aggregate(source=declines, closes=declines, schema="alto.Text")
    async def inherits(children: list[Any]) -> dict[str, Any]:
        note("inherits")
        return {"text": "done"}

    transport = MemoryTransport(1)
    async with LocalRun(app, transport), Client(app, transport) as client:
        ids = [await client.push({"text": "x"})]
        assert [r.query_id async for r in client.follow(ids, timeout=20, since=0.0)]
    assert seen == {"asks": True, "declines": False, "inherits": True}


async def test_a_plain_function_first_stage_admits_too() -> None:
    # Inline stages run records in the worker's loop, not in runner tasks.
    started: list[str] = []
    done: list[str] = []
    overlaps: list[int] = []
    app = App("adm-inline", input_schema="alto.Text", admission=1)

    @app.map(source=app.input, schema="alto.Text")
    def first(q: dict[str, Any]) -> dict[str, Any]:
        record = current_record()
        assert record is not None
        overlaps.append(len(started) - len(done))  # queries started, not finished
        started.append(record.query_id)
        return q

    @app.map(source=first, schema="alto.Text")
    async def slow(q: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        done.append(q["text"])
        return q

    transport = MemoryTransport(2)
    async with Client(app, transport) as client:
        ids = [await client.push({"text": f"q {i}"}) for i in range(5)]
        async with LocalRun(app, transport) as run:
            got = [r.query_id async for r in client.follow(ids, timeout=30, since=0.0)]
            worker = next(w for w in run.workers if w.plan.name == "first")
            assert worker.admission is not None
            peak = worker.admission.stats
    assert sorted(got) == sorted(ids) and started == ids
    assert overlaps == [0] * 5  # each query started once the one before had finished
    assert peak.admitted == 5 and peak.in_flight == 0


def _serve(admission: Admission, now: list[float], latency: float, queries: int) -> None:
    """Admit as many as the admission lets in, each finishing ``latency`` s later, in turn."""
    served = 0
    while served < queries:
        started = []
        while admission.free() > 0 and served + len(started) < queries:
            query = f"q{served + len(started)}-{now[0]}"
            admission.admit(query, time.time())
            started.append(query)
        now[0] += latency
        for query in started:
            admission.finished(query)
        served += len(started)


def test_with_a_target_the_cap_falls_while_admitted_queries_are_slow_and_rises_again() -> None:
    now = [0.0]
    admission = Admission(8, target=2.0, clock=lambda: now[0])
    admission.set_share(4, 4)
    assert admission.free() == 1 and admission.stats.cap == 1  # one query first
    _serve(admission, now, latency=1.0, queries=12)  # well within the target: doubling
    assert admission.stats.cap == 8 and admission.free() == 8
    _serve(admission, now, latency=3.0, queries=40)  # past it: down by a quarter each time
    assert admission.stats.cap == 1
    _serve(admission, now, latency=1.0, queries=60)  # within again: up by one at a time
    assert admission.stats.cap == 8
    _serve(admission, now, latency=1.8, queries=40)  # within, not within 80%: it stays
    assert admission.stats.cap == 8


def test_the_cap_rises_only_when_queries_were_waiting_for_it() -> None:
    now = [0.0]
    admission = Admission(8, target=2.0, clock=lambda: now[0])
    admission.set_share(4, 4)
    _serve(admission, now, latency=1.0, queries=12)  # up to 8
    _serve(admission, now, latency=3.0, queries=16)
    cap = admission.stats.cap
    assert cap < 8
    for i in range(40):  # one query at a time: the cap is never reached
        admission.admit(f"alone-{i}", time.time())
        now[0] += 0.5
        admission.finished(f"alone-{i}")
    assert admission.stats.cap <= cap  # (the slow ones still in its window may lower it)


def test_without_a_target_the_limit_is_fixed_and_a_share_regained_admits_again() -> None:
    now = [0.0]
    fixed = Admission(4, clock=lambda: now[0])
    _serve(fixed, now, latency=100.0, queries=20)
    assert fixed.free() == 4 and fixed.stats.cap == 4
    adaptive = Admission(4, target=1.0, clock=lambda: now[0])
    adaptive.set_share(0, 4)  # assigned nothing yet (every worker starts so)
    assert adaptive.free() == 0
    adaptive.set_share(4, 4)
    assert adaptive.free() == 1  # from one query, up to the share
    with pytest.raises(ValueError, match="target must be > 0"):
        Admission(4, target=0.0)
    with pytest.raises(ConfigError, match="admission_target must be a number of seconds > 0"):
        App("bad-target", admission=4, admission_target=-1.0)


async def test_a_worker_with_an_admission_target_admits_fewer_while_queries_are_slow() -> None:
    # Every query takes ~0.15 s from admission to its result, past a target of 0.05 s: the
    # first stage admits one at a time (without the target: the limit of 8 at once).
    log = await _run_with("adm-target", 8, 0.15, 20, WorkerOptions(admission_target=0.05))
    assert log["peak"] == 1


async def test_a_worker_with_an_admission_target_admits_more_while_queries_are_fast() -> None:
    log = await _run_with("adm-fast", 8, 0.01, 80, WorkerOptions(admission_target=5.0))
    assert log["at_start"][0] == 1 and log["peak"] == 8  # from 1, doubled to the limit


def test_the_admission_target_comes_from_the_cli_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alto_stream.cli.worker_cmd import use_admission
    from alto_stream.ops import worker as ops_worker

    monkeypatch.delenv("ALTO_ADMISSION", raising=False)
    monkeypatch.delenv("ALTO_ADMISSION_TARGET", raising=False)
    assert ops_worker._target() is None
    use_admission(3, 1.5)  # what --admission 3 --admission-target 1.5 do (up and worker)
    assert ops_worker._target() == 1.5
    assert ops_worker._admission(ops_worker.WorkerSetup(stage="first")) == 3
    for bad in ("soon", "0", "-2"):
        monkeypatch.setenv("ALTO_ADMISSION_TARGET", bad)
        with pytest.raises(ConfigError, match="ALTO_ADMISSION_TARGET must be a number"):
            ops_worker._target()


def test_a_stage_without_admission_serves_no_admission_series() -> None:
    # Found by a new user: every stage served alto_admission_limit 0 and the rest,
    # where docs/scheduling.md says only a stage that enforces a limit has them.
    from alto_stream.ops.metrics import WorkerMetrics
    from alto_stream.runtime.worker import WorkerStats

    metrics = WorkerMetrics("app", "later", "0")
    metrics.update(WorkerStats())
    served = {m.name for m in metrics.registry.collect()}
    assert "alto_in_flight" in served
    assert not any(name.startswith("alto_admission") for name in served), served


def test_a_book_at_rest_moves_past_skipped_offsets_only() -> None:
    # Transaction markers (and aborted records) are never handed out: one past the
    # last record is not the consumer's position, and committing there lagged for ever.
    from alto_stream.runtime.offsets import OffsetBook

    book = OffsetBook()
    book.fetched(0)
    book.fetched(2)
    assert not book.skip_to(6)  # records in progress: never past them
    book.done(0)
    book.done(2)
    assert book.skip_to(6) and book.safe() == 6
    assert not book.skip_to(5)  # never back
    book.fetched(7)
    assert not book.position_checked and book.safe() == 7
