"""The app API on a real broker: an app's own schemas in worker processes and the CLI,
and an aggregate's context (zero-child splits, restore from the changelog).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alto_stream import AggregateContext, App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.cli import app as cli
from alto_stream.client import Client
from alto_stream.message import HEADER_CONTEXT, Envelope
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import DeliveryMode, Worker, WorkerOptions
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]

DOC_SCHEMA = {
    "type": "record",
    "name": "Doc",
    "namespace": "appapi",
    "fields": [{"name": "title", "type": "string"}, {"name": "body", "type": "string"}],
}
SUMMARY_SCHEMA = {
    "type": "record",
    "name": "Summary",
    "namespace": "appapi",
    "fields": [
        {"name": "title", "type": "string"},
        {"name": "parts", "type": {"type": "array", "items": "string"}},
        {"name": "ancestor", "type": "string"},
    ],
}

APP_MODULE = """
from alto_stream import App

app = App({name!r}, input_schema="appapi.Doc", schemas=["schemas"])

@app.split(source=app.input, schema="alto.Text")
def parts(doc):
    return [{{"text": p}} for p in doc["body"].split("|") if p]

@app.aggregate(source=parts, closes=parts, schema="appapi.Summary")
async def summary(children, context):
    # The title comes from the split record, not from the children (there may be none).
    return {{
        "title": context.value["title"],
        "parts": [c.value["text"] for c in children],
        "ancestor": context.ancestor_id,
    }}
