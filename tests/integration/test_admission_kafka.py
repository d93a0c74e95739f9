"""Admission on a real broker: at most N queries in flight, admitted oldest first, and a
first-stage worker SIGKILLed with admitted queries does not wedge the app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alto_stream import App
from alto_stream.client import Client
from alto_stream.context import current_record
from alto_stream.message import HEADER_ADMITTED
from alto_stream.ops.records import DecodedRecord
from alto_stream.ops.trace import app_trace_topics, build_trace
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import Worker, WorkerOptions
from alto_stream.testing import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def _app(name: str, admission: int | None, log: dict[str, Any]) -> App:
    """admit -> work (slow, many at once) -> joined: a query's final result leaves the app."""
    app = App(name, input_schema="alto.Text", admission=admission)

    @app.map(source=app.input, schema="alto.Text")
    async def admit(q: dict[str, Any]) -> dict[str, Any]:
        record = current_record()
        assert record is not None
        log["started"].append((record.query_id, time.time()))
        return q

    @app.split(source=admit, schema="alto.Text")
    async def work(q: dict[str, Any]) -> list[dict[str, Any]]:
        await asyncio.sleep(0.3)
        return [{"text": w} for w in q["text"].split()]

    @app.aggregate(source=work, closes=app.input, schema="alto.Text")
    async def joined(children: list[Any]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok)}

    return app


async def _eventually(check: Callable[[], bool], timeout: float) -> None:
    """Wait until ``check()`` holds, at most ``timeout`` seconds."""
    for _ in range(int(timeout / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)


def _peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


async def _run(
    bootstrap: str,
    name: str,
    admission: int | None,
    *,
    queries: int = 10,
    options: WorkerOptions | None = None,
) -> tuple[dict[str, Any], list[str], dict[str, float], LocalRun]:
    log: dict[str, Any] = {"started": [], "admitted": {}}
    app = _app(name, admission, log)
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=3))
    finished: dict[str, float] = {}
    async with Client(app, transport) as client:
        since = time.time() - 1.0
        ids = await client.push_many([{"text": f"query number {i}"} for i in range(queries)])
        run = LocalRun(app, transport, options=options or WorkerOptions(commit_interval=0.05))
        async with run:
            async for result in client.follow(ids, timeout=150, since=since, partials=False):
                assert result.value == {"text": f"query number {ids.index(result.query_id)}"}
                # When the final result was written (the output record's own timestamp).
                finished[result.query_id] = result.envelope.ancestry.query_time + result.latency
        topology = app.topology()
        for record, envelope in await read_topic(
            transport, topology.plan("admit").output_topic, start_time=since
        ):
            stamp = dict(record.headers or []).get(HEADER_ADMITTED)
            log["admitted"][envelope.ancestry.query_id] = stamp and int(stamp) / 1000
        # What `alto-stream trace` shows of the last query.
        items = [
            DecodedRecord(record, envelope)
            for topic in app_trace_topics(topology)
            for record, envelope in await read_topic(transport, topic, start_time=since)
        ]
        log["trace"] = build_trace(topology, ids[-1], items)
    return log, ids, finished, run


