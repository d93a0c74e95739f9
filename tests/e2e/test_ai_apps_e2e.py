"""The four AI apps end to end: a real broker, Gemma 3 270M on llama.cpp, MiniLM retrieval.

- each app's example question of docs/apps.md completes with a well-formed
  result (small inputs, bounded time);
- fanout with 2 worker processes for its slowest stage (``answer_sub``), one
  SIGKILLed mid-query: every final output exactly once, each made of one
  answer per sub-question;
- ``alto-stream eval fanout --json`` against the running app.

The index is ``ALTO_INDEX_DIR``, else the default Wikipedia index when built,
else a small one (the first 300 summaries) built here. They need the ``ml``
and ``llm`` extras and skip, saying so, without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp", reason="needs the llm extra: pip install -e '.[llm]'")
pytest.importorskip("sentence_transformers", reason="needs the ml extra: pip install -e '.[ml]'")

from alto_stream import App
from alto_stream.client import Client, Result
from alto_stream.components.llm import LLM, LLMConfig, create_llm
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import read_topic
from workers import common, cove, factcheck, fanout, rag

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_apps_doc import example_question  # the docs' examples are what these tests run

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
LABELS = {"supported", "refuted", "not enough info", "unchecked"}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An index to retrieve from, exported as ALTO_INDEX_DIR (for worker processes too)."""
    from alto_stream.components.embed import Embedder
    from alto_stream.components.index import build_index, load_corpus

    before = os.environ.get("ALTO_INDEX_DIR")
    path = common.index_dir()
    if not (path / "manifest.json").exists():
        path = tmp_path_factory.mktemp("index") / "wiki-300"
        build_index(load_corpus("wiki", limit=300), path, embedder=Embedder())
    os.environ["ALTO_INDEX_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("ALTO_INDEX_DIR", None)
    else:
        os.environ["ALTO_INDEX_DIR"] = before


@pytest.fixture(scope="module")
async def llm() -> Any:
    model = create_llm(LLMConfig())
    await model.start()
    yield model
    await model.close()


async def _run(app: App, bootstrap: str, queries: list[dict[str, Any]]) -> list[Result]:
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run(queries, timeout=600)
    assert len(finals) == len(queries), "every query completes"
    return list(finals.values())


def _reports(results: list[Result]) -> list[dict[str, Any]]:
    """The JSON reports of the results that are data (an error marker carries its reason)."""
    for result in results:
        if not result.ok:
            assert result.envelope.ancestry.reason, "an error marker says why"
    reports = [json.loads(r.value["json"]) for r in results if r.ok and r.value]
    assert reports, "at least one query gave a report"
    return reports


async def test_factcheck(
    kafka_bootstrap: str, unique_name: Callable[[str], str], index: Path, llm: LLM
) -> None:
    app = factcheck.build(unique_name("fc"), llm=llm)
    question = example_question("factcheck")
    [report] = _reports(await _run(app, kafka_bootstrap, [{"text": question}]))
    assert report["question"] == question
    assert report["sentences"], report
    claims = [c for s in report["sentences"] for c in s["claims"]]
    assert {c["label"] for c in claims} <= LABELS
    assert report["claims"] == len(claims)
    assert report["checked"] + report["unchecked"] == report["claims"]
    assert report["factuality"] is None or 0.0 <= report["factuality"] <= 1.0
    for claim in claims:
        if claim["label"] != "unchecked":
            assert claim["evidence"], claim  # retrieved titles
    print(json.dumps(report, indent=1)[:3000])


async def test_fanout(
    kafka_bootstrap: str, unique_name: Callable[[str], str], index: Path, llm: LLM
) -> None:
    app = fanout.build(unique_name("fo"), llm=llm)
    question = example_question("fanout")
    [report] = _reports(
        await _run(app, kafka_bootstrap, [{"text": question, "metadata": {"id": "e2e"}}])
    )
    assert report["question"] == question and report["metadata"] == {"id": "e2e"}
    assert 1 <= len(report["subs"]) <= 4
    assert report["titles"], "passages were retrieved"
    assert isinstance(report["answer"], str) or report["error"]
    print(json.dumps(report, indent=1)[:3000])


async def test_rag(
    kafka_bootstrap: str, unique_name: Callable[[str], str], index: Path, llm: LLM
) -> None:
    app = rag.build(unique_name("rag"), llm=llm)
    question = example_question("rag")
    [report] = _reports(await _run(app, kafka_bootstrap, [{"text": question}]))
    assert report["query"] == question
    assert 1 <= len(report["context"]) <= 4 and report["sources"]
    scores = [s["score"] for s in report["context"]]
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert isinstance(report["answer"], str)
    print(json.dumps(report, indent=1)[:3000])


async def test_cove(
    kafka_bootstrap: str, unique_name: Callable[[str], str], index: Path, llm: LLM
) -> None:
    app = cove.build(unique_name("cove"), llm=llm)
    question = example_question("cove")
    [report] = _reports(await _run(app, kafka_bootstrap, [{"text": question}]))
    assert report["question"] == question
    assert report["baseline"] and report["revised"]
    for check in report["checks"]:
        assert (check["answer"] and check["titles"]) or check["error"]
    print(json.dumps(report, indent=1)[:3000])


# -- fanout, two answer_sub processes, one SIGKILLed mid-query -------------------

SUBS = {
    "Which river is longer, the Nile or the Amazon?": [
        "How long is the Nile?",
        "How long is the Amazon River?",
    ],
    "Who was born first, Isaac Newton or Galileo Galilei?": [
        "When was Isaac Newton born?",
        "When was Galileo Galilei born?",
    ],
    "Which is the largest of Jupiter, Saturn and Neptune?": [
        "How large is Jupiter?",
        "How large is Saturn?",
        "How large is Neptune?",
    ],
}


def _worker(ref: str, stage: str, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALTO_BOOTSTRAP_SERVERS": bootstrap}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "alto_stream.cli", "worker", ref, stage],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _depth0_counts(transport: KafkaTransport, topic: str) -> Counter[str]:
    """How many query-level (depth 0) records each query has on ``topic``."""
    records = await read_topic(transport, topic, start_time=0.0)
    return Counter(env.ancestry.query_id for _, env in records if env.ancestry.depth == 0)


async def _ids(transport: KafkaTransport, topic: str) -> list[str]:
    """The record id of every data record on ``topic``."""
    records = await read_topic(transport, topic, start_time=0.0)
    return [env.ancestry.id for _, env in records if env.value is not None]


async def _first_record(transport: KafkaTransport, topic: str, timeout: float) -> None:
    reader = transport.reader([topic], start_time=0.0)
    await reader.start()
    try:
        async with asyncio.timeout(timeout):
            while not await reader.fetch(0.5, 1):
                pass
    finally:
        await reader.stop()


async def test_fanout_survives_a_killed_replica(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    index: Path,
    llm: LLM,
    tmp_path: Path,
) -> None:
    name = unique_name("fo-kill")
    app = fanout.build(name, llm=llm)
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=4))
    ref = f"workers.fanout:build({name!r})"
    replicas = [_worker(ref, "answer_sub", kafka_bootstrap, tmp_path / f"w{i}.log") for i in (0, 1)]
    queries = [{"text": q, "metadata": {"subquestions": json.dumps(s)}} for q, s in SUBS.items()]
    finals: dict[str, Result] = {}
    try:
        async with (
            LocalRun(app, transport, replicas={"answer_sub": 0}),
            Client(app, transport) as client,
        ):
            ids = await client.push_many(queries)
            follow = asyncio.create_task(_collect(client, ids, finals))
            await _first_record(transport, topology.plan("answer_sub").output_topic, 400)
            replicas[0].send_signal(signal.SIGKILL)
            killed_with = len(finals)
            await follow
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in replicas:
            proc.wait(timeout=60)
    assert replicas[0].returncode == -signal.SIGKILL
    assert killed_with < len(queries), "the kill came mid-query"
    counts = await _depth0_counts(transport, topology.plan("final").output_topic)
    assert counts == Counter(dict.fromkeys(ids, 1)), "each final output exactly once"
    answers = await _ids(transport, topology.plan("answer_sub").output_topic)
    # Not asserted (it depends on where the kill fell): how many sub-answers the
    # survivor wrote again, which the aggregate had to drop.
    print(f"answer_sub records: {len(answers)}, distinct: {len(set(answers))}")
    for query_id, (question, subs) in zip(ids, SUBS.items(), strict=True):
        report = json.loads(finals[query_id].value["json"])  # type: ignore[index]
        assert report["question"] == question
        # One answer per sub-question, in order: no duplicate of a re-run record.
        assert [s["sub"] for s in report["subs"]] == subs
        assert all(s.get("answer") or s.get("error") for s in report["subs"])


async def _collect(client: Client, ids: list[str], finals: dict[str, Result]) -> None:
    async for result in client.follow(ids, timeout=600, since=0.0, partials=False):
        finals[result.query_id] = result


# -- alto-stream eval fanout --------------------------------------------------------


async def test_eval_fanout_json(
    kafka_bootstrap: str, unique_name: Callable[[str], str], index: Path, llm: LLM
) -> None:
    name = unique_name("fo-eval")
    app = fanout.build(name, llm=llm)
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    async with LocalRun(app, transport):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alto_stream.cli", "eval", "fanout", "--limit", "2",
            "--app", f"workers.fanout:build({name!r})", "--timeout", "600", "--json",
            env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["questions"] == 2 and summary["completed"] == 2
    assert 0.0 <= summary["recall"] <= 1.0 and 0.0 <= summary["accuracy"] <= 1.0
    assert 0 < summary["p50_s"] <= summary["p99_s"]
    assert "eval" in stderr.decode()  # the progress bar
    print(summary)