"""


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_an_app_with_its_own_schemas_runs_in_worker_processes_and_the_cli_reads_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique_name("own")
    module = "m_" + name.replace("-", "_")
    (tmp_path / "schemas").mkdir()
    for raw in (DOC_SCHEMA, SUMMARY_SCHEMA):
        (tmp_path / "schemas" / f"appapi.{raw['name']}.avsc").write_text(json.dumps(raw))
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP_MODULE.format(name=name)))
    ref = f"{module}:app"
    elsewhere = tmp_path / "run"  # workers run from another folder: schemas/ is the module's
    elsewhere.mkdir()
    env = {
        **os.environ,
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    runner = CliRunner()
    cli_env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    sys.path.insert(0, str(tmp_path))
    workers: list[subprocess.Popen[str]] = []
    try:
        result = runner.invoke(cli, ["topics", "apply", ref], env=cli_env)
        assert result.exit_code == 0, result.output
        for stage in ("parts", "summary"):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "alto_stream.cli", "worker", ref, stage],
                    cwd=elsewhere,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        finals = {}
        for body in ("a|b|c", ""):  # the second splits into zero parts
            value = json.dumps({"title": f"T{len(body)}", "body": body})
            push = ["push", ref, "--value", value, "--follow", "--json", "--timeout", "120"]
            result = runner.invoke(cli, push, env=cli_env)
            assert result.exit_code == 0, result.output
            lines = _lines(result.stdout)
            finals[lines[0]["query_id"]] = lines[-1]["value"]
        assert sorted(finals.values(), key=lambda v: v["title"]) == [
            {"title": "T0", "parts": [], "ancestor": v["ancestor"]}
            if v["title"] == "T0"
            else {"title": "T5", "parts": ["a", "b", "c"], "ancestor": v["ancestor"]}
            for v in sorted(finals.values(), key=lambda v: v["title"])
        ]
        assert {v["ancestor"] for v in finals.values()} == set(finals)
        # tail and trace decode the app's own schemas with --app.
        output = f"{name}.summary"
        tail = ["tail", output, "--from-beginning", "--no-follow", "--json"]
        result = runner.invoke(cli, [*tail, "--app", ref], env=cli_env)
        assert result.exit_code == 0, result.output
        values = [line.get("value") for line in _lines(result.stdout)]
        assert sorted(v["title"] for v in values if v) == ["T0", "T5"]
        result = runner.invoke(cli, tail, env=cli_env)  # without the app: unknown schema
        plain = _lines(result.stdout)
        assert len(plain) == 2 and all("unknown writer schema" in line["error"] for line in plain)
        some_id = next(iter(finals))
        result = runner.invoke(cli, ["trace", some_id, "--app", ref, "--json"], env=cli_env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["query_id"] == some_id
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                out, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
            assert "Traceback" not in out, out
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)


def _gated_app(name: str, gate: asyncio.Event, seen: list[AggregateContext]) -> App:
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(q: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for w in q["text"].split():
            yield {"text": w}

    @app.map(source=words, schema="alto.Text")
    async def hold(v: dict[str, Any]) -> dict[str, Any]:
        if v["text"] == "late":
            await gate.wait()
        return v

    @app.aggregate(source=hold, closes=words, schema="alto.Text")
    async def join(children: list[Child], *, context: AggregateContext) -> dict[str, Any]:
        seen.append(context)
        assert context.value is not None
        return {"text": f"{context.value['text']}={len(children)}"}

    return app


async def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_the_context_survives_an_aggregator_restart_through_the_changelog(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # At-least-once: a held record does not hold back its partition's other outputs
    # (in the transactional mode it does, by design: see the test below).
    delivery: DeliveryMode = "at-least-once"
    gate = asyncio.Event()
    seen: list[AggregateContext] = []
    app = _gated_app(unique_name("ctx"), gate, seen)
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    options = WorkerOptions(delivery=delivery, commit_interval=0.05)
    workers = [Worker(app, stage, transport, options) for stage in ("words", "hold", "join")]
    first = workers[-1]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    changelog = topology.plan("join").changelog_topic
    assert changelog is not None
    try:
        async with Client(app, transport) as client:
            [held, empty] = await client.push_many([{"text": "a late b"}, {"text": " "}])
            # The zero-child query completes at once, with its context.
            await _wait_for(lambda: any(c.ancestor_id == empty for c in seen), 60, "zero child")
            # The held query's end marker and two children reach the first aggregator...
            await _wait_for(lambda: first.stats.consumed >= 4, 60, "fragments")
            first.stop()
            await asyncio.wait_for(tasks[-1], 30)
            records = [r for p in range(2) for r in await transport.read_partition(changelog, p)]
            assert any(k == HEADER_CONTEXT for r in records for k, _ in r.headers)
            # ... and a new one, which reads only the held child, restores the context.
            second = Worker(app, "join", transport, options)
            workers.append(second)
            tasks.append(asyncio.create_task(second.run()))
            await asyncio.sleep(1.0)
            assert not any(c.ancestor_id == held for c in seen)
            gate.set()
            finals = {
                r.query_id: r
                async for r in client.follow([held, empty], timeout=90, partials=False)
            }
    finally:
        gate.set()
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    assert second.stats.consumed == 1  # the end marker came from the changelog, not a re-read
    assert finals[held].value == {"text": "a late b=3"}
    assert finals[empty].value == {"text": " =0"}
    restored = [c for c in seen if c.ancestor_id == held]
    assert len(restored) == 1 and restored[0].schema == "alto.Text"


async def test_the_context_survives_a_transactional_aggregator_restart(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The aggregator's input is written here, as its upstream would write it: the end
    # marker (with its context) and one child before the restart, the other after.
    seen: list[AggregateContext] = []
    app = _gated_app(unique_name("ctxtx"), asyncio.Event(), seen)
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    plan, key_depth = topology.plan("join"), topology.plan("hold").key_depth
    assert key_depth is not None
    codec = topology.codec()
    root = Ancestry.root("q-ctx-tx")
    context = codec.encode_context("alto.Text", {"text": "x y"})

    def record(env: Envelope) -> OutRecord:
        value, headers = codec.encode(env)
        return OutRecord(plan.input_topic, value, headers, env.ancestry.routing_key(key_depth))

    before = [
        record(Envelope(root.end_marker("a1", 2), None, None, "hold", context)),
        record(Envelope(root.child("a1", 0), {"text": "x"}, "alto.Text", "hold")),
    ]
    after = [record(Envelope(root.child("a1", 1), {"text": "y"}, "alto.Text", "hold"))]
    producer = transport.producer()
    await producer.start()
    options = WorkerOptions(delivery="transactional", commit_interval=0.05)
    first = Worker(app, "join", transport, options)
    second = Worker(app, "join", transport, options)
    try:
        await producer.send_many(before)
        task = asyncio.create_task(first.run())
        await _wait_for(lambda: first.stats.consumed >= 2, 60, "fragments")
        first.stop()
        await asyncio.wait_for(task, 30)
        task = asyncio.create_task(second.run())
        await producer.send_many(after)
        async with Client(app, transport) as client:
            [result] = [r async for r in client.follow([root.id], timeout=90, partials=False)]
    finally:
        first.stop()
        second.stop()
        await producer.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 60)
    assert result.value == {"text": "x y=2"}
    assert second.stats.consumed == 1  # the end marker came from the changelog
    [got] = seen
    assert (got.ancestor_id, got.attempt, got.schema) == (root.id, "a1", "alto.Text")