async def test_admission_two_keeps_two_queries_in_flight_and_admits_oldest_first(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    log, ids, finished, run = await _run(kafka_bootstrap, unique_name("adm"), 2)
    assert sorted(finished) == sorted(ids)  # all ten complete
    started = dict(log["started"])  # first start of each query at the first stage
    for query_id, at in log["started"]:
        started[query_id] = min(started[query_id], at)
    # In flight: from the first stage's start to the final result on the output topic.
    assert _peak([(started[q], finished[q]) for q in ids]) <= 2
    assert [q for q, _ in log["started"]] == ids  # admitted in order of arrival
    # The first stage's outputs say when their query was admitted (alto.admitted).
    admitted = log["admitted"]
    assert sorted(admitted) == sorted(ids)
    for q in ids:
        assert started[q] - 0.05 <= admitted[q] <= started[q] + 0.002, (q, admitted[q], started)
    assert [admitted[q] for q in ids] == sorted(admitted[q] for q in ids)
    trace = log["trace"]  # the last query waited for admission behind eight others
    assert trace.admission_wait == pytest.approx(admitted[ids[-1]] - trace.start, abs=0.002)
    assert trace.admission_wait > 1.0 and trace.to_dict()["admission_wait"] == trace.admission_wait
    first = next(w for w in run.workers if w.plan.name == "admit")
    assert first.admission is not None
    stats = first.admission.stats
    assert stats.admitted == 10 and stats.finished == 10 and stats.in_flight == 0


async def test_an_admission_target_lowers_the_queries_in_flight_on_kafka(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Each query takes >= 0.3 s from admission to its final result: with a target of 0.2 s
    # the first stage admits one at a time (the limit, 6, is a ceiling never reached);
    # with 2 s it doubles up to the limit.
    options = WorkerOptions(commit_interval=0.05, admission_target=0.2)
    log, ids, finished, run = await _run(
        kafka_bootstrap, unique_name("admt"), 6, queries=12, options=options
    )
    assert sorted(finished) == sorted(ids)
    started: dict[str, float] = {}
    for query_id, at in log["started"]:
        started[query_id] = min(started.get(query_id, at), at)
    assert _peak([(started[q], finished[q]) for q in ids]) == 1
    first = next(w for w in run.workers if w.plan.name == "admit")
    assert first.admission is not None and first.admission.stats.cap == 1
    options = WorkerOptions(commit_interval=0.05, admission_target=2.0)
    log, ids, finished, run = await _run(
        kafka_bootstrap, unique_name("admt"), 6, queries=30, options=options
    )
    assert sorted(finished) == sorted(ids)
    started = {}
    for query_id, at in log["started"]:
        started[query_id] = min(started.get(query_id, at), at)
    assert _peak([(started[q], finished[q]) for q in ids]) == 6
    first = next(w for w in run.workers if w.plan.name == "admit")
    assert first.admission is not None and first.admission.stats.cap == 6


async def test_without_admission_the_same_queries_overlap(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # What the test above would see without the limit: more than two at once.
    log, ids, finished, _ = await _run(kafka_bootstrap, unique_name("noadm"), None)
    started = dict(reversed(log["started"]))  # each query's first start
    assert set(log["admitted"].values()) == {None}  # no admission, no alto.admitted header
    assert log["trace"].admission_wait is None
    assert _peak([(started[q], finished[q]) for q in ids]) > 2


KILL_APP = """
import asyncio
from alto_stream import App

app = App({name!r}, input_schema="alto.Text", admission=2)

@app.map(source=app.input, schema="alto.Text")
async def admit(q):
    return q

@app.map(source=admit, schema="alto.Text")
async def work(q):
    await asyncio.sleep(1.0)
    return q
"""


async def test_a_killed_first_stage_does_not_wedge_admission(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    module = unique_name("admkill").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(KILL_APP.format(name=unique_name("ak"))))
    sys.path.insert(0, str(tmp_path))
    try:
        app = __import__(module).app
    finally:
        sys.path.remove(str(tmp_path))
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    argv = [sys.executable, "-m", "alto_stream.cli", "worker", f"{module}:app", "admit"]
    argv += ["--bootstrap-servers", kafka_bootstrap, "--session-timeout", "6"]
    work = Worker(app, "work", transport, WorkerOptions(commit_interval=0.05))
    work_task = asyncio.create_task(work.run())
    first = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    restarted: Worker | None = None
    try:
        async with Client(app, transport) as client:
            since = time.time() - 1.0
            ids = await client.push_many([{"text": f"q{i}"} for i in range(6)])
            # Wait until the first stage admitted queries (the slow stage got some) ...
            await _eventually(lambda: work.stats.consumed >= 1 or first.returncode is not None, 90)
            assert first.returncode is None and work.stats.consumed >= 1
            # ... then kill it at once, holding its admitted queries.
            first.send_signal(signal.SIGKILL)
            await asyncio.wait_for(first.wait(), 10)
            restarted = Worker(app, "admit", transport, WorkerOptions(commit_interval=0.05))
            restarted_task = asyncio.create_task(restarted.run())
            got = {r.query_id async for r in client.follow(ids, timeout=150, since=since)}
            assert got == set(ids)
            admission = restarted.admission
            assert admission is not None
            # Its slots came back: nothing held once every query finished.
            await _eventually(lambda: admission.stats.in_flight == 0, 20)
            assert admission.stats.in_flight == 0 and admission.stats.admitted >= 1
            assert admission.free() == 2
            restarted.stop()
            await asyncio.wait_for(restarted_task, 30)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        work.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(work_task, 30)
        if restarted is not None:
            restarted.stop()
